"""LanguageModel.save_pretrained / from_pretrained: exact round trip, atomic writes, clear errors;
a trained run exports to it (train.export) and eval throughput/quality take the folder (model_dir=)."""
from __future__ import annotations

import json
import os

import pytest
import torch

from archs import LanguageModel
from archs.pretrained import CONFIG_NAME, WEIGHTS_NAME

MODELS = {
    "hybrid_layer_kwargs_fp64": dict(
        kwargs=dict(vocab_size=37, d_model=32, n_layers=3, layers=["mamba2", "attention"], norm_eps=1e-5,
                    mixer_kwargs={"mamba2": {"headdim": 8, "n_groups": 2, "d_state": 8, "time_step_limit": (0.0, float("inf"))},
                                  "attention": {"n_heads": 4, "n_kv_heads": 2, "head_dim": 6, "qkv_bias": True,
                                                "rope_scaling": {"rope_type": "yarn", "factor": 2.0,
                                                                 "original_max_position_embeddings": 16}}},
                    layer_kwargs=[{}, {"window": 3}, {}]),
        dtype=torch.float64),
    "mamba_untied_no_mlp": dict(kwargs=dict(vocab_size=29, d_model=16, n_layers=2, layers="mamba", mlp=None,
                                            tie_embeddings=False), dtype=torch.float32),
    "deltanet_short_conv_bf16": dict(kwargs=dict(vocab_size=29, d_model=16, n_layers=1, layers="deltanet", short_conv=3,
                                                 mixer_kwargs={"deltanet": {"n_heads": 2, "norm_eps": 1e-6}}),
                                     dtype=torch.bfloat16),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_is_exact(tmp_path, name):
    spec = MODELS[name]
    model = LanguageModel(**spec["kwargs"]).to(spec["dtype"]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # every tensor differs from a fresh init
    model.save_pretrained(tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp files left
    back = LanguageModel.from_pretrained(tmp_path / "m").eval()
    assert back.config == json.loads(json.dumps(model.config))  # the JSON form of every constructor argument
    own, other = model.state_dict(), back.state_dict()
    assert own.keys() == other.keys()
    for k in own:
        assert own[k].dtype == other[k].dtype and torch.equal(own[k], other[k]), k
    assert (back.head.weight is back.embed.weight) == (model.head.weight is model.embed.weight)
    tokens = torch.randint(0, model.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(tokens), back(tokens))
        assert torch.equal(model.generate(tokens[:, :3], 5, temperature=0), back.generate(tokens[:, :3], 5, temperature=0))


def test_a_failed_save_leaves_the_old_folder_whole(tmp_path, monkeypatch):
    m1 = LanguageModel(vocab_size=11, d_model=16, n_layers=1, layers="hgrn")
    m1.save_pretrained(tmp_path / "m")
    before = {f: (tmp_path / "m" / f).read_bytes() for f in (CONFIG_NAME, WEIGHTS_NAME)}
    import safetensors.torch

    def broken(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        LanguageModel(vocab_size=11, d_model=16, n_layers=1, layers="lru").save_pretrained(tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == [CONFIG_NAME, WEIGHTS_NAME]
    assert {f: (tmp_path / "m" / f).read_bytes() for f in before} == before


def test_from_pretrained_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        LanguageModel.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="must hold config.json and model.safetensors"):
        LanguageModel.from_pretrained(tmp_path / "empty")
    m = LanguageModel(vocab_size=11, d_model=16, n_layers=1, layers="mingru")
    m.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / CONFIG_NAME).read_text())
    cfg["model"]["n_layers"] = 2
    (tmp_path / "m" / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"does not fit its config: missing \['blocks.1"):
        LanguageModel.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / CONFIG_NAME).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="is not a seqarena.LanguageModel v1 config"):
        LanguageModel.from_pretrained(tmp_path / "m")


def test_eval_takes_a_model_folder(tmp_path, capsys):
    from eval.__main__ import main

    m = LanguageModel(vocab_size=256, d_model=16, n_layers=1, layers="mamba", mlp=None)
    m.save_pretrained(tmp_path / "m")
    assert main(["throughput", f"model_dir={tmp_path / 'm'}", "contexts=[16]", "decode_steps=2", "repeats=1", "warmup=0"]) == 0
    out = capsys.readouterr().out
    assert "model_dir=" in out and "16" in out
    ids = tmp_path / "ids.txt"
    ids.write_text(" ".join(str(i % 256) for i in range(300)))
    assert main(["quality", f"model_dir={tmp_path / 'm'}", f"tokens_file={ids}", "text_seq_len=64", "n_buckets=2",
                 "max_windows=2"]) == 0
    assert "loss_by_position" in capsys.readouterr().out
    assert main(["quality", f"model_dir={tmp_path / 'm'}", "model_task=mqar", "lengths=[64]", "num_examples=4"]) == 0
    small = LanguageModel(vocab_size=50, d_model=16, n_layers=1, layers="lru")
    small.save_pretrained(tmp_path / "small")
    with pytest.raises(SystemExit, match="vocabulary of 256 tokens but the model .* has 50"):
        main(["quality", f"model_dir={tmp_path / 'small'}", "model_task=text"])
    with pytest.raises(SystemExit, match="model_dir: .* is not a folder"):
        main(["throughput", f"model_dir={tmp_path / 'missing'}"])
