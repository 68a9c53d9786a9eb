"""Run configs: compose (Hydra), validate (naming the bad value), hash (run identity, data included).

    cfg = compose_config(["arch=mamba", "task=text", "task.source=files", "task.data_files=c.txt"])
    validate_config(cfg)          # ValueError naming the bad value
    config_hash(cfg)              # 16 hex; same hash = same run (a finished one is reused)
    run_dir(cfg)                  # results_root / name, checked to stay under results_root
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from .data import TASK_NAMES, task_data_version

#: config keys that do not change what is trained (left out of ``config_hash``)
HASH_EXCLUDE = ("results_root", "name", "trainer.progress_bar", "trainer.ckpt_every", "lock_wait")
PRECISIONS = ("32-true", "32", "64-true", "64", "bf16-mixed", "bf16-true", "16-mixed")
#: data files up to this size are hashed in full; larger ones by size + mtime + first and last MiB
FULL_HASH_BYTES = 64 * 2**20
_EDGE = 2**20


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


def plain(cfg) -> dict:
    """A resolved plain-dict copy of a DictConfig (or a dict)."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


# ---- data identity ---------------------------------------------------------------------------
_FP_CACHE: dict[tuple, dict] = {}


def file_fingerprint(path: str | os.PathLike) -> dict:
    """What identifies a data file's content: sha256 of the whole file up to ``FULL_HASH_BYTES``;
    above that, size + mtime + sha256 of the first and last MiB. A missing file is ``{"missing": True}``."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return {"path": str(path), "missing": True}
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FP_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            if st.st_size <= FULL_HASH_BYTES:
                for block in iter(lambda: f.read(2**20), b""):
                    h.update(block)
                fp = {"size": st.st_size, "sha256": h.hexdigest()}
            else:
                h.update(f.read(_EDGE))
                f.seek(st.st_size - _EDGE)
                h.update(f.read(_EDGE))
                fp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_first_last_mib": h.hexdigest()}
        _FP_CACHE[key] = fp
    return dict(_FP_CACHE[key])


def _as_list(x) -> list[str]:
    if x is None:
        return []
    return [str(x)] if isinstance(x, (str, Path)) else [str(v) for v in x]


def data_fingerprint(task: dict) -> list[dict] | None:
    """Fingerprints of every local data file a task reads (text task: ``files`` or ``stdlib``); None otherwise.

    Editing a data file changes the run hash, so a stale run is not reused or resumed.
    """
    if (task or {}).get("name") != "text":
        return None
    source = task.get("source", "stdlib")
    if source == "files":
        files = [(f, f) for f in _as_list(task.get("data_files")) + _as_list(task.get("val_files"))]
    elif source == "stdlib":
        from .data.text import stdlib_files

        mf = task.get("max_files", 400)
        if mf is not None and (not _is_int(mf) or mf < 1):
            return None  # validate_config names the bad value
        files = [(rel, str(p)) for rel, p in stdlib_files(mf)]
        return [{"python": sys.version.split()[0]}] + [{"file": rel, **file_fingerprint(p)} for rel, p in files]
    else:  # a hub dataset: identified by its name and config, already in the config
        return None
    return [{"file": name, **file_fingerprint(p)} for name, p in files]


def config_hash(cfg) -> str:
    """sha256 (16 hex) of the resolved config without results_root, name, lock and progress options,
    plus the task's ``data_version`` and the fingerprint of every local data file it reads (a run
    trained on data that has since changed, or that the code no longer generates, is stale)."""
    d = copy.deepcopy(plain(cfg))
    d.pop("derived", None)
    task = d.get("task") or {}
    d["task_data_version"] = task_data_version(str(task.get("name")))
    fp = data_fingerprint(task)
    if fp is not None:
        d["task_data_files"] = fp
    for key in HASH_EXCLUDE:
        *path, last = key.split(".")
        node = d
        for p in path:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- names and folders -----------------------------------------------------------------------
_BAD_NAME = re.compile(r"[/\\\x00-\x1f]")


def check_name(name, what: str = "name") -> str:
    """A run or compare name must be one folder name: not empty, no '/', '\\' or control characters,
    not '.' or '..', not starting with '~' (it is joined to results_root; it must stay inside)."""
    s = str(name) if name is not None else ""
    if not s or s in (".", "..") or _BAD_NAME.search(s) or s.startswith("~") or len(s.encode()) > 255:
        raise ValueError(f"config: {what}={s!r} must be a single folder name (no '/', '\\', '..', '~' or control "
                         f"characters, at most 255 bytes); it becomes a folder under results_root")
    return s


def confined(root: str | os.PathLike, name: str, what: str = "name") -> Path:
    """``root / name`` after ``check_name``, verified (symlinks resolved) to lie inside ``root``."""
    name = check_name(name, what)
    root = Path(root).expanduser()
    out = root / name
    base = root.resolve()
    real = out.resolve()
    if real != base / name and base not in real.parents:  # e.g. ``name`` is a symlink that points elsewhere
        raise ValueError(f"config: {root / name} resolves to {real}, outside results_root {base}; refusing to write there")
    return out


def run_dir(cfg) -> Path:
    """``results_root / name`` of a run config, confined to results_root."""
    c = plain(cfg)
    return confined(c["results_root"], c["name"])


# ---- validation ------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_config(cfg) -> None:
    """Fail before training, naming the bad value: unknown task, bad budget, lengths, rates, names..."""
    c = plain(cfg)
    check_name(c.get("name"))
    if not isinstance(c.get("results_root"), str) or not c["results_root"]:
        raise ValueError(f"config: results_root must be a folder path, got {c.get('results_root')!r}")
    task = c.get("task") or {}
    if task.get("name") not in TASK_NAMES:
        raise ValueError(f"config: unknown task {task.get('name')!r}; known tasks: {', '.join(TASK_NAMES)}")
    if task["name"] == "text":
        mf = task.get("max_files")
        if mf is not None and (not _is_int(mf) or mf < 1):
            raise ValueError(f"config: task.max_files must be a positive int or null (all files), got {mf!r}")
    b = c.get("budget") or {}
    flops, max_steps, params = b.get("flops"), b.get("max_steps"), b.get("params")
    if flops is None and max_steps is None:
        raise ValueError("config: set budget.flops (training FLOPs) or budget.max_steps; both are null")
    if flops is not None and (not _is_num(flops) or flops <= 0):
        raise ValueError(f"config: budget.flops must be a positive number, got {flops!r}")
    if max_steps is not None and (not _is_int(max_steps) or max_steps < 1):
        raise ValueError(f"config: budget.max_steps must be a positive int or null, got {max_steps!r}")
    if params is not None and (not _is_int(params) or params < 1):
        raise ValueError(f"config: budget.params must be a positive int or null, got {params!r}")
    for key in ("seq_len", "batch_size", "log_every", "val_every", "val_batches"):
        v = c.get(key)
        if not _is_int(v) or v < 1:
            raise ValueError(f"config: {key} must be a positive int, got {v!r}")
    if not _is_int(c.get("seed")) or c["seed"] < 0:
        raise ValueError(f"config: seed must be an int >= 0, got {c.get('seed')!r}")
    lr = c.get("lr")
    if not _is_num(lr) or lr <= 0:
        raise ValueError(f"config: lr must be a positive number, got {lr!r}")
    wd = c.get("weight_decay")
    if not _is_num(wd) or wd < 0:
        raise ValueError(f"config: weight_decay must be >= 0, got {wd!r}")
    wf = c.get("warmup_frac")
    if not _is_num(wf) or not 0 <= wf < 1:
        raise ValueError(f"config: warmup_frac must be in [0, 1), got {wf!r}")
    mr = c.get("min_lr_ratio")
    if not _is_num(mr) or not 0 <= mr <= 1:
        raise ValueError(f"config: min_lr_ratio must be in [0, 1], got {mr!r}")
    lw = c.get("lock_wait", False)
    if not isinstance(lw, bool) and not (_is_num(lw) and lw > 0):
        raise ValueError(f"config: lock_wait must be true, false or a positive number of seconds, got {lw!r}")
    if str(c.get("precision")) not in PRECISIONS:
        raise ValueError(f"config: precision {c.get('precision')!r} is not one of {', '.join(PRECISIONS)}")
    tr = c.get("trainer") or {}
    devices = tr.get("devices")
    if _is_int(devices) and devices > 1 and c["batch_size"] % (devices * int(tr.get("num_nodes") or 1)):
        raise ValueError(f"config: batch_size={c['batch_size']} must be divisible by the {devices * int(tr.get('num_nodes') or 1)} processes")
    if not _is_int(tr.get("ckpt_every")) or tr["ckpt_every"] < 1:
        raise ValueError(f"config: trainer.ckpt_every must be a positive int, got {tr.get('ckpt_every')!r}")
    if tr.get("progress_bar", "auto") not in (True, False, "auto"):
        raise ValueError(f"config: trainer.progress_bar must be true, false or auto, got {tr.get('progress_bar')!r}")
    max_len = task.get("max_seq_len")
    if max_len is not None and c["seq_len"] > max_len:
        raise ValueError(f"config: seq_len={c['seq_len']} is above task {task['name']}'s max_seq_len={max_len}")


def check_model_seq_len(model, seq_len: int) -> None:
    """seq_len must not exceed any layer's ``max_seq_len`` (mixers that have a hard limit)."""
    for i, block in enumerate(getattr(model, "blocks", [])):
        limit = getattr(block.mixer, "max_seq_len", None)
        if limit is not None and seq_len > limit:
            raise ValueError(f"config: seq_len={seq_len} is above layer {i} ({block.mixer.name})'s max_seq_len={limit}")
