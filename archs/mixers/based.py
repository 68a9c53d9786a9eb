"""Based: linear attention with a 2nd-order Taylor feature map.

Arora et al. 2024, "Simple linear attention language models balance the recall-throughput
tradeoff" (ICML), Sec. 3 / eq. (2), as flash-linear-attention's ``BasedLinearAttention``
(``TaylorFeatureMap``). Per head, q and k are projected to a small feature dim d (paper: 16) and
expanded by

    phi(x) = [1, x / d^(1/4), (x (x) x) / (sqrt(2) sqrt(d))]      (1 + d + d^2 features)

so that phi(q) . phi(k) = 1 + s + s^2 / 2 with s = q . k / sqrt(d): the 2nd-order Taylor expansion of
exp(s), which is always > 0. The output is normalised as in the paper:

    y_t = sum_{s<=t} (phi(q_t) . phi(k_s)) v_s / (sum_{s<=t} phi(q_t) . phi(k_s) + eps)

computed causally by the chunked linear-attention op (``chunk_simple_gla`` with no decay), with a
ones column appended to v so that the same pass yields the denominator. Then an output projection.

The paper's full Based *architecture* mixes this layer with short convolutions and small
sliding-window attention layers; that is a hybrid arch config, not this mixer.

State: S (B, H, 1 + d + d^2, V + 1): the (expanded feature x value) memory; its last column is the
normaliser sum_s phi(k_s).
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ..mixer import Mixer, check_divisible
from ..ops.gla import chunk_simple_gla
from ..registry import register_mixer
from ._linear_attn import MatrixState, chunked_attn_flops


def taylor_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = [1, x / d^(1/4), flatten(x x^T) / (sqrt(2) sqrt(d))]: (..., d) -> (..., 1 + d + d^2)."""
    d = x.shape[-1]
    x2 = (x[..., :, None] * x[..., None, :]).flatten(-2) * (0.5 ** 0.5 * d ** -0.5)
    return torch.cat([torch.ones_like(x[..., :1]), x * d ** -0.25, x2], dim=-1)


@register_mixer("based")
class Based(Mixer):
    """Based linear attention (Taylor feature map, normalised).

    Args:
        d_model: model width.
        n_heads: heads (default d_model // 64, at least 1); value width per head d_model // n_heads.
        feature_dim: per-head width of the q/k projections before the feature map (paper: 16).
        eps: added to the normaliser.
        chunk_size: chunk length of the chunked op.
    """

    test_variants = {"heads2_f4": {"n_heads": 2, "feature_dim": 4, "chunk_size": 16}, "heads4_f8": {"n_heads": 4, "feature_dim": 8}}

    def __init__(self, d_model: int, n_heads: int | None = None, feature_dim: int = 16, eps: float = 1e-6, chunk_size: int = 64):
        super().__init__(d_model)
        n_heads = n_heads or max(1, d_model // 64)
        check_divisible("based", "d_model", d_model, "n_heads", n_heads)
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise ValueError(f"based: feature_dim must be a positive int, got {feature_dim!r}")
        if not isinstance(eps, (int, float)) or eps < 0:
            raise ValueError(f"based: eps must be a non-negative number, got {eps!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"based: chunk_size must be a positive int, got {chunk_size!r}")
        self.n_heads, self.feature_dim, self.eps, self.chunk_size = n_heads, feature_dim, float(eps), chunk_size
        self.head_v = d_model // n_heads
        self.expanded_dim = 1 + feature_dim + feature_dim ** 2
        self.q_proj = nn.Linear(d_model, n_heads * feature_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_heads * feature_dim, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, feature_dim={self.feature_dim}"

    def _inputs(self, x: torch.Tensor):
        """x (B, L, D) -> phi(q), phi(k) (B, L, H, F), [v, 1] (B, L, H, V + 1), zero log decay (B, L, H)."""
        split = lambda t, d: rearrange(t, "b l (h d) -> b l h d", d=d)
        q = taylor_feature_map(split(self.q_proj(x), self.feature_dim))
        k = taylor_feature_map(split(self.k_proj(x), self.feature_dim))
        v = split(self.v_proj(x), self.head_v)
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
        return q, k, v1, x.new_zeros(x.shape[0], x.shape[1], self.n_heads)

    def _out(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """o (B, L, H, V + 1): numerator and denominator -> (B, L, D)."""
        y = o[..., :-1] / (o[..., -1:] + self.eps)
        return self.o_proj(rearrange(y.to(x.dtype), "b l h d -> b l (h d)"))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        o, _ = chunk_simple_gla(*self._inputs(x), scale=1.0, chunk_size=self.chunk_size)
        return self._out(o, x)

    def _prefill(self, x: torch.Tensor, state: MatrixState):
        o, S = chunk_simple_gla(*self._inputs(x), scale=1.0, initial_state=state.S, output_final_state=True, chunk_size=self.chunk_size)
        state.S = S.to(state.S.dtype)
        return self._out(o, x), state

    def _step(self, x_t: torch.Tensor, state: MatrixState):
        dt = state.S.dtype
        q, k, v, _ = (t[:, 0].to(dt) for t in self._inputs(x_t[:, None]))  # (B, H, F|V+1)
        state.S = state.S + k[..., :, None] * v[..., None, :]  # (B, H, F, V + 1)
        o = torch.einsum("bhk,bhkv->bhv", q, state.S)
        return self._out(o[:, None], x_t[:, None])[:, 0], state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> MatrixState:
        device, dtype = self._state_defaults(device, dtype)
        if dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32  # an undecayed sum over the whole context: keep it in fp32
        return MatrixState(S=torch.zeros(batch_size, self.n_heads, self.expanded_dim, self.head_v + 1, device=device, dtype=dtype))

    def state_size(self, seq_len: int) -> int:
        return self.n_heads * self.expanded_dim * (self.head_v + 1)

    def flops_per_token(self, seq_len: int) -> float:
        D, H, f = self.d_model, self.n_heads, self.feature_dim
        proj = 2.0 * D * (2 * H * f + D) + 2.0 * D * D
        return proj + chunked_attn_flops(seq_len, H, self.expanded_dim, self.head_v + 1, self.chunk_size)
