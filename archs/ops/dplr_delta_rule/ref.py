"""Sequential definition of the diagonal-plus-low-rank (generalized) delta rule (the test oracle)."""
from __future__ import annotations

import torch

from .._common import check_qkv, check_shape, compute_dtype, default_scale, initial_state_or_zeros


def check_dplr_args(op: str, q, k, v, a, b, gk, initial_state):
    """Check q, k, a, b, gk (B, T, H, K), v (B, T, H, V), initial_state (B, H, K, V); return (B, T, H, K, V)."""
    B, T, H, K, V = check_qkv(op, q, k, v, initial_state)
    for name, t in (("a", a), ("b", b), ("gk (log decay per key channel)", gk)):
        check_shape(op, t, (B, T, H, K), name)
    return B, T, H, K, V


def dplr_delta_rule_ref(q, k, v, a, b, gk, scale=None, initial_state=None, output_final_state=False):
    """Generalized delta rule with a diagonal-plus-low-rank transition, one token at a time (fla's
    ``generalized_delta_rule``; RWKV-7's state update, Peng et al. 2025, eq. 17 with S transposed):

        S_t = (diag(exp(gk_t)) + b_t a_t^T) S_{t-1} + k_t v_t^T
            = diag(exp(gk_t)) S_{t-1} + k_t v_t^T + b_t (a_t^T S_{t-1})
        o_t = scale * S_t^T q_t

    S (K, V) maps keys to values. RWKV-7 uses a = -kappa_hat, b = kappa_hat * iclr (the removal of the
    old value under the normalised key, at the in-context learning rate); the delta rule is
    a = -k, b = beta k with exp(gk) = 1. gk <= 0 is the log decay per key channel.

    q, k, a, b, gk: (B, T, H, K); v: (B, T, H, V); initial_state: (B, H, K, V) or None.
    Returns (o (B, T, H, V), S_T (B, H, K, V) or None).
    """
    B, T, H, K, V = check_dplr_args("dplr_delta_rule_ref", q, k, v, a, b, gk, initial_state)
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, a, b, gk)
    q, k, v, a, b, gk = (t.to(cd) for t in (q, k, v, a, b, gk))
    scale = default_scale(scale, K)
    S = initial_state_or_zeros(initial_state, (B, H, K, V), q, cd)  # (B, H, K, V)
    outs = []
    for t in range(T):
        aS = torch.einsum("bhk,bhkv->bhv", a[:, t], S)  # (B, H, V): a_t^T S_{t-1}
        S = gk[:, t].exp()[..., None] * S + k[:, t, :, :, None] * v[:, t, :, None, :] + b[:, t, :, :, None] * aS[:, :, None, :]
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, V)
    return o.to(out_dtype), (S if output_final_state else None)
