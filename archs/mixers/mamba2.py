"""Mamba-2: the SSD (state-space duality) mixer, a selective SSM with one scalar decay per head.

Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through
Structured State Space Duality". in_proj -> (z, x, B, C, dt) in parallel; causal depthwise conv +
SiLU over (x, B, C); multi-head SSD S_t = exp(dt_t A_h) S_{t-1} + dt_t x_t B_t^T,
y_t = S_t C_t + D_h x_t (B, C shared by the heads of a group); gated RMSNorm(y * silu(z)),
normalised per group of d_inner // n_groups channels (mamba_ssm's RMSNormGated(group_size=...),
HF's MambaRMSNormGated); out_proj. dt = softplus(W_dt x + dt_bias), clamped to ``time_step_limit``.

State: ``conv`` (B, d_inner + 2 * n_groups * d_state, d_conv - 1), the last inputs of the conv,
and ``ssm`` (B, n_heads, headdim, d_state), the SSD state. Its size does not grow with the context.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ..layers import GatedRMSNorm
from ..mixer import Mixer, check_divisible
from ..ops.conv1d import causal_conv1d, causal_conv1d_step_state
from ..ops.ssd import ssd
from ..registry import register_mixer
from ..state import MixerState, can_update_in_place
from .mamba import conv_init_, init_dt_bias


@dataclasses.dataclass
class Mamba2State(MixerState):
    conv: torch.Tensor  # (B, d_inner + 2 g n, d_conv - 1) last inputs of the causal conv over (x, B, C)
    ssm: torch.Tensor  # (B, n_heads, headdim, d_state) SSD state
    seen: int = 0  # tokens consumed so far (0: a fresh state; lets prefill use the GPU kernel)


@register_mixer("mamba2")
class Mamba2(Mixer):
    """Mamba-2 (SSD) mixer.

    Args:
        d_model: model width.
        d_state: state size n per head (64).
        d_conv: causal conv width (4).
        expand: d_inner = expand * d_model (2).
        headdim: head size p (default min(64, d_inner)); n_heads = d_inner // headdim.
        n_groups: groups of heads sharing B and C (1); must divide n_heads.
        chunk_size: chunk length of the chunked SSD (64).
        A_init_range: A = -uniform(A_init_range) per head.
        dt_min, dt_max: range of the initial step sizes (log-uniform).
        norm_eps: eps of the gated output RMSNorm (1e-5, as mamba_ssm and HF).
        time_step_limit: (lo, hi) clamp of dt after the softplus (mamba_ssm's dt_limit; default none).
    """

    test_variants = {
        "groups": {"headdim": 8, "n_groups": 2, "d_state": 16, "chunk_size": 16},
        "heads_short_conv": {"headdim": 16, "n_groups": 4, "d_state": 8, "d_conv": 2, "chunk_size": 5},
        "dt_limit_groups8": {"headdim": 8, "n_groups": 8, "d_state": 4, "chunk_size": 7, "time_step_limit": (0.01, 0.05)},
    }

    def __init__(self, d_model: int, d_state: int = 64, d_conv: int = 4, expand: int = 2, headdim: int | None = None,
                 n_groups: int = 1, chunk_size: int = 64, A_init_range: tuple[float, float] = (1.0, 16.0),
                 dt_min: float = 1e-3, dt_max: float = 0.1, conv_bias: bool = True, bias: bool = False,
                 norm_eps: float = 1e-5, time_step_limit: tuple[float, float] = (0.0, float("inf"))):
        super().__init__(d_model)
        for name, v in (("d_state", d_state), ("d_conv", d_conv), ("expand", expand), ("n_groups", n_groups), ("chunk_size", chunk_size)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"mamba2: {name} must be a positive int, got {v!r}")
        self.d_inner = di = expand * d_model
        headdim = headdim if headdim is not None else min(64, di)
        if not isinstance(headdim, int) or headdim < 1:
            raise ValueError(f"mamba2: headdim must be a positive int or None, got {headdim!r}")
        check_divisible("mamba2", "d_inner (expand * d_model)", di, "headdim", headdim)
        self.n_heads = di // headdim
        check_divisible("mamba2", "n_heads (d_inner // headdim)", self.n_heads, "n_groups", n_groups)
        lo, hi = A_init_range
        if not 0 < lo <= hi:
            raise ValueError(f"mamba2: A_init_range must satisfy 0 < low <= high, got {A_init_range!r}")
        lo_dt, hi_dt = (float(v) for v in time_step_limit)
        if not 0 <= lo_dt < hi_dt:
            raise ValueError(f"mamba2: time_step_limit must be (low, high) with 0 <= low < high, got {time_step_limit!r}")
        self.time_step_limit = (lo_dt, hi_dt)
        self.d_state, self.d_conv, self.expand, self.headdim = d_state, d_conv, expand, headdim
        self.n_groups, self.chunk_size = n_groups, chunk_size
        self.conv_dim = di + 2 * n_groups * d_state
        self.in_proj = nn.Linear(d_model, 2 * di + 2 * n_groups * d_state + self.n_heads, bias=bias)  # z, xBC, dt
        self.conv_weight = nn.Parameter(torch.empty(self.conv_dim, d_conv))
        self.conv_bias = nn.Parameter(torch.empty(self.conv_dim)) if conv_bias else None
        conv_init_(self.conv_weight, self.conv_bias)
        self.dt_bias = nn.Parameter(init_dt_bias(self.n_heads, dt_min, dt_max))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.n_heads).uniform_(lo, hi)))  # A = -exp(A_log)
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = GatedRMSNorm(di, eps=norm_eps, group_size=di // n_groups)  # per group, as Mamba-2
        self.out_proj = nn.Linear(di, d_model, bias=bias)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_state={self.d_state}, n_heads={self.n_heads}, headdim={self.headdim}, "
                f"n_groups={self.n_groups}, d_conv={self.d_conv}, chunk_size={self.chunk_size}")

    def _split(self, zxbcdt: torch.Tensor):
        di, gn = self.d_inner, self.n_groups * self.d_state
        return torch.split(zxbcdt, [di, di + 2 * gn, self.n_heads], dim=-1)  # z, xBC, dt

    # ---- the sequence path ---------------------------------------------------------------
    def _run(self, x: torch.Tensor, state: Mamba2State | None):
        """x (B, L, D) -> y (B, L, D), continuing from ``state`` (updated in place) if given."""
        z, xBC, dt = self._split(self.in_proj(x))  # (B, L, di), (B, L, conv_dim), (B, L, h)
        fresh = state is None or state.seen == 0
        xBC = rearrange(xBC, "b l c -> b c l")
        if state is None:
            xBC = causal_conv1d(xBC, self.conv_weight, self.conv_bias, "silu")
        else:
            xBC, conv_last = causal_conv1d(xBC, self.conv_weight, self.conv_bias, "silu",
                                           initial_states=None if fresh else state.conv, return_final_states=True)
        xBC = rearrange(xBC, "b c l -> b l c")
        gn = self.n_groups * self.d_state
        xs, Bm, Cm = torch.split(xBC, [self.d_inner, gn, gn], dim=-1)
        A = -torch.exp(self.A_log)  # (h,)
        dt_bias, limited = self.dt_bias, self.time_step_limit != (0.0, float("inf"))
        if limited:  # the op has no clamp: apply bias, softplus and the clamp here
            dt, dt_bias = self._dt(dt), None
        y = ssd(rearrange(xs, "b l (h p) -> b l h p", p=self.headdim), dt, A,
                rearrange(Bm, "b l (g n) -> b l g n", g=self.n_groups), rearrange(Cm, "b l (g n) -> b l g n", g=self.n_groups),
                chunk_size=self.chunk_size, D=self.D, dt_bias=dt_bias, dt_softplus=not limited,
                initial_states=None if fresh else state.ssm, return_final_states=state is not None)
        if state is not None:
            y, last = y
            if can_update_in_place(state.conv, state.ssm, last):
                state.conv.copy_(conv_last)
                state.ssm.copy_(last)
            else:
                state.conv, state.ssm = conv_last.to(state.conv.dtype), last.to(state.ssm.dtype)
            state.seen += x.shape[1]
        y = self.norm(rearrange(y, "b l h p -> b l (h p)").to(x.dtype), z)
        return self.out_proj(y)

    def _dt(self, dt: torch.Tensor) -> torch.Tensor:
        """Raw dt (..., h) -> softplus(dt + dt_bias) clamped to time_step_limit."""
        lo, hi = self.time_step_limit
        return F.softplus(dt + self.dt_bias).clamp(min=lo, max=hi)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)

    def _prefill(self, x: torch.Tensor, state: Mamba2State):
        return self._run(x, state), state

    # ---- the recurrent path --------------------------------------------------------------
    def _step(self, x_t: torch.Tensor, state: Mamba2State):
        z, xBC, dt = self._split(self.in_proj(x_t))  # (B, di), (B, conv_dim), (B, h)
        xBC, state.conv = causal_conv1d_step_state(xBC, state.conv, self.conv_weight, self.conv_bias, "silu")
        gn = self.n_groups * self.d_state
        xs, Bm, Cm = torch.split(xBC, [self.d_inner, gn, gn], dim=-1)
        r = self.n_heads // self.n_groups
        xs = rearrange(xs, "b (h p) -> b h p", p=self.headdim)
        Bm = repeat(Bm, "b (g n) -> b (g r) n", g=self.n_groups, r=r)  # (B, h, n)
        Cm = repeat(Cm, "b (g n) -> b (g r) n", g=self.n_groups, r=r)
        dt = self._dt(dt)  # (B, h)
        A = -torch.exp(self.A_log.to(state.ssm.dtype))
        dA = torch.exp(dt * A)  # (B, h)
        dBx = (dt[:, :, None] * xs)[..., None] * Bm[:, :, None, :]  # (B, h, p, n)
        if can_update_in_place(state.ssm, dBx):
            S = state.ssm.mul_(dA[:, :, None, None]).add_(dBx)
        else:
            S = state.ssm = (dA[:, :, None, None] * state.ssm + dBx).to(state.ssm.dtype)
        y = torch.einsum("bhpn,bhn->bhp", S, Cm) + self.D[:, None] * xs  # (B, h, p)
        y = self.norm(rearrange(y, "b h p -> b (h p)"), z)
        state.seen += 1
        return self.out_proj(y), state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> Mamba2State:
        device, dtype = self._state_defaults(device, dtype)
        return Mamba2State(
            conv=torch.zeros(batch_size, self.conv_dim, self.d_conv - 1, device=device, dtype=dtype),
            ssm=torch.zeros(batch_size, self.n_heads, self.headdim, self.d_state, device=device, dtype=dtype),
        )

    def state_size(self, seq_len: int) -> int:
        return self.conv_dim * (self.d_conv - 1) + self.n_heads * self.headdim * self.d_state

    def flops_per_token(self, seq_len: int) -> float:
        """Recurrent-form count (the chunked form trades some extra intra-chunk work for matmuls)."""
        D, di, n, h, w = self.d_model, self.d_inner, self.d_state, self.n_heads, self.d_conv
        proj = 2.0 * D * (2 * di + 2 * self.n_groups * n + h) + 2.0 * di * D
        conv = 2.0 * self.conv_dim * w
        # per (head dim, state): S = dA S + (dt x) B (2 + 1), y = S C (2); per channel: D skip, gate, norm ~ 6
        ssm = 5.0 * di * n + 6.0 * di + 4.0 * h
        return proj + conv + ssm

    def no_weight_decay(self) -> set[str]:
        """A_log, D and dt_bias (as mamba_ssm), plus the default: the gated norm, biases."""
        return super().no_weight_decay() | {"A_log", "D", "dt_bias"}
