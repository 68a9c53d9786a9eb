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

Stability: per-channel decays are never divided out. The decayed scores are built on a binary tree
over the chunk (``decayed_scores``): a pair (t, s), s < t, is scored at the node where t is in the
right half and s in the left half, with the decay split at that node's midpoint r (gc at the end of
the left half): exp(G_t - r) * exp(r - gc_s), both factors <= 1, so each node's block is one small
matmul of decayed rows and columns and no (C, C, K) tensor is ever formed. Strong decays underflow
to 0 and every value and gradient stays finite. Backward is autograd, except for the
score tree, whose backward is written out per level (``decayed_scores``; tested against autograd).
The triangular system is solved once against the C identity columns ((I - A_ab)^{-1}, then one
matmul with [a o exp(gc_{t-1}) | A_ak V]): a solve against K + V columns and its backward cost more.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch.autograd.function import once_differentiable

from .._common import (
    carry_state,
    check_chunk_size,
    chunk_len,
    compute_dtype,
    default_scale,
    initial_state_or_zeros,
    n_chunks,
    pad_time,
)
from .ref import check_dplr_args

def _node_rows(t: torch.Tensor, G: int, n: int, half: int) -> torch.Tensor:
    """(..., C, R, K) -> the ``half`` (0 left, 1 right) of every node of a tree level with G nodes of
    2n steps: (..., G, n, R, K), a view."""
    return t.unflatten(-3, (G, 2, n)).select(-4, half)


def _node_blocks(A: torch.Tensor, G: int, n: int) -> torch.Tensor:
    """(..., C, R, C, S) -> the lower-left quarter (rows of the right half, columns of the left half) of
    every node's diagonal 2n x 2n block at a tree level with G nodes: (..., G, n, R, n, S), a view."""
    A = A.unflatten(-2, (G, 2, n)).unflatten(-6, (G, 2, n))  # (..., G, 2, n, R, G, 2, n, S)
    return A.select(-3, 0).select(-6, 1).diagonal(dim1=-6, dim2=-3).movedim(-1, -5)


def _check_pow2(C: int) -> None:
    if C & (C - 1):
        raise ValueError(f"decayed_scores: the chunk length must be a power of two, got {C}")


def _tree_levels(gx, gy):
    """Yield, for each level of the binary tree over the chunk (n = 1, 2, 4, ...: G = C / 2n nodes),
    (G, n, e_x, e_y): the decay factors of the right-half rows, exp(gx_r - m) (..., G, n, R, K), and
    of the left-half columns, exp(m - gy_l) (..., G, n, 1, K), with m = gy at the end of the left
    half; both exponents are <= 0. gx: (..., C, R, K) time-major; gy: (..., C, K)."""
    C, n = gy.shape[-2], 1
    while n < C:
        G = C // (2 * n)
        gyl = gy.unflatten(-2, (G, 2, n)).select(-3, 0)  # (..., G, n, K): left halves of the columns
        m = gyl[..., -1:, :]  # (..., G, 1, K)
        e_x = (_node_rows(gx, G, n, 1) - m[..., None, :]).exp()  # (..., G, n, R, K)
        yield G, n, e_x, (m - gyl).exp()[..., None, :]
        n *= 2


def _pair_products(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """xs (..., R, K), ys (..., S, K) -> xs @ ys^T (..., R, S) elementwise (for the tiny 1 x 1 node blocks)."""
    return (xs[..., :, None, :] * ys[..., None, :, :]).sum(-1)


def _scores_time_major(xt, gxt, yt, gy, diag, _saved=None) -> torch.Tensor:
    """The tree of ``decayed_scores_autograd`` on time-major inputs xt, gxt (..., C, R, K), yt (..., C, S, K),
    gy (..., C, K) -> A (..., C, R, C, S). The rows of all R sets (columns of all S sets) of a node are
    one matrix, so a level is one batched matmul. ``_saved`` (a list) receives each level's decay
    factors (e_x, e_y), then (xt, yt)."""
    C, R, S = xt.shape[-3], xt.shape[-2], yt.shape[-2]
    _check_pow2(C)
    xt, gxt, yt = xt.contiguous(), gxt.contiguous(), yt.contiguous()
    batch = torch.broadcast_shapes(xt.shape[:-3], yt.shape[:-3], gy.shape[:-2])
    A = torch.zeros(*batch, C, R, C, S, dtype=torch.promote_types(xt.dtype, yt.dtype), device=xt.device)  # (..., C, R, C, S)
    A_diag = A.diagonal(dim1=-4, dim2=-2)  # (..., R, S, C): the 1 x 1 diagonal blocks
    for s in range(S):  # (a batched matmul over (..., C) would be C tiny R x S products)
        A_diag[..., s, :] = (xt * (yt[..., s, None, :] * diag[:, None])).sum(-1).transpose(-1, -2)
    for G, n, e_x, e_y in _tree_levels(gxt, gy):
        xs = (_node_rows(xt, G, n, 1) * e_x).flatten(-3, -2)  # (..., G, n R, K)
        ys = (_node_rows(yt, G, n, 0) * e_y).flatten(-3, -2)  # (..., G, n S, K)
        off = _pair_products(xs, ys) if n == 1 else xs @ ys.transpose(-1, -2)  # (..., G, n R, n S)
        _node_blocks(A, G, n).copy_(off.unflatten(-1, (n, S)).unflatten(-3, (n, R)))
        if _saved is not None:
            _saved.append((e_x, e_y))
    if _saved is not None:
        _saved.append((xt, yt))
    return A


def decayed_scores_autograd(x, gx, y, gy, diag) -> torch.Tensor:
    """X[r, s, t, u] = sum_c x[r]_t[c] exp(gx[r]_t[c] - gy_u[c]) y[s]_u[c] for u < t, diag[r] * x[r]_t . y[s]_t
    for u = t, 0 for u > t: decayed scores of R row sets against S column sets.

    x, gx: (..., R, C, K); y: (..., S, C, K); gy: (..., C, K), shared by the columns; diag: (R,) 1 for
    rows with gx = gy (u <= t), 0 for strictly causal rows; C a power of two. Requires gy
    non-increasing in time and gx_t <= gy_u for u < t (gx = gc, the cumulative log decay, or gc_{t-1};
    gy = gc). Returns (..., R, S, C, C). Built on a binary tree: at each node the block (right half x
    left half) is (x_r o exp(gx_r - m)) (y_l o exp(m - gy_l))^T with m = gy at the end of the left half.
    Differentiated by autograd (``decayed_scores`` / ``decayed_score_blocks`` have a hand-written
    backward for the same function).
    """
    A = _scores_time_major(x.transpose(-3, -2), gx.transpose(-3, -2), y.transpose(-3, -2), gy, diag)
    return A.permute(*range(A.dim() - 4), -3, -1, -4, -2)  # (..., R, S, C, C)


class _DecayedScoreBlocks(torch.autograd.Function):
    """``_scores_time_major`` returning the R S score matrices as separate contiguous (..., C, C)
    tensors, with a hand-written backward. Per tree level, the node blocks' gradients wrt the decayed
    rows and columns are two batched matmuls, accumulated into dx, dy in place (with the decay factors
    kept from the forward). The decays need no pass of their own: off the diagonal a score depends on
    x[r]_t and gx[r]_t only through x[r]_t o exp(gx[r]_t), and on y[s]_u, gy_u only through
    y[s]_u o exp(-gy_u), so dgx = x o dx_off and dgy = -sum_s y[s] o dy_off[s] (the references m
    cancel); the diagonal does not depend on the decays."""

    @staticmethod
    def forward(ctx, xt, gxt, yt, gy, diag):
        saved = []
        A = _scores_time_major(xt, gxt, yt, gy, diag, _saved=saved)  # (..., C, R, C, S)
        ctx.save_for_backward(diag, *(t for pair in saved for t in pair))
        R, S = xt.shape[-2], yt.shape[-2]
        return tuple(A[..., :, r, :, s].contiguous() for r in range(R) for s in range(S))

    @staticmethod
    @once_differentiable
    def backward(ctx, *d_blocks):
        diag, *factors, xt, yt = ctx.saved_tensors  # xt, yt (..., C, R | S, K): x and y time-major
        C, R, S = xt.shape[-3], xt.shape[-2], yt.shape[-2]
        dAt = xt.new_empty(*d_blocks[0].shape[:-2], C, R, C, S)  # (..., C, R, C, S)
        for i, d in enumerate(d_blocks):
            dAt[..., :, i // S, :, i % S] = 0.0 if d is None else d
        dxt, dyt = torch.zeros_like(xt), torch.zeros_like(yt)
        n, level = 1, 0
        while n < C:
            G = C // (2 * n)
            e_x, e_y = factors[2 * level], factors[2 * level + 1]  # (..., G, n, R, K), (..., G, n, 1, K)
            xs = _node_rows(xt, G, n, 1) * e_x  # (..., G, n, R, K)
            ys = _node_rows(yt, G, n, 0) * e_y  # (..., G, n, S, K)
            # the gradient of each node's block: rows of the right half, columns of the left half
            d_off = _node_blocks(dAt, G, n).reshape(*e_x.shape[:-3], n * R, n * S).contiguous()  # (..., G, n R, n S)
            if n == 1:  # R x S blocks: elementwise beats G batched tiny matmuls
                d_xs = (d_off[..., None] * ys).sum(-2)  # (..., G, R, K)
                d_ys = (d_off[..., None] * xs.transpose(-2, -3)).sum(-3)  # (..., G, S, K)
            else:
                d_xs = d_off @ ys.flatten(-3, -2)  # (..., G, n R, K)
                d_ys = d_off.transpose(-1, -2) @ xs.flatten(-3, -2)  # (..., G, n S, K)
            _node_rows(dxt, G, n, 1).addcmul_(d_xs.unflatten(-2, (n, R)), e_x)
            _node_rows(dyt, G, n, 0).addcmul_(d_ys.unflatten(-2, (n, S)), e_y)
            n, level = 2 * n, level + 1
        dgxt = xt * dxt  # (..., C, R, K)
        dgy = -(yt * dyt).sum(-2)  # (..., C, K)
        dD = (dAt.diagonal(dim1=-4, dim2=-2) * diag[:, None, None]).movedim(-1, -3)[..., None]  # (..., C, R, S, 1)
        for s in range(S):  # the diagonal blocks
            dxt.addcmul_(dD[..., s, :], yt[..., s, None, :])
        for r in range(R):
            dyt.addcmul_(dD[..., r, :, :], xt[..., r, None, :])
        return dxt, dgxt, dyt, dgy, None


def decayed_score_blocks(xt, gxt, yt, gy, diag) -> tuple[torch.Tensor, ...]:
    """The scores of ``decayed_scores_autograd`` from time-major inputs, xt, gxt (..., C, R, K),
    yt (..., C, S, K), gy (..., C, K) (shared batch dims), as R S contiguous (..., C, C) matrices in
    the order (r, s) = (0, 0), (0, 1), ..., with a hand-written backward."""
    return _DecayedScoreBlocks.apply(xt, gxt, yt, gy, diag)


def decayed_scores(x, gx, y, gy, diag) -> torch.Tensor:
    """``decayed_scores_autograd`` (same contract; see its docstring) with a hand-written backward.
    Inputs must share their batch dims: x, gx (..., R, C, K), y (..., S, C, K), gy (..., C, K)."""
    _check_pow2(x.shape[-2])
    batch = gy.shape[:-2]
    if x.shape[:-3] != batch or y.shape[:-3] != batch or gx.shape != x.shape:
        return decayed_scores_autograd(x, gx, y, gy, diag)
    blocks = decayed_score_blocks(x.transpose(-3, -2), gx.transpose(-3, -2), y.transpose(-3, -2), gy, diag)
    return torch.stack(blocks, -3).unflatten(-3, (x.shape[-3], y.shape[-3]))  # (..., R, S, C, C)


def dplr_delta_rule_chunked(q, k, v, a, b, gk, scale=None, initial_state=None, output_final_state=False, chunk_size=32):
    """Chunked ``dplr_delta_rule_ref`` (same contract; see its docstring) in pure PyTorch."""
    op = "chunk_dplr_delta_rule"
    B, T, H, K, V = check_dplr_args(op, q, k, v, a, b, gk, initial_state)
    check_chunk_size(op, chunk_size)
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, a, b, gk)
    scale = default_scale(scale, K)
    C = 1 << (chunk_len(T, chunk_size) - 1).bit_length()  # a power of two >= the chunk length (the score tree needs it)
    T_pad = n_chunks(T, C) * C
    # padding with zeros (decay 1, nothing written, nothing removed) leaves the state unchanged
    q, k, v, a, b, gk = (pad_time(t.to(cd), T_pad) for t in (q, k, v, a, b, gk))
    to_chunks = lambda t: rearrange(t, "b (n c) h k -> b n h c k", c=C)
    qc, kc, vc, ac, bc, gkc = (to_chunks(t) for t in (q, k, v, a, b, gk))  # (B, N, H, C, K | V)
    gc = gkc.cumsum(-2)  # (B, N, H, C, K): gc_t
    gp = torch.cat([torch.zeros_like(gc[..., :1, :]), gc[..., :-1, :]], dim=-2)  # gc_{t-1}, exactly the previous cumsum

    # the four score matrices at once: rows (q with gc, u <= t; a with gc_{t-1}, u < t) x columns (k, b)
    diag = torch.tensor([1.0, 0.0], dtype=cd, device=q.device)
    A_qk, A_qb, A_ak, A_ab = decayed_score_blocks(torch.stack([qc, ac], -2), torch.stack([gc, gp], -2),
                                                  torch.stack([kc, bc], -2), gc, diag)  # 4 x (B, N, H, C, C)
    AqkV, AakV = A_qk @ vc, A_ak @ vc  # (B, N, H, C, V)
    eye = torch.eye(C, dtype=cd, device=q.device)
    # (I - A_ab)^{-1} against C identity columns, then one matmul: cheaper than solving against K + V columns
    T_inv = torch.linalg.solve_triangular(eye - A_ab, eye.expand_as(A_ab), upper=False, unitriangular=True)  # (B, N, H, C, C)
    sol = T_inv @ torch.cat([ac * gp.exp(), AakV], dim=-1)  # (B, N, H, C, K + V): [W_S | W_0], W = W_S S + W_0
    Aqb_WS, Aqb_W0 = (A_qb @ sol).split([K, V], dim=-1)  # (B, N, H, C, K), (B, N, H, C, V) (split: no zero-filled slice gradients)
    o_local = AqkV + Aqb_W0  # (B, N, H, C, V)
    q_eff = qc * gc.exp() + Aqb_WS  # (B, N, H, C, K): O = o_local + q_eff S
    to_end = (gc[..., -1:, :] - gc).exp()  # (B, N, H, C, K): exp(gc_C - gc_s) <= 1
    bt_WS, bt_W0 = ((bc * to_end).transpose(-1, -2) @ sol).split([K, V], dim=-1)  # (B, N, H, K, K), (B, N, H, K, V): b~^T W_S, b~^T W_0
    dS0 = (kc * to_end).transpose(-1, -2) @ vc + bt_W0  # (B, N, H, K, V)
    M = torch.diag_embed(gc[..., -1, :].exp()) + bt_WS  # (B, N, H, K, K): S_next = M S + dS0

    S_in, S = carry_state(M, dS0, initial_state_or_zeros(initial_state, (B, H, K, V), q, cd), output_final_state)
    o = scale * (o_local + q_eff @ S_in)
    o = rearrange(o, "b n h c v -> b (n c) h v")[:, :T]
    return o.to(out_dtype), (S if output_final_state else None)
