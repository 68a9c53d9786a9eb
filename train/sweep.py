"""Pick the best run of each sweep group on validation loss.

    python -m train -m arch=attention,mamba lr=1e-3,3e-3,1e-2   # one run per point
    python -m train.sweep runs                                  # best lr per (arch, task)
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def finished_runs(results_root: str | Path) -> list[dict]:
    """Summaries of the finished runs under ``results_root``."""
    out = []
    for p in sorted(Path(results_root).glob("*/summary.json")):
        try:
            s = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if s.get("finished"):
            out.append(s)
    return out


def best_runs(results_root: str | Path, group_by: tuple[str, ...] = ("arch", "task"), key: str = "val_loss") -> dict[tuple, dict]:
    """For each group (e.g. per arch and task), the finished run with the lowest ``key``."""
    best: dict[tuple, dict] = {}
    for s in finished_runs(results_root):
        v = s.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        g = tuple(s.get(k) for k in group_by)
        if g not in best or v < best[g][key]:
            best[g] = s
    return best


def main(argv: list[str]) -> int:
    root = argv[0] if argv else "runs"
    best = best_runs(root)
    if not best:
        print(f"no finished runs under {root}")
        return 1
    for (arch, task), s in sorted(best.items(), key=lambda kv: str(kv[0])):
        print(f"{arch:>12} {task:>14}  lr={s['lr']:<8g} val_loss={s['val_loss']:.4f}  val_acc={s.get('val_acc')}  {s['name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
