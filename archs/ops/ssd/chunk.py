"""Chunked SSD in pure PyTorch (Dao & Gu 2024, section 7: the "minimal SSD" algorithm).

The sequence is cut into chunks of T steps. Within a chunk the output is a masked (T, T)
attention-like product (quadratic, matmuls); across chunks the (b, h, p, n) state is passed along
a short recurrence over chunks. Decays are only ever exp of a non-positive sum of dt * A
(a segment sum), so nothing overflows. Backward is autograd through these batched ops.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def segsum(a: torch.Tensor) -> torch.Tensor:
    """a (..., T) -> (..., T, T) with out[..., i, j] = sum_{j < k <= i} a[k] for j <= i, -inf above.

    Summed segment by segment (a masked cumsum), not as a difference of two cumsums, so short
    segments stay exact however large the total is.
    """
    T = a.shape[-1]
    x = a[..., None].expand(*a.shape, T)  # (..., T, T): x[..., k, j] = a[k]
    strict = torch.ones(T, T, dtype=torch.bool, device=a.device).tril(-1)  # k > j
    x = x.masked_fill(~strict, 0)
    out = torch.cumsum(x, dim=-2)  # out[i, j] = sum_{j < k <= i} a[k]
    keep = torch.ones(T, T, dtype=torch.bool, device=a.device).tril(0)
    return out.masked_fill(~keep, float("-inf"))


def ssd_chunked(x, dt, A, B, C, chunk_size, initial_states=None):
    """x (b, l, h, p), dt (b, l, h) activated, A (h,), B, C (b, l, g, n), S_0 (b, h, p, n) or None.

    Returns y (b, l, h, p) without D / z, and the final state (b, h, p, n).
    """
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    r = h // g
    T = min(chunk_size, l)
    pad = (-l) % T
    if pad:  # dt = 0 on the padding: decay 1, no input: the state passes through unchanged
        x, dt, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, B, C))
    c = x.shape[1] // T
    xs = rearrange(x * dt[..., None], "b (c t) (g r) p -> b c g r t p", t=T, g=g)  # dt x
    Bs = rearrange(B, "b (c t) g n -> b c g t n", t=T)
    Cs = rearrange(C, "b (c t) g n -> b c g t n", t=T)
    a = rearrange(dt * A, "b (c t) (g r) -> b c g r t", t=T, g=g)  # log-decay per step, <= 0
    a_cum = torch.cumsum(a, dim=-1)  # (b, c, g, r, T)

    # 1. within each chunk: y_i = sum_{j <= i} (C_i . B_j) exp(a_{j+1} + .. + a_i) dt_j x_j
    CB = Cs @ Bs.transpose(-1, -2)  # (b, c, g, T, T)
    Lmask = torch.exp(segsum(a))  # (b, c, g, r, T, T)
    y = (CB[:, :, :, None] * Lmask) @ xs  # (b, c, g, r, T, p)

    # 2. the state each chunk adds, as of its end: sum_j exp(a_{j+1} + .. + a_T) dt_j x_j B_j^T
    to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, c, g, r, T), exponents <= 0
    states = (xs * to_end[..., None]).transpose(-1, -2) @ Bs[:, :, :, None]  # (b, c, g, r, p, n)

    # 3. pass states across chunks: S_c = exp(total_c) S_{c-1} + states_c
    S = (x.new_zeros(b, g, r, p, n) if initial_states is None
         else rearrange(initial_states, "b (g r) p n -> b g r p n", g=g))
    chunk_decay = torch.exp(a_cum[..., -1])[..., None, None]  # (b, c, g, r, 1, 1)
    starts = []
    # unbind, not indexing: its backward is one stack rather than c full-size scatters
    for dec, add in zip(chunk_decay.unbind(1), states.unbind(1)):
        starts.append(S)
        S = dec * S + add
    S_in = torch.stack(starts, dim=1)  # (b, c, g, r, p, n): the state entering each chunk

    # 4. the carried-in state's contribution: y_i += exp(a_1 + .. + a_i) S_in C_i
    from_start = torch.exp(a_cum)  # (b, c, g, r, T)
    y = y + (Cs[:, :, :, None] @ S_in.transpose(-1, -2)) * from_start[..., None]  # (b, c, g, r, T, p)

    y = rearrange(y, "b c g r t p -> b (c t) (g r) p")[:, :l]
    return y, rearrange(S, "b g r p n -> b (g r) p n")
