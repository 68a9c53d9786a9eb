"""Chunked forms of the gated linear-attention recurrences (pure PyTorch; fla kernels on CUDA).

The sequence is cut into chunks of ``chunk_size`` tokens. Inside a chunk the output is the masked
quadratic form (small C x C matrices); across chunks the (K, V) state is carried by the recurrence
S_{n+1} = decay_n * S_n + dS_n, so the cost is O(T C (K + V) + T K V) instead of O(T^2 (K + V)).

Decays are only ever exponentiated as differences of within-chunk cumulative log decays taken in
the causal direction (``gc_t - gc_s`` for ``s <= t``), never divided and never with a positive
exponent, so strong decay (g -> -inf) underflows to 0 and stays finite. For the per-key-channel
decay of GLA the intra-chunk scores use sub-chunks: across sub-chunks the decay is split at the
query's sub-chunk boundary r (exp(gc_t - gc_r) * exp(gc_r - gc_s), both factors <= 1), inside a
sub-chunk the (c, c, K) decay tensor is formed directly.
"""
from __future__ import annotations

import torch
from einops import rearrange

from .._common import (
    call_fla,
    check_chunk_size,
    check_g,
    check_qkv,
    chunk_len,
    compute_dtype,
    default_scale,
    n_chunks,
    pad_time,
    retention_log_decay,
)

SUB_CHUNK = 16  # sub-chunk size for the per-channel decay of chunk_gla


def _tril_mask(n: int, device, diagonal: int = 0) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool, device=device).tril(diagonal)


def _masked_exp(diff: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """exp(diff) where mask, 0 elsewhere (without ever exponentiating the masked-out entries)."""
    return diff.masked_fill(~mask, float("-inf")).exp()


def carry_states(dS: torch.Tensor, log_a: torch.Tensor, S0: torch.Tensor | None):
    """Run S_{n+1} = exp(log_a_n) * S_n + dS_n over chunks.

    dS: (B, N, H, K, V) each chunk's own contribution; log_a: (B, N, H, K or 1, 1) the chunk's total
    log decay; S0: (B, H, K, V) or None. Returns (S_in (B, N, H, K, V): state entering each chunk,
    S_final (B, H, K, V)).
    """
    B, N, H, K, V = dS.shape
    S = dS.new_zeros(B, H, K, V) if S0 is None else S0.to(dS.dtype)
    a = log_a.exp()
    states = []
    for n in range(N):
        states.append(S)
        S = a[:, n] * S + dS[:, n]
    return torch.stack(states, dim=1), S


def _chunk_linear_attn(q, k, v, gc, scale, initial_state, output_final_state, chunk_size, intra_scores):
    """Shared chunked driver. q, k (B, T, H, K); v (B, T, H, V) padded to N * C tokens;
    gc (B, N, C, H, Kg) within-chunk cumulative log decay (Kg = 1 or K);
    intra_scores(qc, kc, gc) -> (B, N, H, C, C) decayed q.k scores, masked to s <= t."""
    C = chunk_size
    qc = rearrange(q, "b (n c) h k -> b n c h k", c=C)  # (B, N, C, H, K)
    kc = rearrange(k, "b (n c) h k -> b n c h k", c=C)
    vc = rearrange(v, "b (n c) h v -> b n c h v", c=C)  # (B, N, C, H, V)
    A = intra_scores(qc, kc, gc)  # (B, N, H, C, C)
    o = torch.einsum("bnhts,bnshv->bnthv", A, vc)  # (B, N, C, H, V)
    last = gc[:, :, -1:]  # (B, N, 1, H, Kg)
    dS = torch.einsum("bnchk,bnchv->bnhkv", kc * (last - gc).exp(), vc)  # (B, N, H, K, V)
    need_states = initial_state is not None or qc.shape[1] > 1
    S_final = None
    if need_states or output_final_state:
        S_in, S_final = carry_states(dS, last[:, :, 0, :, :, None], initial_state)  # (B, N, H, K, V)
        if need_states:
            o = o + torch.einsum("bnchk,bnhkv->bnchv", qc * gc.exp(), S_in)
    o = scale * rearrange(o, "b n c h v -> b (n c) h v")
    return o, (S_final if output_final_state else None)


def _scalar_decay_scores(qc, kc, gc):
    """Scores for a scalar decay per head: gc (B, N, C, H, 1) -> (B, N, H, C, C)."""
    C = qc.shape[2]
    g = gc[..., 0]  # (B, N, C, H)
    D = _masked_exp(g[:, :, :, None] - g[:, :, None, :], _tril_mask(C, g.device)[:, :, None])  # (B, N, C, S, H)
    return torch.einsum("bnthk,bnshk->bnhts", qc, kc) * rearrange(D, "b n t s h -> b n h t s")


def _channel_decay_scores(qc, kc, gc, sub: int):
    """Scores for a decay per key channel: gc (B, N, C, H, K) -> (B, N, H, C, C), via sub-chunks of ``sub``."""
    B, N, C, H, K = qc.shape
    ns = C // sub
    dev = qc.device
    qs = rearrange(qc, "b n (i c) h k -> b n i c h k", c=sub)  # (B, N, ns, c, H, K)
    ks = rearrange(kc, "b n (i c) h k -> b n i c h k", c=sub)
    gs = rearrange(gc, "b n (i c) h k -> b n i c h k", c=sub)
    # inside each sub-chunk: direct (c, c, K) decays exp(gc_t - gc_s), s <= t
    Dd = _masked_exp(gs[:, :, :, :, None] - gs[:, :, :, None, :], _tril_mask(sub, dev)[:, :, None, None])  # (B, N, ns, c, c, H, K)
    A_diag = (qs[:, :, :, :, None] * Dd * ks[:, :, :, None]).sum(-1)  # (B, N, ns, c, c, H)
    A_diag = rearrange(A_diag, "b n i t s h -> b n h i t s")  # (B, N, H, ns, c, c)
    A = torch.einsum("bnhits,ij->bnhitjs", A_diag, torch.eye(ns, dtype=A_diag.dtype, device=dev))
    if ns > 1:
        # across sub-chunks: split the decay at r_i = the last position before sub-chunk i
        ref = torch.cat([torch.zeros_like(gs[:, :, :1, 0]), gs[:, :, :-1, -1]], dim=2)  # (B, N, ns, H, K)
        qd = qs * (gs - ref[:, :, :, None]).exp()  # (B, N, ns, c, H, K), exponent <= 0
        before = torch.arange(C, device=dev)[None, :] < (torch.arange(ns, device=dev) * sub)[:, None]  # (ns, C)
        kd = kc[:, :, None] * _masked_exp(ref[:, :, :, None] - gc[:, :, None], before[:, :, None, None])  # (B, N, ns, C, H, K)
        A_off = torch.einsum("bnithk,bnishk->bnhits", qd, kd)  # (B, N, H, ns, c, C)
        A = A + rearrange(A_off, "b n h i t (j s) -> b n h i t j s", s=sub)
    return rearrange(A, "b n h i t j s -> b n h (i t) (j s)")


def _prepare(op, q, k, v, g, g_shape, what, scale, initial_state, chunk_size):
    B, T, H, K, V = check_qkv(op, q, k, v, initial_state)
    check_g(op, g, g_shape(B, T, H, K), what)
    check_chunk_size(op, chunk_size)
    chunk_size = chunk_len(T, chunk_size)  # a short sequence is one chunk: no padding to chunk_size
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, g)
    T_pad = n_chunks(T, chunk_size) * chunk_size
    q, k, v, g = (pad_time(t.to(cd), T_pad) for t in (q, k, v, g))  # padding: k = v = 0, g = 0 keeps the state
    return q, k, v, g, default_scale(scale, K), T, out_dtype, chunk_size


def chunk_simple_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False, chunk_size=64):
    """Chunked ``simple_gla_ref``: S_t = exp(g_t) S_{t-1} + k_t v_t^T, o_t = scale * S_t^T q_t.

    q, k: (B, T, H, K); v: (B, T, H, V); g: (B, T, H) log decay (<= 0); initial_state: (B, H, K, V)
    or None. Returns (o (B, T, H, V), final state (B, H, K, V) or None). Uses fla's kernel on CUDA.
    """
    kern = call_fla("fla.ops.simple_gla", "chunk_simple_gla", q, k, v, g, scale=scale,
                    initial_state=initial_state, output_final_state=output_final_state)
    if kern is not None:
        return kern
    q, k, v, g, scale, T, out_dtype, chunk_size = _prepare(
        "chunk_simple_gla", q, k, v, g, lambda B, T, H, K: (B, T, H), "g (log decay per head)", scale, initial_state, chunk_size)
    gc = rearrange(g, "b (n c) h -> b n c h", c=chunk_size).cumsum(2)[..., None]  # (B, N, C, H, 1)
    o, S = _chunk_linear_attn(q, k, v, gc, scale, initial_state, output_final_state, chunk_size, _scalar_decay_scores)
    return o[:, :T].to(out_dtype), S


def chunk_retention(q, k, v, scale=None, initial_state=None, output_final_state=False, chunk_size=64):
    """Chunked multi-scale retention (RetNet): ``chunk_simple_gla`` with the fixed per-head decay
    gamma_h = 1 - 2^(-5-h). q, k: (B, T, H, K); v: (B, T, H, V); initial_state: (B, H, K, V) or None."""
    kern = call_fla("fla.ops.retention", "chunk_retention", q, k, v, scale=scale,
                    initial_state=initial_state, output_final_state=output_final_state)
    if kern is not None:
        return kern
    B, T, H, K, V = check_qkv("chunk_retention", q, k, v, initial_state)
    g = retention_log_decay(H, q.device, compute_dtype(q, k, v)).expand(B, T, H)
    # (pure-PyTorch path only: calling chunk_simple_gla on CPU tensors never reaches a kernel)
    return chunk_simple_gla(q, k, v, g, scale, initial_state, output_final_state, chunk_size)


def chunk_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False, chunk_size=64):
    """Chunked ``gla_ref``: S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T, o_t = scale * S_t^T q_t.

    q, k: (B, T, H, K); v: (B, T, H, V); g: (B, T, H, K) log decay (<= 0); initial_state:
    (B, H, K, V) or None. Returns (o (B, T, H, V), final state or None). Uses fla's kernel on CUDA.
    """
    kern = call_fla("fla.ops.gla", "chunk_gla", q, k, v, g, scale=scale,
                    initial_state=initial_state, output_final_state=output_final_state)
    if kern is not None:
        return kern
    q, k, v, g, scale, T, out_dtype, chunk_size = _prepare(
        "chunk_gla", q, k, v, g, lambda B, T, H, K: (B, T, H, K), "g (log decay per key channel)", scale, initial_state, chunk_size)
    sub = SUB_CHUNK if chunk_size % SUB_CHUNK == 0 else chunk_size
    gc = rearrange(g, "b (n c) h k -> b n c h k", c=chunk_size).cumsum(2)  # (B, N, C, H, K)
    scores = lambda qc, kc, gcc: _channel_decay_scores(qc, kc, gcc, sub)
    o, S = _chunk_linear_attn(q, k, v, gc, scale, initial_state, output_final_state, chunk_size, scores)
    return o[:, :T].to(out_dtype), S
