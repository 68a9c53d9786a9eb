"""Causal depthwise 1-D convolution (the short conv of Mamba / Mamba-2 / DeltaNet).

    causal_conv1d(x, weight, bias=None, activation=None, initial_states=None, return_final_states=False)
        x (B, D, L), weight (D, W), bias (D,) -> y (B, D, L) [, final_states (B, D, W-1)]
    causal_conv1d_step(x_t, conv_state, weight, bias=None, activation=None)
        x_t (B, D), conv_state (B, D, S >= W-1) updated in place -> y_t (B, D)
    causal_conv1d_step_state(x_t, conv_state, weight, bias=None, activation=None)
        -> (y_t (B, D), conv_state): in place when autograd is off, else a new window (what mixers call)
    causal_conv1d_ref   the sequential definition (test oracle)

Signatures follow the ``causal_conv1d`` package (``causal_conv1d_fn`` / ``causal_conv1d_update``),
which is used on CUDA when installed; on CPU the compiled kernel of ``cpu.py`` (fp32/fp64, built
on first use, ``SEQARENA_CPU_KERNELS`` switches it: ``archs/ops/_compile.py``); otherwise a grouped
``F.conv1d`` does the work.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...state import can_update_in_place
from .._dispatch import gpu_kernel
from . import cpu
from .check import check_conv_args, check_step_args
from .conv import causal_conv1d_step_torch, causal_conv1d_torch
from .ref import causal_conv1d_ref

__all__ = ["causal_conv1d", "causal_conv1d_ref", "causal_conv1d_step", "causal_conv1d_step_state"]


def causal_conv1d(x, weight, bias=None, activation=None, initial_states=None, return_final_states=False):
    """Causal depthwise conv: x (B, D, L), weight (D, W) -> y (B, D, L) [, final_states (B, D, W-1)].

    ``initial_states`` (B, D, W-1) are the inputs before position 0 (zeros when None).
    """
    if initial_states is None and not return_final_states:
        # the kernel's initial_states path needs channel-last x: keep to the plain call
        kernel = gpu_kernel("causal_conv1d", "causal_conv1d_fn", x, weight, bias)
        if kernel is not None and 2 <= weight.shape[1] <= 4:
            return kernel(x, weight, bias, activation=activation)
    check_conv_args("causal_conv1d", x, weight, bias, activation, initial_states)
    if cpu.usable(x, weight, bias, initial_states):
        return cpu.causal_conv1d_cpu(x, weight, bias, activation, initial_states, return_final_states)
    return causal_conv1d_torch(x, weight, bias, activation, initial_states, return_final_states)


def causal_conv1d_step(x_t, conv_state, weight, bias=None, activation=None):
    """One token of the causal conv: x_t (B, D); conv_state (B, D, S) holds the last S >= W-1 inputs
    and is updated in place (as ``causal_conv1d_update``). Returns y_t (B, D)."""
    kernel = gpu_kernel("causal_conv1d", "causal_conv1d_update", x_t, conv_state, weight, bias)
    if kernel is not None and conv_state.shape[2] >= weight.shape[1] - 1 and x_t.dtype == conv_state.dtype:
        return kernel(x_t, conv_state, weight, bias, activation)
    return causal_conv1d_step_torch(x_t, conv_state, weight, bias, activation)


def causal_conv1d_step_state(x_t, conv_state, weight, bias=None, activation=None):
    """One token of the causal conv, returning the window to carry: (y_t (B, D), conv_state (B, D, S)).

    With autograd off (``can_update_in_place``) this is ``causal_conv1d_step``: the window is
    updated in place (the GPU kernel on CUDA) and returned. Otherwise the window is rebuilt out of
    place, so gradients flow through it from one step to the next (the kernel has no backward).
    """
    if can_update_in_place(x_t, conv_state):
        return causal_conv1d_step(x_t, conv_state, weight, bias, activation), conv_state
    check_step_args("causal_conv1d_step_state", x_t, conv_state, weight, bias, activation)
    S, W = conv_state.shape[2], weight.shape[1]
    full = torch.cat([conv_state, x_t.to(conv_state.dtype)[:, :, None]], dim=2)  # (B, D, S + 1)
    y = (full[:, :, S + 1 - W:] * weight).sum(-1)  # (B, D): the last W inputs
    if bias is not None:
        y = y + bias
    return (F.silu(y) if activation is not None else y), full[:, :, 1:]
