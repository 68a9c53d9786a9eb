"""LSTM: the classic gated RNN baseline, wrapping ``nn.LSTM`` (cuDNN on GPU).

Hochreiter & Schmidhuber 1997, "Long Short-Term Memory" (with the forget gate of Gers et al. 2000,
as in ``nn.LSTM``). Its recurrence is nonlinear in h, so it runs step by step in time; it is here as
the baseline the linear RNNs are measured against.

State: the hidden and cell vectors h, c, each (B, hidden) (batch first; transposed to nn.LSTM's
(num_layers=1, B, hidden) at the call).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..mixer import Mixer
from ..registry import register_mixer
from ..state import MixerState, can_update_in_place


@dataclasses.dataclass
class LSTMState(MixerState):
    h: torch.Tensor  # (B, H) hidden vector
    c: torch.Tensor  # (B, H) cell vector


@register_mixer("lstm")
class LSTM(Mixer):
    """One-layer LSTM token mixer.

    Args:
        d_model: model width.
        hidden: LSTM hidden width (default d_model); an output projection maps it back to
            d_model when it differs.
    """

    test_variants = {"hidden48": {"hidden": 48}}

    def __init__(self, d_model: int, hidden: int | None = None):
        super().__init__(d_model)
        hidden = d_model if hidden is None else hidden
        if not isinstance(hidden, int) or hidden <= 0:
            raise ValueError(f"lstm: hidden must be a positive int or None, got {hidden!r}")
        self.hidden = hidden
        self.lstm = nn.LSTM(d_model, hidden, num_layers=1, batch_first=True)
        self.out_proj = nn.Linear(hidden, d_model, bias=False) if hidden != d_model else None

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}"

    def _out(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.out_proj is None else self.out_proj(y)

    def _run(self, x: torch.Tensor, state: LSTMState) -> torch.Tensor:
        """x (B, L, D) from ``state`` -> y (B, L, H); updates the state (in place with autograd off)."""
        y, (h, c) = self.lstm(x, (state.h[None].contiguous(), state.c[None].contiguous()))  # h, c (1, B, H)
        if can_update_in_place(state.h, state.c, h, c):
            state.h.copy_(h[0])
            state.c.copy_(c[0])
        else:
            state.h, state.c = h[0].to(state.h.dtype), c[0].to(state.c.dtype)
        return y

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._out(self.lstm(x)[0])

    def _prefill(self, x: torch.Tensor, state: LSTMState):
        return self._out(self._run(x, state)), state

    def _step(self, x_t: torch.Tensor, state: LSTMState):
        return self._out(self._run(x_t[:, None], state)[:, 0]), state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> LSTMState:
        device, dtype = self._state_defaults(device, dtype)
        z = lambda: torch.zeros(batch_size, self.hidden, device=device, dtype=dtype)  # noqa: E731
        return LSTMState(h=z(), c=z())

    def state_size(self, seq_len: int) -> int:
        return 2 * self.hidden

    def flops_per_token(self, seq_len: int) -> float:
        D, H = self.d_model, self.hidden
        gates = 2.0 * 4 * H * (D + H) + 4.0 * 2 * H  # input and recurrent matmuls + both biases
        cell = 10.0 * H  # 3 sigmoids, 2 tanh, 3 products, 1 sum (one each per channel, roughly)
        proj = 2.0 * H * D if self.out_proj is not None else 0.0
        return gates + cell + proj
