"""Delta-rule linear attention (fla.ops signature): sequential ``delta_rule_ref`` and the chunked
WY-form ``chunk_delta_rule`` (pure PyTorch; flash-linear-attention's kernel for CUDA tensors)."""
from .chunk import chunk_delta_rule
from .ref import delta_rule_ref

__all__ = ["chunk_delta_rule", "delta_rule_ref"]
