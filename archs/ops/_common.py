"""Helpers every op family shares: input checks with clear errors (``check_qkv``, ``check_shape``,
``check_chunk_size``), the compute dtype (fp32 for half inputs, else the widest), input preparation
(``default_scale``, ``initial_state_or_zeros``, padding the time axis to a chunk multiple:
``pad_time``, ``n_chunks``, ``chunk_len``) and the lazy dispatch to fla's kernels (``call_fla``)."""
from __future__ import annotations

import functools
import inspect
import math

import torch

from ._dispatch import gpu_kernel

_LOW = (torch.float16, torch.bfloat16)


def shape_str(x) -> str:
    """A tensor's shape as a tuple string (or the type name of a non-tensor), for error messages."""
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def check_qkv(op: str, q, k, v, initial_state=None) -> tuple[int, int, int, int, int]:
    """Check q, k (B, T, H, K), v (B, T, H, V), initial_state (B, H, K, V); return (B, T, H, K, V)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ValueError(f"{op}: {name} must be a 4-d tensor (B, T, H, K|V), got {shape_str(t)}")
    B, T, H, K = q.shape
    if k.shape != q.shape:
        raise ValueError(f"{op}: k has shape {shape_str(k)} but q has {shape_str(q)}; expected k of shape (B, T, H, K) = {tuple(q.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"{op}: v has shape {shape_str(v)}; expected (B, T, H, V) = ({B}, {T}, {H}, V) to match q {shape_str(q)}")
    V = v.shape[3]
    if initial_state is not None:
        if not isinstance(initial_state, torch.Tensor) or tuple(initial_state.shape) != (B, H, K, V):
            raise ValueError(f"{op}: initial_state has shape {shape_str(initial_state)}; expected (B, H, K, V) = {(B, H, K, V)}")
    return B, T, H, K, V


def check_shape(op: str, x, shape: tuple[int, ...], what: str) -> None:
    """Raise ``"{op}: {what} has shape (...); expected (...)"`` unless x is a tensor of exactly ``shape``."""
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != tuple(shape):
        raise ValueError(f"{op}: {what} has shape {shape_str(x)}; expected {tuple(shape)}")


check_g = check_shape  # the name the gla / delta-rule ops use for their gate inputs


def default_scale(scale, K: int) -> float:
    return K ** -0.5 if scale is None else float(scale)


def compute_dtype(*tensors) -> torch.dtype:
    """fp32 for half-precision inputs (cumulative sums and states need it), else the widest input dtype."""
    dt = functools.reduce(torch.promote_types, [t.dtype for t in tensors if t is not None])
    return torch.float32 if dt in _LOW else dt


def retention_log_decay(H: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Per-head log decay log(gamma_h), gamma_h = 1 - 2^(-5 - h), h = 0..H-1 (RetNet's multi-scale decays). -> (H,)"""
    h = torch.arange(H, dtype=torch.float64)
    return torch.log1p(-torch.pow(2.0, -5.0 - h)).to(device=device, dtype=dtype)


def call_fla(module: str, attr: str, q, k, v, *extra, scale, initial_state, output_final_state):
    """Run fla's kernel ``module.attr`` on (B, T, H, K) inputs, or return None when not available."""
    fn = gpu_kernel(module, attr, q, k, v, *extra, initial_state)
    if fn is None:
        return None
    kw = dict(scale=scale, initial_state=initial_state, output_final_state=output_final_state)
    try:  # older fla defaulted to head-first (B, H, T, K); newer ones only take (B, T, H, K)
        if "head_first" in inspect.signature(fn).parameters:
            kw["head_first"] = False
    except (TypeError, ValueError):
        pass
    o, final = fn(q, k, v, *extra, **kw)
    return o, (final if output_final_state else None)


def pad_time(x: torch.Tensor, T_pad: int) -> torch.Tensor:
    """Zero-pad dim 1 (time) of x up to T_pad."""
    T = x.shape[1]
    if T_pad == T:
        return x
    pad = x.new_zeros((x.shape[0], T_pad - T, *x.shape[2:]))
    return torch.cat([x, pad], dim=1)


def n_chunks(T: int, chunk_size: int) -> int:
    return max(1, math.ceil(T / chunk_size))


def chunk_len(T: int, chunk_size: int) -> int:
    """The chunk length actually used: a sequence shorter than ``chunk_size`` is one chunk (no padding)."""
    return min(chunk_size, max(T, 1))


def initial_state_or_zeros(initial_state, shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``initial_state`` cast to ``dtype``, or zeros of ``shape`` on ``like``'s device."""
    if initial_state is None:
        return torch.zeros(shape, dtype=dtype, device=like.device)
    return initial_state.to(dtype)


def check_chunk_size(op: str, chunk_size) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{op}: chunk_size must be a positive int, got {chunk_size!r}")


def carry_state(M: torch.Tensor, dS: torch.Tensor, S0: torch.Tensor, output_final_state: bool = True):
    """Run the chunk recurrence S_{n+1} = M_n S_n + dS_n (one batched matmul-add per chunk).

    M: (B, N, H, K, K) each chunk's state transition; dS: (B, N, H, K, V) its own contribution;
    S0: (B, H, K, V). Returns (S_in (B, N, H, K, V): the state entering each chunk, the final state;
    when ``output_final_state`` is False the last chunk's update is skipped and the final state is None).
    """
    B, N, H, K, V = dS.shape
    Ms = M.unbind(1)  # N x (B, H, K, K)
    dSs = dS.unbind(1)  # N x (B, H, K, V): unbind once (per-chunk indexing would cost a full-size zero gradient each)
    S = S0
    states = []
    for n in range(N):
        states.append(S)
        if n + 1 < N or output_final_state:
            S = torch.baddbmm(dSs[n].reshape(B * H, K, V), Ms[n].reshape(B * H, K, K), S.reshape(B * H, K, V)).view(B, H, K, V)
    return torch.stack(states, dim=1), (S if output_final_state else None)
