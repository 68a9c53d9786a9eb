"""Shared tiny training configs for the trainer tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TINY = [
    "model.d_model=32", "model.n_layers=1", "batch_size=4", "task.num_kv_pairs=2", "task.seq_len=32",
    "budget.flops=null", "budget.max_steps=6", "log_every=2", "val_every=3", "val_batches=1",
    "trainer.ckpt_every=2", "trainer.progress_bar=false", "lr=1e-2",
]


def tiny_cfg(root, *overrides: str):
    from train import compose_config

    base = [o for o in TINY if not (o.startswith("task.num_kv_pairs") and any(x.startswith("task=") for x in overrides))]
    return compose_config([f"results_root={root}", *base, *overrides])


def cli_env() -> dict:
    """Environment for `python -m train` subprocesses: one thread each, no progress bar."""
    env = dict(os.environ, OMP_NUM_THREADS="1", CI="true", PYTHONPATH=str(REPO))
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "train", *args]
