"""Chunked diagonal-plus-low-rank delta rule (pure PyTorch), a WY / UT form with per-channel decays.

Inside a chunk that starts from state S, with gc_t = gk_1 + ... + gk_t (cumulative log decay per key
channel within the chunk, gc_0 = 0) and the low-rank "pseudo values" w_t = S_{t-1}^T a_t:

    S_t = exp(gc_t) o S + sum_{s <= t} exp(gc_t - gc_s) o (k_s v_s^T + b_s w_s^T)        (o: row scaling)
    w_t = (a_t o exp(gc_{t-1}))^T S + sum_{s < t} A_ak[t, s] v_s + A_ab[t, s] w_s

with decayed scores X_xy[t, s] = sum_c x_t[c] exp(G_t[c] - gc_s[c]) y_s[c] (G = gc_{t-1} for rows
of a, strictly causal; G = gc_t for rows of q, s <= t). Solving the unit-lower-triangular system
(I - A_ab) W = (a o exp(gc_{t-1})) S + A_ak V gives W = W_S S + W_0, and then

    O = scale * ((q o exp(gc) + A_qb W_S) S + A_qk V + A_qb W_0)
    S_next = (diag(exp(gc_C)) + (b o exp(gc_C - gc))^T W_S) S + (k o exp(gc_C - gc))^T V + (b o exp(gc_C - gc))^T W_0

This is the chunkwise DPLR algorithm of fla's ``chunk_dplr_delta_rule`` (Yang et al. 2024's WY form
extended to a diagonal decay; Peng et al. 2025, RWKV-7, appendix). Everything except the (K, V)
state recurrence over chunks is computed for all chunks at once.

Stability: per-channel decays are never divided out. Scores use exp(G_t - gc_s) with G_t <= gc_s:
inside sub-chunks of ``SUB_CHUNK`` tokens the (c, c, K) decay tensor is formed directly (upper
triangle masked to -inf before exp); across sub-chunks the decay is split at the boundary
r = gc at the end of the previous sub-chunk: exp(G_t - r) * exp(r - gc_s), both factors <= 1. So
strong decays underflow to 0 and every value and gradient stays finite. Backward is autograd.
"""
from __future__ import annotations

import torch
from einops import rearrange

from .._common import (
    check_chunk_size,
    chunk_len,
    compute_dtype,
    default_scale,
    initial_state_or_zeros,
    n_chunks,
    pad_time,
)
from .ref import check_dplr_args

SUB_CHUNK = 16  # sub-chunk size for the direct (c, c, K) decay tensors


def _masked_exp(diff: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """exp(diff) where mask, 0 elsewhere (the masked-out entries are never exponentiated)."""
    return diff.masked_fill(~mask, float("-inf")).exp()


def decayed_scores(x, gx, y, gy, strict: bool, sub: int = SUB_CHUNK) -> torch.Tensor:
    """X[t, s] = sum_c x_t[c] exp(gx_t[c] - gy_s[c]) y_s[c] for s <= t (s < t if ``strict``), else 0.

    x, gx, y, gy: (..., C, K), with gy non-increasing in time and gx_t <= gy_s wherever kept, and
    gx_t <= gy at the end of the sub-chunk before t's (true for gx = gc or the shifted gc_{t-1},
    gy = gc). Returns (..., C, C).
    """
    C, K = x.shape[-2:]
    if C % sub:
        sub = C
    ns = C // sub
    dev = x.device
    xs, gxs, ys, gys = (t.unflatten(-2, (ns, sub)) for t in (x, gx, y, gy))  # (..., ns, c, K)
    keep = torch.ones(sub, sub, dtype=torch.bool, device=dev).tril(-1 if strict else 0)
    Dd = _masked_exp(gxs[..., :, None, :] - gys[..., None, :, :], keep[:, :, None])  # (..., ns, c, c, K)
    A_diag = torch.einsum("...itk,...itsk,...isk->...its", xs, Dd, ys)  # (..., ns, c, c)
    A = torch.einsum("...its,ij->...itjs", A_diag, torch.eye(ns, dtype=x.dtype, device=dev))  # (..., ns, c, ns, c)
    if ns > 1:
        # r_i: gy at the last position before sub-chunk i (i = 0 has no earlier positions: any value)
        ref = torch.cat([torch.zeros_like(gys[..., :1, 0, :]), gys[..., :-1, -1, :]], dim=-2)  # (..., ns, K)
        xd = xs * (gxs - ref[..., :, None, :]).exp()  # (..., ns, c, K), exponent <= 0
        before = torch.arange(C, device=dev)[None, :] < (torch.arange(ns, device=dev) * sub)[:, None]  # (ns, C)
        yd = y[..., None, :, :] * _masked_exp(ref[..., :, None, :] - gy[..., None, :, :], before[:, :, None])  # (..., ns, C, K)
        A_off = torch.einsum("...itk,...isk->...its", xd, yd)  # (..., ns, c, C)
        A = A + A_off.unflatten(-1, (ns, sub))
    return A.flatten(-4, -3).flatten(-2, -1)


def dplr_delta_rule_chunked(q, k, v, a, b, gk, scale=None, initial_state=None, output_final_state=False, chunk_size=64):
    """Chunked ``dplr_delta_rule_ref`` (same contract; see its docstring) in pure PyTorch."""
    op = "chunk_dplr_delta_rule"
    B, T, H, K, V = check_dplr_args(op, q, k, v, a, b, gk, initial_state)
    check_chunk_size(op, chunk_size)
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, a, b, gk)
    scale = default_scale(scale, K)
    C = chunk_len(T, chunk_size)
    T_pad = n_chunks(T, C) * C
    # padding with zeros (decay 1, nothing written, nothing removed) leaves the state unchanged
    q, k, v, a, b, gk = (pad_time(t.to(cd), T_pad) for t in (q, k, v, a, b, gk))
    to_chunks = lambda t: rearrange(t, "b (n c) h k -> b n h c k", c=C)
    qc, kc, vc, ac, bc, gkc = (to_chunks(t) for t in (q, k, v, a, b, gk))  # (B, N, H, C, K | V)
    gc = gkc.cumsum(-2)  # (B, N, H, C, K): gc_t
    gp = torch.cat([torch.zeros_like(gc[..., :1, :]), gc[..., :-1, :]], dim=-2)  # gc_{t-1}, exactly the previous cumsum

    A_qk = decayed_scores(qc, gc, kc, gc, strict=False)  # (B, N, H, C, C)
    A_qb = decayed_scores(qc, gc, bc, gc, strict=False)
    A_ak = decayed_scores(ac, gp, kc, gc, strict=True)
    A_ab = decayed_scores(ac, gp, bc, gc, strict=True)
    eye = torch.eye(C, dtype=cd, device=q.device)
    rhs = torch.cat([ac * gp.exp(), A_ak @ vc], dim=-1)  # (B, N, H, C, K + V)
    sol = torch.linalg.solve_triangular(eye - A_ab, rhs, upper=False, unitriangular=True)
    W_S, W_0 = sol[..., :K], sol[..., K:]  # (B, N, H, C, K), (B, N, H, C, V): W = W_S S + W_0
    o_local = A_qk @ vc + A_qb @ W_0  # (B, N, H, C, V)
    q_eff = qc * gc.exp() + A_qb @ W_S  # (B, N, H, C, K): O = o_local + q_eff S
    to_end = (gc[..., -1:, :] - gc).exp()  # (B, N, H, C, K): exp(gc_C - gc_s) <= 1
    b_out = (bc * to_end).transpose(-1, -2)  # (B, N, H, K, C)
    dS0 = (kc * to_end).transpose(-1, -2) @ vc + b_out @ W_0  # (B, N, H, K, V)
    M = b_out @ W_S  # (B, N, H, K, K): S_next = exp(gc_C) o S + M S + dS0
    decay = gc[..., -1, :].exp()[..., None]  # (B, N, H, K, 1)

    N = qc.shape[1]
    S = initial_state_or_zeros(initial_state, (B, H, K, V), q, cd)
    states = []
    for n in range(N):
        states.append(S)
        if n + 1 < N or output_final_state:
            S = decay[:, n] * S + M[:, n] @ S + dS0[:, n]
    S_in = torch.stack(states, dim=1)  # (B, N, H, K, V)
    o = scale * (o_local + q_eff @ S_in)
    o = rearrange(o, "b n h c v -> b (n c) h v")[:, :T]
    return o.to(out_dtype), (S if output_final_state else None)
