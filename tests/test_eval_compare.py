"""End to end: the tiny compare preset, interrupted, finished, then rerun (reusing every run)."""
from __future__ import annotations

import csv
import json
import math
import os

import pytest

from eval.__main__ import main
from eval.compare import Compare
from archs import mixer_names
from eval.config import compose, resolve_archs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARCHS = ["attention", "retnet"]
OUTPUTS = ["compare.md", "compare.csv", "compare.json"]


def _args(root):
    return ["compare", "compare=tiny", f"compare.archs=[{','.join(ARCHS)}]", f"results_root={root}", "progress=false"]


def _mtimes(out):
    """mtime of every run's summary.json and checkpoint, and of every cache file."""
    files = [p for p in out.rglob("*") if p.name in ("summary.json", "last.ckpt") or p.parent.name == "cache"]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in files}


@pytest.fixture(scope="module")
def interrupted_then_finished(tmp_path_factory):
    """Run compare, interrupt it (Ctrl-C) when the second arch starts training, then run it again."""
    import train

    root = tmp_path_factory.mktemp("results")
    out = root / "tiny"
    real, calls = train.train_run, []

    def interrupting(cfg):
        calls.append(str(cfg.name))
        if len(calls) == 3:  # first arch trained and measured; second arch about to train
            raise KeyboardInterrupt
        return real(cfg)

    train.train_run = interrupting
    try:
        with pytest.raises(KeyboardInterrupt):
            main(_args(root))
    finally:
        train.train_run = real
    after_interrupt = _mtimes(out)
    leftovers = sorted(p.name for p in out.iterdir())
    assert main(_args(root)) == 0
    return {"root": root, "out": out, "after_interrupt": after_interrupt, "leftovers": leftovers, "calls": calls}


def test_interrupt_leaves_no_half_files_and_rerun_keeps_finished_work(interrupted_then_finished):
    r = interrupted_then_finished
    assert r["calls"] == ["mqar-attention", "text-attention", "mqar-retnet"]
    assert not any(name in OUTPUTS or name.endswith(".tmp") for name in r["leftovers"]), r["leftovers"]
    assert "cache" in r["leftovers"]  # the first arch's measurements were kept
    now = _mtimes(r["out"])
    for f, t in r["after_interrupt"].items():  # the first arch was neither retrained nor remeasured
        assert now[f] == t, f"{f} was rewritten by the rerun"
    assert not list(r["out"].rglob("*.tmp"))


def test_files_and_contents(interrupted_then_finished):
    out = interrupted_then_finished["out"]
    for name in OUTPUTS:
        assert (out / name).is_file()
    with open(out / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["arch"] for r in rows] == ARCHS
    numeric = [k for k in rows[0] if k not in ("arch", "error")]
    assert {"params", "train_flops", "tokens", "mqar_acc", "text_val_loss", "text_ppl", "state_mib@8192",
            "prefill_tok_s@16", "prefill_tok_s@64", "decode_tok_s@16", "decode_tok_s@64"} <= set(numeric)
    for r in rows:
        assert r["error"] == ""
        for k in numeric:
            assert math.isfinite(float(r[k])), (r["arch"], k, r[k])

    result = json.loads((out / "compare.json").read_text())
    assert result["archs"] == ARCHS and result["errors"] == []
    assert [r["arch"] for r in result["rows"]] == ARCHS
    assert result["best"]["state_mib@8192"] == ["retnet"]  # a recurrent state beats a KV cache at 8k
    assert {"mqar", "text"} == set(result["runs"]) and all(set(v) == set(ARCHS) for v in result["runs"].values())

    md = (out / "compare.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(ARCHS) and "**" in md
    for arch in ARCHS:
        assert any(line.startswith(f"| {arch} |") for line in table)

    import matplotlib.pyplot as plt

    assert set(result["plots"]) == {"loss_vs_flops", "decode_vs_context", "prefill_vs_context", "state_vs_context", "accuracy_vs_length"}
    for name in result["plots"].values():
        with open(out / name, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE
        assert plt.imread(out / name).ndim == 3


def test_rerun_reuses_everything(interrupted_then_finished, monkeypatch):
    import train

    r = interrupted_then_finished
    before = _mtimes(r["out"])
    md_before = (r["out"] / "compare.md").stat().st_mtime_ns
    trained = []
    monkeypatch.setattr("lightning.Trainer.fit", lambda *a, **k: trained.append(1))
    monkeypatch.setattr("eval.compare.measure_model", lambda *a, **k: pytest.fail("throughput was remeasured"))
    assert main(_args(r["root"])) == 0
    assert trained == []
    assert _mtimes(r["out"]) == before
    assert (r["out"] / "compare.md").stat().st_mtime_ns > md_before
    assert train  # (imported for the patch target's module to be loaded)


def test_presets_compose():
    quick = compose("eval/compare")
    assert quick.compare.name == "quick"
    assert resolve_archs(quick.compare.archs) == mixer_names() + ["attention_conv"]
    assert set(quick.compare.tasks) == {"mqar", "text"}
    long = compose("eval/compare", ["compare=long_context", "results_root=/tmp/x"])
    assert long.compare.name == "long_context" and long.results_root == "/tmp/x"
    assert max(long.compare.throughput.contexts) >= 65536


def test_extra_overrides_reach_every_run(tmp_path):
    from eval.compare import train_overrides
    from train.api import compose_config, plan_run

    c = compose("eval/compare", ["compare=tiny", "compare.train.extra_overrides=[\"arch.short_conv=4\"]"]).compare
    ov = train_overrides(c, "gla", "mqar", tmp_path)
    assert "arch.short_conv=4" in ov and "arch=gla" in ov
    model = plan_run(compose_config(ov))["model"]
    assert all(b.mixer.name == "gla+short_conv" for b in model.blocks)
    assert "arch.short_conv=4" not in train_overrides(compose("eval/compare", ["compare=tiny"]).compare, "gla", "mqar", tmp_path)


def test_resolve_archs_expands_all_inside_a_list():
    assert resolve_archs("all") == mixer_names()
    assert resolve_archs(["attention_conv", "all", "attention"]) == ["attention_conv"] + mixer_names()
    assert resolve_archs("hybrid_mamba_attention") == ["hybrid_mamba_attention"]
    with pytest.raises(ValueError, match="non-empty"):
        resolve_archs([])


def test_bad_arguments(tmp_path, capsys):
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
    assert main(["compare", "positional"]) == 2
    with pytest.raises(ValueError, match="unknown \\['nomixer'\\]; known arch configs: .*attention"):
        Compare(compose("eval/compare", ["compare=tiny", "compare.archs=[nomixer]", f"results_root={tmp_path}"]))
    assert not os.listdir(tmp_path)


def test_quality_command_on_a_finished_run(interrupted_then_finished, capsys, tmp_path):
    run = interrupted_then_finished["out"] / "runs" / "mqar-retnet"
    assert main(["quality", f"run={run}", "num_examples=4", "lengths=[32,64]", f"out={tmp_path}"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy_vs_length" in printed and "task mqar" in printed
    saved = json.loads((tmp_path / "quality.json").read_text())
    assert [r["length"] for r in saved["accuracy_vs_length"]] == [32, 64]
    with pytest.raises(SystemExit, match="does not exist"):
        main(["quality", f"run={tmp_path / 'missing'}"])


def test_a_failing_arch_is_reported_not_fatal(interrupted_then_finished, tmp_path, monkeypatch, capsys):
    """A run that raises leaves a row marked with its error; the rest of the table is written."""
    import shutil

    import train

    shutil.copytree(interrupted_then_finished["out"], tmp_path / "tiny")
    real = train.train_run

    def broken(cfg):
        if cfg.arch.name == "retnet":
            raise RuntimeError("simulated failure")
        return real(cfg)

    monkeypatch.setattr(train, "train_run", broken)
    assert main(_args(tmp_path)) == 1
    assert "FAILED retnet (train mqar): RuntimeError: simulated failure" in capsys.readouterr().err
    result = json.loads((tmp_path / "tiny" / "compare.json").read_text())
    rows = {r["arch"]: r for r in result["rows"]}
    assert rows["attention"]["error"] is None and math.isfinite(rows["attention"]["text_val_loss"])
    assert "simulated failure" in rows["retnet"]["error"] and rows["retnet"]["text_val_loss"] is None
    assert "Failures:" in (tmp_path / "tiny" / "compare.md").read_text()
