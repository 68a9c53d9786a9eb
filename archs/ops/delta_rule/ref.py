"""Sequential definition of the delta rule (the test oracle)."""
from __future__ import annotations

import torch

from .._common import check_g, check_qkv, compute_dtype, default_scale


def delta_rule_ref(q, k, v, beta, scale=None, initial_state=None, output_final_state=False):
    """Delta-rule linear attention (Schlag et al. 2021; Yang et al. 2024), one token at a time.

        S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T
        o_t = scale * S_t^T q_t

    S (K, V) maps keys to values; each step moves the value stored under k_t a fraction beta_t of
    the way to v_t (k_t is usually L2-normalised, beta_t in (0, 1)). This is fla's convention.

    q, k: (B, T, H, K); v: (B, T, H, V); beta: (B, T, H); initial_state: (B, H, K, V) or None.
    Returns (o (B, T, H, V), S_T (B, H, K, V) or None).
    """
    B, T, H, K, V = check_qkv("delta_rule_ref", q, k, v, initial_state)
    check_g("delta_rule_ref", beta, (B, T, H), "beta")
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, beta)
    q, k, v, beta = (t.to(cd) for t in (q, k, v, beta))
    scale = default_scale(scale, K)
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(cd)  # (B, H, K, V)
    outs = []
    for t in range(T):
        kt = k[:, t]  # (B, H, K)
        err = v[:, t] - torch.einsum("bhk,bhkv->bhv", kt, S)  # (B, H, V)
        S = S + (beta[:, t, :, None] * kt)[..., None] * err[:, :, None, :]
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, V)
    return o.to(out_dtype), (S if output_final_state else None)
