"""The mixer interface: every sequence mixer (attention, SSMs, retention, RNNs) is one of these.

Public methods check their inputs and delegate to the underscored ones that each mixer
implements, so every architecture raises the same clear errors:

    forward(x)              x: (B, L, D) -> y: (B, L, D); causal; training path
    prefill(x, state=None)  -> (y, state); continues from ``state`` (None = empty)
    step(x_t, state)        x_t: (B, D) -> (y_t, state); one token
    init_state(batch_size, device=None, dtype=None, max_seq_len=None) -> state
    state_size(seq_len)     numbers held per sequence after seq_len tokens
    flops_per_token(seq_len) analytic forward FLOPs per token, averaged over seq_len
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .state import MixerState


class Mixer(nn.Module):
    #: registry name, set by ``@register_mixer``
    name: ClassVar[str] = "?"
    #: extra constructor kwargs the generic test suite also runs (valid at d_model=32),
    #: e.g. ``{"gqa": {"n_heads": 4, "n_kv_heads": 2}}``; the default config is always run.
    test_variants: ClassVar[dict[str, dict]] = {}

    def __init__(self, d_model: int):
        super().__init__()
        if not isinstance(d_model, int) or d_model <= 0:
            raise ValueError(f"{type(self).__name__}: d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model

    # ---- public, checked ----------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_seq(x, "forward")
        return self._forward(x)

    def prefill(self, x: torch.Tensor, state: MixerState | None = None) -> tuple[torch.Tensor, MixerState]:
        self._check_seq(x, "prefill")
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        else:
            self._check_state(state, x.shape[0], "prefill")
        if x.shape[1] == 0:
            return x, state
        return self._prefill(x, state)

    def step(self, x_t: torch.Tensor, state: MixerState | None) -> tuple[torch.Tensor, MixerState]:
        if state is None:
            raise ValueError(
                f"{self.name}.step() needs a state: call init_state(batch_size) or prefill() first"
            )
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.d_model:
            raise ValueError(
                f"{self.name}.step expects x_t of shape (B, {self.d_model}), got {_shape(x_t)}"
            )
        self._check_state(state, x_t.shape[0], "step")
        return self._step(x_t, state)

    # ---- to implement --------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, L, D)
        raise NotImplementedError

    def _prefill(self, x: torch.Tensor, state: MixerState) -> tuple[torch.Tensor, MixerState]:
        raise NotImplementedError

    def _step(self, x_t: torch.Tensor, state: MixerState) -> tuple[torch.Tensor, MixerState]:
        raise NotImplementedError

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> MixerState:
        raise NotImplementedError

    def state_size(self, seq_len: int) -> int:
        """Numbers held per sequence after ``seq_len`` tokens (analytic)."""
        raise NotImplementedError

    def flops_per_token(self, seq_len: int) -> float:
        """Analytic forward FLOPs per token (multiply-add = 2), averaged over ``seq_len`` positions."""
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """Names (as in ``self.named_parameters()``) of parameters the optimizer must not decay:
        A_log, D, dt_bias, decay and bonus parameters, norm weights. Default: every parameter
        marked ``p._no_weight_decay = True`` (mamba_ssm's convention); mixers mark or override."""
        return {n for n, p in self.named_parameters() if getattr(p, "_no_weight_decay", False)}

    # ---- helpers -------------------------------------------------------------------------
    def _state_defaults(self, device, dtype):
        p = next(self.parameters(), None)
        device = device if device is not None else (p.device if p is not None else None)
        dtype = dtype if dtype is not None else (p.dtype if p is not None else torch.get_default_dtype())
        return device, dtype

    def _check_seq(self, x, where: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[2] != self.d_model:
            raise ValueError(f"{self.name}.{where} expects x of shape (B, L, {self.d_model}), got {_shape(x)}")

    def _check_state(self, state, batch: int, where: str) -> None:
        if not isinstance(state, MixerState):
            raise TypeError(f"{self.name}.{where}: state must be a MixerState from init_state()/prefill(), got {type(state).__name__}")
        if state.batch_size != batch:
            raise ValueError(f"{self.name}.{where}: state holds batch {state.batch_size} but input has batch {batch}")

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}"


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def check_divisible(owner: str, what: str, value: int, by_what: str, by: int) -> None:
    """Raise a clear error when ``value`` (e.g. d_model) is not divisible by ``by`` (e.g. n_heads)."""
    if by <= 0 or value % by != 0:
        raise ValueError(f"{owner}: {what}={value} must be divisible by {by_what}={by}")
