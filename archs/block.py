"""Block: pre-norm residual wrapper around one mixer and an optional MLP."""
from __future__ import annotations

import torch
from torch import nn

from .layers import GatedMLP, RMSNorm
from .mixer import Mixer
from .registry import build_mixer
from .short_conv import ShortConv
from .state import MixerState


class Block(nn.Module):
    """x + mixer(norm(x)), then x + mlp(norm(x)). Same prefill/step/init_state as a mixer.

    ``mixer`` is a built ``Mixer`` or a registered name (built with ``mixer_kwargs``);
    ``mlp`` is a gated MLP, ``"swiglu"``, ``"geglu"`` (exact GeLU) or ``"geglu_tanh"`` (tanh GeLU, as
    Gemma / RecurrentGemma), or ``None`` (mixer-only block, as in Mamba's original stack); ``mlp_bias``
    puts biases on its projections;
    ``short_conv`` (a kernel size) puts a short causal conv in front of the mixer (``ShortConv``);
    ``prenorm_eps`` is the eps of both pre-norms (HF Llama/Mamba checkpoints use 1e-5 or 1e-6; not
    ``eps`` or ``norm_eps``, which mixers take for themselves in ``mixer_kwargs``: mlstm, based);
    ``norm_unit_offset`` makes both pre-norms scale by (1 + weight) (Gemma), ``norm_bias`` gives them a bias.
    """

    MLP_ACTIVATIONS = {"swiglu": "silu", "geglu": "gelu", "geglu_tanh": "gelu_tanh"}

    def __init__(self, d_model: int, mixer: Mixer | str, mlp: str | None = "swiglu", mlp_hidden: int | None = None,
                 short_conv: int | None = None, prenorm_eps: float = 1e-6, mlp_bias: bool = False,
                 norm_unit_offset: bool = False, norm_bias: bool = False, **mixer_kwargs):
        super().__init__()
        if isinstance(mixer, str):
            mixer = build_mixer(mixer, d_model, **mixer_kwargs)
        elif mixer_kwargs:
            raise ValueError(f"Block: mixer_kwargs {sorted(mixer_kwargs)} given for an already-built mixer")
        if not isinstance(mixer, Mixer):
            raise TypeError(f"Block: mixer must be a Mixer or a registered name, got {type(mixer).__name__}")
        if mixer.d_model != d_model:
            raise ValueError(f"Block: mixer has d_model={mixer.d_model} but the block has d_model={d_model}")
        if mlp is not None and mlp not in self.MLP_ACTIVATIONS:
            raise ValueError(f"Block: unknown mlp {mlp!r}; expected one of {list(self.MLP_ACTIVATIONS)} or None")
        if short_conv is not None:
            mixer = ShortConv(mixer, short_conv)
        self.d_model = d_model
        norm = dict(eps=prenorm_eps, unit_offset=norm_unit_offset, bias=norm_bias)
        self.norm1 = RMSNorm(d_model, **norm)
        self.mixer = mixer
        self.norm2 = RMSNorm(d_model, **norm) if mlp else None
        self.mlp = GatedMLP(d_model, mlp_hidden, self.MLP_ACTIVATIONS[mlp], bias=mlp_bias) if mlp else None

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mlp is None else x + self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D)
        return self._mlp(x + self.mixer(self.norm1(x)))

    def prefill(self, x: torch.Tensor, state: MixerState | None = None):
        y, state = self.mixer.prefill(self.norm1(x), state)
        return self._mlp(x + y), state

    def step(self, x_t: torch.Tensor, state: MixerState):  # (B, D)
        y, state = self.mixer.step(self.norm1(x_t), state)
        return self._mlp(x_t + y), state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> MixerState:
        return self.mixer.init_state(batch_size, device=device, dtype=dtype, max_seq_len=max_seq_len)

    def state_size(self, seq_len: int) -> int:
        return self.mixer.state_size(seq_len)

    def flops_per_token(self, seq_len: int) -> float:
        return self.mixer.flops_per_token(seq_len) + (self.mlp.flops_per_token() if self.mlp else 0.0)
