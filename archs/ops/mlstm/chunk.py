"""Chunkwise-parallel mLSTM (pure PyTorch), exact against ``mlstm_ref`` including the stabilizer.

The sequence is cut into chunks of C tokens. With b_t the within-chunk cumulative log forget gate
and (C_in, n_in, m_in) the stabilized state entering the chunk, token t's memory is a weighted sum
of the carried state (log weight b_t + m_in) and of the chunk's tokens s <= t (log weight
b_t - b_s + i_s). The recurrent stabilizer m_t is exactly the max of those log weights, so every
exponent below is <= 0 and the outputs equal the recurrence's (xLSTM, Beck et al. 2024, eqs.
(15)-(27); chunkwise form as in Beck et al. 2025, "xLSTM 7B", Appendix: parallel inside a chunk,
recurrent across chunks). Cost O(T C (K + V) + T K V) instead of the recurrence's T steps.

Padding to a multiple of C uses log_f = 0 and i = -inf, which leaves the state unchanged, so the
last chunk's end state is the state after token T.
"""
from __future__ import annotations

import torch
from einops import rearrange

from ..gla._common import check_chunk_size, n_chunks, pad_time
from .check import check_mlstm, compute_dtype, default_scale


def _carry(dC, dn, m_loc, b_last, state):
    """Chunk-to-chunk recurrence of the stabilized state.

    dC (B, H, N, K, V), dn (B, H, N, K): each chunk's own contribution to its end state, relative to
    its own max log weight m_loc (B, H, N); b_last (B, H, N): the chunk's total log forget gate;
    state (C (B, H, K, V), n (B, H, K), m (B, H)). Returns the states entering each chunk (C_in
    (B, H, N, K, V), n_in (B, H, N, K), m_in (B, H, N)) and the final state.
    """
    C, n, m = state
    Cs, ns, ms = [], [], []
    for j in range(dC.shape[2]):
        Cs.append(C), ns.append(n), ms.append(m)
        m_new = torch.maximum(b_last[:, :, j] + m, m_loc[:, :, j])  # (B, H)
        a = (b_last[:, :, j] + m - m_new).exp()  # (B, H) decay of the carried state
        w = (m_loc[:, :, j] - m_new).exp()  # (B, H) weight of the chunk's own part
        C = a[..., None, None] * C + w[..., None, None] * dC[:, :, j]
        n = a[..., None] * n + w[..., None] * dn[:, :, j]
        m = m_new
    return (torch.stack(Cs, 2), torch.stack(ns, 2), torch.stack(ms, 2)), (C, n, m)


def chunk_mlstm(q, k, v, i, log_f, scale=None, initial_state=None, output_final_state=False, eps=1e-6, chunk_size=64):
    """Chunkwise mLSTM: the same function as ``mlstm_ref`` (values and gradients).

    q, k: (B, T, H, K); v: (B, T, H, V); i: (B, T, H) input gate pre-activation; log_f: (B, T, H)
    log forget gate; initial_state: (C (B, H, K, V), n (B, H, K), m (B, H)) or None.
    Returns (h (B, T, H, V), (C, n, m) or None).
    """
    B, T, H, K, V = check_mlstm("chunk_mlstm", q, k, v, i, log_f, initial_state, eps)
    check_chunk_size("chunk_mlstm", chunk_size)
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, i, log_f)
    if initial_state is None:
        state = (q.new_zeros(B, H, K, V, dtype=cd), q.new_zeros(B, H, K, dtype=cd), q.new_zeros(B, H, dtype=cd))
    else:
        state = tuple(s.to(cd) for s in initial_state)
    if T == 0:
        return v.new_zeros(B, 0, H, V), (state if output_final_state else None)
    Cn = min(chunk_size, T)
    T_pad = n_chunks(T, Cn) * Cn
    q, k, v, log_f = (pad_time(t.to(cd), T_pad) for t in (q, k, v, log_f))
    i = i.to(cd)
    if T_pad > T:  # padded tokens: input gate exp(-inf) = 0, forget gate 1 -> the state is unchanged
        i = torch.cat([i, i.new_full((B, T_pad - T, H), float("-inf"))], dim=1)
    qc = rearrange(q, "b (n c) h k -> b h n c k", c=Cn) * default_scale(scale, K)  # (B, H, N, C, K), scaled
    kc = rearrange(k, "b (n c) h k -> b h n c k", c=Cn)  # (B, H, N, C, K)
    vc = rearrange(v, "b (n c) h v -> b h n c v", c=Cn)  # (B, H, N, C, V)
    ic = rearrange(i, "b (n c) h -> b h n c", c=Cn)  # (B, H, N, C)
    b = rearrange(log_f, "b (n c) h -> b h n c", c=Cn).cumsum(-1)  # (B, H, N, C) within-chunk cumulative log f

    # the chunk's own contribution to its end state, relative to its own max log weight
    w_end = b[..., -1:] - b + ic  # (B, H, N, C): log weight of token s in the chunk's end state
    m_loc = w_end.amax(-1)  # (B, H, N)
    e_end = (w_end - m_loc[..., None]).exp()  # (B, H, N, C)
    dC = torch.einsum("bhnc,bhnck,bhncv->bhnkv", e_end, kc, vc)  # (B, H, N, K, V)
    dn = torch.einsum("bhnc,bhnck->bhnk", e_end, kc)  # (B, H, N, K)
    (C_in, n_in, m_in), final = _carry(dC, dn, m_loc, b[..., -1], state)

    # outputs: intra-chunk (s <= t) plus the carried state, under the exact running max m_t
    causal = torch.ones(Cn, Cn, dtype=torch.bool, device=q.device).tril()
    w_intra = (b[..., :, None] - b[..., None, :] + ic[..., None, :]).masked_fill(~causal, float("-inf"))  # (B, H, N, C, C)
    w_inter = b + m_in[..., None]  # (B, H, N, C)
    m = torch.maximum(w_intra.amax(-1), w_inter)  # (B, H, N, C): the recurrence's stabilizer m_t
    D = (w_intra - m[..., None]).exp()  # (B, H, N, C, C)
    a = (w_inter - m).exp()  # (B, H, N, C)
    S = torch.einsum("bhntk,bhnsk->bhnts", qc, kc) * D  # (B, H, N, C, C) stabilized q.k weights
    num = torch.einsum("bhnts,bhnsv->bhntv", S, vc) + a[..., None] * torch.einsum("bhntk,bhnkv->bhntv", qc, C_in)
    den = S.sum(-1) + a * torch.einsum("bhntk,bhnk->bhnt", qc, n_in)  # (B, H, N, C)
    den = torch.maximum(den.abs(), (-m).exp()) + eps
    h = rearrange(num / den[..., None], "b h n c v -> b (n c) h v")[:, :T]  # (B, T, H, V)
    return h.to(out_dtype), (final if output_final_state else None)
