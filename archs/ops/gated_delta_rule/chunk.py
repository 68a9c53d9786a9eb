"""Chunked gated delta rule via the WY / UT representation with a scalar decay per head (pure PyTorch).

Inside a chunk that starts from state S, with gc_t = g_1 + ... + g_t (cumulative log decay within
the chunk) and the pairwise decays Gam_ts = exp(gc_t - gc_s) (s <= t), the state is

    S_t = exp(gc_t) S + sum_{s <= t} Gam_ts k_s u_s^T,
    u_t = beta_t (v_t - exp(gc_t) S^T k_t - sum_{s < t} Gam_ts (k_t . k_s) u_s)

(the gated delta rule's "pseudo values"). In matrix form (I + tril(diag(beta) (K K^T o Gam), -1)) U
= diag(beta) (V - diag(exp(gc)) K S); with the unit-lower-triangular solve T = (I + ...)^{-1} diag(beta):
W = T diag(exp(gc)) K, U0 = T V, U = U0 - W S, and

    O = scale * (diag(exp(gc)) Q S + (tril(Q K^T) o Gam) U),
    S_next = exp(gc_C) S + (K o exp(gc_C - gc))^T U.

This is the chunkwise algorithm of Yang et al. 2024 (Gated DeltaNet, section 3.3), as in fla's
kernel. Every exponent is a non-positive sum of log decays taken in the causal direction (the
masked-out upper triangle is set to -inf before exp), so strong decay underflows to 0 instead of
overflowing. W, U0 and the scores are computed for all chunks at once; only the (K, V) state runs
through a loop over chunks. Backward is autograd through these batched ops.
"""
from __future__ import annotations

import torch
from einops import rearrange

from .._common import (
    carry_state,
    check_chunk_size,
    check_qkv,
    check_shape,
    chunk_len,
    compute_dtype,
    default_scale,
    initial_state_or_zeros,
    n_chunks,
    pad_time,
)


def _masked_exp(diff: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """exp(diff) where mask, 0 elsewhere (the masked-out entries are never exponentiated)."""
    return diff.masked_fill(~mask, float("-inf")).exp()


def gated_delta_rule_chunked(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False, chunk_size=64):
    """Chunked ``gated_delta_rule_ref`` (same contract; see its docstring) in pure PyTorch."""
    op = "chunk_gated_delta_rule"
    B, T, H, K, V = check_qkv(op, q, k, v, initial_state)
    check_shape(op, g, (B, T, H), "g (log decay per head)")
    check_shape(op, beta, (B, T, H), "beta")
    check_chunk_size(op, chunk_size)
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, g, beta)
    scale = default_scale(scale, K)
    C = chunk_len(T, chunk_size)
    T_pad = n_chunks(T, C) * C
    # padding with q = k = v = beta = 0 and g = 0 (decay 1) leaves the state unchanged
    q, k, v, g, beta = (pad_time(t.to(cd), T_pad) for t in (q, k, v, g, beta))
    qc = rearrange(q, "b (n c) h k -> b n h c k", c=C)  # (B, N, H, C, K)
    kc = rearrange(k, "b (n c) h k -> b n h c k", c=C)
    vc = rearrange(v, "b (n c) h v -> b n h c v", c=C)  # (B, N, H, C, V)
    bc = rearrange(beta, "b (n c) h -> b n h c", c=C)[..., None]  # (B, N, H, C, 1)
    gc = rearrange(g, "b (n c) h -> b n h c", c=C).cumsum(-1)  # (B, N, H, C) within-chunk cumulative log decay

    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    Gam = _masked_exp(gc[..., :, None] - gc[..., None, :], causal)  # (B, N, H, C, C): exp(gc_t - gc_s), s <= t
    eye = torch.eye(C, dtype=cd, device=q.device)
    lower = torch.tril(bc * (kc @ kc.transpose(-1, -2)) * Gam, -1)  # (B, N, H, C, C)
    decay_in = gc.exp()[..., None]  # (B, N, H, C, 1): exp(gc_t) <= 1
    rhs = torch.cat([bc * decay_in * kc, bc * vc], dim=-1)  # (B, N, H, C, K + V)
    WU = torch.linalg.solve_triangular(eye + lower, rhs, upper=False, unitriangular=True)
    W, U0 = WU[..., :K], WU[..., K:]  # (B, N, H, C, K), (B, N, H, C, V)
    Aqk = (qc @ kc.transpose(-1, -2)) * Gam  # (B, N, H, C, C), zero above the diagonal
    o_local = Aqk @ U0  # (B, N, H, C, V): output if each chunk started from S = 0
    q_eff = decay_in * qc - Aqk @ W  # (B, N, H, C, K): O = o_local + q_eff S
    decay_out = (gc[..., -1:] - gc).exp()[..., None]  # (B, N, H, C, 1): exp(gc_C - gc_s) <= 1
    k_out = (decay_out * kc).transpose(-1, -2)  # (B, N, H, K, C)
    dS0 = k_out @ U0  # (B, N, H, K, V): the chunk's own contribution to the next state
    eye_k = torch.eye(K, dtype=cd, device=q.device)
    M = gc[..., -1, None, None].exp() * eye_k - k_out @ W  # (B, N, H, K, K): S_next = M S + dS0

    S_in, S = carry_state(M, dS0, initial_state_or_zeros(initial_state, (B, H, K, V), q, cd), output_final_state)
    o = scale * (o_local + q_eff @ S_in)
    o = rearrange(o, "b n h c v -> b (n c) h v")[:, :T]
    return o.to(out_dtype), (S if output_final_state else None)
