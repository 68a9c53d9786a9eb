"""The definition of the linear scan: a Python loop over time (the test oracle)."""
from __future__ import annotations

import torch

from .check import prepare


def linear_scan_ref(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t for t = 0..L-1, with h_{-1} = h0 (zeros when None).

    Args:
        a: (B, L, ...) decay, real or complex; broadcastable with b.
        b: (B, L, ...) input.
        h0: (B, ...) initial state, or None.
    Returns:
        h: (B, L, ...) in the promoted dtype of a, b (and h0).
    """
    a, b, h0 = prepare("linear_scan_ref", a, b, h0)
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0  # (B, ...)
    out = []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):  # unbind: one backward node, not L full-size ones
        h = a_t * h + b_t
        out.append(h)
    if not out:
        return b.clone()
    return torch.stack(out, dim=1)
