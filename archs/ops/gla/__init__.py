"""Gated linear attention family (fla.ops signatures): scalar decay per head (simple GLA), RetNet's
fixed multi-scale decay (retention), and a decay per key channel (GLA).

Each has a sequential ``*_ref`` (the definition), a quadratic ``parallel_*`` and a chunked ``chunk_*``
(pure PyTorch; dispatches to flash-linear-attention kernels for CUDA tensors when installed).
"""
from .chunk import chunk_gla, chunk_retention, chunk_simple_gla
from .parallel import parallel_gla, parallel_retention, parallel_simple_gla
from .ref import gla_ref, retention_ref, simple_gla_ref

__all__ = [
    "chunk_simple_gla", "parallel_simple_gla", "simple_gla_ref",
    "chunk_retention", "parallel_retention", "retention_ref",
    "chunk_gla", "parallel_gla", "gla_ref",
]
