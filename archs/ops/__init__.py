"""Sequence operators: each has a sequential ``*_ref`` (the definition, the test oracle), a fast
pure-PyTorch form that runs on CPU and GPU, and a lazy dispatch to a GPU kernel when one is
installed (``archs/ops/_dispatch.py``). One sub-package per op family.

Signatures follow the ecosystem (mamba_ssm, causal_conv1d, fla.ops) so kernels and references
are interchangeable; see each function's docstring for shapes.
"""
from .conv1d import causal_conv1d, causal_conv1d_ref, causal_conv1d_step
from .delta_rule import chunk_delta_rule, delta_rule_ref
from .gla import (
    chunk_gla, chunk_retention, chunk_simple_gla, gla_ref, parallel_gla, parallel_retention,
    parallel_simple_gla, retention_ref, simple_gla_ref,
)
from .linear_rnn import linear_scan, linear_scan_ref
from .long_conv import long_conv, long_conv_ref
from .selective_scan import selective_scan, selective_scan_ref
from .ssd import ssd, ssd_ref

__all__ = [
    "causal_conv1d", "causal_conv1d_ref", "causal_conv1d_step",
    "chunk_delta_rule", "delta_rule_ref",
    "chunk_gla", "chunk_retention", "chunk_simple_gla", "gla_ref", "parallel_gla",
    "parallel_retention", "parallel_simple_gla", "retention_ref", "simple_gla_ref",
    "linear_scan", "linear_scan_ref",
    "long_conv", "long_conv_ref",
    "selective_scan", "selective_scan_ref",
    "ssd", "ssd_ref",
]
