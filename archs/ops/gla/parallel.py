"""Quadratic (attention-like) forms of the gated linear-attention recurrences: O(T^2) time and memory.

    o_t = scale * sum_{s <= t} (q_t . (prod_{s < r <= t} a_r) k_s) v_s  +  scale * q_t^T (prod_{r <= t} a_r) S_0

Decays enter only as exp(gc_t - gc_s) for s <= t (gc = cumulative log decay), an exponent that is
never positive, so strong decay (g -> -inf) underflows to 0 instead of overflowing.
"""
from __future__ import annotations

import torch

from .._common import check_g, check_qkv, compute_dtype, default_scale, retention_log_decay


def _causal_decay(gc: torch.Tensor) -> torch.Tensor:
    """gc (B, T, H, ...) cumulative log decay -> exp(gc_t - gc_s) masked to s <= t: (B, H, T, S, ...)."""
    T = gc.shape[1]
    diff = gc[:, :, None] - gc[:, None, :]  # (B, T, S, H, ...)
    mask = torch.ones(T, T, dtype=torch.bool, device=gc.device).tril()
    mask = mask.view(1, T, T, *([1] * (gc.dim() - 2)))
    d = diff.masked_fill(~mask, float("-inf")).exp()
    return d.movedim(3, 1)  # (B, H, T, S, ...)


def _finish(o, q, k, v, gc, scale, initial_state, output_final_state, out_dtype):
    """Add the initial state's contribution and compute the final state. gc: (B, T, H) or (B, T, H, K)."""
    B, T, H, K = q.shape
    gcx = gc if gc.dim() == 4 else gc[..., None]  # (B, T, H, K or 1)
    S = None
    if initial_state is not None:
        S0 = initial_state.to(q.dtype)  # (B, H, K, V)
        o = o + scale * torch.einsum("bthk,bhkv->bthv", q * gcx.exp(), S0)
    if output_final_state:
        if T == 0:
            S = q.new_zeros(B, H, K, v.shape[-1]) if initial_state is None else initial_state.to(q.dtype)
        else:
            last = gcx[:, -1]  # (B, H, K or 1)
            S = torch.einsum("bthk,bthv->bhkv", k * (last[:, None] - gcx).exp(), v)  # (B, H, K, V)
            if initial_state is not None:
                S = S + last.exp()[..., None] * initial_state.to(q.dtype)
    return o.to(out_dtype), S


def parallel_simple_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False):
    """Quadratic form of ``simple_gla_ref``: q, k (B, T, H, K); v (B, T, H, V); g (B, T, H) log decay;
    initial_state (B, H, K, V) or None. Returns (o (B, T, H, V), final state or None)."""
    B, T, H, K, V = check_qkv("parallel_simple_gla", q, k, v, initial_state)
    check_g("parallel_simple_gla", g, (B, T, H), "g (log decay per head)")
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, g)
    q, k, v, g = (t.to(cd) for t in (q, k, v, g))
    scale = default_scale(scale, K)
    gc = g.cumsum(1)  # (B, T, H)
    A = torch.einsum("bthk,bshk->bhts", q, k) * _causal_decay(gc)  # (B, H, T, S)
    o = scale * torch.einsum("bhts,bshv->bthv", A, v)  # (B, T, H, V)
    return _finish(o, q, k, v, gc, scale, initial_state, output_final_state, out_dtype)


def parallel_retention(q, k, v, scale=None, initial_state=None, output_final_state=False):
    """Quadratic form of ``retention_ref`` (decay gamma_h = 1 - 2^(-5-h)); shapes as parallel_simple_gla."""
    B, T, H, K, V = check_qkv("parallel_retention", q, k, v, initial_state)
    g = retention_log_decay(H, q.device, compute_dtype(q, k, v)).expand(B, T, H)
    return parallel_simple_gla(q, k, v, g, scale, initial_state, output_final_state)


def parallel_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False):
    """Quadratic form of ``gla_ref`` (decay per key channel). Materialises a (B, H, T, T, K) decay
    tensor, so it is meant for checking and short sequences. q, k (B, T, H, K); v (B, T, H, V);
    g (B, T, H, K) log decay; initial_state (B, H, K, V) or None."""
    B, T, H, K, V = check_qkv("parallel_gla", q, k, v, initial_state)
    check_g("parallel_gla", g, (B, T, H, K), "g (log decay per key channel)")
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, g)
    q, k, v, g = (t.to(cd) for t in (q, k, v, g))
    scale = default_scale(scale, K)
    gc = g.cumsum(1)  # (B, T, H, K)
    A = torch.einsum("bthk,bshk,bhtsk->bhts", q, k, _causal_decay(gc))  # (B, H, T, S)
    o = scale * torch.einsum("bhts,bshv->bthv", A, v)  # (B, T, H, V)
    return _finish(o, q, k, v, gc, scale, initial_state, output_final_state, out_dtype)
