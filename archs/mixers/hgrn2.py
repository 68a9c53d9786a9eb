"""HGRN2: a gated linear RNN with a lower-bounded forget gate and an outer-product state expansion.

Qin et al. 2024, "HGRN2: Gated Linear RNNs with State Expansion" (COLM), eqs. (5)-(7), in the form of
flash-linear-attention's ``HGRN2Attention``. Per head, with key (forget) width K and value width V:

    f_t = lb + (1 - lb) * sigmoid(W_f x_t)        forget gate in [lb, 1), per key channel
    i_t = W_i x_t,  q_t = silu(W_q x_t)            input (value) and output gate (query)
    S_t = diag(f_t) S_{t-1} + (1 - f_t) i_t^T      the input gate is tied to 1 - f (state K x V)
    o_t = scale * S_t^T q_t;  y_t = W_o RMSNorm(o_t)

i.e. gated linear attention with k = 1 - f and log decay log f (``chunk_gla``); scale is the op's
default 1/sqrt(K).

Deviation: HGRN2 raises the lower bound with depth through a softmax over all layers' bound
parameters followed by a cumulative sum (lower layers forget fast, upper ones slowly). A mixer here
does not see the other layers, so each layer learns its own bound, lb = sigmoid(beta) per key channel,
initialised at ``lower_bound``.

State: the matrix memory S (B, H, K, V).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..layers import RMSNorm
from ..mixer import check_divisible
from ..registry import register_mixer
from ._linear_attn import ChunkGLAMixer, chunked_attn_flops


@register_mixer("hgrn2")
class HGRN2(ChunkGLAMixer):
    """HGRN2 token mixer.

    Args:
        d_model: model width (= value width).
        n_heads: heads (default d_model // 128, at least 1, as fla's expand_ratio 128).
        expand_ratio: key (forget-gate) width per head, the state expansion (default d_model // n_heads).
        lower_bound: initial lower bound of the forget gate, in (0, 1); learned per layer and channel.
        chunk_size: chunk length of ``chunk_gla``.
    """

    test_variants = {"heads2_expand8": {"n_heads": 2, "expand_ratio": 8, "lower_bound": 0.9},
                     "heads4_chunk16": {"n_heads": 4, "chunk_size": 16, "lower_bound": 0.05}}

    def __init__(self, d_model: int, n_heads: int | None = None, expand_ratio: int | None = None,
                 lower_bound: float = 0.5, chunk_size: int = 64):
        super().__init__(d_model)
        n_heads = n_heads or max(1, d_model // 128)
        check_divisible("hgrn2", "d_model", d_model, "n_heads", n_heads)
        expand_ratio = expand_ratio or d_model // n_heads
        if not isinstance(expand_ratio, int) or expand_ratio < 1:
            raise ValueError(f"hgrn2: expand_ratio must be a positive int, got {expand_ratio!r}")
        if not isinstance(lower_bound, (int, float)) or not 0.0 < lower_bound < 1.0:
            raise ValueError(f"hgrn2: lower_bound must be a number in (0, 1), got {lower_bound!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"hgrn2: chunk_size must be a positive int, got {chunk_size!r}")
        self.n_heads, self.head_k, self.head_v, self.chunk_size = n_heads, expand_ratio, d_model // n_heads, chunk_size
        k_dim = n_heads * expand_ratio
        self.q_proj = nn.Linear(d_model, k_dim, bias=False)
        self.f_proj = nn.Linear(d_model, k_dim, bias=False)
        self.i_proj = nn.Linear(d_model, d_model, bias=False)
        self.lower_bound_logit = nn.Parameter(torch.full((k_dim,), math.log(lower_bound / (1.0 - lower_bound))))
        self.lower_bound_logit._no_weight_decay = True
        self.norm = RMSNorm(d_model)
        self.norm.weight._no_weight_decay = True
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, head_k={self.head_k}, head_v={self.head_v}"

    def _inputs(self, x: torch.Tensor):
        """x (B, L, D) -> q, k = 1 - f (B, L, H, K), v = i (B, L, H, V), log decay log f (B, L, H, K)."""
        split = lambda t, d: rearrange(t, "b l (h d) -> b l h d", d=d)
        lb = torch.sigmoid(self.lower_bound_logit)  # (H K,)
        f_raw = self.f_proj(x)
        # log f = log(lb + (1 - lb) sigmoid(z)) and 1 - f = (1 - lb) sigmoid(-z), both without cancellation
        log_f = torch.logaddexp(torch.log(lb), torch.log1p(-lb) + F.logsigmoid(f_raw))
        k = (1.0 - lb) * torch.sigmoid(-f_raw)
        return (split(F.silu(self.q_proj(x)), self.head_k), split(k, self.head_k),
                split(self.i_proj(x), self.head_v), split(log_f, self.head_k))

    def _out(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """o (B, L, H, V) -> (B, L, D): RMSNorm over all heads' channels, output projection."""
        return self.o_proj(self.norm(rearrange(o.to(x.dtype), "b l h d -> b l (h d)")))

    def flops_per_token(self, seq_len: int) -> float:
        D, Dk = self.d_model, self.n_heads * self.head_k
        proj = 2.0 * D * (2 * Dk + D) + 2.0 * D * D
        return proj + chunked_attn_flops(seq_len, self.n_heads, self.head_k, self.head_v, self.chunk_size)
