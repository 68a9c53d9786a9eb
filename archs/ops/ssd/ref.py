"""Sequential definition of SSD (Mamba-2's scalar-decay selective SSM); the test oracle."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import repeat

from .check import check_ssd_args, compute_dtype, finish


def ssd_ref(x, dt, A, B, C, chunk_size=64, D=None, z=None, dt_bias=None, dt_softplus=False,
            initial_states=None, return_final_states=False):
    """SSD one time step at a time (Dao & Gu 2024), as ``mamba_chunk_scan_combined`` computes it.

    With dt' = softplus(dt + dt_bias) (softplus only if ``dt_softplus``), per head h:

        S_t = exp(dt'_t A_h) S_{t-1} + dt'_t x_t B_t^T          S: (b, h, p, n)
        y_t = S_t C_t + D_h x_t;     out_t = y_t * silu(z_t) if z is given

    Args:
        x: (b, l, h, p) inputs, h heads of size p.
        dt: (b, l, h) step sizes (pre-activation); A: (h,) one (negative) decay rate per head.
        B, C: (b, l, g, n) with g dividing h (head i uses group i // (h // g)).
        chunk_size: unused here (the fast form's chunk length), kept for the same signature.
        D: (h,) or (h, p) skip; z: (b, l, h, p) gate; dt_bias: (h,).
        initial_states: (b, h, p, n) S_0 or None (zeros).
        return_final_states: also return S_l (b, h, p, n).
    Returns:
        out (b, l, h, p) in x's dtype [, final_states (b, h, p, n) in the compute dtype].
    """
    check_ssd_args("ssd_ref", x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states)
    dtype_in = x.dtype
    ct = compute_dtype(x, dt, A, B, C)
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    xc, dt, A = x.to(ct), dt.to(ct), A.to(ct)
    Bh = repeat(B.to(ct), "b l g n -> b l (g r) n", r=h // g)  # (b, l, h, n)
    Ch = repeat(C.to(ct), "b l g n -> b l (g r) n", r=h // g)
    if dt_bias is not None:
        dt = dt + dt_bias.to(ct)
    if dt_softplus:
        dt = F.softplus(dt)
    S = xc.new_zeros(b, h, p, n) if initial_states is None else initial_states.to(ct)  # (b, h, p, n)
    # unbind (not indexing) per step: its backward is one stack, not l full-size scatters
    dts, xs, Bs, Cs = dt.unbind(1), xc.unbind(1), Bh.unbind(1), Ch.unbind(1)
    ys = []
    for t in range(l):
        decay = torch.exp(dts[t] * A)  # (b, h)
        S = decay[:, :, None, None] * S + (dts[t][:, :, None] * xs[t])[..., None] * Bs[t][:, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", S, Cs[t]))
    y = torch.stack(ys, dim=1) if ys else xc.new_zeros(b, 0, h, p)  # (b, l, h, p)
    out = finish(y, xc, z, D, ct, dtype_in)
    return (out, S) if return_final_states else out
