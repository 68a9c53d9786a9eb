"""Timing helpers for benchmarks: medians of repeated runs, ratios taken in one run."""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Iterable

import torch


def sync(device: torch.device | str | None = None) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], warmup: int = 1, repeats: int = 3, max_seconds: float | None = None,
            clock: Callable[[], float] = time.perf_counter) -> float:
    """Median wall time of ``fn()`` in milliseconds (after ``warmup`` calls).

    ``max_seconds`` stops repeating early once that much time has been spent (at least one timed run).
    ``clock``: ``time.process_time`` measures CPU time instead (see ``cpu_clock``).
    """
    for _ in range(warmup):
        fn()
    sync()
    times = []
    spent = 0.0
    for _ in range(repeats):
        t0 = clock()
        fn()
        sync()
        dt = clock() - t0
        times.append(dt)
        spent += dt
        if max_seconds is not None and spent > max_seconds:
            break
    return 1e3 * statistics.median(times)


def cpu_clock() -> Callable[[], float]:
    """``time.process_time`` when torch runs one CPU thread and no GPU (the process's CPU time: on a
    shared machine it does not count the time other jobs hold the core), else ``time.perf_counter``."""
    one_cpu_thread = torch.get_num_threads() == 1 and not torch.cuda.is_available()
    return time.process_time if one_cpu_thread else time.perf_counter


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


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of a benchmark's ``main`` (its module docstring as the description).
    Every benchmark process times under the same allocator policy as ``eval throughput``
    (``eval/malloc.py``), so this also fixes it: the one place every entry point passes through."""
    from eval.malloc import steady_allocator

    steady_allocator()
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
