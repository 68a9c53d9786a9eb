"""The compiled CPU selective scan (``cpu_kernel.cpp``) wired as a ``torch.autograd.Function``.

Fused: delta_bias, softplus, D, z, initial and last state, grouped B/C, in one pass over time,
vectorised across the channels of a group (16 fp32 / 8 fp64 lanes). Forward keeps only the state
entering each block of ``CKPT`` steps (b, d, l / CKPT, n); backward recomputes each block from it. Build, cache and
the ``SEQARENA_CPU_KERNELS`` switch: ``archs/ops/_compile.py``.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from einops import rearrange

from .. import _compile
from .._compile import ptr

NAME = "selective_scan"
SOURCES = [Path(__file__).with_name("cpu_kernel.cpp"), Path(__file__).parent.parent / "_cpu_math.h"]
#: time steps between saved states (backward recomputes a block of this many steps)
CKPT = 64
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def library():
    """The loaded library, or None (mode off, or no compiler: see ``_compile.load``)."""
    return _compile.load(NAME, SOURCES)


def usable(*tensors) -> bool:
    """True when the compiled kernel should run on these tensors (CPU, enabled, built)."""
    if not all(t is None or t.device.type == "cpu" for t in tensors):
        return False
    return library() is not None


def _c(t, dtype):
    return None if t is None else t.detach().to(dtype).contiguous()


def _v(t, dtype):  # read in place with its strides (u, delta, z, dout: any; B, C: state axis contiguous)
    if t is None:
        return None
    t = t.detach().to(dtype)
    return t if t.dim() == 3 or t.stride(-1) == 1 else t.contiguous()


def _strides(u, delta, z, dout, B, C):
    """The kernel's ``Strides`` struct: (b, d, l) strides of u, delta, z, dout; (b, g, l) of B, C."""
    vals = []
    for t in (u, delta, z, dout, B, C):
        vals += list(t.stride()[:3]) if t is not None else [0, 0, 0]
    return (ctypes.c_int64 * 18)(*vals)


def _threads() -> int:
    return max(1, torch.get_num_threads())


class SelectiveScanCPU(torch.autograd.Function):
    """out [, last] = selective_scan(u, delta, A, B, C, D, z, delta_bias, softplus, h0); B, C (b, g, l, n)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, h0, softplus, ct):
        lib = library()
        b, d, l = u.shape
        g, n = B.shape[1], A.shape[1]
        uc, dc, zc, Bc, Cc = (_v(t, ct) for t in (u, delta, z, B, C))
        Ac, Dc, dbc, h0c = (_c(t, ct) for t in (A, D, delta_bias, h0))
        out = torch.empty(b, d, l, dtype=ct)
        last = torch.empty(b, d, n, dtype=ct)
        needs = any(ctx.needs_input_grad)
        nck = (l + CKPT - 1) // CKPT
        ckpt = torch.empty(b, d, nck, n, dtype=ct) if needs else None
        getattr(lib, f"ss_fwd_{_SUFFIX[ct]}")(
            ptr(uc), ptr(dc), ptr(Ac), ptr(Bc), ptr(Cc), ptr(Dc), ptr(zc), ptr(dbc), ptr(h0c),
            _strides(uc, dc, zc, None, Bc, Cc), int(softplus),
            *(_i64(v) for v in (b, d, l, n, g, CKPT)), ptr(out), ptr(last), ptr(ckpt), _threads())
        if needs:
            ctx.save_for_backward(uc, dc, Ac, Bc, Cc, Dc, zc, dbc, ckpt)
            ctx.softplus, ctx.ct, ctx.has_h0 = softplus, ct, h0 is not None
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        uc, dc, Ac, Bc, Cc, Dc, zc, dbc, ckpt = ctx.saved_tensors
        ct = ctx.ct
        b, d, l = uc.shape
        g, n = Bc.shape[1], Ac.shape[1]
        e = d // g
        # channel chunks per (batch, group): enough tasks for the threads, each with its own dB, dC
        nblk = max(1, min(e, -(-_threads() // (b * g))))
        dout = torch.zeros(b, d, l, dtype=ct) if dout is None else dout.to(ct)  # read with its strides
        dlast = None if dlast is None else dlast.to(ct).contiguous()
        du, ddelta = torch.empty(b, d, l, dtype=ct), torch.empty(b, d, l, dtype=ct)
        dA_part = torch.empty(b, d, n, dtype=ct)
        dB_part, dC_part = torch.empty(b, g, nblk, l, n, dtype=ct), torch.empty(b, g, nblk, l, n, dtype=ct)
        dD_part, ddb_part = torch.empty(b, d, dtype=ct), torch.empty(b, d, dtype=ct)
        dz = torch.empty(b, d, l, dtype=ct) if zc is not None else None
        dh0 = torch.empty(b, d, n, dtype=ct) if ctx.has_h0 else None
        getattr(library(), f"ss_bwd_{_SUFFIX[ct]}")(
            ptr(uc), ptr(dc), ptr(Ac), ptr(Bc), ptr(Cc), ptr(Dc), ptr(zc), ptr(dbc),
            _strides(uc, dc, zc, dout, Bc, Cc), int(ctx.softplus),
            *(_i64(v) for v in (b, d, l, n, g, CKPT)), ptr(ckpt), ptr(dout), ptr(dlast), ptr(du), ptr(ddelta),
            ptr(dA_part), ptr(dB_part), ptr(dC_part), ptr(dD_part), ptr(ddb_part), ptr(dz), ptr(dh0), _i64(nblk),
            _threads())
        dB = dB_part[:, :, 0] if nblk == 1 else dB_part.sum(2)  # (b, g, l, n)
        dC = dC_part[:, :, 0] if nblk == 1 else dC_part.sum(2)
        return (du, ddelta, dA_part.sum(0), dB, dC, None if Dc is None else dD_part.sum(0), dz,
                None if dbc is None else ddb_part.sum(0), dh0, None, None)


def _i64(v):
    return ctypes.c_int64(int(v))


def selective_scan_cpu(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False, initial_state=None):
    """The compiled path of ``selective_scan`` (arguments checked by the caller); B, C (b, g, n, l).

    Computes in fp64 if any input is fp64, else fp32; returns out in u's dtype [, last (b, d, n)].
    """
    from .check import compute_dtype

    ct = compute_dtype(u, delta, A, B, C)
    b, d, l = u.shape
    if l == 0:
        last = initial_state.to(ct).clone() if initial_state is not None else u.new_zeros(b, d, A.shape[1], dtype=ct)
        out = u.new_zeros(b, d, 0)
        return (out, last) if return_last_state else out
    Bt = rearrange(B, "b g n l -> b g l n")  # a free view when B came from a (b, l, n) projection
    Ct = rearrange(C, "b g n l -> b g l n")
    out, last = SelectiveScanCPU.apply(u, delta, A, Bt, Ct, D, z, delta_bias, initial_state, bool(delta_softplus), ct)
    out = out.to(u.dtype)
    return (out, last) if return_last_state else out
