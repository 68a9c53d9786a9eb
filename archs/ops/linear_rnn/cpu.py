"""The compiled CPU linear scan (``cpu_kernel.cpp``) wired as a ``torch.autograd.Function``.

One pass forward, one reversed pass backward, real (fp32, fp64) or complex (complex64,
complex128, interleaved). Build, cache and the ``SEQARENA_CPU_KERNELS`` switch:
``archs/ops/_compile.py``.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from .. import _compile
from .._compile import ptr

NAME = "linear_scan"
SOURCES = [Path(__file__).with_name("cpu_kernel.cpp")]
_SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.complex64: "c64", torch.complex128: "c128"}


def library():
    """The loaded library, or None (mode off, or no compiler: see ``_compile.load``)."""
    return _compile.load(NAME, SOURCES)


def usable(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> bool:
    """True when the compiled kernel should run: CPU tensors of a supported dtype, kernels enabled and built."""
    if b.dtype not in _SUFFIX or not all(t is None or t.device.type == "cpu" for t in (a, b, h0)):
        return False
    return library() is not None


def _raw(t):  # contiguous storage as reals (complex -> interleaved)
    t = t.contiguous()
    return torch.view_as_real(t) if t.is_complex() else t


def _args(*vs):
    return [ctypes.c_int64(int(v)) for v in vs]


class LinearScanCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, h0):  # a, b (P, L, M) same dtype; h0 (P, M) or None
        P, L, M = b.shape
        a, b = a.contiguous(), b.contiguous()
        h0 = None if h0 is None else h0.contiguous()
        h = torch.empty(P, L, M, dtype=b.dtype)
        getattr(library(), f"ls_fwd_{_SUFFIX[b.dtype]}")(
            ptr(_raw(a)), ptr(_raw(b)), ptr(None if h0 is None else _raw(h0)), ptr(_raw(h)), *_args(P, L, M),
            max(1, torch.get_num_threads()))
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, gh):
        a, h, h0 = ctx.saved_tensors
        need_a, need_b, need_h0 = ctx.needs_input_grad
        P, L, M = h.shape
        gh = gh.to(h.dtype)  # any strides: the kernel reads them (an expanded gradient is not copied)
        gb = torch.empty_like(h)
        ga = torch.empty_like(h) if need_a else None
        gh0 = torch.empty_like(h0) if (need_h0 and h0 is not None) else None
        getattr(library(), f"ls_bwd_{_SUFFIX[h.dtype]}")(
            ptr(_raw(a)), ptr(_raw(h)), ptr(None if h0 is None else _raw(h0)), ptr(gh), *_args(*gh.stride()),
            ptr(None if ga is None else _raw(ga)), ptr(_raw(gb)), ptr(None if gh0 is None else _raw(gh0)),
            *_args(P, L, M), max(1, torch.get_num_threads()))
        return ga, (gb if need_b else None), gh0
