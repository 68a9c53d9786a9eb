"""Reading a run's checkpoint safely: tensors and plain containers only, never arbitrary pickles.

``torch.load(..., weights_only=True)`` refuses any object that is not a tensor, a primitive or a
container of those, so a crafted ``last.ckpt`` cannot run code in ``load_run`` / ``eval quality``.
There is no fallback to ``weights_only=False``: a checkpoint that needs one is an error.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict at ``path`` (a Lightning ``last.ckpt``), loaded on CPU with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"load_checkpoint: refusing {path}: it holds objects other than tensors and plain containers, and "
            f"seqarena never unpickles arbitrary objects (weights_only=True). Only load checkpoints written by "
            f"`python -m train`. ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise ValueError(f"load_checkpoint: {path} is not a Lightning checkpoint (no 'state_dict' dict)")
    return state


def model_state_dict(state: dict) -> dict[str, torch.Tensor]:
    """The ``LanguageModel`` weights inside a Lightning checkpoint dict (keys without the ``model.`` prefix)."""
    return {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
