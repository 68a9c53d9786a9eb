"""Input checks shared by the mLSTM op forms: shapes of q, k, v, the gates and the (C, n, m) state."""
from __future__ import annotations

import torch

from ..gla._common import _shape, check_qkv, compute_dtype, default_scale


def check_mlstm(op: str, q, k, v, i, log_f, initial_state, eps):
    """Check the mLSTM inputs; return (B, T, H, K, V). ``initial_state`` is None or (C, n, m) with
    C (B, H, K, V), n (B, H, K), m (B, H)."""
    B, T, H, K, V = check_qkv(op, q, k, v)
    for name, g in (("i (input gate pre-activation)", i), ("log_f (log forget gate)", log_f)):
        if not isinstance(g, torch.Tensor) or tuple(g.shape) != (B, T, H):
            raise ValueError(f"{op}: {name} has shape {_shape(g)}; expected (B, T, H) = {(B, T, H)}")
    if initial_state is not None:
        want = ((B, H, K, V), (B, H, K), (B, H))
        if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 3 or any(
            not isinstance(s, torch.Tensor) or tuple(s.shape) != w for s, w in zip(initial_state, want)
        ):
            got = [_shape(s) for s in initial_state] if isinstance(initial_state, (tuple, list)) else _shape(initial_state)
            raise ValueError(f"{op}: initial_state must be (C, n, m) with shapes {list(want)}, got {got}")
    if not (isinstance(eps, (int, float)) and eps >= 0):
        raise ValueError(f"{op}: eps must be a non-negative number, got {eps!r}")
    return B, T, H, K, V


__all__ = ["check_mlstm", "compute_dtype", "default_scale"]
