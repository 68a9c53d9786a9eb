"""Selective scan (Mamba-1's S6 operator), with the signature of ``mamba_ssm.selective_scan_fn``.

    selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, initial_state=None)
        u, delta, z (b, d, l); A (d, n); B, C (b, n, l) or (b, g, n, l); D, delta_bias (d,);
        initial_state (b, d, n) (extension). -> out (b, d, l) [, last_state (b, d, n)]
    selective_scan_ref   the sequential definition (test oracle), same signature

Paths, in order: on CUDA with ``mamba_ssm`` installed the kernel ``selective_scan_fn``, except when
``initial_state`` is given (the kernel has no such input); on CPU the compiled kernel of
``cpu.py`` (built on first use, ``SEQARENA_CPU_KERNELS`` switches it, see ``archs/ops/_compile.py``);
otherwise the pure-PyTorch scan in ``scan.py`` (time-major sequential scan with a hand-written
backward).
"""
from __future__ import annotations

import torch.nn.functional as F

from .._dispatch import gpu_kernel
from . import cpu
from .check import as_grouped, check_selective_scan_args, compute_dtype
from .ref import selective_scan_ref
from .scan import selective_scan_torch

__all__ = ["selective_scan", "selective_scan_ref"]


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, initial_state=None):
    """Fast selective scan; same contract as :func:`selective_scan_ref` (see its docstring).

    Returns out (b, d, l) in u's dtype [, last_state (b, d, n) in the compute dtype (fp32 for
    low-precision inputs, as the kernel)].
    """
    check_selective_scan_args("selective_scan", u, delta, A, B, C, D, z, delta_bias, initial_state)
    if initial_state is None:
        kernel = gpu_kernel("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn", u, delta, A, B, C, D, z, delta_bias)
        if kernel is not None:
            return kernel(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
                          return_last_state=return_last_state)
    if cpu.usable(u, delta, A, B, C, D, z, delta_bias, initial_state):
        return cpu.selective_scan_cpu(u, delta, A, as_grouped(B), as_grouped(C), D, z, delta_bias, delta_softplus,
                                      return_last_state, initial_state)
    return selective_scan_pure(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state)


def selective_scan_pure(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                        return_last_state=False, initial_state=None):
    """The pure-PyTorch path of :func:`selective_scan` (any device; arguments already checked)."""
    dtype_in = u.dtype
    ct = compute_dtype(u, delta, A, B, C)
    uc, delta = u.to(ct), delta.to(ct)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h0 = initial_state.to(ct) if initial_state is not None else None
    y, last = selective_scan_torch(uc, delta, A.to(ct), as_grouped(B).to(ct), as_grouped(C).to(ct), h0)
    if D is not None:
        y = y + uc * D.to(ct)[:, None]
    if z is not None:
        y = y * F.silu(z.to(ct))
    y = y.to(dtype_in)
    return (y, last) if return_last_state else y

