"""DeltaNet: linear attention with the delta rule.

Yang et al. 2024, "Parallelizing Linear Transformers with the Delta Rule over Sequence Length"
(the delta rule itself: Schlag et al. 2021). q, k, v come from linear projections followed by
short causal depthwise convolutions (kernel 4) with SiLU; q and k are L2-normalised as fla and HF
compute it, x * rsqrt(sum x^2 + 1e-6) (not x / max(|x|, eps)), and
beta_t = sigmoid(W_beta x_t) per head. The memory is updated by
S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T and read as o_t = S_t^T q_t / sqrt(K), then a
per-head RMSNorm (optionally gated by swish(W_g x)) and an output projection.

State: the memory S (B, H, K, V) and the short-conv window: the last (conv_size - 1) inputs of the
q, k, v convolutions (B, 2 H K + H V, conv_size - 1).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..mixer import Mixer, check_divisible
from ..ops.conv1d import causal_conv1d, causal_conv1d_step_state
from ..ops.delta_rule import chunk_delta_rule
from ..registry import register_mixer
from ._linear_attn import HeadNorm, MatrixState, chunked_attn_flops


@dataclasses.dataclass
class DeltaNetState(MatrixState):
    """S (B, H, K, V) delta-rule memory; conv (B, 2HK + HV, conv_size - 1) short-conv window."""

    conv: torch.Tensor  # (B, 2HK + HV, conv_size - 1)


def l2_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x * rsqrt(sum(x^2) + eps) over the last dim (fla's ``l2_norm``, HF's ``l2norm``)."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


@register_mixer("deltanet")
class DeltaNet(Mixer):
    """Delta-rule linear attention with short convolutions, L2-normalised q/k and a learned beta.

    Args:
        d_model: model width.
        n_heads: heads (default d_model // 64, at least 1); head dim = d_model // n_heads for q, k, v.
        conv_size: kernel of the short causal convs on q, k, v (paper: 4).
        use_gate: gate the normed output with swish(W_g x).
        chunk_size: chunk length of the chunked delta-rule op.
        norm_eps: eps of the per-head output RMSNorm (fla: 1e-5).
    """

    test_variants = {"heads2_gate": {"n_heads": 2, "use_gate": True}, "heads4_conv2": {"n_heads": 4, "conv_size": 2}}

    def __init__(self, d_model: int, n_heads: int | None = None, conv_size: int = 4, use_gate: bool = False, chunk_size: int = 64,
                 norm_eps: float = 1e-5):
        super().__init__(d_model)
        n_heads = n_heads or max(1, d_model // 64)
        check_divisible("deltanet", "d_model", d_model, "n_heads", n_heads)
        if not isinstance(conv_size, int) or conv_size < 2:
            raise ValueError(f"deltanet: conv_size must be an int >= 2, got {conv_size!r}")
        self.n_heads, self.conv_size, self.use_gate, self.chunk_size = n_heads, conv_size, use_gate, chunk_size
        self.head_dim = d_model // n_heads
        self.qkv_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.b_proj = nn.Linear(d_model, n_heads, bias=False)
        # one depthwise conv over the concatenated q, k, v channels (same as three separate ones)
        self.conv_weight = nn.Parameter(torch.empty(3 * d_model, conv_size))
        nn.init.uniform_(self.conv_weight, -1 / math.sqrt(conv_size), 1 / math.sqrt(conv_size))
        self.g_proj = nn.Linear(d_model, d_model, bias=False) if use_gate else None
        self.norm = HeadNorm(n_heads, self.head_dim, kind="rms", eps=norm_eps)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, conv_size={self.conv_size}, use_gate={self.use_gate}"

    def _heads(self, qkv: torch.Tensor, x: torch.Tensor):
        """qkv (B, L, 3D) after conv + SiLU, x (B, L, D) -> q, k (B, L, H, K) L2-normalised, v (B, L, H, V), beta (B, L, H)."""
        q, k, v = rearrange(qkv, "b l (three h d) -> three b l h d", three=3, d=self.head_dim)
        q, k = l2_norm(q), l2_norm(k)
        return q, k, v, torch.sigmoid(self.b_proj(x))

    def _out(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """o (B, L, H, V), x (B, L, D) -> (B, L, D)."""
        y = rearrange(self.norm(o.to(x.dtype)), "b l h d -> b l (h d)")
        if self.g_proj is not None:
            y = y * F.silu(self.g_proj(x))
        return self.o_proj(y)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = causal_conv1d(self.qkv_proj(x).transpose(1, 2), self.conv_weight, activation="silu").transpose(1, 2)  # (B, L, 3D)
        o, _ = chunk_delta_rule(*self._heads(qkv, x), chunk_size=self.chunk_size)
        return self._out(o, x)

    def _prefill(self, x: torch.Tensor, state: DeltaNetState):
        qkv, conv = causal_conv1d(self.qkv_proj(x).transpose(1, 2), self.conv_weight, activation="silu",
                                  initial_states=state.conv, return_final_states=True)
        state.conv = conv.to(state.conv.dtype)
        o, S = chunk_delta_rule(*self._heads(qkv.transpose(1, 2), x), initial_state=state.S,
                                output_final_state=True, chunk_size=self.chunk_size)
        state.S = S.to(state.S.dtype)
        return self._out(o, x), state

    def _step(self, x_t: torch.Tensor, state: DeltaNetState):
        qkv, state.conv = causal_conv1d_step_state(self.qkv_proj(x_t), state.conv, self.conv_weight, activation="silu")  # (B, 3D)
        dt = state.S.dtype
        q, k, v, beta = (t[:, 0].to(dt) for t in self._heads(qkv[:, None], x_t[:, None]))  # (B, H, K|V), (B, H)
        S = state.S
        err = v - torch.einsum("bhk,bhkv->bhv", k, S)  # (B, H, V): what the memory gets wrong for k
        state.S = S + (beta[..., None] * k)[..., :, None] * err[..., None, :]
        o = self.head_dim ** -0.5 * torch.einsum("bhk,bhkv->bhv", q, state.S)
        return self._out(o[:, None], x_t[:, None])[:, 0], state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> DeltaNetState:
        device, dtype = self._state_defaults(device, dtype)
        H, K = self.n_heads, self.head_dim
        return DeltaNetState(
            S=torch.zeros(batch_size, H, K, K, device=device, dtype=dtype),
            conv=torch.zeros(batch_size, 3 * self.d_model, self.conv_size - 1, device=device, dtype=dtype),
        )

    def state_size(self, seq_len: int) -> int:
        return self.n_heads * self.head_dim ** 2 + 3 * self.d_model * (self.conv_size - 1)

    def flops_per_token(self, seq_len: int) -> float:
        D, H, K = self.d_model, self.n_heads, self.head_dim
        proj = 2.0 * D * (3 * D + H) + 2.0 * D * D * (2 if self.use_gate else 1)
        conv = 2.0 * 3 * D * self.conv_size
        c = min(self.chunk_size, max(1, seq_len))
        # chunked delta rule: the scalar-decay linear-attention cost plus K K^T, the triangular solve for W, U and W S
        wy = H * (2.0 * c * K + 1.0 * c * (K + K) + 2.0 * K * K)
        return proj + conv + chunked_attn_flops(seq_len, H, K, K, self.chunk_size) + wy
