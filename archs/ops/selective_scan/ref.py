"""Sequential definition of the selective scan (Mamba-1's S6 recurrence); the test oracle."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import repeat

from .check import as_grouped, check_selective_scan_args, compute_dtype


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False, initial_state=None):
    """The selective scan, one time step at a time (Gu & Dao 2023, Algorithm 2).

    With dt = softplus(delta + delta_bias) (softplus only if ``delta_softplus``):

        h_t = exp(dt_t * A) * h_{t-1} + dt_t * u_t * B_t        h: (b, d, n)
        y_t = <h_t, C_t>_n + D * u_t;    out_t = y_t * silu(z_t) if z is given

    Args:
        u, delta: (b, d, l) input and (pre-activation) step sizes.
        A: (d, n) real state matrix (diagonal per channel; negative for a stable scan).
        B, C: (b, n, l), or (b, g, n, l) with g dividing d (channel c uses group c // (d // g)).
        D, delta_bias: (d,) or None.
        z: (b, d, l) gate or None.
        return_last_state: also return h_l (b, d, n).
        initial_state: (b, d, n) h_0 or None (zeros). An extension of ``selective_scan_fn`` so
            that a prefill can continue from a carried state.
    Returns:
        out (b, d, l) in u's dtype [, last_state (b, d, n) in the compute dtype].
    Low-precision inputs are computed in fp32.
    """
    check_selective_scan_args("selective_scan_ref", u, delta, A, B, C, D, z, delta_bias, initial_state)
    dtype_in = u.dtype
    ct = compute_dtype(u, delta, A, B, C)
    b, d, l = u.shape
    n = A.shape[1]
    u, delta, A = u.to(ct), delta.to(ct), A.to(ct)
    B = repeat(as_grouped(B).to(ct), "b g n l -> b (g e) n l", e=d // as_grouped(B).shape[1])  # (b, d, n, l)
    C = repeat(as_grouped(C).to(ct), "b g n l -> b (g e) n l", e=d // as_grouped(C).shape[1])  # (b, d, n, l)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(b, d, n) if initial_state is None else initial_state.to(ct)  # (b, d, n)
    # unbind (not indexing) per step: its backward is one stack, not l full-size scatters
    dts, us, Bs, Cs = delta.unbind(2), u.unbind(2), B.unbind(3), C.unbind(3)
    ys = []
    for t in range(l):
        dA = torch.exp(dts[t][:, :, None] * A)  # (b, d, n)
        dBu = (dts[t] * us[t])[:, :, None] * Bs[t]  # (b, d, n)
        h = dA * h + dBu
        ys.append((h * Cs[t]).sum(-1))  # (b, d)
    y = torch.stack(ys, dim=2) if ys else u.new_zeros(b, d, 0)  # (b, d, l)
    out = y if D is None else y + u * D.to(ct)[:, None]
    if z is not None:
        out = out * F.silu(z.to(ct))
    out = out.to(dtype_in)
    return (out, h) if return_last_state else out
