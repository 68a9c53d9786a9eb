"""Lazy dispatch to optional GPU kernels (the ``[cuda]`` extra: mamba_ssm, causal_conv1d, fla).

A kernel is used only when the tensors are on CUDA, the package imports, and
``SEQARENA_NO_KERNELS`` is not set. Nothing here imports a GPU package on a CPU, so a CPU
user never sees their import errors.
"""
from __future__ import annotations

import importlib
import os
from functools import lru_cache
from typing import Callable

import torch


@lru_cache(maxsize=None)
def _load(module: str, attr: str) -> Callable | None:
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception:  # not installed, or built for another CUDA: fall back to pure PyTorch
        return None


def gpu_kernel(module: str, attr: str, *tensors: torch.Tensor | None) -> Callable | None:
    """``module.attr`` if every given tensor is on CUDA and the kernel imports, else None."""
    if os.environ.get("SEQARENA_NO_KERNELS"):
        return None
    if not tensors or not all(t is None or t.is_cuda for t in tensors):
        return None
    return _load(module, attr)
