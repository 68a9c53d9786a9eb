"""LRU: the Linear Recurrent Unit, a complex diagonal linear RNN.

Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De 2023, "Resurrecting Recurrent Neural Networks
for Long Sequences" (ICML).

    lambda = exp(-exp(nu) + i exp(theta))             (N,) complex, |lambda| < 1 always
    h_t    = lambda * h_{t-1} + gamma * (B x_t)       gamma = sqrt(1 - |lambda|^2) (learned, init)
    y_t    = Re(C h_t) + D * x_t                      B (N, d) and C (d, N) complex; D (d,) real

``nu`` and ``theta`` are initialised on the ring r_min <= |lambda| <= r_max, arg(lambda) in
[0, max_phase] (the paper's exponential parametrisation and "ring init"). The layer is linear in x;
the block's MLP after it supplies the nonlinearity, as in the paper's deep LRU. The recurrence runs
through ``linear_scan`` on complex tensors (fp32 -> complex64, fp64 -> complex128; bf16/fp16 inputs
compute in complex64).

State: the complex hidden vector h, stored as its real view (B, N, 2): 2N numbers per sequence.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from ..mixer import Mixer
from ..ops.linear_rnn import linear_scan
from ..registry import register_mixer
from ..state import MixerState, can_update_in_place

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


@dataclasses.dataclass
class LRUState(MixerState):
    h: torch.Tensor  # (B, N, 2) real and imaginary parts of the complex hidden vector


@register_mixer("lru")
class LRU(Mixer):
    """LRU token mixer.

    Args:
        d_model: model width.
        d_state: number of complex state channels N (default d_model).
        r_min, r_max: ring init of |lambda| (0 <= r_min < r_max < 1).
        max_phase: init of arg(lambda) uniform in [0, max_phase].
    """

    test_variants = {"small_state_short_memory": {"d_state": 16, "r_min": 0.4, "r_max": 0.9, "max_phase": math.pi / 10}}

    def __init__(self, d_model: int, d_state: int | None = None, r_min: float = 0.9, r_max: float = 0.999, max_phase: float = 2 * math.pi):
        super().__init__(d_model)
        N = d_model if d_state is None else d_state
        if not isinstance(N, int) or N <= 0:
            raise ValueError(f"lru: d_state must be a positive int or None, got {d_state!r}")
        if not (0.0 <= r_min < r_max < 1.0):
            raise ValueError(f"lru: expected 0 <= r_min < r_max < 1, got r_min={r_min!r}, r_max={r_max!r}")
        if not max_phase > 0:
            raise ValueError(f"lru: max_phase must be > 0, got {max_phase!r}")
        self.d_state, self.r_min, self.r_max, self.max_phase = N, r_min, r_max, max_phase
        # ring init: |lambda|^2 uniform in [r_min^2, r_max^2], phase uniform in [0, max_phase]
        u1, u2 = torch.rand(N), torch.rand(N)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = torch.log(max_phase * u2.clamp_min(1e-4))
        self.nu_log = nn.Parameter(nu_log)  # (N,)
        self.theta_log = nn.Parameter(theta_log)  # (N,)
        mod = torch.exp(-torch.exp(nu_log))
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - mod**2)))  # (N,)
        self.B_re = nn.Parameter(torch.randn(N, d_model) / math.sqrt(2 * d_model))  # (N, D)
        self.B_im = nn.Parameter(torch.randn(N, d_model) / math.sqrt(2 * d_model))
        self.C_re = nn.Parameter(torch.randn(d_model, N) / math.sqrt(N))  # (D, N)
        self.C_im = nn.Parameter(torch.randn(d_model, N) / math.sqrt(N))
        self.D = nn.Parameter(torch.randn(d_model))  # (D,)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, r_min={self.r_min}, r_max={self.r_max}, max_phase={self.max_phase:.3g}"

    @staticmethod
    def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
        return dtype if dtype in _COMPLEX else torch.float32

    def _lambda(self, rdt: torch.dtype) -> torch.Tensor:
        """(N,) complex diagonal of the recurrence."""
        return torch.polar(torch.exp(-torch.exp(self.nu_log.to(rdt))), torch.exp(self.theta_log.to(rdt)))

    def _input(self, x: torch.Tensor, rdt: torch.dtype) -> torch.Tensor:
        """x (..., D) -> gamma * B x (..., N) complex (in ``rdt``: autocast would hand torch.complex bf16 parts)."""
        if torch.is_autocast_enabled(x.device.type):  # (entering the context costs time on every step)
            with torch.autocast(x.device.type, enabled=False):
                return self._input(x, rdt)
        x = x.to(rdt)
        gamma = torch.exp(self.gamma_log.to(rdt))  # (N,)
        return torch.complex(x @ self.B_re.to(rdt).T, x @ self.B_im.to(rdt).T) * gamma

    def _output(self, h: torch.Tensor, x: torch.Tensor, rdt: torch.dtype) -> torch.Tensor:
        """h (..., N) complex, x (..., D) -> Re(C h) + D x in x's dtype."""
        y = h.real @ self.C_re.to(rdt).T - h.imag @ self.C_im.to(rdt).T + self.D.to(rdt) * x.to(rdt)
        return y.to(x.dtype)

    def _run(self, x: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, D), h0 (B, N) complex or None -> y (B, L, D), h (B, L, N) complex."""
        rdt = self._compute_dtype(x.dtype)
        h = linear_scan(self._lambda(rdt)[None, None], self._input(x, rdt), h0)  # (B, L, N)
        return self._output(h, x, rdt), h

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)[0]

    def _prefill(self, x: torch.Tensor, state: LRUState):
        y, h = self._run(x, torch.view_as_complex(state.h))
        if can_update_in_place(state.h, h):
            state.h.copy_(torch.view_as_real(h[:, -1]))
        else:
            state.h = torch.view_as_real(h[:, -1]).to(state.h.dtype)
        return y, state

    def _step(self, x_t: torch.Tensor, state: LRUState):
        rdt = self._compute_dtype(x_t.dtype)
        h = torch.view_as_complex(state.h)  # (B, N), a view of the state
        u = self._input(x_t, rdt)  # (B, N)
        if can_update_in_place(state.h, u):
            h.mul_(self._lambda(rdt)).add_(u)
        else:
            h = self._lambda(rdt) * h + u
            state.h = torch.view_as_real(h).to(state.h.dtype)
        return self._output(h, x_t, rdt), state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> LRUState:
        device, dtype = self._state_defaults(device, dtype)
        return LRUState(h=torch.zeros(batch_size, self.d_state, 2, device=device, dtype=self._compute_dtype(dtype)))

    def state_size(self, seq_len: int) -> int:
        return 2 * self.d_state

    def flops_per_token(self, seq_len: int) -> float:
        D, N = self.d_model, self.d_state
        # B x: two real (N, D) matmuls; Re(C h): two real (D, N) matmuls; gamma scale 2N;
        # complex multiply-add 8N; D skip 2D
        return 2.0 * 2 * N * D + 2.0 * 2 * D * N + 10.0 * N + 2.0 * D

    def no_weight_decay(self) -> set[str]:
        """The recurrence parameters nu_log, theta_log, gamma_log and the skip D."""
        return super().no_weight_decay() | {"nu_log", "theta_log", "gamma_log", "D"}
