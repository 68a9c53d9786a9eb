"""Mamba (Mamba-1): a selective state-space mixer.

Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces".
in_proj -> (x, z); causal depthwise conv + SiLU on x; x_proj -> (dt, B, C) from x (the selection);
the selective scan h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t, y_t = C_t h_t + D x_t, gated by
silu(z); out_proj.

State: ``conv`` (B, d_inner, d_conv - 1), the last d_conv - 1 inputs of the conv, and ``ssm``
(B, d_inner, d_state), the SSM state h. Its size does not grow with the context.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..mixer import Mixer
from ..ops.conv1d import causal_conv1d, causal_conv1d_step_state
from ..ops.selective_scan import selective_scan
from ..registry import register_mixer
from ..state import MixerState, can_update_in_place


@dataclasses.dataclass
class MambaState(MixerState):
    conv: torch.Tensor  # (B, d_inner, d_conv - 1) last inputs of the causal conv
    ssm: torch.Tensor  # (B, d_inner, d_state) SSM state h
    seen: int = 0  # tokens consumed so far (0: a fresh state; lets prefill use the GPU kernel)


def init_dt_bias(n: int, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> torch.Tensor:
    """Bias b with softplus(b) = dt, dt log-uniform in [dt_min, dt_max] (the Mamba dt init)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_floor)
    return dt + torch.log(-torch.expm1(-dt))  # inverse softplus


def conv_init_(weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """nn.Conv1d's default init for a depthwise conv: uniform(+-1/sqrt(width))."""
    bound = 1.0 / math.sqrt(weight.shape[1])
    nn.init.uniform_(weight, -bound, bound)
    if bias is not None:
        nn.init.uniform_(bias, -bound, bound)


@register_mixer("mamba")
class Mamba(Mixer):
    """Mamba-1 selective SSM mixer.

    Args:
        d_model: model width.
        d_state: SSM state size n per channel (16).
        d_conv: causal conv width (4).
        expand: d_inner = expand * d_model (2).
        dt_rank: rank of the dt projection (default ceil(d_model / 16)).
        dt_min, dt_max: range of the initial step sizes (log-uniform).
        conv_bias, bias: biases of the conv and of in/out projections.
    """

    test_variants = {
        "wide_state_short_conv": {"d_state": 4, "d_conv": 2, "expand": 1, "dt_rank": 3},
        "conv1": {"d_conv": 1},
    }

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | None = None,
                 dt_min: float = 1e-3, dt_max: float = 0.1, conv_bias: bool = True, bias: bool = False):
        super().__init__(d_model)
        for name, v in (("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"mamba: {name} must be a positive int, got {v!r}")
        dt_rank = dt_rank if dt_rank is not None else math.ceil(d_model / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"mamba: dt_rank must be a positive int or None, got {dt_rank!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"mamba: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_state, self.d_conv, self.expand, self.dt_rank = d_state, d_conv, expand, dt_rank
        self.d_inner = di = expand * d_model
        self.in_proj = nn.Linear(d_model, 2 * di, bias=bias)
        self.conv_weight = nn.Parameter(torch.empty(di, d_conv))  # depthwise: one filter per channel
        self.conv_bias = nn.Parameter(torch.empty(di)) if conv_bias else None
        conv_init_(self.conv_weight, self.conv_bias)
        self.x_proj = nn.Linear(di, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, di, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -dt_rank ** -0.5, dt_rank ** -0.5)
        with torch.no_grad():
            self.dt_proj.bias.copy_(init_dt_bias(di, dt_min, dt_max))
        # S4D-real init: A = -(1, 2, .., n) for every channel
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(di, 1))  # (di, n)
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d_model, bias=bias)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, d_conv={self.d_conv}, expand={self.expand}, dt_rank={self.dt_rank}"

    # ---- the sequence path ---------------------------------------------------------------
    def _run(self, x: torch.Tensor, state: MambaState | None):
        """x (B, L, D) -> y (B, L, D), continuing from ``state`` (updated in place) if given."""
        xz = rearrange(self.in_proj(x), "b l e -> b e l")
        xs, z = xz.chunk(2, dim=1)  # (B, di, L) each
        fresh = state is None or state.seen == 0
        conv_init = None if fresh else state.conv
        if state is None:
            xs = causal_conv1d(xs, self.conv_weight, self.conv_bias, "silu")
        else:
            xs, conv_last = causal_conv1d(xs, self.conv_weight, self.conv_bias, "silu",
                                          initial_states=conv_init, return_final_states=True)
        dt, Bm, Cm = torch.split(self.x_proj(rearrange(xs, "b e l -> b l e")), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = rearrange(dt @ self.dt_proj.weight.t(), "b l e -> b e l")  # (B, di, L), bias added in the scan
        A = -torch.exp(self.A_log)  # (di, n)
        out = selective_scan(xs, dt, A, rearrange(Bm, "b l n -> b n l"), rearrange(Cm, "b l n -> b n l"),
                             D=self.D, z=z, delta_bias=self.dt_proj.bias, delta_softplus=True,
                             return_last_state=state is not None,
                             initial_state=None if fresh else state.ssm)
        if state is not None:
            out, last = out
            if can_update_in_place(state.conv, state.ssm, last):
                state.conv.copy_(conv_last)
                state.ssm.copy_(last)
            else:
                state.conv, state.ssm = conv_last.to(state.conv.dtype), last.to(state.ssm.dtype)
            state.seen += x.shape[1]
        return self.out_proj(rearrange(out, "b e l -> b l e"))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)

    def _prefill(self, x: torch.Tensor, state: MambaState):
        return self._run(x, state), state

    # ---- the recurrent path --------------------------------------------------------------
    def _step(self, x_t: torch.Tensor, state: MambaState):
        xs, z = self.in_proj(x_t).chunk(2, dim=-1)  # (B, di) each
        xs, state.conv = causal_conv1d_step_state(xs, state.conv, self.conv_weight, self.conv_bias, "silu")  # (B, di)
        dt, Bm, Cm = torch.split(self.x_proj(xs), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))  # (B, di)
        A = -torch.exp(self.A_log.to(state.ssm.dtype))  # (di, n)
        dA = torch.exp(dt[:, :, None] * A)  # (B, di, n)
        dBx = (dt * xs)[:, :, None] * Bm[:, None, :]  # (B, di, n)
        if can_update_in_place(state.ssm, dBx):
            state.ssm.mul_(dA).add_(dBx)  # h = dA h + dt x B
        else:
            state.ssm = (dA * state.ssm + dBx).to(state.ssm.dtype)
        y = (state.ssm * Cm[:, None, :]).sum(-1) + self.D * xs  # (B, di)
        y = y * F.silu(z)
        state.seen += 1
        return self.out_proj(y), state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> MambaState:
        device, dtype = self._state_defaults(device, dtype)
        return MambaState(
            conv=torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device, dtype=dtype),
            ssm=torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=dtype),
        )

    def state_size(self, seq_len: int) -> int:
        return self.d_inner * (self.d_conv - 1) + self.d_inner * self.d_state

    def flops_per_token(self, seq_len: int) -> float:
        D, di, n, r, w = self.d_model, self.d_inner, self.d_state, self.dt_rank, self.d_conv
        proj = 2.0 * D * 2 * di + 2.0 * di * (r + 2 * n) + 2.0 * r * di + 2.0 * di * D
        conv = 2.0 * di * w
        # per (channel, state): dt*A, exp, dt*x*B (2), h = dA h + dBu (2), C.h (2) -> 8; D skip + gate: 4 per channel
        scan = 8.0 * di * n + 4.0 * di
        return proj + conv + scan

    def no_weight_decay(self) -> set[str]:
        """A_log and D (as mamba_ssm), plus the default: biases (dt_proj.bias, conv_bias)."""
        return super().no_weight_decay() | {"A_log", "D"}
