"""Sequential definition of the causal long convolution (the test oracle)."""
from __future__ import annotations

import torch

from .check import check_long_conv_args


def long_conv_ref(u, k, bias=None, history=None):
    """Causal depthwise convolution with a filter as long as the sequence, one output at a time.

    With w = cat(history, u) along time (P + L positions),

        y[b, c, t] = sum_{s=0}^{P+t} k[c, P + t - s] * w[b, c, s]  +  bias[c] * u[b, c, t]

    for t = 0 .. L-1: the outputs at the new positions P .. P+L-1.

    Args:
        u: (B, C, L) new inputs.
        k: (C, K) filter, K >= P + L; k[:, 0] multiplies the current input.
        bias: (C,) or None: the skip term ("D" in Hyena / H3).
        history: (B, C, P) or None: the inputs before u (P = 0 when None).
    Returns:
        y (B, C, L).
    """
    P = check_long_conv_args("long_conv_ref", u, k, bias, history)
    w = u if history is None else torch.cat([history.to(u.dtype), u], dim=2)  # (B, C, P + L)
    ys = []
    for t in range(u.shape[2]):
        n = P + t + 1
        y = (w[:, :, :n] * k[:, :n].flip(-1)).sum(-1)  # (B, C)
        if bias is not None:
            y = y + bias * u[:, :, t]
        ys.append(y)
    return torch.stack(ys, dim=2) if ys else u.new_zeros(u.shape)
