"""Fast linear scan: chunked, recursive over chunk ends, with a reversed-scan backward.

For a, b (P, L, M), split time into chunks of T steps, then
  1. inside every chunk at once (vectorised over chunks): a sequential scan from a zero carry;
  2. the state at each chunk end is itself a linear scan over chunks (a = product of the chunk's
     a, b = local end state): solved by recursion on a sequence T times shorter;
  3. every position adds (running product of a inside its chunk) * (carry into its chunk).
Only products and sums: a == 0, negative and complex a are exact (no logs, no division).
Python iterations: about T * log_T(L) instead of L; work stays O(L).

Alternatives measured on CPU (B=4, D=256, one thread, best of 7): a Hillis-Steele scan
(log2 L full-size steps) was 3-10x slower than this; the same chunking with ``torch.cumprod``
(a (P, L, M) temporary) and a two-pass variant (local end states first, then one writing pass)
were within noise of it. T in 16..64 is flat; 32 is the default.

The backward of h_t = a_t h_{t-1} + b_t is a reversed scan of the same kind:
  g_t = dL/dh_t + conj(a_{t+1}) g_{t+1};  dL/db_t = g_t;  dL/da_t = g_t conj(h_{t-1});
  dL/dh0 = conj(a_0) g_0.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from . import cpu as _cpu
from .check import prepare

#: steps per chunk (see the module docstring; ``python -m eval.bench.linear_scan`` for fast vs ref)
CHUNK = 32


def _scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, T: int | None = None) -> torch.Tensor:
    """No-grad core. a, b (P, L, M) (a may be a broadcast view); h0 (P, M) or None -> h (P, L, M).

    T: steps per chunk (default ``CHUNK``).
    """
    T = T or CHUNK
    P, L, M = b.shape
    h = torch.empty(P, L, M, dtype=b.dtype, device=b.device)
    if L <= T:  # short: plain loop
        prev = h0
        for t in range(L):
            if prev is None:
                h[:, t] = b[:, t]
            else:
                torch.addcmul(b[:, t], a[:, t], prev, out=h[:, t])
            prev = h[:, t]
        return h
    nc = L // T
    L0 = nc * T
    a4 = a[:, :L0].reshape(P, nc, T, M)  # (P, nc, T, M)
    b4 = b[:, :L0].reshape(P, nc, T, M)
    h4 = h[:, :L0].view(P, nc, T, M)
    # 1. local scans from a zero carry, all chunks at once
    h4[:, :, 0] = b4[:, :, 0]
    for t in range(1, T):
        torch.addcmul(b4[:, :, t], a4[:, :, t], h4[:, :, t - 1], out=h4[:, :, t])
    # 2. true state at every chunk end: a scan over chunks with a = the chunk's product (recursion)
    ends = _scan(a4.prod(dim=2), h4[:, :, -1], h0, T)  # (P, nc, M)
    # 3. add the carried-in state times the running product of a (kept in one small buffer,
    #    so no (P, L, M) temporary: on CPU this is memory-bound)
    carry = torch.empty(P, nc, M, dtype=b.dtype, device=b.device)  # state entering each chunk
    if h0 is None:
        carry[:, 0] = 0
    else:
        carry[:, 0] = h0
    carry[:, 1:] = ends[:, :-1]
    for t in range(T - 1):
        carry.mul_(a4[:, :, t])
        h4[:, :, t].add_(carry)
    h4[:, :, T - 1] = ends
    prev = ends[:, -1]
    for t in range(L0, L):  # the tail (< T steps)
        torch.addcmul(b[:, t], a[:, t], prev, out=h[:, t])
        prev = h[:, t]
    return h


def _reversed_scan(a: torch.Tensor, gh: torch.Tensor) -> torch.Tensor:
    """g_t = gh_t + conj(a_{t+1}) g_{t+1}, g_{L-1} = gh_{L-1}; a, gh (P, L, M) -> g (P, L, M)."""
    P, L, M = gh.shape
    a_rev = torch.empty(P, L, M, dtype=gh.dtype, device=gh.device)  # a' of the flipped scan
    a_rev[:, 0] = 0
    a_rev[:, 1:] = a[:, 1:].flip(1).conj()
    return _scan(a_rev, gh.flip(1), None).flip(1)


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, h0):  # a, b (P, L, M); h0 (P, M) or None
        with torch.no_grad():
            h = _scan(a, b, h0)
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, gh):
        a, h, h0 = ctx.saved_tensors
        need_a, need_b, need_h0 = ctx.needs_input_grad
        g = _reversed_scan(a, gh.contiguous())  # (P, L, M) = dL/db
        grad_a = grad_h0 = None
        if need_a:
            grad_a = torch.empty_like(g)
            torch.mul(g[:, 1:], h[:, :-1].conj(), out=grad_a[:, 1:])
            if h0 is None:
                grad_a[:, 0] = 0
            else:
                torch.mul(g[:, 0], h0.conj(), out=grad_a[:, 0])
        if need_h0 and h0 is not None:
            grad_h0 = a[:, 0].conj() * g[:, 0]
        return grad_a, (g if need_b else None), grad_h0


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t along dim 1, with h_{-1} = h0 (zeros when None).

    Args:
        a: (B, L, ...) decay, real or complex; broadcastable with b (e.g. (1, 1, N) for a
            time-invariant decay).
        b: (B, L, ...) input.
        h0: (B, ...) initial state, or None.
    Returns:
        h: (B, L, ...) in the promoted dtype; differentiable in a, b and h0.

    Same values as ``linear_scan_ref`` up to rounding (products are only re-associated).
    On CPU tensors of fp32/fp64/complex dtypes the compiled kernel of ``cpu.py`` runs (one
    fused pass each way; ``SEQARENA_CPU_KERNELS=0`` forces the pure-PyTorch form here).
    """
    a, b, h0 = prepare("linear_scan", a, b, h0)
    shape = b.shape  # (B, L, *F)
    if shape[1] == 0:
        return b.clone()
    Bsz, L = shape[0], shape[1]
    a3 = a.reshape(Bsz, L, -1)  # (B, L, M)
    b3 = b.reshape(Bsz, L, -1)
    h03 = None if h0 is None else h0.reshape(Bsz, -1)  # (B, M)
    if a3.shape[-1] == 0:
        return b.clone()
    if _cpu.usable(a3, b3, h03):  # the compiled CPU kernel (SEQARENA_CPU_KERNELS, archs/ops/_compile.py)
        h = _cpu.LinearScanCPU.apply(a3, b3, h03)
    else:
        h = _LinearScan.apply(a3, b3, h03)
    return h.reshape(shape)

