"""minGRU: the minimal GRU whose gates depend only on the input, so it trains in parallel.

Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?".

    z_t  = sigmoid(W_z x_t)                      update gate
    h~_t = g(W_h x_t),  g(v) = v + 1/2 (v >= 0), sigmoid(v) (v < 0)   (positive candidate)
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t      (``linear_scan`` with a = 1 - z, b = z h~)
    y_t  = W_o h_t

The paper trains with a log-space scan (cumulative logsumexp) to avoid the underflow of a
cumulative product divided out again; ``linear_scan`` never divides (it re-associates products
only), so the plain form is already stable and matches the step-by-step recurrence exactly.

State: the hidden vector h, (B, expand * d_model).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..mixer import Mixer
from ..ops.linear_rnn import linear_scan
from ..registry import register_mixer
from ..state import MixerState, can_update_in_place


@dataclasses.dataclass
class MinGRUState(MixerState):
    h: torch.Tensor  # (B, H) hidden vector, H = expand * d_model


def _g(v: torch.Tensor) -> torch.Tensor:
    """The paper's positive activation: v + 1/2 for v >= 0, sigmoid(v) below (continuous at 0)."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


@register_mixer("mingru")
class MinGRU(Mixer):
    """minGRU token mixer.

    Args:
        d_model: model width.
        expand: hidden width = round(expand * d_model) (the paper's expansion factor).
    """

    test_variants = {"expand2": {"expand": 2.0}}

    def __init__(self, d_model: int, expand: float = 1.0):
        super().__init__(d_model)
        if not isinstance(expand, (int, float)) or expand <= 0 or round(expand * d_model) < 1:
            raise ValueError(f"mingru: expand must be a positive number (hidden = expand * d_model >= 1), got {expand!r}")
        self.expand = float(expand)
        self.hidden = int(round(expand * d_model))
        self.in_proj = nn.Linear(d_model, 2 * self.hidden, bias=False)  # -> gate logits, candidate
        self.out_proj = nn.Linear(self.hidden, d_model, bias=False)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}"

    def _coeffs(self, x: torch.Tensor):
        """x (..., D) -> a = 1 - z, b = z * g(h~); each (..., H)."""
        k, v = self.in_proj(x).chunk(2, dim=-1)
        return torch.sigmoid(-k), torch.sigmoid(k) * _g(v)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self._coeffs(x)  # (B, L, H)
        return self.out_proj(linear_scan(a, b))

    def _prefill(self, x: torch.Tensor, state: MinGRUState):
        a, b = self._coeffs(x)
        h = linear_scan(a, b, state.h)  # (B, L, H)
        if can_update_in_place(state.h, h):
            state.h.copy_(h[:, -1])
        else:
            state.h = h[:, -1].to(state.h.dtype)
        return self.out_proj(h), state

    def _step(self, x_t: torch.Tensor, state: MinGRUState):
        a, b = self._coeffs(x_t)  # (B, H)
        if can_update_in_place(state.h, b):
            state.h.mul_(a).add_(b)
        else:
            state.h = (a * state.h + b).to(state.h.dtype)
        return self.out_proj(state.h), state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> MinGRUState:
        device, dtype = self._state_defaults(device, dtype)
        return MinGRUState(h=torch.zeros(batch_size, self.hidden, device=device, dtype=dtype))

    def state_size(self, seq_len: int) -> int:
        return self.hidden

    def flops_per_token(self, seq_len: int) -> float:
        D, H = self.d_model, self.hidden
        # projections; two sigmoids, g, product ~ 8H; recurrence 2H
        return 2.0 * D * 2 * H + 2.0 * H * D + 10.0 * H
