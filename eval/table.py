"""The comparison table: one row per arch, the best value of each column marked.

A column is a ``Column(key, header, kind, better, ci)``: ``better`` is ``"max"``, ``"min"`` or
``None`` (a matched / descriptive column such as params or FLOPs: nothing to win).
Missing values (a skipped measurement, a failed run) print as ``-`` and never win.

A ``ci`` column holds summaries ``{"mean", "ci95": [lo, hi], "n"}`` (``eval/stats.py``); it prints
``mean ± half-width`` and bolds every row whose interval overlaps the best mean's interval
(``stats.tied_with_best``). A plain column bolds its best value. ``row[key + "!"]`` true appends
a dagger (a flagged measurement, e.g. a timing whose spread is too large).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence


@dataclasses.dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str = "float"  # count | sci | float | int | acc | mib | sec | text
    better: str | None = None  # "max" | "min" | None
    ci: bool = False  # values are {"mean", "ci95", "n"} summaries


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def fmt(v: Any, kind: str) -> str:
    x = _num(v)
    if kind == "text":
        return "-" if v is None else str(v)
    if x is None:
        return "-"
    if kind == "count":
        for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(x) >= div:
                return f"{x / div:.3g}{unit}"
        return f"{x:.0f}"
    if kind == "sci":
        return f"{x:.2e}"
    if kind == "int":
        return f"{x:,.0f}"
    if kind == "acc":
        return f"{x:.3f}"
    if kind == "sec":
        return f"{x:,.1f}"
    if kind == "mib":
        return f"{x:.3g}"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:,.0f}"


def best_values(rows: Sequence[dict], columns: Sequence[Column]) -> dict[str, float]:
    """The winning value of every column that has a direction (and any finite value)."""
    best = {}
    for c in columns:
        vals = [x for x in (_num(r.get(c.key)) for r in rows) if x is not None]
        if c.better and vals:
            best[c.key] = max(vals) if c.better == "max" else min(vals)
    return best


def is_best(row: dict, col: Column, best: dict[str, float]) -> bool:
    x = _num(row.get(col.key))
    if x is None or col.key not in best:
        return False
    b = best[col.key]
    return math.isclose(x, b, rel_tol=1e-9, abs_tol=0.0) or x == b


def fmt_ci(v: Any, kind: str) -> str:
    """``mean ± half-width`` of a summary (``mean`` alone when n = 1)."""
    if not isinstance(v, dict) or _num(v.get("mean")) is None:
        return "-"
    lo, hi = v.get("ci95") or [None, None]
    s = fmt(v["mean"], kind)
    if _num(lo) is None or _num(hi) is None or int(v.get("n") or 0) < 2:
        return s
    return f"{s} ± {fmt((hi - lo) / 2, kind)}"


def tied(rows: Sequence[dict], columns: Sequence[Column], name_key: str = "arch") -> dict[str, list[str]]:
    """Column key -> the names marked best: the best value, or for a ``ci`` column every row whose
    interval overlaps the best one's."""
    from .stats import tied_with_best

    best = best_values(rows, [c for c in columns if not c.ci])
    out = {c.key: [str(r.get(name_key)) for r in rows if is_best(r, c, best)] for c in columns if c.key in best}
    for c in columns:
        if c.ci and c.better:
            s = {str(r.get(name_key)): r.get(c.key) for r in rows if isinstance(r.get(c.key), dict)}
            out[c.key] = tied_with_best(s, c.better)
    return out


def markdown(rows: Sequence[dict], columns: Sequence[Column], name_key: str = "arch") -> str:
    """A GitHub markdown table; best (or statistically tied with the best) values are **bold**."""
    marked = tied(rows, columns, name_key)
    arrow = {"max": " ↑", "min": " ↓", None: ""}
    head = "| " + " | ".join(c.header + arrow[c.better] for c in columns) + " |"
    align = "|" + "|".join(":---" if c.kind == "text" else "---:" for c in columns) + "|"
    lines = [head, align]
    for r in rows:
        cells = []
        for c in columns:
            s = fmt_ci(r.get(c.key), c.kind) if c.ci else fmt(r.get(c.key), c.kind)
            if r.get(c.key + "!") and s != "-":
                s += " †"
            cells.append(f"**{s}**" if s != "-" and str(r.get(name_key)) in marked.get(c.key, []) else s)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def winners(rows: Sequence[dict], columns: Sequence[Column], name_key: str = "arch") -> dict[str, list[str]]:
    """Column key -> the arch name(s) holding the best value."""
    best = best_values(rows, columns)
    return {c.key: [str(r.get(name_key)) for r in rows if is_best(r, c, best)] for c in columns if c.key in best}
