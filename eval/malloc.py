"""One allocator policy for every timed process: big tensors reuse heap memory instead of fresh pages.

Why (measured on the 2-core CPU box, ``model=small``, one thread): glibc ``malloc`` serves a
large block (a (B, L, D) activation is 1-8 MiB here) with a fresh ``mmap`` and returns it to the
OS on ``free`` — so every call pays page faults and zeroing — *until* a free of such a block
raises its dynamic mmap threshold, after which the same sizes come from the reused heap. Which
regime a measurement lands in depends on what the process allocated before: HGRN-2's prefill @512
ran at 7.7k tok/s in a fresh process and at 11.6k after nine other archs in the same process;
GLA @8k at 10.8k vs 17.4k. With the thresholds fixed (this module), HGRN-2 measured 12.5-13.6k
tok/s at every context, in fresh processes and after the others alike.

``steady_allocator()`` fixes glibc's mmap threshold (1 GiB: tensors up to that come from the heap;
setting it also turns the dynamic adjustment off) and its trim threshold (2 GiB: freed heap is
kept for reuse), as ``mallopt`` allows at any time for the allocations that follow. This is what
a caching allocator (PyTorch's CUDA one) or jemalloc / tcmalloc do for long-running PyTorch CPU
work: the timings measure the model, not the page-fault history. The cost: the process keeps its
high-water heap (its RSS does not shrink), which is why it is set only in processes that time
models (``eval throughput``, the timing and training jobs of ``eval compare``), never at import.

``SEQARENA_MALLOC=system`` leaves the allocator alone. Other C libraries (macOS, musl): no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ENV = "SEQARENA_MALLOC"
M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 1 << 31

_state: str | None = None  # what the last call did: "steady", "system" (opted out) or "unavailable: ..."


def steady_allocator() -> str:
    """Fix glibc's malloc thresholds in this process (idempotent); returns "steady", "system" or "unavailable: <why>"."""
    global _state
    want = os.environ.get(ENV, "steady").strip().lower() or "steady"
    if want not in ("steady", "system"):
        raise ValueError(f"{ENV}={want!r}: expected 'steady' (fixed glibc malloc thresholds, the default) or 'system'")
    if want == "system":
        _state = "system"
        return _state
    if _state == "steady":
        return _state
    libc_name, _ = platform.libc_ver()
    if libc_name != "glibc":
        _state = f"unavailable: C library {libc_name or 'unknown'} is not glibc"
        return _state
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError) as e:
        _state = f"unavailable: {e}"
        return _state
    _state = "steady" if ok else "unavailable: mallopt refused the thresholds"
    return _state


def allocator_state() -> str:
    """What ``steady_allocator`` did in this process ("not set" before any call)."""
    return _state or "not set"
