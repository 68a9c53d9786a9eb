"""train_run / load_run / compose_config: run folder contents, reuse, resume, non-finite loss, bad configs."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
from trainutil import tiny_cfg

import train.module
from train import compose_config, config_hash, load_run, train_run
from train.callbacks import CSV_COLUMNS, read_metrics
from train.data import build_task
from train.data.datamodule import val_batch
from train.module import NonFiniteLossError, masked_lm_loss

SUMMARY_KEYS = {"name", "arch", "task", "params", "flops_per_token", "train_flops", "tokens", "steps", "wall_time_s",
                "final_train_loss", "val_loss", "val_acc", "finished", "config_hash"}


def test_compose_config_from_another_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_config(["arch=attention", "task=passkey", "lr=0.01"])
    assert cfg.task.name == "passkey" and cfg.lr == 0.01 and cfg.arch.name == "attention"
    assert cfg.seq_len == cfg.task.seq_len and cfg.results_root == "runs"
    assert cfg.name == f"attention-passkey-d{cfg.model.d_model}x{cfg.model.n_layers}"
    for group in ("mqar", "selective_copy", "induction", "passkey", "text"):
        assert compose_config([f"task={group}"]).task.name == group


def test_config_hash_ignores_name_root_and_progress():
    a = compose_config([])
    b = compose_config(["name=other", "results_root=/elsewhere", "trainer.progress_bar=true", "trainer.ckpt_every=7"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(compose_config(["lr=0.1"]))


def test_config_hash_changes_with_the_task_data_version(monkeypatch):
    from train.data import MQAR

    cfg = compose_config(["task=mqar"])
    before = config_hash(cfg)
    monkeypatch.setattr(MQAR, "data_version", MQAR.data_version + 1)
    assert config_hash(cfg) != before  # runs trained on the old data are not reused


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """One finished tiny run shared by the tests that only read it: (results_root, summary)."""
    root = tmp_path_factory.mktemp("runs")
    return root, train_run(tiny_cfg(root, "name=r"))


def test_train_run_writes_the_run_folder_and_reuses_it(done):
    tmp_path, s = done
    run = tmp_path / "r"
    for f in ("config.yaml", "metrics.csv", "summary.json", "checkpoints/last.ckpt"):
        assert (run / f).exists(), f
    assert any((run / "tb").iterdir())
    assert SUMMARY_KEYS <= set(s) and s["finished"] is True and s["steps"] == 6
    assert s["tokens"] == 6 * 4 * 32 and s["train_flops"] == pytest.approx(3 * s["flops_per_token"] * s["tokens"])
    assert json.loads((run / "summary.json").read_text()) == s
    rows = read_metrics(run / "metrics.csv")
    assert list(rows[0]) == CSV_COLUMNS
    assert [r["step"] for r in rows] == [2, 3, 4, 6]
    assert [math.isnan(r["val_loss"]) for r in rows] == [True, False, True, False]
    assert all(math.isfinite(r["train_loss"]) and r["lr"] > 0 for r in rows)
    assert rows[-1]["val_loss"] == pytest.approx(s["val_loss"]) and 0 <= s["val_acc"] <= 1
    # same config: reused without training; other lr: trained afresh in the same folder
    mtime = (run / "metrics.csv").stat().st_mtime_ns
    assert train_run(tiny_cfg(tmp_path, "name=r")) == s
    assert (run / "metrics.csv").stat().st_mtime_ns == mtime


def test_a_changed_config_retrains_in_the_same_folder(done, tmp_path):
    root, s = done
    import shutil

    shutil.copytree(root / "r", tmp_path / "r")
    s2 = train_run(tiny_cfg(tmp_path, "name=r", "lr=0.02", "budget.max_steps=2"))
    assert s2["config_hash"] != s["config_hash"] and s2["lr"] == 0.02 and s2["steps"] == 2 and not s2["resumed"]
    assert [r["step"] for r in read_metrics(tmp_path / "r" / "metrics.csv")] == [2]


def test_load_run_restores_the_trained_weights(done, tmp_path):
    root, s = done
    model, cfg, summary = load_run(root / "r")
    assert summary == s and not model.training and cfg.model.d_model == 32
    task = build_task(cfg.task)
    b = val_batch(task, cfg.batch_size, cfg.seq_len, cfg.seed, 0)
    with torch.no_grad():
        loss = masked_lm_loss(model(b["inputs"]), b["targets"])
    assert float(loss) == pytest.approx(s["val_loss"], rel=1e-5)  # val_batches=1: the same batch
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        load_run(tmp_path / "missing")


def _fail_at(monkeypatch, call: int, how: str):
    """Make the training loss raise (crash) or go NaN on the ``call``-th training step."""
    n = {"calls": 0}

    def loss(logits, targets):
        out = masked_lm_loss(logits, targets)
        if not torch.is_grad_enabled():  # validation
            return out
        n["calls"] += 1
        if n["calls"] == call:
            if how == "crash":
                raise RuntimeError("simulated crash")
            return out * float("nan")
        return out

    monkeypatch.setattr(train.module, "masked_lm_loss", loss)


def test_resume_after_a_crash_matches_an_uninterrupted_run(done, tmp_path, monkeypatch):
    root, ref = done  # the same run uninterrupted (checkpoint spacing is not part of the config hash)
    _fail_at(monkeypatch, 6, "crash")  # dies in step 6, after the step-4 row; last.ckpt is from step 3
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(tiny_cfg(tmp_path, "name=cut", "trainer.ckpt_every=3"))
    assert not (tmp_path / "cut" / "summary.json").exists()
    assert [r["step"] for r in read_metrics(tmp_path / "cut" / "metrics.csv")] == [2, 3, 4]
    monkeypatch.undo()
    resumed = train_run(tiny_cfg(tmp_path, "name=cut", "trainer.ckpt_every=3"))
    assert resumed["resumed"] and resumed["steps"] == 6 and resumed["config_hash"] == ref["config_hash"]
    a, b = read_metrics(root / "r" / "metrics.csv"), read_metrics(tmp_path / "cut" / "metrics.csv")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for k in ("tokens", "flops", "train_loss", "val_loss", "val_acc", "lr"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-6, abs=1e-7, nan_ok=True), (ra["step"], k)
    assert resumed["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-6)


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    _fail_at(monkeypatch, 5, "nan")  # step index 4; checkpoints at steps 2 and 4
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss \(nan\) at step 4"):
        train_run(tiny_cfg(tmp_path, "name=nan"))
    ck = torch.load(tmp_path / "nan" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values())
    assert not (tmp_path / "nan" / "summary.json").exists()


@pytest.mark.parametrize("override,message", [
    ("task.name=nope", "unknown task 'nope'"),
    ("budget.flops=-1", "budget.flops must be a positive number, got -1"),
    ("budget.max_steps=0", "budget.max_steps must be a positive int or null, got 0"),
    ("task.seq_len=5", "seq_len=5 is too short"),
    ("+task.max_seq_len=16", "seq_len=32 is above task mqar's max_seq_len=16"),
    ("lr=0", "lr must be a positive number, got 0"),
    ("precision=fp8", "precision 'fp8'"),
    ("batch_size=0", "batch_size must be a positive int, got 0"),
])
def test_bad_config_fails_before_training(tmp_path, override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_run(tiny_cfg(tmp_path, "name=bad", override))
    assert not (tmp_path / "bad").exists()


def test_text_task_trains_on_the_stdlib_corpus(tmp_path):
    s = train_run(tiny_cfg(tmp_path, "task=text", "task.max_files=20", "task.seq_len=48", "budget.max_steps=3",
                           "val_every=3", "log_every=1"))
    assert s["task"] == "text" and s["val_acc"] is None and math.isfinite(s["val_loss"])
    assert s["val_loss"] < math.log(256) + 0.5
    rows = read_metrics(tmp_path / s["name"] / "metrics.csv")
    assert math.isnan(rows[-1]["val_acc"])


def test_budget_params_sizes_the_model(tmp_path):
    s = train_run(tiny_cfg(tmp_path, "budget.params=60000", "budget.max_steps=1", "name=sized"))
    assert abs(s["params"] - 60000) <= 0.02 * 60000 and s["sizing"]["within_tolerance"]
    model, cfg, _ = load_run(tmp_path / "sized")
    assert model.num_params() == s["params"] and cfg.model.d_model == s["d_model"]


def test_budget_flops_sets_the_steps(tmp_path):
    from train import plan_run

    d = plan_run(tiny_cfg(tmp_path, "budget.max_steps=null", "budget.flops=1e9"))["derived"]
    assert d["steps"] == int(1e9 // (3 * d["flops_per_token"] * 4 * 32))


def test_progress_bar_auto_is_off_without_a_tty(monkeypatch):
    from train.api import _progress_bar

    monkeypatch.setenv("CI", "true")
    assert _progress_bar("auto") is False and _progress_bar(True) is True


def test_bf16_autocast_option_trains(tmp_path):
    s = train_run(tiny_cfg(tmp_path, "precision=bf16-mixed", "budget.max_steps=2", "name=bf16"))
    assert s["finished"] and math.isfinite(s["val_loss"])
    model, _, _ = load_run(tmp_path / "bf16")
    assert next(model.parameters()).dtype == torch.float32  # autocast: fp32 master weights
