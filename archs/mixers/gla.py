"""Gated linear attention (GLA).

Yang et al. 2023, "Gated Linear Attention Transformers with Hardware-Efficient Training".
A linear attention whose memory decays per key channel with a data-dependent gate:
S_t = diag(a_t) S_{t-1} + k_t v_t^T, a_t = exp(logsigmoid(W2 W1 x_t) / 16) (low-rank gate, with the
paper's normaliser 16 keeping decays near 1), o_t = S_t^T q_t / sqrt(K); then a per-head RMSNorm,
a swish output gate and an output projection.

State: the memory S (B, H, K, V).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..mixer import check_divisible
from ..registry import register_mixer
from ._linear_attn import ChunkGLAMixer, HeadNorm, chunked_attn_flops


@register_mixer("gla")
class GLA(ChunkGLAMixer):
    """Gated linear attention with a low-rank data-dependent per-key-channel decay.

    Args:
        d_model: model width.
        n_heads: heads (default d_model // 64, at least 1).
        expand_k: key/query width as a multiple of d_model (paper: 0.5).
        expand_v: value width as a multiple of d_model (paper: 1).
        gate_rank: rank of the decay gate's low-rank projection (paper: 16).
        gate_normalizer: the decay's log is logsigmoid(.) / gate_normalizer (paper: 16).
        chunk_size: chunk length of the chunked op.
        norm_eps: eps of the per-head output RMSNorm.
    """

    test_variants = {"heads2": {"n_heads": 2}, "heads4_k1": {"n_heads": 4, "expand_k": 1.0, "gate_rank": 4}}

    def __init__(self, d_model: int, n_heads: int | None = None, expand_k: float = 0.5, expand_v: float = 1.0,
                 gate_rank: int = 16, gate_normalizer: float = 16.0, chunk_size: int = 64,
                 norm_eps: float = 1e-5):
        super().__init__(d_model)
        n_heads = n_heads or max(1, d_model // 64)
        k_dim, v_dim = int(round(expand_k * d_model)), int(round(expand_v * d_model))
        if k_dim <= 0 or v_dim <= 0:
            raise ValueError(f"gla: expand_k and expand_v must be positive, got {expand_k!r}, {expand_v!r}")
        check_divisible("gla", "key width (expand_k * d_model)", k_dim, "n_heads", n_heads)
        check_divisible("gla", "value width (expand_v * d_model)", v_dim, "n_heads", n_heads)
        if not isinstance(gate_rank, int) or gate_rank < 1:
            raise ValueError(f"gla: gate_rank must be a positive int, got {gate_rank!r}")
        self.n_heads, self.chunk_size, self.gate_normalizer = n_heads, chunk_size, float(gate_normalizer)
        self.expand_k, self.expand_v, self.gate_rank = expand_k, expand_v, gate_rank
        self.head_k, self.head_v = k_dim // n_heads, v_dim // n_heads
        self.q_proj = nn.Linear(d_model, k_dim, bias=False)
        self.k_proj = nn.Linear(d_model, k_dim, bias=False)
        self.v_proj = nn.Linear(d_model, v_dim, bias=False)
        self.g_proj = nn.Linear(d_model, v_dim, bias=False)  # output gate
        self.gk_down = nn.Linear(d_model, gate_rank, bias=False)  # decay gate, low rank: W1
        self.gk_up = nn.Linear(gate_rank, k_dim, bias=True)  # W2 (+ bias)
        self.o_proj = nn.Linear(v_dim, d_model, bias=False)
        self.norm = HeadNorm(n_heads, self.head_v, kind="rms", eps=norm_eps)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, head_k={self.head_k}, head_v={self.head_v}, gate_rank={self.gate_rank}"

    def _inputs(self, x: torch.Tensor):
        """x (B, L, D) -> q, k (B, L, H, K), v (B, L, H, V), log decay g (B, L, H, K)."""
        split = lambda t, d: rearrange(t, "b l (h d) -> b l h d", d=d)
        g = F.logsigmoid(self.gk_up(self.gk_down(x))) / self.gate_normalizer
        return (split(self.q_proj(x), self.head_k), split(self.k_proj(x), self.head_k),
                split(self.v_proj(x), self.head_v), split(g, self.head_k))

    def _out(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """o (B, L, H, V), x (B, L, D) -> (B, L, D): per-head RMSNorm, swish gate, output projection."""
        y = rearrange(self.norm(o.to(x.dtype)), "b l h d -> b l (h d)") * F.silu(self.g_proj(x))
        return self.o_proj(y)

    def flops_per_token(self, seq_len: int) -> float:
        D, Dk, Dv, R = self.d_model, self.n_heads * self.head_k, self.n_heads * self.head_v, self.gate_rank
        proj = 2.0 * D * (2 * Dk + 2 * Dv + R) + 2.0 * R * Dk + 2.0 * Dv * D
        return proj + chunked_attn_flops(seq_len, self.n_heads, self.head_k, self.head_v, self.chunk_size)
