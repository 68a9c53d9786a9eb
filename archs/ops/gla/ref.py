"""Sequential definitions (the test oracles) of the gated linear-attention recurrences.

All use the fla layout: q, k (B, T, H, K), v (B, T, H, V), state S (B, H, K, V), and return
(o (B, T, H, V), final state (B, H, K, V) or None). ``scale`` defaults to K^-0.5.
"""
from __future__ import annotations

import torch

from .._common import check_g, check_qkv, compute_dtype, default_scale, retention_log_decay


def _recurrence(q, k, v, decay, scale, initial_state, output_final_state):
    """S_t = decay_t * S_{t-1} + k_t v_t^T; o_t = scale * S_t^T q_t.

    decay: (B, T, H, K, 1) multiplicative decay (broadcast over V) in the compute dtype.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    dt = q.dtype
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt)  # (B, H, K, V)
    outs = []
    for t in range(T):
        S = decay[:, t] * S + k[:, t, :, :, None] * v[:, t, :, None, :]  # (B, H, K, V)
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], S))  # (B, H, V)
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, V)  # (B, T, H, V)
    return o, (S if output_final_state else None)


def simple_gla_ref(q, k, v, g, scale=None, initial_state=None, output_final_state=False):
    """Gated linear attention with a scalar decay per head and step (the definition).

        S_t = exp(g_t) S_{t-1} + k_t v_t^T,   o_t = scale * S_t^T q_t

    q, k: (B, T, H, K); v: (B, T, H, V); g: (B, T, H) log decay (<= 0);
    initial_state: (B, H, K, V) or None. Returns (o (B, T, H, V), S_T (B, H, K, V) or None).
    """
    B, T, H, K, V = check_qkv("simple_gla_ref", q, k, v, initial_state)
    check_g("simple_gla_ref", g, (B, T, H), "g (log decay per head)")
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, g)
    q, k, v, g = (t.to(cd) for t in (q, k, v, g))
    decay = g.exp()[..., None, None]  # (B, T, H, 1, 1)
    o, S = _recurrence(q, k, v, decay, default_scale(scale, K), initial_state, output_final_state)
    return o.to(out_dtype), S


def retention_ref(q, k, v, scale=None, initial_state=None, output_final_state=False):
    """Multi-scale retention (RetNet): simple_gla_ref with the fixed decay gamma_h = 1 - 2^(-5-h) for head h.

    q, k: (B, T, H, K); v: (B, T, H, V); initial_state: (B, H, K, V) or None.
    """
    B, T, H, K, V = check_qkv("retention_ref", q, k, v, initial_state)
    g = retention_log_decay(H, q.device, compute_dtype(q, k, v)).expand(B, T, H)
    return simple_gla_ref(q, k, v, g, scale, initial_state, output_final_state)


def gla_ref(q, k, v, g, scale=None, initial_state=None, output_final_state=False):
    """Gated linear attention with a decay per key channel (the definition).

        S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T,   o_t = scale * S_t^T q_t

    q, k: (B, T, H, K); v: (B, T, H, V); g: (B, T, H, K) log decay (<= 0);
    initial_state: (B, H, K, V) or None. Returns (o (B, T, H, V), S_T (B, H, K, V) or None).
    """
    B, T, H, K, V = check_qkv("gla_ref", q, k, v, initial_state)
    check_g("gla_ref", g, (B, T, H, K), "g (log decay per key channel)")
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, g)
    q, k, v, g = (t.to(cd) for t in (q, k, v, g))
    decay = g.exp()[..., None]  # (B, T, H, K, 1)
    o, S = _recurrence(q, k, v, decay, default_scale(scale, K), initial_state, output_final_state)
    return o.to(out_dtype), S
