"""Timings taken in fresh processes, pooled: the numbers of one run of ``eval throughput`` repeat in the next.

Why: a process's speed depends on its history. Measured on the 2-core CPU box (``model=small``,
one thread, every arch in one process as before): HGRN-2's prefill @2k was 7.6k tok/s in one run
and 12.7k in the next; two full runs agreed within 15% on only 96 of 114 numbers, although each
number's own spread was a few percent. Most of it was the allocator (``eval/malloc.py``); the rest
is what ran before in the same process and the machine's slow drift. So each model is measured in
``processes`` fresh processes (forked from a server that only imported torch; ``process_context``),
interleaved in rounds (round 1: every model once, round 2: every model again, ...), so that a slow
minute of the machine hits one sample of many models rather than every sample of one. Each number
is the median of the timed samples of all its processes pooled, and its spread the IQR of those
pooled samples over their median: it covers the variation within and between processes, and the
per-process medians are kept in the row (``prefill_tok_s_by_process``, ``decode_tok_s_by_process``).

A model source is a dict, so that it can cross the process boundary:

* ``{"label", "arch", "model", "vocab_size", "seed"}``: ``configs/arch/<arch>.yaml`` at the size
  ``model`` (a plain dict of the model config), seeded (``throughput.arch_source``);
* ``{"label", "run_dir"}``: a trained run (``train.load_run``);
* ``{"label", "model_dir"}``: a ``save_pretrained`` folder (exported run, converted HF model).
"""
from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence

from .malloc import steady_allocator
from .throughput import ThroughputSettings, measure_model, timing_fields

SOURCE_KEYS = ("arch", "run_dir", "model_dir")
_MEMORY_FIELDS = ("held_mem_bytes", "peak_mem_bytes", "peak_rss_bytes")


def load_source(src: dict):
    """The ``LanguageModel`` a source names (float32, eval mode)."""
    kinds = [k for k in SOURCE_KEYS if src.get(k)]
    if len(kinds) != 1:
        raise ValueError(f"a model source needs exactly one of {SOURCE_KEYS}, got {sorted(src)}")
    if kinds[0] == "arch":
        import torch
        from omegaconf import OmegaConf

        from archs import build_language_model

        from .config import load_group

        torch.manual_seed(int(src.get("seed", 0)))
        model = build_language_model(load_group("arch", src["arch"]), OmegaConf.create(src["model"]), int(src.get("vocab_size", 256)))
    elif kinds[0] == "run_dir":
        import train

        model, _, _ = train.load_run(src["run_dir"])
    else:
        from .pretrained import load_model_dir

        model = load_model_dir(src["model_dir"])
    return model.float().eval()


def measure_source(src: dict, settings: ThroughputSettings, tag: str = "", progress: Callable[[str], None] | None = None) -> list[dict]:
    """``measure_model`` rows of one source, measured in this process (with the steady allocator)."""
    allocator = steady_allocator()
    model = load_source(src)
    label = str(src.get("label") or src.get("arch") or src.get("run_dir") or src.get("model_dir"))
    show = (lambda s: progress(f"{s}{tag}")) if progress else None  # noqa: E731
    rows = measure_model(model, settings, arch=label, progress=show)
    for row in rows:
        row["params"] = model.num_params()
        row["allocator"] = allocator  # "steady" (eval/malloc.py), "system" or "unavailable: ..."
    return rows


def print_progress(s: str) -> None:
    """Progress of a measurement on stderr (also from a measuring process: its stderr is ours)."""
    print(f"  measuring {s}", file=sys.stderr, flush=True)


def _seqarena_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("SEQARENA_")}


def _measure_in_child(src: dict, settings: ThroughputSettings, tag: str, show: bool, env: dict[str, str]) -> list[dict]:
    for k in [k for k in os.environ if k.startswith("SEQARENA_") and k not in env]:
        del os.environ[k]
    os.environ.update(env)  # the caller's switches now, not the fork server's from when it started
    return measure_source(src, settings, tag, print_progress if show else None)


def process_context():
    """Where fresh processes come from: a fork server that has imported torch and seqarena and run
    nothing (each process starts in ~0.1 s instead of ~2 s for a spawned interpreter importing
    torch again; 57 processes in a default ``eval throughput``), or spawn where there is no fork."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "archs", "eval.isolate"])  # only before the server starts
    return ctx


def measure_in_fresh_process(src: dict, settings: ThroughputSettings, tag: str = "", show_progress: bool = False) -> list[dict]:
    """``measure_source`` in a new process (``process_context``; its stderr is ours: progress shows)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=process_context()) as pool:
        try:
            return pool.submit(_measure_in_child, src, settings, tag, show_progress, _seqarena_env()).result()
        except Exception as e:
            raise RuntimeError(f"measuring {src.get('label')} in a fresh process failed: {type(e).__name__}: {e}") from e


def measure_sources(sources: Sequence[dict], settings: ThroughputSettings, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Rows (per source, per context) measured in ``settings.processes`` fresh processes per source,
    interleaved in rounds and pooled (``pool_rows``); ``processes: 0``: in this process, one pass."""
    P = settings.processes
    if P == 0:
        return [row for src in sources for row in measure_source(src, settings, progress=progress)]
    per_source: list[list[list[dict]]] = [[] for _ in sources]  # source -> process -> rows
    for r in range(P):
        for i, src in enumerate(sources):
            per_source[i].append(measure_in_fresh_process(src, settings, tag=f" (process {r + 1}/{P})", show_progress=progress is not None))
    return [row for runs in per_source for row in pool_rows(runs)]


def pool_rows(runs: Sequence[Sequence[dict]]) -> list[dict]:
    """One row per context from the rows of several processes (each measured the same contexts):
    timing fields from all their samples pooled, memory fields their median, the per-process
    medians kept. A context no process measured keeps the first process's status."""
    if len({len(rows) for rows in runs}) != 1:
        raise ValueError(f"pool_rows: processes measured different numbers of contexts: {[len(r) for r in runs]}")
    out = []
    for at_context in zip(*runs):
        ok = [r for r in at_context if r.get("status") == "ok"]
        row = dict(ok[0] if ok else at_context[0])
        row["processes"] = len(at_context)
        row["processes_ok"] = len(ok)
        if ok:
            row.update(timing_fields(int(row["batch"]), int(row["context"]),
                                     [x for r in ok for x in r["prefill_samples_s"]],
                                     [x for r in ok for x in r["decode_samples_s"]]))
            row["prefill_tok_s_by_process"] = [r["prefill_tok_s"] for r in ok]
            row["decode_tok_s_by_process"] = [r["decode_tok_s"] for r in ok]
            for k in _MEMORY_FIELDS:
                vals = [r[k] for r in ok if r.get(k) is not None]
                row[k] = statistics.median(vals) if vals else None
        out.append(row)
    return out
