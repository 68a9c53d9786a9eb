"""Atomic result files: write to a temp file in the same folder, then ``os.replace``.

A reader (or a rerun after a kill) sees either the old file or the new one, never half of one.
The writing itself lives in ``train.atomic`` (one home for atomic writes; eval may import train).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from train.atomic import atomic_write, write_text


def _atomic(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    return atomic_write(path, write)


def _jsonable(x: Any) -> Any:
    """NaN / inf become null (strict JSON); tuples become lists; numpy / torch scalars become floats."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if hasattr(x, "item"):
        return _jsonable(x.item())
    return str(x)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any | None:
    """The parsed file, or None when it is missing or unreadable (e.g. from an older crash)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_csv(path: str | os.PathLike, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return write_text(path, buf.getvalue())


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """``fig.savefig`` as PNG, atomically."""
    return _atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
