"""Input validation shared by ``linear_scan`` and ``linear_scan_ref``."""
from __future__ import annotations

import torch


def prepare(where: str, a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None):
    """Check and broadcast the inputs.

    Returns (a, b, h0) with a, b of one common shape (B, L, *F) and dtype (real floating or
    complex), and h0 of shape (B, *F) or None. Broadcasting goes through autograd, so
    gradients of broadcast inputs are reduced back to their own shapes.
    """
    for nm, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {nm} must be a tensor, got {type(t).__name__}")
    if h0 is not None and not isinstance(h0, torch.Tensor):
        raise TypeError(f"{where}: h0 must be a tensor or None, got {type(h0).__name__}")
    dtype = torch.promote_types(a.dtype, b.dtype)
    if h0 is not None:
        dtype = torch.promote_types(dtype, h0.dtype)
    if not (dtype.is_floating_point or dtype.is_complex):
        raise ValueError(f"{where}: expected floating or complex a, b, h0; got dtypes a={a.dtype}, b={b.dtype}"
                         + (f", h0={h0.dtype}" if h0 is not None else ""))
    shape = _broadcast(a.shape, b.shape)
    if shape is None:
        raise ValueError(f"{where}: a of shape {tuple(a.shape)} and b of shape {tuple(b.shape)} do not broadcast; "
                         "expected both (B, L, ...) with broadcastable dims") from None
    if len(shape) < 2:
        raise ValueError(f"{where}: expected a, b of shape (B, L, ...) with at least 2 dims, got a {tuple(a.shape)}, b {tuple(b.shape)}")
    a, b = torch.broadcast_tensors(a.to(dtype), b.to(dtype))
    if h0 is not None:
        want = (shape[0],) + tuple(shape[2:])
        if h0.dim() != len(want) or _broadcast(h0.shape, want) != want:
            raise ValueError(f"{where}: h0 has shape {tuple(h0.shape)}; expected (B, ...) = {want} "
                             f"(a, b broadcast to {tuple(shape)})")
        h0 = h0.to(dtype).expand(want)
    return a, b, h0


def _broadcast(s1, s2) -> tuple[int, ...] | None:
    """The broadcast of two shapes, or None when they do not broadcast.

    (``torch.broadcast_shapes`` would do, but its first call costs seconds of imports.)
    """
    n = max(len(s1), len(s2))
    s1, s2 = (1,) * (n - len(s1)) + tuple(s1), (1,) * (n - len(s2)) + tuple(s2)
    out = []
    for x, y in zip(s1, s2):
        if x != y and 1 not in (x, y):
            return None
        out.append(y if x == 1 else x)
    return tuple(out)
