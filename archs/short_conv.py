"""ShortConv: a short causal depthwise convolution in front of any mixer.

Zoology (Arora et al. 2023) puts one in front of every sequence mixer it compares; Mamba,
Mamba-2 and DeltaNet carry one inside. It hands each token a mix of its last few inputs, which
is the "previous token" feature associative recall needs; without it a model has to learn that
feature first (see ``arch=attention_conv`` and ``python -m eval compare compare=recall``). Wrapping makes
"is it the conv or the mixer?" one setting for every architecture:

    ShortConv(build_mixer("gla", 64), conv_size=4)          # a Mixer like any other
    Block(64, "gla", short_conv=4)                          # the same, inside a block
    python -m train arch=gla arch.short_conv=4              # from a config

State: the conv window (the last ``conv_size - 1`` inputs, (B, D, conv_size - 1)) and the inner
mixer's state.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .mixer import Mixer
from .ops.conv1d import causal_conv1d, causal_conv1d_step_state
from .state import MixerState


def near_identity_conv_weight(channels: int, conv_size: int, noise: float = 0.1) -> torch.Tensor:
    """(channels, conv_size) depthwise conv weight: 1 on the current token plus uniform noise in
    [-noise, noise] everywhere, so a model with the conv starts close to the one without it and
    every tap gets a gradient."""
    weight = torch.empty(channels, conv_size).uniform_(-noise, noise)
    weight[:, -1] += 1.0
    return weight


def causal_conv_tokens(x: torch.Tensor, weight: torch.Tensor, window: torch.Tensor | None = None):
    """Causal depthwise conv over token rows: x (B, L, C), weight (C, W) -> (y (B, L, C), window).

    Without ``window`` the sequence starts at position 0 and the returned window is None. With
    ``window`` (B, C, W-1), the last inputs before x, the conv continues from it and returns the
    new window (one token with autograd off: ``window`` updated in place). y is contiguous: SDPA and the scans
    run several times slower on the strided view the transposes would leave.
    """
    if window is None:
        y = causal_conv1d(x.transpose(1, 2), weight)  # (B, C, L)
    elif x.shape[1] == 1:  # decode
        y, window = causal_conv1d_step_state(x[:, 0], window, weight)
        y = y[:, :, None]  # (B, C, 1)
    else:
        y, new = causal_conv1d(x.transpose(1, 2), weight, initial_states=window, return_final_states=True)
        window = new.to(window.dtype)
    return y.transpose(1, 2).contiguous(), window


@dataclasses.dataclass
class ShortConvState(MixerState):
    conv: torch.Tensor  # (B, D, conv_size - 1) the last inputs
    inner: MixerState  # the wrapped mixer's state

    def tensors(self) -> list[torch.Tensor]:
        return [self.conv, *self.inner.tensors()]

    def numel_per_sequence(self) -> int:
        return self.conv[0].numel() + self.inner.numel_per_sequence()

    def nbytes_per_sequence(self) -> int:
        return self.conv[0].numel() * self.conv.element_size() + self.inner.nbytes_per_sequence()


class ShortConv(Mixer):
    """y = mixer(conv(x)) with a causal depthwise conv of kernel ``conv_size`` over the D channels.

    The conv starts near the identity (weight 1 on the current token, small noise elsewhere), so a
    wrapped model starts as the plain one and learns how much of the past tokens to mix in.
    """

    def __init__(self, mixer: Mixer, conv_size: int = 4):
        if not isinstance(mixer, Mixer):
            raise TypeError(f"ShortConv: mixer must be a Mixer, got {type(mixer).__name__}")
        if not isinstance(conv_size, int) or isinstance(conv_size, bool) or conv_size < 2:
            raise ValueError(f"ShortConv: conv_size must be an int >= 2, got {conv_size!r}")
        super().__init__(mixer.d_model)
        self.mixer, self.conv_size = mixer, conv_size
        self.name = f"{mixer.name}+short_conv"
        self.max_seq_len = mixer.max_seq_len  # the wrapped mixer's limit (None: unbounded)
        self.conv_weight = nn.Parameter(near_identity_conv_weight(mixer.d_model, conv_size))  # (D, W)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, conv_size={self.conv_size}"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D)
        return self.mixer(causal_conv_tokens(x, self.conv_weight)[0])

    def _prefill(self, x: torch.Tensor, state: ShortConvState):
        xc, state.conv = causal_conv_tokens(x, self.conv_weight, state.conv)
        y, state.inner = self.mixer.prefill(xc, state.inner)
        return y, state

    def _step(self, x_t: torch.Tensor, state: ShortConvState):  # (B, D)
        xc, state.conv = causal_conv_tokens(x_t[:, None], self.conv_weight, state.conv)
        y, state.inner = self.mixer.step(xc[:, 0], state.inner)
        return y, state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> ShortConvState:
        device, dtype = self._state_defaults(device, dtype)
        return ShortConvState(
            conv=torch.zeros(batch_size, self.d_model, self.conv_size - 1, device=device, dtype=dtype),
            inner=self.mixer.init_state(batch_size, device=device, dtype=dtype, max_seq_len=max_seq_len),
        )

    def trim_state(self, state: ShortConvState, keep_tokens: int) -> ShortConvState:
        state.inner = self.mixer.trim_state(state.inner, keep_tokens)
        return state

    def state_size(self, seq_len: int) -> int:
        return self.d_model * (self.conv_size - 1) + self.mixer.state_size(seq_len)

    def flops_per_token(self, seq_len: int) -> float:
        return 2.0 * self.d_model * self.conv_size + self.mixer.flops_per_token(seq_len)
