"""PNG plots of a comparison (matplotlib, Agg backend; files written atomically).

Each function takes plain data (dicts / rows) so it can be tested without training.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from .io import save_figure  # noqa: E402


def _finite(*xs) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in xs)


def _tokens(x, _pos=None) -> str:
    """Axis label for a token count: 256, 1k, 64k, 1M."""
    if x >= 2**20 and x % 2**20 == 0:
        return f"{x / 2**20:g}M"
    if x >= 1024 and x % 1024 == 0:
        return f"{x / 1024:g}k"
    return f"{x:g}"


def _style(names: Sequence[str]) -> dict[str, dict]:
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    marks = "osD^v<>pPX*h"
    return {n: {"color": cmap(i % cmap.N), "marker": marks[i % len(marks)]} for i, n in enumerate(sorted(names))}


def _finish(fig, ax, path, empty: bool, legend_from=None) -> Path:
    """Legend outside the right edge of ``ax`` (with the labels of every axis in ``legend_from``), save, close."""
    handles: dict = {}
    for a in legend_from if legend_from is not None else [ax]:
        for h, label in zip(*a.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    elif handles:
        ax.legend(list(handles.values()), list(handles), fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    ax.grid(True, which="both", alpha=0.3)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def loss_vs_flops(curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], path) -> Path:
    """``curves[task][arch] = [(flops, loss), ...]``; one panel per task, one line per arch."""
    tasks = list(curves) or ["-"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    names = sorted({a for t in curves.values() for a in t})
    style = _style(names)
    for ax, task in zip(axes[0], tasks):
        for arch, pts in sorted(curves.get(task, {}).items()):
            pts = [(f, l) for f, l in pts if _finite(f, l) and f > 0]
            if pts:
                ax.plot(*zip(*pts), label=arch, color=style[arch]["color"], lw=1.2)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only: minor ones collide
        ax.set_xlabel("training FLOPs")
        ax.set_ylabel("loss")
        ax.set_title(f"{task}: loss vs training compute")
        ax.grid(True, which="both", alpha=0.3)
    return _finish(fig, axes[0][-1], path, not any(a.get_lines() for a in axes[0]), legend_from=axes[0])


def _by_arch(rows: Sequence[dict], x: str, y: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list] = {}
    for r in rows:
        if _finite(r.get(x), r.get(y)) and r.get("status", "ok") == "ok":
            out.setdefault(str(r["arch"]), []).append((float(r[x]), float(r[y])))
    return {k: sorted(v) for k, v in out.items()}


def _speed_band(row: dict, kind: str) -> tuple[float, float] | None:
    """(low, high) tokens/s from the quartiles of a throughput row's timed samples (``<kind>_samples_s``:
    seconds per prefill call / per decode step); None without at least 2 samples."""
    import statistics

    xs = row.get(f"{kind}_samples_s") or []
    if len(xs) < 2 or not all(_finite(v) and v > 0 for v in xs):
        return None
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    tokens = row.get("batch", 1) * (row["context"] if kind == "prefill" else 1)
    return tokens / q3, tokens / q1


def _lines(rows, x, y, path, xlabel, ylabel, title, logy=True, vline=None, band: str | None = None) -> Path:
    """One line per arch of ``y`` vs ``x``; ``band`` ("prefill" / "decode"): a shaded interquartile
    band from each row's timed samples."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    data = _by_arch(rows, x, y)
    style = _style(list(data))
    for arch, pts in sorted(data.items()):
        ax.plot(*zip(*pts), label=arch, **style[arch], lw=1.2, ms=4)
        if band:
            spans = sorted((float(r[x]), _speed_band(r, band)) for r in rows
                           if str(r.get("arch")) == arch and r.get("status", "ok") == "ok" and _finite(r.get(x)))
            spans = [(xv, b) for xv, b in spans if b is not None]
            if spans:
                ax.fill_between([xv for xv, _ in spans], [b[0] for _, b in spans], [b[1] for _, b in spans],
                                color=style[arch]["color"], alpha=0.18, lw=0)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(_tokens))
    if logy and any(v > 0 for pts in data.values() for _, v in pts):
        ax.set_yscale("log")
    if vline:
        ax.axvline(vline, color="gray", ls="--", lw=1)
        ax.text(vline, ax.get_ylim()[1], " train length", va="top", fontsize=7, color="gray")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _finish(fig, ax, path, not data)


def decode_vs_context(rows: Sequence[dict], path) -> Path:
    """Throughput rows (``arch, context, decode_tok_s``) -> decode tokens/s vs context (shaded: interquartile
    range of the timed samples, when the rows carry them)."""
    return _lines(rows, "context", "decode_tok_s", path, "context length (tokens)", "decode tokens/s", "Decode speed vs context",
                  band="decode")


def prefill_vs_context(rows: Sequence[dict], path) -> Path:
    return _lines(rows, "context", "prefill_tok_s", path, "context length (tokens)", "prefill tokens/s", "Prefill speed vs context",
                  band="prefill")


def state_vs_context(rows: Sequence[dict], path) -> Path:
    """Rows ``arch, context, state_mib`` -> state memory per sequence vs context (log-log)."""
    return _lines(rows, "context", "state_mib", path, "context length (tokens)", "state per sequence (MiB)", "State memory vs context")


def accuracy_vs_length(rows: Sequence[dict], path, train_len: int | None = None, task: str = "mqar") -> Path:
    """Rows ``arch, length, accuracy`` -> accuracy vs sequence length (dashed line: training length)."""
    return _lines(rows, "length", "accuracy", path, "sequence length (tokens)", "accuracy", f"{task}: accuracy vs length",
                  logy=False, vline=train_len)


def loss_vs_wall_clock(curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], path) -> Path:
    """``curves[task][arch] = [(seconds, loss), ...]``: training loss vs training wall-clock seconds
    (what a researcher pays on this machine); read across at a fixed time to compare archs."""
    tasks = list(curves) or ["-"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    style = _style(sorted({a for t in curves.values() for a in t}))
    for ax, task in zip(axes[0], tasks):
        for arch, pts in sorted(curves.get(task, {}).items()):
            pts = [(s, l) for s, l in pts if _finite(s, l) and s > 0]
            if pts:
                ax.plot(*zip(*pts), label=arch, color=style[arch]["color"], lw=1.2)
        ax.set_xlabel("training wall-clock seconds")
        ax.set_ylabel("training loss")
        ax.set_title(f"{task}: loss vs wall clock")
        ax.grid(True, which="both", alpha=0.3)
    return _finish(fig, axes[0][-1], path, not any(a.get_lines() for a in axes[0]), legend_from=axes[0])


def val_loss_vs_lr(selection: Mapping[str, Mapping[str, dict]], path) -> Path:
    """``selection[arch][task] = {"grid": {lr: val_loss}, "chosen": lr}``: one panel per task, one
    line per arch over the lr grid (log x); the chosen lr is a filled marker."""
    tasks = sorted({t for d in selection.values() for t in d}) or ["-"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    style = _style(list(selection))
    for ax, task in zip(axes[0], tasks):
        for arch, d in sorted(selection.items()):
            s = d.get(task) or {}
            pts = sorted((float(lr), v) for lr, v in (s.get("grid") or {}).items() if _finite(v))
            if not pts:
                continue
            ax.plot(*zip(*pts), label=arch, color=style[arch]["color"], marker=style[arch]["marker"], mfc="none", lw=1.2, ms=5)
            if s.get("chosen") is not None:
                ch = [(lr, v) for lr, v in pts if math.isclose(lr, float(s["chosen"]))]
                if ch:
                    ax.plot(*zip(*ch), color=style[arch]["color"], marker=style[arch]["marker"], ms=6, ls="none")
        ax.set_xscale("log")
        grid = sorted({float(lr) for d in selection.values() for lr in ((d.get(task) or {}).get("grid") or {})})
        if grid:  # label the grid's own lrs; log-axis minor labels overlap on a narrow range
            ax.set_xticks(grid, [f"{lr:g}" for lr in grid])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("learning rate")
        ax.set_ylabel("validation loss (first seed)")
        ax.set_title(f"{task}: validation loss vs lr (filled: chosen)")
        ax.grid(True, which="both", alpha=0.3)
    return _finish(fig, axes[0][-1], path, not any(a.get_lines() for a in axes[0]), legend_from=axes[0])


def recall_frontier(points: Sequence[dict], path, task: str = "mqar") -> Path:
    """Zoology's recall frontier: accuracy vs state size per sequence (log x), one point per
    (arch, width) with its 95% CI as an error bar; points of the same arch are joined by width.
    ``points``: ``{arch, label, state, acc, ci95: [lo, hi]}``."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    by_arch: dict[str, list] = {}
    for p in points:
        if _finite(p.get("state"), p.get("acc")) and p["state"] > 0:
            by_arch.setdefault(str(p["arch"]), []).append(p)
    style = _style(list(by_arch))
    for arch, pts in sorted(by_arch.items()):
        pts = sorted(pts, key=lambda p: p["state"])
        xs, ys = [p["state"] for p in pts], [p["acc"] for p in pts]
        lo = [max(0.0, y - (p["ci95"][0] if _finite(p["ci95"][0]) else y)) for y, p in zip(ys, pts)]
        hi = [max(0.0, (p["ci95"][1] if _finite(p["ci95"][1]) else y) - y) for y, p in zip(ys, pts)]
        ax.errorbar(xs, ys, yerr=[lo, hi], label=arch, color=style[arch]["color"], marker=style[arch]["marker"],
                    lw=1.0, ms=5, capsize=3)
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)  # a t-interval over 3 seeds can reach past [0, 1]; the axis shows the possible range
    ax.set_xlabel("state size per sequence (numbers, at the training length)")
    ax.set_ylabel(f"{task} accuracy (mean, 95% CI over seeds)")
    ax.set_title(f"{task}: recall frontier")
    return _finish(fig, ax, path, not by_arch)


def accuracy_vs_length_ci(points: Sequence[dict], path, train_len: int | None = None, task: str = "mqar") -> Path:
    """``points``: ``{arch, length, accuracy, ci95}``: mean accuracy vs length with 95% CI bars."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    by_arch: dict[str, list] = {}
    for p in points:
        if _finite(p.get("length"), p.get("accuracy")):
            by_arch.setdefault(str(p["arch"]), []).append(p)
    style = _style(list(by_arch))
    for arch, pts in sorted(by_arch.items()):
        pts = sorted(pts, key=lambda p: p["length"])
        ys = [p["accuracy"] for p in pts]
        err = [[max(0.0, y - p["ci95"][0]) if _finite(p["ci95"][0]) else 0.0 for y, p in zip(ys, pts)],
               [max(0.0, p["ci95"][1] - y) if _finite(p["ci95"][1]) else 0.0 for y, p in zip(ys, pts)]]
        ax.errorbar([p["length"] for p in pts], ys, yerr=err, label=arch, color=style[arch]["color"],
                    marker=style[arch]["marker"], lw=1.0, ms=4, capsize=2)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(_tokens))
    if train_len:
        ax.axvline(train_len, color="gray", ls="--", lw=1)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("sequence length (tokens; dashed: training length)")
    ax.set_ylabel("accuracy (mean, 95% CI)")
    ax.set_title(f"{task}: accuracy vs length")
    return _finish(fig, ax, path, not by_arch)
