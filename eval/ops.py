"""``python -m eval ops``: run every op benchmark in ``eval/bench/`` and print its tables.

A benchmark module is any ``eval.bench.<name>`` (not ``common``, not ``_private``) exposing
``run(quick=False)`` that returns rows (a list of dicts) or a ``{title: rows}`` dict. First, a
table of which implementation paths of the scan ops can run here (``op_paths``).
"""
from __future__ import annotations

import importlib
import pkgutil
import traceback
from typing import Sequence

from .bench.common import print_table


def bench_modules() -> list[str]:
    from . import bench

    return sorted(i.name for i in pkgutil.iter_modules(bench.__path__) if i.name != "common" and not i.name.startswith("_"))


def op_paths() -> list[dict]:
    """One row per op: its GPU kernel, compiled CPU kernel and pure-PyTorch path, and whether each can run here."""
    import torch

    from archs.ops import _compile, _dispatch
    from archs.ops.conv1d import cpu as conv_cpu
    from archs.ops.linear_rnn import cpu as ls_cpu
    from archs.ops.selective_scan import cpu as ss_cpu

    rows = []
    for op, gpu, lib in (("selective_scan", ("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn"), ss_cpu),
                         ("linear_scan", None, ls_cpu),
                         ("causal_conv1d", ("causal_conv1d", "causal_conv1d_fn"), conv_cpu)):
        if gpu is None:
            cuda = "none (pure PyTorch on CUDA)"
        elif not torch.cuda.is_available():
            cuda = f"{gpu[0].split('.')[0]}: no CUDA device"
        else:
            cuda = f"{gpu[0].split('.')[0]}: " + ("yes" if _dispatch._load(*gpu) is not None else "not installed")
        try:
            lib.library()
            cpu = _compile.status(lib.NAME) if _compile.mode() != "off" else f"off ({_compile.ENV_MODE}=0)"
        except RuntimeError as e:
            cpu = f"failed: {e}"
        rows.append({"op": op, "cuda kernel": cuda, "compiled CPU": cpu, "pure PyTorch": "yes"})
    return rows


def run_ops(only: Sequence[str] | None = None, quick: bool = False) -> dict[str, object]:
    """Run the benchmarks (all, or the named ones); print their tables. Returns ``{module: rows or error}``."""
    names = bench_modules()
    if only:
        bad = [n for n in only if n not in names]
        if bad:
            raise ValueError(f"ops: unknown benchmark {bad}; known: {', '.join(names) or '(none)'}")
        names = [n for n in names if n in only]
    from .malloc import steady_allocator

    steady_allocator()  # the same allocator policy as eval throughput (eval/malloc.py)
    results: dict[str, object] = {}
    print_table(op_paths(), title="op paths (dispatch: CUDA kernel on CUDA tensors, compiled kernel on CPU, else pure PyTorch)")
    for name in names:
        mod = importlib.import_module(f"eval.bench.{name}")
        if not callable(getattr(mod, "run", None)):
            continue
        try:
            out = mod.run(quick=quick)
        except Exception as e:  # report and go on to the next benchmark
            traceback.print_exc()
            print(f"\n## {name}: FAILED: {type(e).__name__}: {e}")
            results[name] = e
            continue
        if isinstance(out, dict):
            for title, rows in out.items():
                print_table(list(rows), title=f"{name}: {title}")
        elif out:
            print_table(list(out), title=name)
        results[name] = out
    return results
