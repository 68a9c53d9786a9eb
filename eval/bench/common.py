"""Timing helpers for benchmarks: medians of repeated runs, ratios taken in one run."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Iterable

import torch


def sync(device: torch.device | str | None = None) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], warmup: int = 1, repeats: int = 3, max_seconds: float | None = None) -> float:
    """Median wall time of ``fn()`` in milliseconds (after ``warmup`` calls).

    ``max_seconds`` stops repeating early once that much time has been spent (at least one timed run).
    """
    for _ in range(warmup):
        fn()
    sync()
    times = []
    spent = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if max_seconds is not None and spent > max_seconds:
            break
    return 1e3 * statistics.median(times)


def fwd_bwd(fn: Callable[..., torch.Tensor], inputs: Iterable[torch.Tensor]) -> Callable[[], None]:
    """A closure that runs ``fn(*inputs)`` forward and backward (sum of the output)."""
    inputs = list(inputs)

    def run() -> None:
        for t in inputs:
            if isinstance(t, torch.Tensor) and t.grad is not None:
                t.grad = None
        out = fn(*inputs)
        if isinstance(out, tuple):
            out = out[0]
        out.float().sum().backward()

    return run


def print_table(rows: list[dict], title: str | None = None) -> None:
    """Print rows (dicts with the same keys) as an aligned text table."""
    if not rows:
        return
    if title:
        print(f"\n## {title}")
    keys = list(rows[0])
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    cells = [[fmt(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
