"""Small building blocks shared by blocks and mixers: RMSNorm, gated RMSNorm, gated MLP (SwiGLU, GeGLU)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """y = x / rms(x) * weight (+ bias), over the last dim; computed in fp32 for low-precision inputs.

    ``unit_offset``: the scale is (1 + weight), weight initialised to 0 (Gemma / RecurrentGemma), so weight
    decay pulls the scale towards 1. ``bias``: a learned shift after the scale (xLSTM with use_bias).
    """

    def __init__(self, dim: int, eps: float = 1e-6, unit_offset: bool = False, bias: bool = False):
        super().__init__()
        self.eps, self.unit_offset = eps, bool(unit_offset)
        self.weight = nn.Parameter(torch.zeros(dim) if unit_offset else torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def scale(self) -> torch.Tensor:
        return self.weight + 1.0 if self.unit_offset else self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        y = y.to(x.dtype) * self.scale()
        return y if self.bias is None else y + self.bias


class GatedRMSNorm(RMSNorm):
    """RMSNorm(x * silu(z)) — the output norm of Mamba-2 / GLA style mixers.

    ``group_size`` (default: dim) normalises each consecutive group of that many channels on its own,
    as Mamba-2 does (mamba_ssm ``RMSNormGated(group_size=d_inner // ngroups)``); the weight spans dim.
    """

    def __init__(self, dim: int, eps: float = 1e-6, group_size: int | None = None):
        super().__init__(dim, eps)
        group_size = dim if group_size is None else group_size
        if not isinstance(group_size, int) or group_size < 1 or dim % group_size:
            raise ValueError(f"GatedRMSNorm: group_size must be a positive int dividing dim={dim}, got {group_size!r}")
        self.group_size = group_size

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if z is not None:
            x = x * F.silu(z)
        if self.group_size == x.shape[-1]:
            return super().forward(x)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        xg = xf.unflatten(-1, (-1, self.group_size))  # (..., G, group_size)
        y = (xg * torch.rsqrt(xg.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2)
        return y.to(x.dtype) * self.scale()


def swiglu_hidden(d_model: int, ratio: float = 8 / 3, multiple_of: int = 8) -> int:
    h = int(ratio * d_model)
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


#: gated-MLP activations by name: SwiGLU (Shazeer 2020), GeGLU with exact or tanh-approximated GeLU
#: (Gemma / RecurrentGemma use the tanh form, HF's "gelu_pytorch_tanh")
GATED_ACTIVATIONS = {
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
}


class GatedMLP(nn.Module):
    """Gated MLP: W2(act(W1 x) * W3 x), W1 and W3 stored as one matrix ``w13`` = [W1; W3].

    ``activation``: a name in ``GATED_ACTIVATIONS`` ("silu": SwiGLU, "gelu" / "gelu_tanh": GeGLU);
    ``bias``: biases on all three projections (RecurrentGemma, xLSTM with use_bias).
    """

    def __init__(self, d_model: int, hidden: int | None = None, activation: str = "silu", bias: bool = False):
        super().__init__()
        if activation not in GATED_ACTIVATIONS:
            raise ValueError(f"GatedMLP: unknown activation {activation!r}; expected one of {sorted(GATED_ACTIVATIONS)}")
        self.hidden = hidden or swiglu_hidden(d_model)
        self.activation = activation
        self.act = GATED_ACTIVATIONS[activation]
        self.w13 = nn.Linear(d_model, 2 * self.hidden, bias=bias)
        self.w2 = nn.Linear(self.hidden, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w13(x).chunk(2, dim=-1)
        return self.w2(self.act(a) * b)

    def flops_per_token(self) -> float:
        return 2.0 * 3 * self.w2.in_features * self.w2.out_features

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, activation={self.activation}"


SwiGLU = GatedMLP  # the default activation is silu
