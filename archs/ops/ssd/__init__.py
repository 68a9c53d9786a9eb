"""SSD (Mamba-2's state-space duality op), with the signature of mamba_ssm's
``mamba_chunk_scan_combined``.

    ssd(x, dt, A, B, C, chunk_size=64, D=None, z=None, dt_bias=None, dt_softplus=False,
        initial_states=None, return_final_states=False)
        x (b, l, h, p); dt (b, l, h); A (h,); B, C (b, l, g, n); D (h,) or (h, p); z (b, l, h, p);
        dt_bias (h,); initial_states (b, h, p, n) -> out (b, l, h, p) [, final_states (b, h, p, n)]
    ssd_ref   the sequential definition (test oracle), same signature

On CUDA with ``mamba_ssm`` installed the Triton kernel is used; otherwise the chunked pure-PyTorch
form in ``chunk.py``.
"""
from __future__ import annotations

import torch.nn.functional as F

from .._dispatch import gpu_kernel
from .check import check_ssd_args, compute_dtype, finish
from .chunk import segsum, ssd_chunked
from .ref import ssd_ref

__all__ = ["ssd", "ssd_ref", "segsum"]


def ssd(x, dt, A, B, C, chunk_size=64, D=None, z=None, dt_bias=None, dt_softplus=False,
        initial_states=None, return_final_states=False):
    """Chunked SSD; same contract as :func:`ssd_ref` (see its docstring)."""
    check_ssd_args("ssd", x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states)
    kernel = gpu_kernel("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined", x, dt, A, B, C, D, z, dt_bias, initial_states)
    if kernel is not None and x.shape[1] > 0:
        return kernel(x, dt, A, B, C, chunk_size, D=D, z=z, dt_bias=dt_bias, initial_states=initial_states,
                      dt_softplus=dt_softplus, return_final_states=return_final_states)
    dtype_in = x.dtype
    ct = compute_dtype(x, dt, A, B, C)
    b, l, h, p = x.shape
    xc, dt = x.to(ct), dt.to(ct)
    if dt_bias is not None:
        dt = dt + dt_bias.to(ct)
    if dt_softplus:
        dt = F.softplus(dt)
    S0 = initial_states.to(ct) if initial_states is not None else None
    if l == 0:
        y = xc.new_zeros(b, 0, h, p)
        S = S0.clone() if S0 is not None else xc.new_zeros(b, h, p, B.shape[3])
    else:
        y, S = ssd_chunked(xc, dt, A.to(ct), B.to(ct), C.to(ct), chunk_size, S0)
    out = finish(y, xc, z, D, ct, dtype_in)
    return (out, S) if return_final_states else out

