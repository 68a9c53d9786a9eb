"""`python -m train` as a real subprocess: multirun names, kill -9 and resume, 2-process DDP on CPU."""
from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from trainutil import TINY, cli, cli_env, tiny_cfg

from train import train_run
from train.callbacks import read_metrics
from train.sweep import best_runs

COMPARE = ("tokens", "flops", "train_loss", "val_loss", "val_acc", "lr")


def _same_metrics(a, b, rel=1e-5):
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for k in COMPARE:
            assert ra[k] == pytest.approx(rb[k], rel=rel, abs=1e-6, nan_ok=True), (ra["step"], k, ra[k], rb[k])


def test_cli_multirun_names_each_point_and_writes_nothing_else(tmp_path):
    args = [*TINY, "budget.max_steps=2", "results_root=runs"]
    r = subprocess.run(cli("-m", *args, "lr=0.01,0.02"), cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert runs == ["attention-mqar-d32x1-lr=0.01", "attention-mqar-d32x1-lr=0.02"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # no outputs/, no .hydra/
    for name in runs:
        s = json.loads((tmp_path / "runs" / name / "summary.json").read_text())
        assert s["finished"] and s["steps"] == 2
    (best,) = best_runs(tmp_path / "runs").values()
    assert best["name"] in runs


@pytest.mark.slow
def test_cli_bad_value_fails_with_one_clear_line(tmp_path):
    r = subprocess.run(cli(*TINY, "results_root=runs", "budget.flops=-3"), cwd=tmp_path, env=cli_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "budget.flops must be a positive number, got -3" in r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path):
    steps = 60
    over = [*TINY, f"budget.max_steps={steps}", f"results_root={tmp_path}", "val_every=10"]
    run = tmp_path / "killed"
    proc = subprocess.Popen(cli(*over, "name=killed", "trainer.ckpt_every=10"), env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if (run / "checkpoints" / "last.ckpt").exists() and (run / "metrics.csv").exists():
            rows = read_metrics(run / "metrics.csv")
            if rows and rows[-1]["step"] >= 12:  # past the step-10 checkpoint, mid-run
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = int(rows[-1]["step"])
                break
        time.sleep(0.02)
    assert killed_at is not None, "the run finished (or timed out) before it could be killed mid-run"
    assert killed_at < steps and not (run / "summary.json").exists()
    r = subprocess.run(cli(*over, "name=killed", "trainer.ckpt_every=10"), env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["resumed"] and resumed["steps"] == steps
    ref = train_run(tiny_cfg(tmp_path, f"budget.max_steps={steps}", "val_every=10", "name=ref"))
    assert ref["config_hash"] == resumed["config_hash"]
    _same_metrics(read_metrics(tmp_path / "ref" / "metrics.csv"), read_metrics(run / "metrics.csv"))


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one(tmp_path):
    over = [*TINY, "budget.max_steps=4", "log_every=1", "val_every=2", f"results_root={tmp_path}"]
    r = subprocess.run(cli(*over, "trainer=ddp_cpu", "name=ddp"), env=cli_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert ddp["finished"] and ddp["steps"] == 4
    single = train_run(tiny_cfg(tmp_path, "budget.max_steps=4", "log_every=1", "val_every=2", "name=single"))
    _same_metrics(read_metrics(tmp_path / "single" / "metrics.csv"), read_metrics(tmp_path / "ddp" / "metrics.csv"))
    assert ddp["val_loss"] == pytest.approx(single["val_loss"], rel=1e-5)
