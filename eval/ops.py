"""``python -m eval ops``: run every op benchmark in ``eval/bench/`` and print its tables.

A benchmark module is any ``eval.bench.<name>`` (not ``common``, not ``_private``) exposing
``run(quick=False)`` that returns rows (a list of dicts) or a ``{title: rows}`` dict.
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


def run_ops(only: Sequence[str] | None = None, quick: bool = False) -> dict[str, object]:
    """Run the benchmarks (all, or the named ones); print their tables. Returns ``{module: rows or error}``."""
    names = bench_modules()
    if only:
        bad = [n for n in only if n not in names]
        if bad:
            raise ValueError(f"ops: unknown benchmark {bad}; known: {', '.join(names) or '(none)'}")
        names = [n for n in names if n in only]
    results: dict[str, object] = {}
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
