"""The compiled CPU causal depthwise conv (``cpu_kernel.cpp``) wired as a ``torch.autograd.Function``.

Bias and SiLU fused; backward recomputes the pre-activation. Build, cache and the
``SEQARENA_CPU_KERNELS`` switch: ``archs/ops/_compile.py``.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .. import _compile
from .._compile import ptr

NAME = "causal_conv1d"
SOURCES = [Path(__file__).with_name("cpu_kernel.cpp"), Path(__file__).parent.parent / "_cpu_math.h"]
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def library():
    """The loaded library, or None (mode off, or no compiler: see ``_compile.load``)."""
    return _compile.load(NAME, SOURCES)


def usable(x, *tensors) -> bool:
    """True when the compiled kernel should run: fp32/fp64 CPU tensors, kernels enabled and built."""
    if x.dtype not in _SUFFIX or not all(t is None or t.device.type == "cpu" for t in (x, *tensors)):
        return False
    return library() is not None


def _strides(x):
    return (ctypes.c_int64 * 3)(*x.stride())


def _args(*vs):
    return [ctypes.c_int64(int(v)) for v in vs]


class CausalConv1dCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, init, silu):  # x (B, D, L); weight (D, W); bias (D,); init (B, D, W-1)
        B, D, L = x.shape
        W = weight.shape[1]
        xc = x.detach()  # read in place with its strides
        wc = weight.to(x.dtype).contiguous()
        bc = None if bias is None else bias.to(x.dtype).contiguous()
        ic = None if init is None else init.to(x.dtype).contiguous()
        y = torch.empty(B, D, L, dtype=x.dtype)
        getattr(library(), f"conv_fwd_{_SUFFIX[x.dtype]}")(ptr(xc), _strides(xc), ptr(ic), ptr(wc), ptr(bc), int(silu),
                                                          *_args(B, D, L, W), ptr(y), max(1, torch.get_num_threads()))
        ctx.save_for_backward(xc, wc, bc, ic)
        ctx.silu = silu
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        xc, wc, bc, ic = ctx.saved_tensors
        B, D, L = xc.shape
        W = wc.shape[1]
        gy = gy.to(xc.dtype).contiguous()
        gx = torch.empty(B, D, L, dtype=xc.dtype)
        ginit = torch.empty_like(ic) if ic is not None else None
        gw_part, gb_part = torch.empty(B, D, W, dtype=xc.dtype), torch.empty(B, D, dtype=xc.dtype)
        getattr(library(), f"conv_bwd_{_SUFFIX[xc.dtype]}")(
            ptr(xc), _strides(xc), ptr(ic), ptr(wc), ptr(bc), int(ctx.silu), *_args(B, D, L, W), ptr(gy), ptr(gx), ptr(ginit),
            ptr(gw_part), ptr(gb_part), max(1, torch.get_num_threads()))
        return gx, gw_part.sum(0), (gb_part.sum(0) if bc is not None else None), ginit, None


def causal_conv1d_cpu(x, weight, bias=None, activation=None, initial_states=None, return_final_states=False):
    """The compiled path of ``causal_conv1d`` (arguments checked by the caller); same contract."""
    B, D, L = x.shape
    W = weight.shape[1]
    if L == 0:
        y = x.new_zeros(B, D, 0)
    else:
        y = CausalConv1dCPU.apply(x, weight, bias, initial_states, activation is not None)
    if not return_final_states:
        return y
    init = initial_states.to(x.dtype) if initial_states is not None else x.new_zeros(B, D, W - 1)
    final = torch.cat([init, x[:, :, max(0, L - (W - 1)):]], dim=2)  # (B, D, <= 2(W-1))
    return y, final[:, :, final.shape[2] - (W - 1):].clone()
