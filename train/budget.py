"""Matched compute: FLOPs per token, budget -> steps, and sizing a model to a parameter count.

Forward FLOPs per token come from the model's analytic ``flops_per_token(seq_len)`` (a
multiply-add counts 2); training costs 3x forward (forward + backward of activations and
weights). ``measured_flops_per_token`` counts the same with ``torch.utils.flop_counter``,
which sees matmuls (and attention) only, so the two agree for matmul-dominated mixers.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from archs.layers import swiglu_hidden

TRAIN_FLOPS_FACTOR = 3.0


def train_flops_per_step(model, seq_len: int, batch_size: int) -> float:
    """Training FLOPs of one optimizer step on ``batch_size`` sequences of ``seq_len`` tokens."""
    return TRAIN_FLOPS_FACTOR * float(model.flops_per_token(seq_len)) * batch_size * seq_len


def steps_for_budget(flops: float | None, model, seq_len: int, batch_size: int, max_steps: int | None = None) -> int:
    """Optimizer steps that spend ``flops`` training FLOPs (at least 1), capped at ``max_steps``.

    ``flops=None`` means no FLOP budget: ``max_steps`` alone sets the length.
    """
    if flops is None and max_steps is None:
        raise ValueError("budget: set budget.flops (total training FLOPs) or budget.max_steps")
    if flops is not None and not (isinstance(flops, (int, float)) and flops > 0 and math.isfinite(flops)):
        raise ValueError(f"budget: budget.flops must be a positive number, got {flops!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"budget: budget.max_steps must be a positive int or null, got {max_steps!r}")
    if flops is None:
        return max_steps
    steps = max(1, int(flops // train_flops_per_step(model, seq_len, batch_size)))
    return min(steps, max_steps) if max_steps is not None else steps


def _cpu_sdpa_flops(q_shape, k_shape, v_shape, dropout_p=0.0, is_causal=False, *args, out_shape=None, **kw) -> int:
    """FLOPs of CPU flash attention (torch's counter has no formula for it): QK^T and AV, 2 each per
    multiply-add; with ``is_causal`` only the keys at or before each query (the kernel skips the rest)."""
    b, h, lq, d = q_shape
    lk, dv = k_shape[-2], v_shape[-1]
    if is_causal and lq == lk:
        pairs = lq * (lq + 1) / 2
    elif is_causal:  # mask aligned top-left (torch's convention for Lq != Lk)
        pairs = sum(min(i + 1, lk) for i in range(lq))
    else:
        pairs = lq * lk
    return int(2 * b * h * pairs * (d + dv))


def _real_fft_flops(shape, dim) -> int:
    """A real FFT over ``dim`` of a tensor of ``shape``: 2.5 n log2 n per transform of size n (half of
    a complex FFT's 5 n log2 n; the convention of ``Hyena.flops_per_token``)."""
    n = math.prod(shape[d] for d in dim)
    return int(math.prod(shape) // max(n, 1) * 2.5 * n * math.log2(n)) if n > 1 else 0


def _fft_r2c_flops(x_shape, dim, *args, out_shape=None, **kw) -> int:
    return _real_fft_flops(x_shape, dim)


def _fft_c2r_flops(x_shape, dim, *args, out_shape=None, **kw) -> int:
    return _real_fft_flops(out_shape, dim)


def measured_flops_per_token(model, seq_len: int, batch_size: int = 1, vocab_size: int | None = None) -> float:
    """Forward FLOPs per token counted by ``torch.utils.flop_counter.FlopCounterMode``.

    The counter sees matmuls, convolutions, attention kernels and (with the formulas here) real
    FFTs, not elementwise work or
    fused recurrences (``nn.LSTM`` on CPU, sequential scans), so it undercounts scan-heavy mixers.
    """
    from torch.utils.flop_counter import FlopCounterMode

    vocab_size = vocab_size or model.vocab_size
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len))
    mapping = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = _cpu_sdpa_flops
    # the counter has no FFT formulas (Hyena's long convolution)
    mapping[torch.ops.aten._fft_r2c] = _fft_r2c_flops
    mapping[torch.ops.aten._fft_c2r] = _fft_c2r_flops
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.no_grad(), counter:
        model(tokens)
    return counter.get_total_flops() / (batch_size * seq_len)


def _count_params(build: Callable[..., torch.nn.Module], d_model: int, n_layers: int, mlp_hidden: int | None = None) -> int | None:
    """Parameters of ``build(d_model, n_layers, mlp_hidden)`` (on the meta device when possible); None if invalid."""
    kw = {} if mlp_hidden is None else {"mlp_hidden": mlp_hidden}
    try:
        with torch.device("meta"):
            m = build(d_model, n_layers, **kw)
    except (ValueError, KeyError):
        return None
    except Exception:  # some init does not run on meta: build for real
        try:
            m = build(d_model, n_layers, **kw)
        except (ValueError, KeyError):
            return None
    return sum(p.numel() for p in m.parameters())


def _best_width(build, target: int, layers: int, multiple_of: int, max_d_model: int) -> tuple[int, int] | None:
    """(d_model, params) with d_model a multiple of ``multiple_of`` closest to ``target`` at this depth."""
    lo, hi = 1, max_d_model // multiple_of
    while lo <= hi:  # params grow with width: bisect for the first width at or above target
        mid = (lo + hi) // 2
        p = next((q for q in (_count_params(build, (mid + j) * multiple_of, layers) for j in range(4)) if q is not None), None)
        if p is None:  # no valid width near here (e.g. head divisibility): scan around lo
            break
        if p < target:
            lo = mid + 1
        else:
            hi = mid - 1
    cands = []
    for m in range(max(1, lo - 2), lo + 3):
        p = _count_params(build, m * multiple_of, layers)
        if p is not None:
            cands.append((abs(p - target), m * multiple_of, p))
    if not cands:
        return None
    _, d, p = min(cands)
    return d, p


def _best_mlp_hidden(build, target: int, d: int, layers: int, multiple_of: int) -> tuple[int, int] | None:
    """(mlp_hidden, params) at this width and depth closest to ``target`` (hidden a multiple of 8,
    within [1/2, 2] x the default); None when the architecture has no MLP to tune."""
    p0 = _count_params(build, d, layers)
    base = swiglu_hidden(d)
    p1 = _count_params(build, d, layers, base + multiple_of)
    if p0 is None or p1 is None or p1 == p0 or _count_params(build, d, layers, base) != p0:
        return None
    per_step = p1 - p0  # params are linear in the hidden width
    h = base + round((target - p0) / per_step) * multiple_of
    h = min(max(h, multiple_of * max(1, base // (2 * multiple_of))), 2 * base)
    p = _count_params(build, d, layers, h)
    return (h, p) if p is not None else None


def size_to_params(build: Callable[..., torch.nn.Module], target: int, n_layers: int, multiple_of: int = 8,
                   tolerance: float = 0.02, max_d_model: int = 8192, vary_depth: bool = True) -> dict:
    """Size ``build(d_model, n_layers[, mlp_hidden])`` to about ``target`` parameters.

    1. ``d_model`` (a multiple of ``multiple_of``) at the configured depth;
    2. if no width is within ``tolerance`` (steps of ``multiple_of`` are coarse for small
       models), the MLP hidden width is tuned too (multiples of 8) at that width and depth;
    3. failing that (e.g. no MLP), depths 1 .. 4 x n_layers, the closest to the configured one first.
    Returns dict(d_model, n_layers, mlp_hidden (None = default), params, target, rel_error, within_tolerance).
    """
    if not isinstance(target, int) or isinstance(target, bool) or target <= 0:
        raise ValueError(f"budget: budget.params must be a positive int, got {target!r}")

    def result(d, layers, h, p):
        err = abs(p - target) / target
        return {"d_model": d, "n_layers": layers, "mlp_hidden": h, "params": p, "target": target,
                "rel_error": err, "within_tolerance": err <= tolerance}

    tried = []
    r = _best_width(build, target, n_layers, multiple_of, max_d_model)
    if r is not None:
        tried.append(result(r[0], n_layers, None, r[1]))
        if tried[-1]["within_tolerance"]:
            return tried[-1]
        for d in (r[0], r[0] - multiple_of, r[0] + multiple_of):
            h = _best_mlp_hidden(build, target, d, n_layers, 8) if d > 0 else None
            if h is not None:
                tried.append(result(d, n_layers, h[0], h[1]))
                if tried[-1]["within_tolerance"]:
                    return tried[-1]
    if vary_depth:
        for layers in sorted(range(1, 4 * n_layers + 1), key=lambda k: (abs(k - n_layers), k)):
            r = _best_width(build, target, layers, multiple_of, max_d_model) if layers != n_layers else None
            if r is not None:
                tried.append(result(r[0], layers, None, r[1]))
                if tried[-1]["within_tolerance"]:
                    return tried[-1]
    if not tried:
        raise ValueError(f"budget: no d_model that is a multiple of {multiple_of} builds this architecture")
    return min(tried, key=lambda t: t["rel_error"])
