"""Chunked delta rule via the WY / UT representation (Yang et al. 2024), pure PyTorch; fla's kernel on CUDA.

Inside a chunk starting from state S, the updates are S_t = S + sum_{s <= t} k_s u_s^T with
u_s = beta_s (v_s - S^T k_s - sum_{r < s} (k_r . k_s) u_r). In matrix form
(I + tril(diag(beta) K K^T, -1)) U = diag(beta) (V - K S), so with the unit-lower-triangular solve
T = (I + tril(diag(beta) K K^T, -1))^{-1} diag(beta):  W = T K, U0 = T V, U = U0 - W S, and

    O = scale * (Q S + tril(Q K^T) U),   S_next = S + K^T U.

W, U0 and tril(Q K^T) are computed for all chunks at once; only the (K, V) state passes between
chunks sequentially, as S_next = (I - K^T W) S + K^T U0 (one batched matmul-add per chunk).
"""
from __future__ import annotations

import torch
from einops import rearrange

from .._common import (
    carry_state,
    call_fla,
    check_chunk_size,
    check_g,
    check_qkv,
    chunk_len,
    compute_dtype,
    default_scale,
    initial_state_or_zeros,
    n_chunks,
    pad_time,
)


def chunk_delta_rule(q, k, v, beta, scale=None, initial_state=None, output_final_state=False, chunk_size=64):
    """Chunked ``delta_rule_ref``: S_t = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T, o_t = scale * S_t^T q_t.

    q, k: (B, T, H, K); v: (B, T, H, V); beta: (B, T, H); initial_state: (B, H, K, V) or None.
    Returns (o (B, T, H, V), final state (B, H, K, V) or None).
    """
    kern = call_fla("fla.ops.delta_rule", "chunk_delta_rule", q, k, v, beta, scale=scale,
                    initial_state=initial_state, output_final_state=output_final_state)
    if kern is not None:
        return kern
    B, T, H, K, V = check_qkv("chunk_delta_rule", q, k, v, initial_state)
    check_g("chunk_delta_rule", beta, (B, T, H), "beta")
    check_chunk_size("chunk_delta_rule", chunk_size)
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, beta)
    scale = default_scale(scale, K)
    C = chunk_len(T, chunk_size)  # a short sequence is one chunk: no padding to chunk_size
    T_pad = n_chunks(T, C) * C
    # padding with k = v = beta = 0 leaves the state unchanged
    q, k, v, beta = (pad_time(t.to(cd), T_pad) for t in (q, k, v, beta))
    qc = rearrange(q, "b (n c) h k -> b n h c k", c=C)  # (B, N, H, C, K)
    kc = rearrange(k, "b (n c) h k -> b n h c k", c=C)
    vc = rearrange(v, "b (n c) h v -> b n h c v", c=C)  # (B, N, H, C, V)
    bc = rearrange(beta, "b (n c) h -> b n h c", c=C)[..., None]  # (B, N, H, C, 1)

    eye = torch.eye(C, dtype=cd, device=q.device)
    lower = torch.tril(bc * (kc @ kc.transpose(-1, -2)), -1)  # (B, N, H, C, C): beta_t k_t . k_s, s < t
    rhs = torch.cat([bc * kc, bc * vc], dim=-1)  # (B, N, H, C, K + V)
    WU = torch.linalg.solve_triangular(eye + lower, rhs, upper=False, unitriangular=True)
    W, U0 = WU[..., :K], WU[..., K:]  # (B, N, H, C, K), (B, N, H, C, V)
    Aqk = torch.tril(qc @ kc.transpose(-1, -2))  # (B, N, H, C, C)
    o_local = Aqk @ U0  # (B, N, H, C, V): output if each chunk started from S = 0
    q_eff = qc - Aqk @ W  # (B, N, H, C, K): O = o_local + q_eff S

    k_t = kc.transpose(-1, -2)  # (B, N, H, K, C)
    M = torch.eye(K, dtype=cd, device=q.device) - k_t @ W  # (B, N, H, K, K): S_next = M S + dS0
    dS0 = k_t @ U0  # (B, N, H, K, V)
    S_in, S = carry_state(M, dS0, initial_state_or_zeros(initial_state, (B, H, K, V), q, cd), output_final_state)
    o = scale * (o_local + q_eff @ S_in)
    o = rearrange(o, "b n h c v -> b (n c) h v")[:, :T]
    return o.to(out_dtype), (S if output_final_state else None)
