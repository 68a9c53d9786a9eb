"""The trainer's public API: compose a config, train (or reuse / resume) a run, load a run.

    from train import compose_config, train_run, load_run
    cfg = compose_config(["arch=attention", "task=mqar", "budget.flops=1e12"])
    summary = train_run(cfg)                  # runs/<name>/summary.json
    model, cfg, summary = load_run("runs/attention-mqar-d64x2")
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from .data import TASK_NAMES, build_task, task_data_version

#: config keys that do not change what is trained (left out of ``config_hash``)
HASH_EXCLUDE = ("results_root", "name", "trainer.progress_bar", "trainer.ckpt_every")
PRECISIONS = ("32-true", "32", "64-true", "64", "bf16-mixed", "bf16-true", "16-mixed")
RUN_FILES = ("summary.json", "metrics.csv", "config.yaml", "checkpoints", "tb")


# ---- config --------------------------------------------------------------------------------
def configs_dir() -> Path:
    import configs

    return Path(configs.__file__).resolve().parent


def compose_config(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Compose configs/<config_name>.yaml with Hydra overrides (works from a wheel and any cwd)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # e.g. called from inside a Hydra app
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


def _plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def config_hash(cfg) -> str:
    """sha256 (16 hex) of the resolved config without results_root, name and progress options,
    plus the task's ``data_version`` (a run trained on data the code no longer generates is stale)."""
    d = copy.deepcopy(_plain(cfg))
    d.pop("derived", None)
    d["task_data_version"] = task_data_version(str((d.get("task") or {}).get("name")))
    for key in HASH_EXCLUDE:
        *path, last = key.split(".")
        node = d
        for p in path:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_config(cfg) -> None:
    """Fail before training, naming the bad value: unknown task, bad budget, lengths, rates..."""
    c = _plain(cfg)
    task = c.get("task") or {}
    if task.get("name") not in TASK_NAMES:
        raise ValueError(f"config: unknown task {task.get('name')!r}; known tasks: {', '.join(TASK_NAMES)}")
    b = c.get("budget") or {}
    flops, max_steps, params = b.get("flops"), b.get("max_steps"), b.get("params")
    if flops is None and max_steps is None:
        raise ValueError("config: set budget.flops (training FLOPs) or budget.max_steps; both are null")
    if flops is not None and (isinstance(flops, bool) or not isinstance(flops, (int, float)) or not math.isfinite(flops) or flops <= 0):
        raise ValueError(f"config: budget.flops must be a positive number, got {flops!r}")
    if max_steps is not None and (not _is_int(max_steps) or max_steps < 1):
        raise ValueError(f"config: budget.max_steps must be a positive int or null, got {max_steps!r}")
    if params is not None and (not _is_int(params) or params < 1):
        raise ValueError(f"config: budget.params must be a positive int or null, got {params!r}")
    for key in ("seq_len", "batch_size", "log_every", "val_every", "val_batches"):
        v = c.get(key)
        if not _is_int(v) or v < 1:
            raise ValueError(f"config: {key} must be a positive int, got {v!r}")
    lr = c.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"config: lr must be a positive number, got {lr!r}")
    wd = c.get("weight_decay")
    if not isinstance(wd, (int, float)) or wd < 0:
        raise ValueError(f"config: weight_decay must be >= 0, got {wd!r}")
    wf = c.get("warmup_frac")
    if not isinstance(wf, (int, float)) or not 0 <= wf < 1:
        raise ValueError(f"config: warmup_frac must be in [0, 1), got {wf!r}")
    if str(c.get("precision")) not in PRECISIONS:
        raise ValueError(f"config: precision {c.get('precision')!r} is not one of {', '.join(PRECISIONS)}")
    tr = c.get("trainer") or {}
    devices = tr.get("devices")
    if _is_int(devices) and devices > 1 and c["batch_size"] % (devices * int(tr.get("num_nodes") or 1)):
        raise ValueError(f"config: batch_size={c['batch_size']} must be divisible by the {devices * int(tr.get('num_nodes') or 1)} processes")
    if not _is_int(tr.get("ckpt_every")) or tr["ckpt_every"] < 1:
        raise ValueError(f"config: trainer.ckpt_every must be a positive int, got {tr.get('ckpt_every')!r}")
    max_len = task.get("max_seq_len")
    if max_len is not None and c["seq_len"] > max_len:
        raise ValueError(f"config: seq_len={c['seq_len']} is above task {task['name']}'s max_seq_len={max_len}")


def check_model_seq_len(model, seq_len: int) -> None:
    """seq_len must not exceed any layer's ``max_seq_len`` (mixers that have a hard limit)."""
    for i, block in enumerate(getattr(model, "blocks", [])):
        limit = getattr(block.mixer, "max_seq_len", None)
        if limit is not None and seq_len > limit:
            raise ValueError(f"config: seq_len={seq_len} is above layer {i} ({block.mixer.name})'s max_seq_len={limit}")


def _is_rank0() -> bool:
    """Whether this is the launching process (DDP children get RANK / LOCAL_RANK / NODE_RANK > 0)."""
    return all(int(os.environ.get(v) or 0) == 0 for v in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _progress_bar(setting) -> bool:
    if setting in (True, False):
        return bool(setting)
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("true", "1")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_summary(run_dir: str | Path) -> dict | None:
    p = Path(run_dir) / "summary.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


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
    c = _plain(cfg)
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

    A finished run with the same config hash is reused without training; an unfinished one
    with the same hash resumes from ``checkpoints/last.ckpt``; anything else starts fresh.
    """
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from .budget import TRAIN_FLOPS_FACTOR
    from .callbacks import LastCheckpoint, MetricsLogger
    from .data.datamodule import TaskDataModule
    from .module import LMModule

    plan = plan_run(cfg)
    c, task, model, d = plan["cfg"], plan["task"], plan["model"], plan["derived"]
    run_dir = Path(c["results_root"]) / str(c["name"])
    ckpt_dir = run_dir / "checkpoints"
    rank0 = _is_rank0()

    old = read_summary(run_dir)
    if old and old.get("finished") and old.get("config_hash") == d["config_hash"]:
        return old
    ckpt = ckpt_dir / "last.ckpt"
    resume = ckpt.exists() and _saved_hash(run_dir) == d["config_hash"]
    if rank0:
        if not resume:
            _clean(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(exist_ok=True)
        (run_dir / "summary.json").unlink(missing_ok=True)
        _write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(c)))

    steps, tps = d["steps"], d["tokens_per_step"]
    lit = LMModule(model, lr=float(c["lr"]), weight_decay=float(c["weight_decay"]),
                   warmup_steps=int(c["warmup_frac"] * steps), total_steps=steps, min_lr_ratio=float(c["min_lr_ratio"]))
    dm = TaskDataModule(task, c["batch_size"], c["seq_len"], int(c["seed"]), c["val_batches"])
    tr = c["trainer"]
    metrics = MetricsLogger(run_dir / "metrics.csv", c["log_every"], c["val_every"], steps, tps,
                            TRAIN_FLOPS_FACTOR * d["flops_per_token"], with_accuracy=getattr(task, "synthetic", False))
    bar = _progress_bar(tr.get("progress_bar", "auto"))
    callbacks = [metrics, LastCheckpoint(ckpt_dir, int(tr["ckpt_every"]), steps), *callbacks]
    if bar:
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks.append(TQDMProgressBar(refresh_rate=max(1, steps // 200)))
    t0 = time.time()
    with _quiet(True):  # no Lightning banners or model summary (its "FLOPs 0" contradicts our FLOP count)
        trainer = L.Trainer(
            accelerator=tr.get("accelerator", "cpu"), devices=tr.get("devices", 1), num_nodes=int(tr.get("num_nodes") or 1),
            strategy=tr.get("strategy", "auto"), precision=str(c["precision"]), max_steps=steps, max_epochs=-1,
            gradient_clip_val=tr.get("gradient_clip_val"), callbacks=callbacks, enable_checkpointing=False,
            logger=TensorBoardLogger(save_dir=str(run_dir), name="tb", version=""), enable_progress_bar=bar,
            enable_model_summary=False, use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0,
            log_every_n_steps=int(c["log_every"]), default_root_dir=str(run_dir),
        )
        trainer.fit(lit, datamodule=dm, ckpt_path=str(ckpt) if resume else None)
    if not trainer.is_global_zero:
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
        "finished": trainer.global_step >= steps,
        "config_hash": d["config_hash"],
        "run_dir": str(run_dir),
    }
    _write_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
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


def _saved_hash(run_dir: Path) -> str | None:
    p = run_dir / "config.yaml"
    if not p.exists():
        return None
    try:
        return OmegaConf.load(p).get("derived", {}).get("config_hash")
    except Exception:
        return None


def _clean(run_dir: Path) -> None:
    """Remove this trainer's own outputs from ``run_dir`` (nothing else in it is touched)."""
    for f in RUN_FILES:
        p = run_dir / f
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


# ---- loading ---------------------------------------------------------------------------------
def load_run(run_dir: str | Path):
    """(model in eval mode on CPU with the weights of checkpoints/last.ckpt, cfg, summary or None)."""
    run_dir = Path(run_dir)
    cfg_path, ckpt = run_dir / "config.yaml", run_dir / "checkpoints" / "last.ckpt"
    if not cfg_path.exists():
        raise FileNotFoundError(f"load_run: no config.yaml in {run_dir} (is it a run folder written by train_run?)")
    if not ckpt.exists():
        raise FileNotFoundError(f"load_run: no checkpoint at {ckpt}")
    cfg = OmegaConf.load(cfg_path)
    c = OmegaConf.to_container(cfg, resolve=True)
    vocab = c.get("derived", {}).get("vocab_size") or build_task(c["task"]).vocab_size
    model = build_model(c["arch"], c["model"], vocab)
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    sd = {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(sd)
    return model.eval(), cfg, read_summary(run_dir)
