"""Sequential definition of the gated delta rule (the test oracle)."""
from __future__ import annotations

import torch

from .._common import check_qkv, check_shape, compute_dtype, default_scale, initial_state_or_zeros


def gated_delta_rule_ref(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    """Gated delta rule (Yang, Kautz, Hatamizadeh 2024, "Gated Delta Networks", eq. 10), one token at a time.

        S_t = a_t S_{t-1} + beta_t k_t (v_t - a_t S_{t-1}^T k_t)^T
            = a_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,      a_t = exp(g_t)
        o_t = scale * S_t^T q_t

    S (K, V) maps keys to values (fla's convention); g_t <= 0 is the log decay of head h at t.

    q, k: (B, T, H, K); v: (B, T, H, V); g, beta: (B, T, H); initial_state: (B, H, K, V) or None.
    Returns (o (B, T, H, V), S_T (B, H, K, V) or None).
    """
    B, T, H, K, V = check_qkv("gated_delta_rule_ref", q, k, v, initial_state)
    check_shape("gated_delta_rule_ref", g, (B, T, H), "g (log decay per head)")
    check_shape("gated_delta_rule_ref", beta, (B, T, H), "beta")
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, g, beta)
    q, k, v, g, beta = (t.to(cd) for t in (q, k, v, g, beta))
    scale = default_scale(scale, K)
    S = initial_state_or_zeros(initial_state, (B, H, K, V), q, cd)  # (B, H, K, V)
    outs = []
    for t in range(T):
        kt = k[:, t]  # (B, H, K)
        S = g[:, t].exp()[..., None, None] * S  # decay first: a_t S_{t-1}
        err = v[:, t] - torch.einsum("bhk,bhkv->bhv", kt, S)  # (B, H, V)
        S = S + (beta[:, t, :, None] * kt)[..., None] * err[:, :, None, :]
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, V)
    return o.to(out_dtype), (S if output_final_state else None)
