"""Argument checks of the long convolution: clear errors naming the bad value."""
from __future__ import annotations

import torch


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def check_long_conv_args(op: str, u, k, bias=None, history=None) -> int:
    """Validate u (B, C, L), k (C, >= P + L), bias (C,), history (B, C, P); returns P."""
    if not isinstance(u, torch.Tensor) or u.dim() != 3:
        raise ValueError(f"{op}: u must have shape (B, C, L), got {_shape(u)}")
    B, C, L = u.shape
    P = 0
    if history is not None:
        if not isinstance(history, torch.Tensor) or history.dim() != 3 or tuple(history.shape[:2]) != (B, C):
            raise ValueError(f"{op}: history must have shape (B, C, P) = ({B}, {C}, P), got {_shape(history)}")
        P = history.shape[2]
    if not isinstance(k, torch.Tensor) or k.dim() != 2 or k.shape[0] != C:
        raise ValueError(f"{op}: k must have shape (C, K) = ({C}, K), got {_shape(k)}")
    if k.shape[1] < P + L:
        raise ValueError(f"{op}: the filter k has {k.shape[1]} taps but {P} history + {L} new positions need {P + L}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (C,)):
        raise ValueError(f"{op}: bias must have shape (C,) = ({C},), got {_shape(bias)}")
    return P
