"""Run checkpoints and result files: save (atomic, finite weights only, config hash inside), check,
move corrupt files aside, pick the checkpoint to resume from, load a finished run.

Layout of ``<run>/checkpoints/``: ``last.ckpt`` (newest) and ``prev.ckpt`` (the one before it).
A checkpoint is usable for a resume when ``torch.load(weights_only=True)`` reads it, it holds a
``state_dict`` of finite tensors, and its ``seqarena_config_hash`` equals the run's config hash.
An unreadable one (truncated, NUL-padded after a power cut) is renamed ``*.corrupt`` with a
warning and the next candidate is tried; with none left the run starts from scratch.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path

import torch

from .atomic import _UMASK

CKPT_HASH_KEY = "seqarena_config_hash"
CANDIDATES = ("last.ckpt", "prev.ckpt")


class CorruptFileWarning(UserWarning):
    """A run file could not be read and was moved aside (``*.corrupt``)."""


def move_aside(path: str | os.PathLike, why: str) -> Path:
    """Rename ``path`` to ``path.corrupt`` (``.corrupt.1``, ... if taken) and warn; returns the new path."""
    path = Path(path)
    dest = path.with_name(path.name + ".corrupt")
    i = 0
    while dest.exists():
        i += 1
        dest = path.with_name(f"{path.name}.corrupt.{i}")
    os.replace(path, dest)
    warnings.warn(f"{path} is unreadable ({why}); moved it to {dest.name}", CorruptFileWarning, stacklevel=2)
    return dest


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load`` on CPU with ``weights_only=True`` (no code runs from the file); raises on a bad file."""
    return torch.load(path, map_location="cpu", weights_only=True)


def nonfinite_tensors(state_dict: dict) -> list[str]:
    """Names of floating tensors in ``state_dict`` holding NaN or inf."""
    return [k for k, v in state_dict.items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_checkpoint(path: str | os.PathLike, config_hash: str) -> tuple[str, str | None]:
    """("ok", None), ("corrupt", why) for an unreadable file, ("stale", why) for another config or bad weights."""
    try:
        ck = read_checkpoint(path)
        if not isinstance(ck, dict) or not isinstance(ck.get("state_dict"), dict):
            return "corrupt", "no state_dict in it"
    except Exception as e:  # truncated zip, NUL bytes, pickle errors: all mean "cannot be read"
        return "corrupt", f"{type(e).__name__}: {str(e)[:200]}"
    saved = ck.get(CKPT_HASH_KEY)
    if saved != config_hash:
        return "stale", f"its config hash is {saved!r}, this run's is {config_hash!r}"
    bad = nonfinite_tensors(ck["state_dict"])
    if bad:
        return "stale", f"{len(bad)} non-finite tensors ({', '.join(bad[:3])}...)"
    return "ok", None


def resume_checkpoint(ckpt_dir: str | os.PathLike, config_hash: str) -> Path | None:
    """The newest usable checkpoint for a run with ``config_hash``, or None (start from scratch).

    Unreadable candidates are moved aside with a warning; a readable one of another config means
    the folder holds another run (None: the caller starts afresh).
    """
    for name in CANDIDATES:
        p = Path(ckpt_dir) / name
        if not p.is_file():
            continue
        status, why = check_checkpoint(p, config_hash)
        if status == "ok":
            if name != CANDIDATES[0]:
                warnings.warn(f"resuming from {p} (the newer checkpoint was unusable)", CorruptFileWarning, stacklevel=2)
            return p
        if status == "corrupt":
            move_aside(p, why)
            continue
        if name == CANDIDATES[0]:  # the newest is a readable checkpoint of another config: another run
            return None
        warnings.warn(f"not resuming from {p}: {why}", CorruptFileWarning, stacklevel=2)
    return None


def save_checkpoint(trainer, ckpt_dir: str | os.PathLike) -> Path:
    """``trainer.save_checkpoint`` into ``ckpt_dir/last.ckpt`` atomically, the previous one kept as
    ``prev.ckpt``. Every rank calls it (Lightning's barrier); rank 0 writes."""
    ckpt_dir = Path(ckpt_dir)
    last, prev = ckpt_dir / CANDIDATES[0], ckpt_dir / CANDIDATES[1]
    if not trainer.is_global_zero:
        trainer.save_checkpoint(last)  # does not write on this rank
        return last
    fd, tmp = tempfile.mkstemp(prefix=".last.ckpt.", suffix=".tmp", dir=ckpt_dir)
    os.close(fd)
    try:
        trainer.save_checkpoint(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        if last.is_file() and not last.is_symlink():
            os.replace(last, prev)
        os.replace(tmp, last)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return last


def read_summary(run_dir: str | os.PathLike) -> dict | None:
    """summary.json as a dict, or None when missing; an unreadable one is moved aside (None)."""
    p = Path(run_dir) / "summary.json"
    if not p.is_file():
        return None
    try:
        s = json.loads(p.read_bytes().decode("utf-8"))
        if not isinstance(s, dict):
            raise ValueError("not a JSON object")
        return s
    except (ValueError, UnicodeDecodeError) as e:
        move_aside(p, f"{type(e).__name__}: {str(e)[:100]}")
        return None


def load_run(run_dir: str | os.PathLike):
    """(model in eval mode on CPU with the weights of checkpoints/last.ckpt, cfg, summary or None).

    The checkpoint is read with ``weights_only=True`` (no fallback: a file that needs pickled code
    is refused, since loading it could run that code).
    """
    from omegaconf import OmegaConf

    from .data import build_task
    from .run import build_model

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
    model.load_state_dict(model_state_dict(load_checkpoint(ckpt)))
    return model.eval(), cfg, read_summary(run_dir)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The Lightning checkpoint dict at ``path``, read on CPU with ``weights_only=True``: a file holding
    anything but tensors and plain containers is refused (loading it could run code), never unpickled."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path}")
    try:
        state = read_checkpoint(path)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"load_checkpoint: refusing {path}: it holds objects other than tensors and plain containers, and "
            f"seqarena never unpickles arbitrary objects (weights_only=True). Only load checkpoints written by "
            f"`python -m train`. ({str(e).splitlines()[0]})") from None
    except Exception as e:
        raise ValueError(f"load_checkpoint: cannot read {path} with weights_only=True ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise ValueError(f"load_checkpoint: {path} is not a Lightning checkpoint (no 'state_dict' dict)")
    return state


def model_state_dict(state: dict) -> dict[str, torch.Tensor]:
    """The ``LanguageModel`` weights inside a Lightning checkpoint dict (keys without the ``model.`` prefix)."""
    return {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
