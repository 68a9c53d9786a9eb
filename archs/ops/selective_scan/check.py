"""Argument checks for selective_scan: clear errors naming the bad value and the expected shape."""
from __future__ import annotations

import torch

from .._common import shape_str


def check_selective_scan_args(op, u, delta, A, B, C, D=None, z=None, delta_bias=None, initial_state=None) -> None:
    """Raise ValueError unless the shapes are those of ``selective_scan_fn`` (see the package docstring)."""
    if not isinstance(u, torch.Tensor) or u.dim() != 3:
        raise ValueError(f"{op}: u must have shape (b, d, l), got {shape_str(u)}")
    b, d, l = u.shape
    if not isinstance(delta, torch.Tensor) or tuple(delta.shape) != (b, d, l):
        raise ValueError(f"{op}: delta must have the shape of u (b, d, l) = {(b, d, l)}, got {shape_str(delta)}")
    if not isinstance(A, torch.Tensor) or A.dim() != 2:
        raise ValueError(f"{op}: A must have shape (d, n) = ({d}, n), got {shape_str(A)}")
    if A.is_complex():
        raise ValueError(f"{op}: complex A is not supported; expected a real A of shape ({d}, n)")
    if A.shape[0] != d:
        raise ValueError(f"{op}: A has {A.shape[0]} channels but u has {d}; expected A of shape (d, n) = ({d}, n)")
    n = A.shape[1]
    for name, M in (("B", B), ("C", C)):
        if not isinstance(M, torch.Tensor) or M.dim() not in (3, 4):
            raise ValueError(f"{op}: {name} must have shape (b, n, l) = ({b}, {n}, {l}) or (b, g, n, l), got {shape_str(M)}")
        if M.dim() == 3 and tuple(M.shape) != (b, n, l):
            raise ValueError(f"{op}: {name} must have shape (b, n, l) = ({b}, {n}, {l}), got {shape_str(M)}")
        if M.dim() == 4:
            g = M.shape[1]
            if M.shape[0] != b or M.shape[2] != n or M.shape[3] != l:
                raise ValueError(f"{op}: {name} must have shape (b, g, n, l) = ({b}, g, {n}, {l}), got {shape_str(M)}")
            if g < 1 or d % g != 0:
                raise ValueError(f"{op}: {name} has {g} groups, which does not divide d = {d} channels")
    if B.dim() == 4 and C.dim() == 4 and B.shape[1] != C.shape[1]:
        raise ValueError(f"{op}: B has {B.shape[1]} groups but C has {C.shape[1]}; expected the same")
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None and (not isinstance(v, torch.Tensor) or tuple(v.shape) != (d,)):
            raise ValueError(f"{op}: {name} must have shape (d,) = ({d},), got {shape_str(v)}")
    if z is not None and (not isinstance(z, torch.Tensor) or tuple(z.shape) != (b, d, l)):
        raise ValueError(f"{op}: z must have the shape of u (b, d, l) = {(b, d, l)}, got {shape_str(z)}")
    if initial_state is not None and (not isinstance(initial_state, torch.Tensor) or tuple(initial_state.shape) != (b, d, n)):
        raise ValueError(f"{op}: initial_state must have shape (b, d, n) = ({b}, {d}, {n}), got {shape_str(initial_state)}")


def as_grouped(M: torch.Tensor) -> torch.Tensor:
    """(b, n, l) -> (b, 1, n, l); (b, g, n, l) unchanged."""
    return M.unsqueeze(1) if M.dim() == 3 else M


def compute_dtype(*ts) -> torch.dtype:
    """fp64 stays fp64; everything else (fp32, bf16, fp16) is computed in fp32."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in ts) else torch.float32
