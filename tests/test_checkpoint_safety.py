"""A run's checkpoint is read with weights_only=True and never unpickled: a crafted last.ckpt is
refused with a clear error (and runs nothing); a genuine one exports to a save_pretrained folder."""
from __future__ import annotations

import pickle

import pytest
import torch
from omegaconf import OmegaConf

from archs import LanguageModel
from train import load_run
from train.api import build_model
from train.export import main as export_main
from trainutil import tiny_cfg

MARKER = []


def _side_effect(*args):
    MARKER.append(args)
    return {}


class Exploit:
    def __reduce__(self):  # what a crafted pickle does: call any importable function on load
        return (_side_effect, ("pwned",))


def _run_dir(tmp_path, ckpt_obj, pickle_it=False):
    cfg = tiny_cfg(tmp_path, "name=r", "arch=hgrn")
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    OmegaConf.save(cfg, run / "config.yaml")
    path = run / "checkpoints" / "last.ckpt"
    if pickle_it:
        path.write_bytes(pickle.dumps(ckpt_obj, protocol=2))
    else:
        torch.save(ckpt_obj, path)
    return run, cfg


def test_crafted_pickle_checkpoint_is_refused(tmp_path):
    run, _ = _run_dir(tmp_path, {"state_dict": Exploit()})
    with pytest.raises(ValueError, match="refusing .*last.ckpt.*never unpickles arbitrary objects"):
        load_run(run)
    assert MARKER == []  # nothing ran
    (run / "checkpoints" / "last.ckpt").write_bytes(pickle.dumps(Exploit(), protocol=2))
    with pytest.raises(ValueError, match="refusing"):
        load_run(run)
    assert MARKER == []
    torch.save([1, 2], run / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        load_run(run)


def test_a_run_exports_to_a_model_folder(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path, "name=r", "arch=hgrn")
    c = OmegaConf.to_container(cfg, resolve=True)
    model = build_model(c["arch"], c["model"], 256)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    run, _ = _run_dir(tmp_path, {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}})
    assert export_main([str(run), str(tmp_path / "out")]) == 0
    back = LanguageModel.from_pretrained(tmp_path / "out")
    tokens = torch.randint(0, 256, (1, 10))
    with torch.no_grad():
        assert torch.equal(back(tokens), model.eval()(tokens))
    assert export_main([str(tmp_path / "missing"), str(tmp_path / "o2")]) == 2
    assert "no config.yaml" in capsys.readouterr().err
