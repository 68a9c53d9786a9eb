"""Gated DeltaNet: the delta rule with a data-dependent decay (the linear-attention layer of Qwen3-Next).

Yang, Kautz, Hatamizadeh 2024, "Gated Delta Networks: Improving Mamba2 with Delta Rule" (eq. 10 and
section 3.3), in the layout of transformers' ``Qwen3NextGatedDeltaNet`` (same parameters, same
function; a test copies its weights and compares):

    [q k v z] = W_qkvz x,  [b a] = W_ba x                 (grouped per key head, as Qwen3-Next packs them)
    q, k, v   = SiLU(causal depthwise conv over the concatenated q, k, v channels)   (kernel 4)
    q, k      = q / sqrt(|q|^2 + 1e-6), k / sqrt(|k|^2 + 1e-6)                      (L2 norm, fla's form)
    beta_t    = sigmoid(b_t),  g_t = -exp(A_log) * softplus(a_t + dt_bias)          (log decay, one per value head)
    S_t       = exp(g_t) S_{t-1} + beta_t k_t (v_t - exp(g_t) S_{t-1}^T k_t)^T,   o_t = S_t^T q_t / sqrt(d_k)
    y         = W_o [RMSNorm(o_t) * w * SiLU(z_t)]                                  (gated RMSNorm per head)

Grouped heads: ``n_heads`` value heads share ``n_k_heads`` query/key heads; each q/k head serves
n_heads // n_k_heads consecutive value heads (as Qwen3-Next; repeat-interleaved before the op).
Defaults for our small models: n_heads = n_k_heads = max(1, d_model // 64), head dims
d_model // n_heads for q, k and v (Qwen3-Next itself uses 16 key heads and 32 value heads of 128).

State: the memory S (B, H_v, d_k, d_v) and the conv window: the last (conv_size - 1) inputs of the
q, k, v conv (B, 2 H_k d_k + H_v d_v, conv_size - 1).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..mixer import Mixer, check_divisible
from ..ops.conv1d import causal_conv1d
from ..ops.gated_delta_rule import chunk_gated_delta_rule
from ..registry import register_mixer
from ._linear_attn import MatrixState


@dataclasses.dataclass
class GatedDeltaNetState(MatrixState):
    """S (B, H_v, d_k, d_v) gated delta-rule memory; conv (B, 2 H_k d_k + H_v d_v, conv_size - 1) conv window."""

    conv: torch.Tensor


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum x^2 + eps) over the last dim (fla's and Qwen3-Next's form, not F.normalize's max(|x|, eps))."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


def conv_step(x_t: torch.Tensor, window: torch.Tensor, weight: torch.Tensor):
    """One token of a causal depthwise conv, out of place: x_t (B, C), window (B, C, W-1), weight (C, W)
    -> (y_t (B, C), new window (B, C, W-1)). Nothing is written into tensors autograd may need."""
    full = torch.cat([window, x_t.to(window.dtype)[:, :, None]], dim=2)  # (B, C, W)
    return (full * weight).sum(-1), full[:, :, 1:]


class GatedRMSNorm(nn.Module):
    """RMSNorm over the last dim with a weight, then times SiLU(gate) (Qwen3-Next's RMSNormGated; fp32 for half inputs)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.weight._no_weight_decay = True

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight * F.silu(gate.to(y.dtype))).to(x.dtype)


@register_mixer("gated_deltanet")
class GatedDeltaNet(Mixer):
    """Gated DeltaNet (Qwen3-Next's linear attention): short conv, L2-normed q/k, decay and beta per value
    head, gated delta rule, gated RMSNorm.

    Args:
        d_model: model width.
        n_heads: value heads (default max(1, d_model // 64)).
        n_k_heads: query/key heads (default n_heads); must divide n_heads.
        head_k_dim: q/k head dim (default d_model // n_heads).
        head_v_dim: value head dim (default head_k_dim).
        conv_size: kernel of the short causal conv on q, k, v (Qwen3-Next: 4).
        norm_eps: epsilon of the gated RMSNorm (Qwen3-Next: rms_norm_eps).
        chunk_size: chunk length of the chunked op.
    """

    test_variants = {
        "grouped_heads": {"n_heads": 4, "n_k_heads": 2, "head_k_dim": 8, "head_v_dim": 12},
        "heads2_conv2": {"n_heads": 2, "conv_size": 2, "chunk_size": 16},
    }

    def __init__(self, d_model: int, n_heads: int | None = None, n_k_heads: int | None = None, head_k_dim: int | None = None,
                 head_v_dim: int | None = None, conv_size: int = 4, norm_eps: float = 1e-6, chunk_size: int = 64):
        super().__init__(d_model)
        n_heads = n_heads or max(1, d_model // 64)
        n_k_heads = n_k_heads or n_heads
        check_divisible("gated_deltanet", "n_heads", n_heads, "n_k_heads", n_k_heads)
        if head_k_dim is None:
            check_divisible("gated_deltanet", "d_model", d_model, "n_heads", n_heads)
            head_k_dim = d_model // n_heads
        head_v_dim = head_v_dim or head_k_dim
        for name, val in (("head_k_dim", head_k_dim), ("head_v_dim", head_v_dim), ("chunk_size", chunk_size)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"gated_deltanet: {name} must be a positive int, got {val!r}")
        if not isinstance(conv_size, int) or conv_size < 2:
            raise ValueError(f"gated_deltanet: conv_size must be an int >= 2, got {conv_size!r}")
        self.n_heads, self.n_k_heads, self.head_k_dim, self.head_v_dim = n_heads, n_k_heads, head_k_dim, head_v_dim
        self.conv_size, self.chunk_size = conv_size, chunk_size
        self.key_dim, self.value_dim = n_k_heads * head_k_dim, n_heads * head_v_dim
        self.conv_dim = 2 * self.key_dim + self.value_dim
        self.in_proj_qkvz = nn.Linear(d_model, 2 * self.key_dim + 2 * self.value_dim, bias=False)
        self.in_proj_ba = nn.Linear(d_model, 2 * n_heads, bias=False)
        self.conv_weight = nn.Parameter(torch.empty(self.conv_dim, conv_size))  # depthwise, no bias (as Qwen3-Next)
        nn.init.uniform_(self.conv_weight, -1 / math.sqrt(conv_size), 1 / math.sqrt(conv_size))
        # decay rate A in [1, 16] and dt in [1e-3, 1e-1] (log-uniform) as in Mamba-2 / fla's GatedDeltaNet
        self.A_log = nn.Parameter(torch.empty(n_heads).uniform_(1, 16).log())
        dt = torch.exp(torch.rand(n_heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)
        self.A_log._no_weight_decay = True
        self.dt_bias._no_weight_decay = True
        self.norm = GatedRMSNorm(head_v_dim, eps=norm_eps)
        self.out_proj = nn.Linear(self.value_dim, d_model, bias=False)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, n_k_heads={self.n_k_heads}, head_k_dim={self.head_k_dim}, "
                f"head_v_dim={self.head_v_dim}, conv_size={self.conv_size}")

    # ---- pieces ----------------------------------------------------------------------------
    def _project(self, x: torch.Tensor):
        """x (B, L, D) -> qkv (B, L, conv_dim) before the conv, z (B, L, H_v, d_v), b, a (B, L, H_v).

        Qwen3-Next packs the projections per key head: [q_h, k_h, v_h (r d_v), z_h (r d_v)] and [b_h (r), a_h (r)]."""
        r, dk, dv = self.n_heads // self.n_k_heads, self.head_k_dim, self.head_v_dim
        qkvz = rearrange(self.in_proj_qkvz(x), "b l (g c) -> b l g c", g=self.n_k_heads)  # (B, L, H_k, 2 dk + 2 r dv)
        q, k, v, z = torch.split(qkvz, [dk, dk, r * dv, r * dv], dim=-1)
        ba = rearrange(self.in_proj_ba(x), "b l (g c) -> b l g c", g=self.n_k_heads)  # (B, L, H_k, 2 r)
        b, a = (rearrange(t, "b l g r -> b l (g r)") for t in torch.split(ba, [r, r], dim=-1))  # (B, L, H_v)
        qkv = torch.cat([rearrange(t, "b l g c -> b l (g c)") for t in (q, k, v)], dim=-1)  # (B, L, conv_dim)
        return qkv, rearrange(z, "b l g (r d) -> b l (g r) d", d=dv), b, a

    def _heads(self, qkv: torch.Tensor, b: torch.Tensor, a: torch.Tensor):
        """qkv (B, L, conv_dim) after conv + SiLU -> q, k (B, L, H_v, d_k), v (B, L, H_v, d_v), g, beta (B, L, H_v)."""
        q, k, v = torch.split(qkv, [self.key_dim, self.key_dim, self.value_dim], dim=-1)
        q = l2_normalize(rearrange(q, "b l (h d) -> b l h d", d=self.head_k_dim))
        k = l2_normalize(rearrange(k, "b l (h d) -> b l h d", d=self.head_k_dim))
        v = rearrange(v, "b l (h d) -> b l h d", d=self.head_v_dim)
        r = self.n_heads // self.n_k_heads
        if r > 1:
            q, k = q.repeat_interleave(r, dim=2), k.repeat_interleave(r, dim=2)
        g = -self.A_log.exp() * F.softplus(a + self.dt_bias)  # (B, L, H_v), <= 0
        return q, k, v, g, torch.sigmoid(b)

    def _out(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """o, z (B, L, H_v, d_v) -> (B, L, D)."""
        return self.out_proj(rearrange(self.norm(o.to(z.dtype), z), "b l h d -> b l (h d)"))

    # ---- the mixer interface ----------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv, z, b, a = self._project(x)
        qkv = causal_conv1d(qkv.transpose(1, 2), self.conv_weight, activation="silu").transpose(1, 2)
        o, _ = chunk_gated_delta_rule(*self._heads(qkv, b, a), chunk_size=self.chunk_size)
        return self._out(o, z)

    def _prefill(self, x: torch.Tensor, state: GatedDeltaNetState):
        qkv, z, b, a = self._project(x)
        qkv, conv = causal_conv1d(qkv.transpose(1, 2), self.conv_weight, activation="silu",
                                  initial_states=state.conv, return_final_states=True)
        state.conv = conv.to(state.conv.dtype)
        o, S = chunk_gated_delta_rule(*self._heads(qkv.transpose(1, 2), b, a), initial_state=state.S,
                                      output_final_state=True, chunk_size=self.chunk_size)
        state.S = S.to(state.S.dtype)
        return self._out(o, z), state

    def _step(self, x_t: torch.Tensor, state: GatedDeltaNetState):
        qkv, z, b, a = self._project(x_t[:, None])
        y, state.conv = conv_step(qkv[:, 0], state.conv, self.conv_weight)
        dt = state.S.dtype
        q, k, v, g, beta = (t[:, 0].to(dt) for t in self._heads(F.silu(y)[:, None], b, a))  # (B, H, d), (B, H)
        S = g.exp()[..., None, None] * state.S  # decay, then the delta-rule write
        err = v - torch.einsum("bhk,bhkv->bhv", k, S)  # (B, H, d_v): what the memory gets wrong for k
        state.S = S + (beta[..., None] * k)[..., :, None] * err[..., None, :]
        o = self.head_k_dim ** -0.5 * torch.einsum("bhk,bhkv->bhv", q, state.S)
        return self._out(o[:, None], z)[:, 0], state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> GatedDeltaNetState:
        device, dtype = self._state_defaults(device, dtype)
        return GatedDeltaNetState(
            S=torch.zeros(batch_size, self.n_heads, self.head_k_dim, self.head_v_dim, device=device, dtype=dtype),
            conv=torch.zeros(batch_size, self.conv_dim, self.conv_size - 1, device=device, dtype=dtype),
        )

    def state_size(self, seq_len: int) -> int:
        return self.n_heads * self.head_k_dim * self.head_v_dim + self.conv_dim * (self.conv_size - 1)

    def flops_per_token(self, seq_len: int) -> float:
        D, H, K, V = self.d_model, self.n_heads, self.head_k_dim, self.head_v_dim
        proj = 2.0 * D * (2 * self.key_dim + 2 * self.value_dim + 2 * H) + 2.0 * self.value_dim * D
        conv = 2.0 * self.conv_dim * self.conv_size
        return proj + conv + H * gated_delta_rule_flops(seq_len, K, V, self.chunk_size)


def gated_delta_rule_flops(seq_len: int, K: int, V: int, chunk: int = 64) -> float:
    """Matmul FLOPs per token and head of ``chunk_gated_delta_rule``'s chunked form (c = chunk length):
    K K^T, Q K^T (2 c K each), the triangular solve for W, U0 (c (K + V)), A U0, A W (2 c (V + K)),
    the read of the carried state and the chunk's own state (2 K V each), the state transition
    K^T W (2 K^2) and the state update over chunks (2 K^2 V / c)."""
    c = min(chunk, max(1, seq_len))
    return 4.0 * c * K + c * (K + V) + 2.0 * c * (K + V) + 4.0 * K * V + 2.0 * K * K + 2.0 * K * K * V / c
