"""Pieces shared by the linear-attention mixers (retnet, gla, deltanet, rwkv6): the matrix state,
a per-head output norm, and the analytic FLOP count of the chunked linear-attention op."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..state import MixerState


@dataclasses.dataclass
class MatrixState(MixerState):
    """Linear-attention memory: S (B, H, K, V) maps keys to values."""

    S: torch.Tensor  # (B, H, K, V)


class HeadNorm(nn.Module):
    """Normalise each head's output over its own channels (GroupNorm with one group per head).

    kind="layer": LayerNorm per head with affine weight and bias (RetNet, RWKV); kind="rms": RMSNorm per
    head with a weight (GLA, DeltaNet). x: (..., H, Dh) -> (..., H, Dh); computed in fp32 for half inputs.
    """

    def __init__(self, n_heads: int, head_dim: int, kind: str = "rms", eps: float = 1e-5):
        super().__init__()
        if kind not in ("layer", "rms"):
            raise ValueError(f"HeadNorm: kind must be 'layer' or 'rms', got {kind!r}")
        self.kind, self.eps = kind, eps
        self.weight = nn.Parameter(torch.ones(n_heads, head_dim))
        self.bias = nn.Parameter(torch.zeros(n_heads, head_dim)) if kind == "layer" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        if self.kind == "layer":
            y = F.layer_norm(xf, xf.shape[-1:], eps=self.eps)
        else:
            y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        y = y.to(x.dtype) * self.weight
        return y + self.bias if self.bias is not None else y


def chunked_attn_flops(seq_len: int, n_heads: int, k_dim: int, v_dim: int, chunk: int = 64) -> float:
    """Forward matmul FLOPs per token of a chunked linear-attention op (per-head dims K, V):
    intra-chunk scores and their use (2 c (K + V), full c x c blocks, c = min(chunk, seq_len)),
    plus the chunk's state update and the read of the carried state (2 K V each)."""
    c = min(chunk, max(1, seq_len))
    return n_heads * (2.0 * c * (k_dim + v_dim) + 4.0 * k_dim * v_dim)
