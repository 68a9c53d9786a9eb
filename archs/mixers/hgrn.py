"""HGRN: a gated linear RNN whose forget gate has a lower bound.

Qin, Yang & Zhong 2023, "Hierarchically Gated Recurrent Neural Network for Sequence Modeling"
(NeurIPS). Per channel (real-valued recurrence; the paper also has a complex variant):

    f_t = lb + (1 - lb) * sigmoid(W_f x_t)          forget gate, >= lb
    i_t = silu(W_i x_t)                              input
    h_t = f_t * h_{t-1} + (1 - f_t) * i_t            (``linear_scan``)
    y_t = W_o RMSNorm(h_t * silu(W_g x_t))           output gate, then norm

The paper raises the lower bound ``lb`` with depth (lower layers forget fast, upper layers
slowly); here it is a constructor argument with a fixed default, since the language model passes
the same kwargs to every layer of one mixer name.

State: the hidden vector h, (B, d_model).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import GatedRMSNorm
from ..mixer import Mixer
from ..ops.linear_rnn import linear_scan
from ..registry import register_mixer
from ..state import MixerState, can_update_in_place


@dataclasses.dataclass
class HGRNState(MixerState):
    h: torch.Tensor  # (B, D) hidden vector


@register_mixer("hgrn")
class HGRN(Mixer):
    """HGRN token mixer (real-valued).

    Args:
        d_model: model width (= recurrent width).
        lower_bound: lower bound of the forget gate, in [0, 1).
        norm_eps: eps of the gated output RMSNorm.
    """

    test_variants = {"lower_bound": {"lower_bound": 0.5}}

    def __init__(self, d_model: int, lower_bound: float = 0.0, norm_eps: float = 1e-6):
        super().__init__(d_model)
        if not isinstance(lower_bound, (int, float)) or not 0.0 <= lower_bound < 1.0:
            raise ValueError(f"hgrn: lower_bound must be a number in [0, 1), got {lower_bound!r}")
        self.lower_bound = float(lower_bound)
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=False)  # -> input, forget, output gate
        self.norm = GatedRMSNorm(d_model, eps=norm_eps)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, lower_bound={self.lower_bound}"

    def _gates(self, x: torch.Tensor):
        """x (..., D) -> decay f, input (1 - f) * i, output gate g; each (..., D)."""
        i, f, g = self.in_proj(x).chunk(3, dim=-1)
        lb = self.lower_bound
        f = lb + (1.0 - lb) * torch.sigmoid(f)
        return f, (1.0 - f) * F.silu(i), g

    def _out(self, h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.o_proj(self.norm(h, g))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        f, b, g = self._gates(x)  # (B, L, D)
        return self._out(linear_scan(f, b), g)

    def _prefill(self, x: torch.Tensor, state: HGRNState):
        f, b, g = self._gates(x)
        h = linear_scan(f, b, state.h)  # (B, L, D)
        if can_update_in_place(state.h, h):
            state.h.copy_(h[:, -1])
        else:
            state.h = h[:, -1].to(state.h.dtype)
        return self._out(h, g), state

    def _step(self, x_t: torch.Tensor, state: HGRNState):
        f, b, g = self._gates(x_t)  # (B, D)
        if can_update_in_place(state.h, b):
            state.h.mul_(f).add_(b)
        else:
            state.h = (f * state.h + b).to(state.h.dtype)
        return self._out(state.h, g), state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> HGRNState:
        device, dtype = self._state_defaults(device, dtype)
        return HGRNState(h=torch.zeros(batch_size, self.d_model, device=device, dtype=dtype))

    def state_size(self, seq_len: int) -> int:
        return self.d_model

    def flops_per_token(self, seq_len: int) -> float:
        D = self.d_model
        proj = 2.0 * D * 3 * D + 2.0 * D * D
        # gates (sigmoid, bound, silu, 1 - f, product) ~ 8D; recurrence 2D; gate + norm ~ 8D
        return proj + 18.0 * D
