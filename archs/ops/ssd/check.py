"""Argument checks for ssd (Mamba-2's state-space duality op)."""
from __future__ import annotations

import torch

from .._common import check_chunk_size, compute_dtype  # noqa: F401  (compute_dtype re-exported for ssd)
from .._common import shape_str as _shape


def check_ssd_args(op, x, dt, A, B, C, chunk_size=64, D=None, z=None, dt_bias=None, initial_states=None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{op}: x must have shape (b, l, h, p), got {_shape(x)}")
    b, l, h, p = x.shape
    if not isinstance(dt, torch.Tensor) or tuple(dt.shape) != (b, l, h):
        raise ValueError(f"{op}: dt must have shape (b, l, h) = {(b, l, h)}, got {_shape(dt)}")
    if not isinstance(A, torch.Tensor) or tuple(A.shape) != (h,):
        raise ValueError(f"{op}: A must have shape (h,) = ({h},), one decay per head, got {_shape(A)}")
    if not isinstance(B, torch.Tensor) or B.dim() != 4 or B.shape[0] != b or B.shape[1] != l:
        raise ValueError(f"{op}: B must have shape (b, l, g, n) = ({b}, {l}, g, n), got {_shape(B)}")
    g, n = B.shape[2], B.shape[3]
    if g < 1 or h % g != 0:
        raise ValueError(f"{op}: B has {g} groups, which does not divide h = {h} heads")
    if not isinstance(C, torch.Tensor) or tuple(C.shape) != tuple(B.shape):
        raise ValueError(f"{op}: C must have the shape of B (b, l, g, n) = {tuple(B.shape)}, got {_shape(C)}")
    check_chunk_size(op, chunk_size)
    if D is not None and (not isinstance(D, torch.Tensor) or tuple(D.shape) not in ((h,), (h, p))):
        raise ValueError(f"{op}: D must have shape (h,) = ({h},) or (h, p) = ({h}, {p}), got {_shape(D)}")
    if z is not None and (not isinstance(z, torch.Tensor) or tuple(z.shape) != (b, l, h, p)):
        raise ValueError(f"{op}: z must have the shape of x (b, l, h, p) = {(b, l, h, p)}, got {_shape(z)}")
    if dt_bias is not None and (not isinstance(dt_bias, torch.Tensor) or tuple(dt_bias.shape) != (h,)):
        raise ValueError(f"{op}: dt_bias must have shape (h,) = ({h},), got {_shape(dt_bias)}")
    if initial_states is not None and (not isinstance(initial_states, torch.Tensor) or tuple(initial_states.shape) != (b, h, p, n)):
        raise ValueError(f"{op}: initial_states must have shape (b, h, p, n) = {(b, h, p, n)}, got {_shape(initial_states)}")


def finish(y, x, z, D, ct, dtype_in):
    """y (b, l, h, p) -> y + D x, gated by silu(z), cast back to the input dtype."""
    import torch.nn.functional as F

    if D is not None:
        Dc = D.to(ct)
        y = y + x * (Dc[:, None] if Dc.dim() == 1 else Dc)
    if z is not None:
        y = y * F.silu(z.to(ct))
    return y.to(dtype_in)
