"""Pieces shared by the linear-attention mixers (retnet, gla, hgrn2, deltanet, rwkv6): the matrix
state, a per-head output norm, the analytic FLOP count of the chunked linear-attention op, and the
``chunk_gla`` recurrence of GLA and HGRN2 (``ChunkGLAMixer``)."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..mixer import Mixer
from ..ops.gla import chunk_gla
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


class ChunkGLAMixer(Mixer):
    """The recurrence shared by the mixers built on ``chunk_gla`` (GLA, HGRN2): a subclass defines
    ``_inputs(x) -> q, k (B, L, H, K), v (B, L, H, V), log-decay g (B, L, H, K)`` and
    ``_out(o, x) -> (B, L, D)``, and has ``n_heads``, ``head_k``, ``head_v``, ``chunk_size``.
    State: S (B, H, K, V), S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T, o_t = S_t^T q_t / sqrt(K)."""

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        o, _ = chunk_gla(*self._inputs(x), chunk_size=self.chunk_size)
        return self._out(o, x)

    def _prefill(self, x: torch.Tensor, state: MatrixState):
        o, S = chunk_gla(*self._inputs(x), initial_state=state.S, output_final_state=True, chunk_size=self.chunk_size)
        state.S = S.to(state.S.dtype)
        return self._out(o, x), state

    def _step(self, x_t: torch.Tensor, state: MatrixState):
        dt = state.S.dtype
        q, k, v, g = (t[:, 0].to(dt) for t in self._inputs(x_t[:, None]))  # (B, H, K|V)
        state.S = g.exp()[..., None] * state.S + k[..., :, None] * v[..., None, :]  # (B, H, K, V)
        o = self.head_k ** -0.5 * torch.einsum("bhk,bhkv->bhv", q, state.S)
        return self._out(o[:, None], x_t[:, None])[:, 0], state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> MatrixState:
        device, dtype = self._state_defaults(device, dtype)
        return MatrixState(S=torch.zeros(batch_size, self.n_heads, self.head_k, self.head_v, device=device, dtype=dtype))

    def state_size(self, seq_len: int) -> int:
        return self.n_heads * self.head_k * self.head_v
