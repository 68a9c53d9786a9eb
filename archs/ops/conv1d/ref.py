"""Sequential definition of the causal depthwise 1-D convolution (the test oracle)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .check import check_conv_args


def causal_conv1d_ref(x, weight, bias=None, activation=None, initial_states=None, return_final_states=False):
    """Causal depthwise convolution, one time step at a time.

    y[b, d, t] = act(bias[d] + sum_{k<W} weight[d, k] * x[b, d, t - (W-1) + k]), where positions
    before 0 read ``initial_states`` (the last W-1 inputs of a previous segment) or zeros.

    Args:
        x: (B, D, L) input.
        weight: (D, W) one filter per channel; weight[:, -1] multiplies the current input.
        bias: (D,) or None.
        activation: None or "silu" (alias "swish").
        initial_states: (B, D, W-1) or None: inputs at positions -(W-1) .. -1 (extension, as
            causal_conv1d_fn's ``initial_states``).
        return_final_states: also return the last W-1 inputs (B, D, W-1), to continue later.
    Returns:
        y (B, D, L) [, final_states (B, D, W-1)].
    """
    check_conv_args("causal_conv1d_ref", x, weight, bias, activation, initial_states)
    B, D, L = x.shape
    W = weight.shape[1]
    if initial_states is None:
        initial_states = x.new_zeros(B, D, W - 1)
    window = initial_states.to(x.dtype)  # (B, D, W-1) the previous W-1 inputs
    ys = []
    for t in range(L):
        full = torch.cat([window, x[:, :, t : t + 1]], dim=2)  # (B, D, W)
        y = (full * weight).sum(-1)  # (B, D)
        if bias is not None:
            y = y + bias
        ys.append(y)
        window = full[:, :, 1:]
    y = torch.stack(ys, dim=2) if ys else x.new_zeros(B, D, 0)  # (B, D, L)
    if activation is not None:
        y = F.silu(y)
    return (y, window) if return_final_states else y
