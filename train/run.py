"""One training run: plan it (no files touched), then train it under the run folder's lock.

    summary = train_run(cfg)      # results_root/name/: config.yaml, metrics.csv, checkpoints/, tb/, summary.json

A finished run with the same config hash is reused without training; an unfinished one with
the same hash resumes from its newest usable checkpoint; anything else starts fresh. SIGTERM /
SIGINT save a resumable checkpoint and raise ``RunInterrupted`` (exit 143 / 130 from the CLI).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal as _signal
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import torch
from omegaconf import OmegaConf

from . import signals
from .atomic import write_text
from .checkpoint import read_summary, resume_checkpoint
from .config import check_model_seq_len, config_hash, plain, run_dir, validate_config
from .data import build_task
from .lock import FolderLock

RUN_FILES = ("summary.json", "metrics.csv", "config.yaml", "checkpoints", "tb")


def _is_rank0() -> bool:
    """Whether this is the launching process (DDP children get RANK / LOCAL_RANK / NODE_RANK > 0)."""
    return all(int(os.environ.get(v) or 0) == 0 for v in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _progress_bar(setting) -> bool:
    if setting in (True, False):
        return bool(setting)
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("true", "1")


# ---- planning --------------------------------------------------------------------------------
def build_model(arch: dict, model_cfg: dict, vocab_size: int):
    """``archs.build_language_model`` (``model.mlp_hidden`` is set when sizing to a parameter count)."""
    from archs import build_language_model

    return build_language_model(arch, model_cfg, vocab_size)


def plan_run(cfg) -> dict:
    """Everything decided before training (no files touched): task, model, sizing, steps, hash.

    Raises ValueError naming the bad value for invalid configs.
    """
    from .budget import size_to_params, steps_for_budget

    validate_config(cfg)
    c = plain(cfg)
    run_dir(c)  # the name must stay under results_root
    task = build_task(c["task"])
    task.check_seq_len(c["seq_len"])
    arch, model_cfg = c["arch"], dict(c["model"])
    sizing = None
    if c["budget"].get("params"):
        sizing = size_to_params(
            lambda d, n, mlp_hidden=None: build_model(arch, {"d_model": d, "n_layers": n, "mlp_hidden": mlp_hidden}, task.vocab_size),
            int(c["budget"]["params"]), int(model_cfg["n_layers"]), int(c["budget"].get("multiple_of") or 8),
        )
        if not sizing["within_tolerance"]:
            warnings.warn(f"budget.params={sizing['target']}: closest size found has {sizing['params']} params "
                          f"({100 * sizing['rel_error']:.1f}% off; d_model={sizing['d_model']}, n_layers={sizing['n_layers']})")
        model_cfg.update(d_model=sizing["d_model"], n_layers=sizing["n_layers"])
        if sizing["mlp_hidden"] is not None:
            model_cfg["mlp_hidden"] = sizing["mlp_hidden"]
    torch.manual_seed(int(c["seed"]))
    model = build_model(arch, model_cfg, task.vocab_size)
    check_model_seq_len(model, c["seq_len"])
    steps = steps_for_budget(c["budget"].get("flops"), model, c["seq_len"], c["batch_size"], c["budget"].get("max_steps"))
    fpt = float(model.flops_per_token(c["seq_len"]))
    derived = {
        "config_hash": config_hash(c),
        "vocab_size": task.vocab_size,
        "d_model": model_cfg["d_model"],
        "n_layers": model_cfg["n_layers"],
        "params": model.num_params(),
        "flops_per_token": fpt,
        "steps": steps,
        "tokens_per_step": c["batch_size"] * c["seq_len"],
        "sizing": sizing,
    }
    c["model"] = model_cfg
    c["derived"] = derived
    return {"cfg": c, "task": task, "model": model, "derived": derived}


# ---- training --------------------------------------------------------------------------------
def train_run(cfg, callbacks: Sequence = ()) -> dict:
    """Train one run into ``results_root/name`` (see module docstring); returns the summary dict.
    ``callbacks``: more Lightning callbacks (e.g. ``train.progress.ProgressLines``).

    The run folder is locked for the whole call (``FolderLock``): a second process on the same
    name gets ``FolderLockedError`` naming the holder, or waits when ``lock_wait`` is set.
    """
    plan = plan_run(cfg)
    rdir = run_dir(plan["cfg"])
    if not _is_rank0():  # DDP children: rank 0 holds the lock for them
        return _train_locked(plan, rdir, callbacks)
    with FolderLock(rdir, wait=plan["cfg"].get("lock_wait", False), what="run folder"):
        return _train_locked(plan, rdir, callbacks)


def _train_locked(plan: dict, rdir: Path, extra_callbacks: Sequence = ()) -> dict:
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from .budget import TRAIN_FLOPS_FACTOR
    from .callbacks import LastCheckpoint, MetricsLogger
    from .data.datamodule import TaskDataModule
    from .module import LMModule

    c, task, model, d = plan["cfg"], plan["task"], plan["model"], plan["derived"]
    ckpt_dir = rdir / "checkpoints"
    rank0 = _is_rank0()

    old = read_summary(rdir)
    if old and old.get("finished") and old.get("config_hash") == d["config_hash"]:
        return old
    ckpt = resume_checkpoint(ckpt_dir, d["config_hash"]) if ckpt_dir.is_dir() else None
    resume = ckpt is not None
    if rank0:
        if not resume:
            _clean(rdir)
        rdir.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(exist_ok=True)
        (rdir / "summary.json").unlink(missing_ok=True)
        write_text(rdir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(c)))

    steps, tps = d["steps"], d["tokens_per_step"]
    lit = LMModule(model, lr=float(c["lr"]), weight_decay=float(c["weight_decay"]),
                   warmup_steps=int(c["warmup_frac"] * steps), total_steps=steps, min_lr_ratio=float(c["min_lr_ratio"]),
                   stateful=bool(getattr(task, "stateful", False)), carry_tokens=getattr(task, "stateful_context", None) or c["seq_len"])
    dm = TaskDataModule(task, c["batch_size"], c["seq_len"], int(c["seed"]), c["val_batches"])
    tr = c["trainer"]
    metrics = MetricsLogger(rdir / "metrics.csv", c["log_every"], c["val_every"], steps, tps,
                            TRAIN_FLOPS_FACTOR * d["flops_per_token"], with_accuracy=getattr(task, "synthetic", False))
    bar = _progress_bar(tr.get("progress_bar", "auto"))
    saver = LastCheckpoint(ckpt_dir, int(tr["ckpt_every"]), steps, config_hash=d["config_hash"])
    callbacks = [metrics, saver, *extra_callbacks]
    if bar:
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks.append(TQDMProgressBar(refresh_rate=max(1, steps // 200)))
    t0 = time.time()
    # no Lightning banners or model summary (its "FLOPs 0" contradicts our FLOP count)
    with _quiet(True), signals.deferred_signals() as stop:
        trainer = L.Trainer(
            accelerator=tr.get("accelerator", "cpu"), devices=tr.get("devices", 1), num_nodes=int(tr.get("num_nodes") or 1),
            strategy=tr.get("strategy", "auto"), precision=str(c["precision"]), max_steps=steps, max_epochs=-1,
            gradient_clip_val=tr.get("gradient_clip_val"), callbacks=callbacks, enable_checkpointing=False,
            logger=TensorBoardLogger(save_dir=str(rdir), name="tb", version=""), enable_progress_bar=bar,
            enable_model_summary=False, use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0,
            log_every_n_steps=int(c["log_every"]), default_root_dir=str(rdir),
        )
        try:
            trainer.fit(lit, datamodule=dm, ckpt_path=str(ckpt) if resume else None, weights_only=True)
        except SIGTERMException:  # Lightning's own SIGTERM stop, after our callback saved the checkpoint
            stop.signum = stop.signum or int(_signal.SIGTERM)
    interrupted = stop.signum
    if not trainer.is_global_zero:
        if interrupted:
            raise signals.RunInterrupted(interrupted)
        return {}
    last = metrics.last
    tokens = trainer.global_step * tps
    summary = {
        "name": str(c["name"]),
        "arch": c["arch"]["name"],
        "task": c["task"]["name"],
        "params": d["params"],
        "d_model": d["d_model"],
        "n_layers": d["n_layers"],
        "sizing": d["sizing"],
        "seq_len": c["seq_len"],
        "batch_size": c["batch_size"],
        "lr": c["lr"],
        "seed": c["seed"],
        "flops_per_token": d["flops_per_token"],
        "train_flops": TRAIN_FLOPS_FACTOR * d["flops_per_token"] * tokens,
        "budget_flops": c["budget"].get("flops"),
        "tokens": tokens,
        "steps": trainer.global_step,
        "wall_time_s": last.get("train_time_s", metrics.train_time_s),
        "session_wall_time_s": time.time() - t0,
        "final_train_loss": _num(last.get("train_loss")),
        "val_loss": _num(last.get("val_loss")),
        "val_acc": _num(last.get("val_acc")) if getattr(task, "synthetic", False) else None,
        "resumed": bool(resume),
        "finished": trainer.global_step >= steps and not interrupted,
        "config_hash": d["config_hash"],
        "run_dir": str(rdir),
    }
    if interrupted:
        summary["interrupted"] = _signal.Signals(interrupted).name
    write_text(rdir / "summary.json", json.dumps(summary, indent=2))
    if interrupted:
        raise signals.RunInterrupted(interrupted, f"interrupted by {summary['interrupted']} at step {trainer.global_step}/{steps}; "
                                                  f"checkpoint saved in {ckpt_dir}: rerun the same command to resume")
    return summary


def _drop_weights_only_note(record: logging.LogRecord) -> bool:
    return "weights_only" not in record.getMessage()


@contextlib.contextmanager
def _quiet(on: bool):
    """Keep CI logs readable: hide Lightning's info banners and a deprecation warning it emits."""
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    ckpt_log = logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector")
    if _drop_weights_only_note not in ckpt_log.filters:  # logged at every checkpoint: noise
        ckpt_log.addFilter(_drop_weights_only_note)
    if on:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        log.setLevel(level)


def _num(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _clean(rdir: Path) -> None:
    """Remove this trainer's own outputs from ``rdir`` (nothing else in it is touched; a symlink
    is removed as a link, never followed)."""
    for f in RUN_FILES:
        p = rdir / f
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
