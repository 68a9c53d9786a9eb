"""Argument checks shared by the causal conv1d forms: clear errors naming the bad value."""
from __future__ import annotations

import torch

from .._common import shape_str


def check_activation(op: str, activation) -> None:
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"{op}: activation must be None, 'silu' or 'swish', got {activation!r}")


def check_conv_args(op: str, x, weight, bias, activation, initial_states=None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"{op}: x must have shape (B, D, L), got {shape_str(x)}")
    B, D, _ = x.shape
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[0] != D or weight.shape[1] < 1:
        raise ValueError(f"{op}: weight must have shape (D, W) = ({D}, W) with W >= 1 for x of shape {shape_str(x)}, got {shape_str(weight)}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (D,)):
        raise ValueError(f"{op}: bias must have shape (D,) = ({D},), got {shape_str(bias)}")
    check_activation(op, activation)
    W = weight.shape[1]
    if initial_states is not None and (not isinstance(initial_states, torch.Tensor) or tuple(initial_states.shape) != (B, D, W - 1)):
        raise ValueError(f"{op}: initial_states must have shape (B, D, W-1) = ({B}, {D}, {W - 1}), got {shape_str(initial_states)}")


def check_step_args(op: str, x_t, conv_state, weight, bias, activation) -> None:
    if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2:
        raise ValueError(f"{op}: x_t must have shape (B, D), got {shape_str(x_t)}")
    B, D = x_t.shape
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[0] != D:
        raise ValueError(f"{op}: weight must have shape (D, W) = ({D}, W), got {shape_str(weight)}")
    W = weight.shape[1]
    if (not isinstance(conv_state, torch.Tensor) or conv_state.dim() != 3 or conv_state.shape[:2] != (B, D)
            or conv_state.shape[2] < W - 1):
        raise ValueError(f"{op}: conv_state must have shape (B, D, S) = ({B}, {D}, S) with S >= W-1 = {W - 1}, got {shape_str(conv_state)}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (D,)):
        raise ValueError(f"{op}: bias must have shape (D,) = ({D},), got {shape_str(bias)}")
    check_activation(op, activation)
