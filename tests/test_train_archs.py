"""Every registered mixer trains a few steps on MQAR through the trainer (finite, decreasing-or-not loss)."""
from __future__ import annotations

import math

import pytest
from trainutil import tiny_cfg

from archs import mixer_names
from train import train_run
from train.callbacks import read_metrics


@pytest.mark.parametrize("name", mixer_names())
def test_every_mixer_trains_on_mqar(name, tmp_path):
    s = train_run(tiny_cfg(tmp_path, f"arch={name}", "budget.max_steps=3", "log_every=1", "val_every=3",
                           "trainer.ckpt_every=3"))
    assert s["arch"] == name and s["finished"] and s["steps"] == 3
    rows = read_metrics(tmp_path / s["name"] / "metrics.csv")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["train_loss"]) for r in rows)
    assert math.isfinite(s["val_loss"]) and 0 <= s["val_acc"] <= 1
    assert s["flops_per_token"] > 0 and s["params"] > 0
