"""The trainer's public API (re-exported from its homes: ``config``, ``run``, ``checkpoint``).

    from train import compose_config, train_run, load_run
    cfg = compose_config(["arch=attention", "task=mqar", "budget.flops=1e12"])
    summary = train_run(cfg)                  # runs/<name>/summary.json
    model, cfg, summary = load_run("runs/attention-mqar-d64x2")
"""
from __future__ import annotations

from .atomic import write_text
from .checkpoint import load_run, read_summary
from .config import (HASH_EXCLUDE, PRECISIONS, check_model_seq_len, check_name, compose_config, config_hash,
                     configs_dir, data_fingerprint, run_dir, validate_config)
from .config import plain as _plain
from .lock import FolderLock, FolderLockedError
from .run import RUN_FILES, _clean, _is_rank0, _progress_bar, _quiet, build_model, plan_run, train_run
from .signals import RunInterrupted

__all__ = ["HASH_EXCLUDE", "PRECISIONS", "RUN_FILES", "FolderLock", "FolderLockedError", "RunInterrupted",
           "build_model", "check_model_seq_len", "check_name", "compose_config", "config_hash", "configs_dir",
           "data_fingerprint", "load_run", "plan_run", "read_summary", "run_dir", "train_run", "validate_config",
           "write_text", "_clean", "_is_rank0", "_plain", "_progress_bar", "_quiet"]
