"""Issue 15's CLI reproductions with real processes (slow): two trainers on one run name, SIGTERM /
SIGINT exit codes and resume, ``eval compare`` under SIGTERM, sweeps with an explicit name."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from trainutil import TINY, cli, cli_env, tiny_cfg

from train import train_run
from train.callbacks import read_metrics
from train.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow


def _wait_for(pred, proc, timeout=240, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _rows(path):
    try:
        return read_metrics(path)
    except (OSError, ValueError):
        return []


def _holder_pid(folder):
    try:
        return json.loads((folder / ".lock").read_text()).get("pid")
    except (OSError, ValueError):
        return None


def test_two_trainers_on_one_name_do_not_mix(tmp_path):
    """Issue 15 #1: the second process is refused with the holder's pid; with --wait it runs after the first."""
    over = [*TINY, f"results_root={tmp_path}", "name=x", "trainer.ckpt_every=50"]
    a = subprocess.Popen(cli(*over, "budget.max_steps=150"), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "x"
    _wait_for(lambda: _holder_pid(run) == a.pid, a, what="the first trainer's lock")
    a.send_signal(signal.SIGSTOP)  # hold the first trainer mid-run (it keeps its lock) while the others start
    try:
        b = subprocess.run(cli(*over, "lr=0.02"), env=cli_env(), capture_output=True, text=True, timeout=300)
        assert b.returncode == 3, b.stderr[-2000:]
        assert f"run folder {run} is in use by pid {a.pid}" in b.stderr and "--wait" in b.stderr
        c = subprocess.Popen(cli("--wait", *over, "lr=0.02"), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert f"waiting for run folder {run}: in use by pid {a.pid}" in c.stderr.readline()
    finally:
        a.send_signal(signal.SIGCONT)
    assert a.wait(timeout=600) == 0, a.stderr.read()[-2000:]
    assert c.wait(timeout=600) == 0, c.stderr.read()[-2000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["lr"] == 0.02 and s["steps"] == 6 and s["finished"] and not s["resumed"]  # retrained after the first ended
    assert "lr: 0.02" in (run / "config.yaml").read_text()
    assert [r["step"] for r in read_metrics(run / "metrics.csv")] == [2, 3, 4, 6]  # one run's rows only
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["seqarena_config_hash"] == s["config_hash"]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_exits_nonzero_and_the_rerun_resumes(tmp_path, sig, code):
    """Issue 15 #6: SIGTERM -> 143, SIGINT -> 130, after a checkpoint at the current step; the rerun
    resumes and ends with the uninterrupted run's metrics."""
    steps = 60
    over = [*TINY, f"budget.max_steps={steps}", f"results_root={tmp_path}", "val_every=10", "trainer.ckpt_every=25", "name=sig"]
    run = tmp_path / "sig"
    p = subprocess.Popen(cli(*over), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (r := _rows(run / "metrics.csv")) and r[-1]["step"] >= 8, p, what="step 8")
    p.send_signal(sig)
    assert p.wait(timeout=120) == code
    err = p.stderr.read()
    assert f"interrupted by {sig.name}" in err and "rerun the same command to resume" in err
    s = json.loads((run / "summary.json").read_text())
    ck = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert not s["finished"] and s["interrupted"] == sig.name and 8 <= s["steps"] < steps
    assert ck["global_step"] == s["steps"]  # saved at the step it stopped, not at the last multiple of 25
    r = subprocess.run(cli(*over), env=cli_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["resumed"] and resumed["finished"] and resumed["steps"] == steps
    ref = train_run(tiny_cfg(tmp_path, f"budget.max_steps={steps}", "val_every=10", "name=ref"))
    a, b = read_metrics(tmp_path / "ref" / "metrics.csv"), read_metrics(run / "metrics.csv")
    assert [x["step"] for x in a] == [x["step"] for x in b]
    for ra, rb in zip(a, b):
        for k in ("train_loss", "val_loss", "lr"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, nan_ok=True), (ra["step"], k)


def test_eval_compare_sigterm_exits_143(tmp_path):
    """Issue 15 #6 for ``eval compare``: a pre-empted compare is not a success."""
    p = subprocess.Popen([sys.executable, "-m", "eval", "compare", "compare=tiny", f"results_root={tmp_path}", "progress=false"],
                         env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _holder_pid(tmp_path / "tiny") == p.pid, p, what="the compare lock")
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=120) == 143, p.stderr.read()[-2000:]
    assert "stopped: interrupted by SIGTERM" in p.stderr.read()
    assert not (tmp_path / "tiny" / "compare.json").exists()


def test_sweep_with_an_explicit_name_gets_one_folder_per_point(tmp_path):
    """Issue 15 #4: ``-m name=exp lr=a,b`` used to make each point delete the previous one."""
    r = subprocess.run(cli("-m", *TINY, "budget.max_steps=2", f"results_root={tmp_path}", "name=exp", "lr=0.01,0.02"),
                       env=cli_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["exp-lr=0.01", "exp-lr=0.02"]
    for lr in ("0.01", "0.02"):
        s = json.loads((tmp_path / f"exp-lr={lr}" / "summary.json").read_text())
        assert s["finished"] and s["lr"] == float(lr)


def test_cli_name_outside_results_root_exits_2_and_writes_nothing(tmp_path):
    """Issue 15 #4 at the CLI: ``name=../../victim``."""
    root = tmp_path / "a" / "b"
    r = subprocess.run(cli(*TINY, f"results_root={root}", "name=../../victim"), env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "name='../../victim' must be a single folder name" in r.stderr
    assert not (tmp_path / "victim").exists()
    assert not root.exists() or not any(root.iterdir())  # Hydra itself makes its (empty) run dir


def test_two_compares_into_one_folder_do_not_mix(tmp_path):
    """Issue 15 #1 for ``eval compare``: the second is refused (exit 3, naming the first); the first is unharmed."""
    cmd = [sys.executable, "-m", "eval", "compare", "compare=tiny", "compare.only=[attention]", f"results_root={tmp_path}", "progress=false"]
    a = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _holder_pid(tmp_path / "tiny") == a.pid, a, what="the first compare's lock")
    a.send_signal(signal.SIGSTOP)
    try:
        b = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    finally:
        a.send_signal(signal.SIGCONT)
    assert b.returncode == 3 and f"compare folder {tmp_path / 'tiny'} is in use by pid {a.pid}" in b.stderr
    assert a.wait(timeout=600) == 0, a.stderr.read()[-2000:]
    runs = sorted((tmp_path / "tiny" / "runs").glob("*-attention-*"))
    assert runs and not list((tmp_path / "tiny" / "runs").glob("*-retnet-*"))
    for run in runs:  # each run's rows, once
        assert [r["step"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3], run.name
