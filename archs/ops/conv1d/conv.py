"""Fast pure-PyTorch causal depthwise conv (one grouped ``F.conv1d``) and its one-token step."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .check import check_conv_args, check_step_args


def causal_conv1d_torch(x, weight, bias=None, activation=None, initial_states=None, return_final_states=False):
    """Same contract as ``causal_conv1d_ref``: x (B, D, L), weight (D, W) -> y (B, D, L) [, (B, D, W-1)]."""
    check_conv_args("causal_conv1d", x, weight, bias, activation, initial_states)
    B, D, L = x.shape
    W = weight.shape[1]
    if initial_states is None:
        xp = F.pad(x, (W - 1, 0))  # (B, D, W-1+L)
    else:
        xp = torch.cat([initial_states.to(x.dtype), x], dim=2)  # (B, D, W-1+L)
    if L == 0:
        y = x.new_zeros(B, D, 0)
    else:
        y = F.conv1d(xp, weight.unsqueeze(1).to(x.dtype), bias, groups=D)  # (B, D, L)
    if activation is not None:
        y = F.silu(y)
    if return_final_states:
        return y, xp[:, :, xp.shape[2] - (W - 1):].clone()  # (B, D, W-1)
    return y


def causal_conv1d_step_torch(x_t, conv_state, weight, bias=None, activation=None):
    """One token: x_t (B, D); conv_state (B, D, S), S >= W-1, the last S inputs (updated in place).

    Returns y_t (B, D). After the call ``conv_state[:, :, -1] == x_t``.
    """
    check_step_args("causal_conv1d_step", x_t, conv_state, weight, bias, activation)
    W = weight.shape[1]
    x_t = x_t.to(conv_state.dtype)
    window = torch.cat([conv_state[:, :, conv_state.shape[2] - (W - 1):], x_t[:, :, None]], dim=2)  # (B, D, W)
    y = (window * weight).sum(-1)  # (B, D)
    if bias is not None:
        y = y + bias
    if conv_state.shape[2] > 0:
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=2))
        conv_state[:, :, -1] = x_t
    return F.silu(y) if activation is not None else y
