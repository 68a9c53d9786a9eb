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


def measured_flops_per_token(model, seq_len: int, batch_size: int = 1, vocab_size: int | None = None) -> float:
    """Forward FLOPs per token counted by ``torch.utils.flop_counter.FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    vocab_size = vocab_size or model.vocab_size
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(tokens)
    return counter.get_total_flops() / (batch_size * seq_len)


def _count_params(build: Callable[[int, int], torch.nn.Module], d_model: int, n_layers: int) -> int | None:
    """Parameters of ``build(d_model, n_layers)`` (on the meta device when possible); None if invalid."""
    try:
        with torch.device("meta"):
            m = build(d_model, n_layers)
    except (ValueError, KeyError):
        return None
    except Exception:  # some init does not run on meta: build for real
        try:
            m = build(d_model, n_layers)
        except (ValueError, KeyError):
            return None
    return sum(p.numel() for p in m.parameters())


def size_to_params(build: Callable[[int, int], torch.nn.Module], target: int, n_layers: int, multiple_of: int = 8,
                   tolerance: float = 0.02, max_d_model: int = 8192, vary_depth: bool = True) -> dict:
    """Choose ``d_model`` (a multiple of ``multiple_of``) so ``build(d_model, n_layers)`` has about ``target`` params.

    Width is searched first at the configured depth; if no width is within ``tolerance``
    (steps of ``multiple_of`` are too coarse for small models), depths from 1 to 2 x n_layers
    are tried too and the one closest to the configured depth that fits is taken.
    Returns dict(d_model, n_layers, params, target, rel_error, within_tolerance).
    """
    if not isinstance(target, int) or target <= 0:
        raise ValueError(f"budget: budget.params must be a positive int, got {target!r}")

    def best_width(layers: int) -> tuple[int, int] | None:
        cands = []
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
        for m in range(max(1, lo - 2), lo + 3):
            p = _count_params(build, m * multiple_of, layers)
            if p is not None:
                cands.append((abs(p - target), m * multiple_of, p))
        if not cands:
            return None
        _, d, p = min(cands)
        return d, p

    tried = []
    depths = [n_layers] + ([d for d in sorted(range(1, 2 * n_layers + 1), key=lambda d: (abs(d - n_layers), d)) if d != n_layers] if vary_depth else [])
    for layers in depths:
        r = best_width(layers)
        if r is None:
            continue
        d, p = r
        err = abs(p - target) / target
        tried.append((err, layers, d, p))
        if err <= tolerance:
            break
    if not tried:
        raise ValueError(f"budget: no d_model that is a multiple of {multiple_of} builds this architecture")
    err, layers, d, p = min(tried) if all(t[0] > tolerance for t in tried) else tried[-1]
    return {"d_model": d, "n_layers": layers, "params": p, "target": target, "rel_error": err,
            "within_tolerance": err <= tolerance}
