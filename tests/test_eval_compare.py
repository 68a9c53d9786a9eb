"""End to end: the tiny compare preset (lr grid, seeds, CIs), interrupted, finished, rerun; launchers."""
from __future__ import annotations

import csv
import json
import math
import os

import pytest

from eval.__main__ import main
from eval.compare import Compare, preset_archs
from eval.config import compose, resolve_archs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARCHS = ["attention", "retnet"]
OUTPUTS = ["compare.md", "compare.csv", "compare.json"]
RUN_KEYS = {"arch", "task", "lr", "seed", "val_loss", "metrics", "train_flops", "tokens", "wall_time_s"}


def _args(root, *extra):
    return ["compare", "compare=tiny", f"results_root={root}", "progress=false", *extra]


def _mtimes(out):
    """mtime of every run's summary.json and checkpoint, every job result and cache file."""
    files = [p for p in out.rglob("*") if p.name in ("summary.json", "last.ckpt") or p.parent.name in ("cache", "jobs")]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in files if p.is_file()}


@pytest.fixture(scope="module")
def interrupted_then_finished(tmp_path_factory):
    """Run compare, interrupt it (Ctrl-C) as the fourth run starts training, then run it again."""
    import train

    root = tmp_path_factory.mktemp("results")
    out = root / "tiny"
    real, calls = train.train_run, []

    def interrupting(cfg):
        calls.append(str(cfg.name))
        if len(calls) == 4:
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
    assert r["calls"][:3] == ["mqar-attention-lr0.003-s0", "mqar-attention-lr0.01-s0", "text-attention-lr0.003-s0"]
    assert not any(name in OUTPUTS or name.endswith(".tmp") for name in r["leftovers"]), r["leftovers"]
    assert "jobs" in r["leftovers"]  # the three finished runs' results were kept
    now = _mtimes(r["out"])
    assert len(r["after_interrupt"]) >= 3
    for f, t in r["after_interrupt"].items():  # finished runs were neither retrained nor rescored
        assert now[f] == t, f"{f} was rewritten by the rerun"
    assert not list(r["out"].rglob("*.tmp"))


def test_schema_lr_selection_seeds_and_summary(interrupted_then_finished):
    out = interrupted_then_finished["out"]
    result = json.loads((out / "compare.json").read_text())
    assert result["archs"] == ARCHS and result["errors"] == []
    assert "Student t" in result["ci_method"]
    # one record per trained run: the lr grid at seed 0 plus the other seeds at the chosen lr
    assert len(result["runs"]) == len(ARCHS) * 2 * (2 + 1)
    for run in result["runs"]:
        assert RUN_KEYS <= set(run), set(run) ^ RUN_KEYS
        assert math.isfinite(run["val_loss"]) and run["wall_time_s"] > 0
    for arch in ARCHS:
        for task in ("mqar", "text"):
            sel = result["lr_selection"][arch][task]
            assert set(sel["grid"]) == {"0.003", "0.01"}
            assert sel["chosen"] == float(min(sel["grid"], key=sel["grid"].get))  # on validation loss
            seeds = sorted(r["seed"] for r in result["runs"] if r["arch"] == arch and r["task"] == task and r["lr"] == sel["chosen"])
            assert seeds == [0, 1]
        s = result["summary"][arch]
        for metric in ("mqar_acc", "mqar_acc_long", "text_loss", "mqar_val_loss", "text_val_loss"):
            assert s[metric]["n"] == 2 and s[metric]["ci95"][0] <= s[metric]["mean"] <= s[metric]["ci95"][1], metric
    # scoring sets: as many answers as the preset asks, the same for every run
    mq = [r for r in result["runs"] if r["task"] == "mqar"]
    assert all(min(r["scored"].values()) >= 64 for r in mq)
    assert len({json.dumps(r["scored"], sort_keys=True) for r in mq}) == 1


def test_files_table_and_plots(interrupted_then_finished):
    out = interrupted_then_finished["out"]
    for name in OUTPUTS:
        assert (out / name).is_file()
    with open(out / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["arch"] for r in rows] == ARCHS
    assert {"mqar_acc", "mqar_acc_ci_lo", "mqar_acc_ci_hi", "text_loss", "train_wall_s", "prefill_tok_s@64",
            "decode_tok_s@16", "state_mib@8192", "mqar_lr"} <= set(rows[0])
    md = (out / "compare.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(ARCHS) and " ± " in md and "**" in md and "train wall s" in md
    result = json.loads((out / "compare.json").read_text())
    assert any("frontier" in name for name in result["plots"].values())
    assert {"val_loss_vs_lr", "loss_vs_wall_clock", "recall_frontier"} <= set(result["plots"])
    import matplotlib.pyplot as plt

    for name in result["plots"].values():
        with open(out / name, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE
        assert plt.imread(out / name).ndim == 3


def test_rerun_reuses_everything_and_keeps_the_wall_time(interrupted_then_finished, monkeypatch):
    r = interrupted_then_finished
    before = _mtimes(r["out"])
    wall = json.loads((r["out"] / "compare.json").read_text())["wall_time_s"]
    trained = []
    monkeypatch.setattr("lightning.Trainer.fit", lambda *a, **k: trained.append(1))
    monkeypatch.setattr("eval.compare.measure_sources", lambda *a, **k: pytest.fail("throughput was remeasured"))
    assert main(_args(r["root"])) == 0
    assert trained == []
    assert _mtimes(r["out"]) == before
    again = json.loads((r["out"] / "compare.json").read_text())
    assert again["wall_time_s"] == wall
    assert f"Wall time {wall / 60:.1f} min" in (r["out"] / "compare.md").read_text()


def test_a_failing_arch_is_reported_not_fatal(interrupted_then_finished, tmp_path, monkeypatch, capsys):
    """A run that raises leaves a row marked with its error; the rest of the table is written."""
    import shutil

    import train

    shutil.copytree(interrupted_then_finished["out"], tmp_path / "tiny")
    for p in (tmp_path / "tiny" / "jobs").glob("*retnet*"):
        p.unlink()  # retnet's runs must be tried again
    real = train.train_run

    def broken(cfg):
        if cfg.arch.name == "retnet":
            raise RuntimeError("simulated failure")
        return real(cfg)

    monkeypatch.setattr(train, "train_run", broken)
    assert main(_args(tmp_path)) == 1
    assert "simulated failure" in capsys.readouterr().err
    result = json.loads((tmp_path / "tiny" / "compare.json").read_text())
    rows = {r["arch"]: r for r in result["rows"]}
    assert rows["attention"]["error"] is None and math.isfinite(rows["attention"]["text_loss"]["mean"])
    assert "simulated failure" in rows["retnet"]["error"] and rows["retnet"]["text_loss"] is None
    assert "Failures:" in (tmp_path / "tiny" / "compare.md").read_text()


@pytest.mark.slow  # fresh worker processes import torch and Lightning: ~1 min each on a loaded 2-core box
@pytest.mark.parametrize("launcher", [["compare.launcher=joblib", "compare.n_jobs=2"], ["compare.launcher=submitit_local"]],
                         ids=["joblib", "submitit_local"])
def test_hydra_launchers_give_the_same_runs_as_sequential(tmp_path, launcher):
    """Hydra's joblib launcher (2 worker processes) and submitit's local executor (the SLURM
    launcher's code path, without a cluster) train and score the same runs as the in-process loop."""
    if "submitit" in launcher[0]:
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the [slurm] extra is not installed")
    small = ["compare.only=[attention]", "compare.tasks=[mqar]", "compare.primary_task=mqar", "compare.throughput=null", "compare.seeds=[0,1]"]
    assert main(_args(tmp_path / "seq", *small)) == 0
    assert main(_args(tmp_path / "job", *small, *launcher)) == 0
    if "submitit" in launcher[0]:
        assert any((tmp_path / "job" / "tiny" / "jobs" / "hydra" / ".submitit").iterdir())  # submitit ran them
    seq, job = (json.loads((tmp_path / d / "tiny" / "compare.json").read_text()) for d in ("seq", "job"))
    key = lambda r: r["id"]  # noqa: E731
    assert [r["id"] for r in sorted(seq["runs"], key=key)] == [r["id"] for r in sorted(job["runs"], key=key)]
    for a, b in zip(sorted(seq["runs"], key=key), sorted(job["runs"], key=key)):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6), a["id"]
        assert a["metrics"] == pytest.approx(b["metrics"], rel=1e-6), a["id"]
        assert a["train_flops"] == b["train_flops"] and a["tokens"] == b["tokens"]
    assert seq["lr_selection"] == job["lr_selection"]


def test_presets_compose_and_keep_the_protocol():
    quick = compose("eval/compare").compare
    assert quick.name == "quick" and set(quick.tasks) == {"mqar", "text"}
    assert all(len(quick.lr_grid[t]) >= 3 for t in quick.tasks) and len(quick.seeds) >= 3
    assert quick.eval.min_scored >= 2000 and quick.eval.text_tokens >= 65536
    assert all(len(v) == 1 for v in quick.families.values())  # one arch per family
    every = compose("eval/compare", ["compare=all"]).compare
    from archs import mixer_names

    assert set(mixer_names()) <= set(preset_archs(every))
    recall = compose("eval/compare", ["compare=recall"]).compare
    assert list(recall.tasks) == ["mqar"] and len(recall.widths) >= 3


def test_extra_overrides_reach_every_run(tmp_path):
    from eval.compare import train_overrides
    from train.api import compose_config, plan_run

    c = compose("eval/compare", ["compare=tiny", "compare.train.extra_overrides=[\"arch.short_conv=4\"]"]).compare
    ov = train_overrides(c, "gla", "mqar", tmp_path)
    assert "arch.short_conv=4" in ov and "arch=gla" in ov
    model = plan_run(compose_config(ov))["model"]
    assert all(b.mixer.name == "gla+short_conv" for b in model.blocks)


def test_resolve_archs_expands_all_inside_a_list():
    from archs import mixer_names

    assert resolve_archs("all") == mixer_names()
    assert resolve_archs(["attention_conv", "all", "attention"]) == ["attention_conv"] + mixer_names()
    with pytest.raises(ValueError, match="non-empty"):
        resolve_archs([])


def test_bad_arguments_and_help(tmp_path, capsys):
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
    assert main(["compare", "positional"]) == 2
    for cmd in ("compare", "throughput", "quality", "ops"):
        assert main([cmd, "--help"]) == 0
        assert f"usage: python -m eval {cmd}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown \\['nomixer'\\]; known arch configs: .*attention"):
        Compare(compose("eval/compare", ["compare=tiny", "compare.archs=[nomixer]", f"results_root={tmp_path}"]))
    with pytest.raises(ValueError, match="seeds must be distinct"):
        Compare(compose("eval/compare", ["compare=tiny", "compare.seeds=[0,0]", f"results_root={tmp_path}"]))
    assert not os.listdir(tmp_path)
