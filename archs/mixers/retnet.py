"""Multi-scale retention (RetNet).

Sun et al. 2023, "Retentive Network: A Successor to Transformer for Large Language Models".
Each head h is a linear attention with a fixed decay gamma_h = 1 - 2^(-5-h) (a different time
scale per head), RoPE on q and k (the xPos rotation without its length extrapolation scaling),
a per-head group norm of the output, a swish gate and an output projection.

State: the retention memory S (B, H, K, V) plus the number of tokens seen (a Python int, so RoPE
continues at the right absolute position).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..mixer import Mixer, check_divisible
from ..ops.gla import chunk_retention
from ..ops._common import retention_log_decay
from ..registry import register_mixer
from ..rope import Rotary
from ._linear_attn import HeadNorm, MatrixState, chunked_attn_flops


@dataclasses.dataclass
class RetentionState(MatrixState):
    """S (B, H, K, V) retention memory; ``length`` tokens seen so far (RoPE position)."""

    length: int = 0


@register_mixer("retnet")
class RetNet(Mixer):
    """Multi-scale retention with RoPE, per-head group norm and a swish output gate.

    Args:
        d_model: model width.
        n_heads: heads (default d_model // 64, at least 1); head h decays by 1 - 2^(-5-h).
        expand_v: value/gate width as a multiple of d_model (the paper uses 2).
        rope_base: RoPE frequency base.
        chunk_size: chunk length of the chunked retention op.
        norm_eps: eps of the per-head output LayerNorm.
    """

    test_variants = {"heads4": {"n_heads": 4}, "heads2_v1": {"n_heads": 2, "expand_v": 1.0}}

    def __init__(self, d_model: int, n_heads: int | None = None, expand_v: float = 2.0, rope_base: float = 10000.0, chunk_size: int = 64,
                 norm_eps: float = 1e-5):
        super().__init__(d_model)
        n_heads = n_heads or max(1, d_model // 64)
        check_divisible("retnet", "d_model", d_model, "n_heads", n_heads)
        v_dim = int(round(expand_v * d_model))
        if v_dim <= 0:
            raise ValueError(f"retnet: expand_v must be positive, got {expand_v!r}")
        check_divisible("retnet", "value width (expand_v * d_model)", v_dim, "n_heads", n_heads)
        self.n_heads, self.expand_v, self.chunk_size = n_heads, expand_v, chunk_size
        self.head_k, self.head_v = d_model // n_heads, v_dim // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, v_dim, bias=False)
        self.g_proj = nn.Linear(d_model, v_dim, bias=False)
        self.o_proj = nn.Linear(v_dim, d_model, bias=False)
        self.norm = HeadNorm(n_heads, self.head_v, kind="layer", eps=norm_eps)
        self.rotary = Rotary(self.head_k, rope_base)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, expand_v={self.expand_v}"

    def _qkv(self, x: torch.Tensor, start: int):
        """x (B, L, D) at positions start.. -> q, k (B, L, H, K) with RoPE, v (B, L, H, V)."""
        q = rearrange(self.q_proj(x), "b l (h d) -> b l h d", d=self.head_k)
        k = rearrange(self.k_proj(x), "b l (h d) -> b l h d", d=self.head_k)
        v = rearrange(self.v_proj(x), "b l (h d) -> b l h d", d=self.head_v)
        cos, sin = self.rotary.cos_sin(start, x.shape[1], x.device, q.dtype)  # (L, K)
        cos, sin = cos[:, None], sin[:, None]  # (L, 1, K): broadcast over heads
        return self.rotary.rotate(q, cos, sin), self.rotary.rotate(k, cos, sin), v

    def _out(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """o (B, L, H, V) retention output, x (B, L, D) mixer input -> (B, L, D)."""
        y = rearrange(self.norm(o), "b l h d -> b l (h d)") * F.silu(self.g_proj(x))
        return self.o_proj(y)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x, 0)
        o, _ = chunk_retention(q, k, v, chunk_size=self.chunk_size)
        return self._out(o.to(x.dtype), x)

    def _prefill(self, x: torch.Tensor, state: RetentionState):
        q, k, v = self._qkv(x, state.length)
        o, S = chunk_retention(q, k, v, initial_state=state.S, output_final_state=True, chunk_size=self.chunk_size)
        state.S = S.to(state.S.dtype)
        state.length += x.shape[1]
        return self._out(o.to(x.dtype), x), state

    def _step(self, x_t: torch.Tensor, state: RetentionState):
        q, k, v = (t[:, 0] for t in self._qkv(x_t[:, None], state.length))  # (B, H, K|V)
        gamma = retention_log_decay(self.n_heads, x_t.device, state.S.dtype).exp()[:, None, None]  # (H, 1, 1)
        state.S = gamma * state.S + k[..., :, None].to(state.S.dtype) * v[..., None, :].to(state.S.dtype)
        o = self.head_k ** -0.5 * torch.einsum("bhk,bhkv->bhv", q.to(state.S.dtype), state.S)  # (B, H, V)
        state.length += 1
        return self._out(o.to(x_t.dtype)[:, None], x_t[:, None])[:, 0], state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> RetentionState:
        device, dtype = self._state_defaults(device, dtype)
        return RetentionState(S=torch.zeros(batch_size, self.n_heads, self.head_k, self.head_v, device=device, dtype=dtype))

    def state_size(self, seq_len: int) -> int:
        return self.n_heads * self.head_k * self.head_v

    def flops_per_token(self, seq_len: int) -> float:
        D, Dv = self.d_model, self.n_heads * self.head_v
        proj = 2.0 * D * (2 * D + 2 * Dv) + 2.0 * Dv * D  # q, k, v, gate in; out
        return proj + chunked_attn_flops(seq_len, self.n_heads, self.head_k, self.head_v, self.chunk_size)
