"""Sequence operators: each has a sequential ``*_ref`` (the definition, the test oracle), a fast
pure-PyTorch form that runs on CPU and GPU, and a dispatch to a GPU kernel when one is installed.

One sub-package per op family (``ref`` / ``parallel`` / ``chunk`` modules inside). Names are
imported lazily so that importing ``archs.ops`` is cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    # selective state spaces (Mamba-1, Mamba-2)
    "selective_scan": "selective_scan", "selective_scan_ref": "selective_scan",
    "ssd": "ssd", "ssd_ref": "ssd",
    "causal_conv1d": "conv1d", "causal_conv1d_ref": "conv1d", "causal_conv1d_step": "conv1d",
    # linear attention family (fla.ops signatures)
    "chunk_simple_gla": "gla", "parallel_simple_gla": "gla", "simple_gla_ref": "gla",
    "chunk_retention": "gla", "parallel_retention": "gla", "retention_ref": "gla",
    "chunk_gla": "gla", "parallel_gla": "gla", "gla_ref": "gla",
    "chunk_delta_rule": "delta_rule", "delta_rule_ref": "delta_rule",
    # linear recurrences
    "linear_scan": "linear_scan", "linear_scan_ref": "linear_scan",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'archs.ops' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
