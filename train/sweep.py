"""Pick the best learning rate of each sweep group on validation loss.

    python -m train -m arch=attention,mamba lr=1e-3,3e-3,1e-2 seed=0,1   # one run per point
    python -m train.sweep runs                                         # best lr per group

A group is every run that differs only in ``lr`` and ``seed``: the same arch, task, budget (training
FLOPs, or steps when the budget is a step count), model size, sequence length and batch size. Runs
of different budgets or sizes are never ranked against each other. Within a group, each lr's score
is its mean validation loss over seeds (the count is shown). For lr selection with confidence
intervals over seeds and a comparison table, use ``python -m eval compare``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

#: what must be equal for two runs to be ranked against each other (besides lr and seed)
GROUP_BY = ("arch", "task", "budget", "d_model", "n_layers", "seq_len", "batch_size")


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


def _budget(s: dict) -> str:
    return f"{float(s['budget_flops']):.3g} FLOPs" if s.get("budget_flops") else f"{s.get('steps')} steps"


def group_key(s: dict, group_by: tuple[str, ...] = GROUP_BY) -> tuple:
    return tuple(_budget(s) if k == "budget" else s.get(k) for k in group_by)


def lr_scores(results_root: str | Path, group_by: tuple[str, ...] = GROUP_BY, key: str = "val_loss") -> dict[tuple, dict[float, list[float]]]:
    """group -> lr -> the ``key`` values of its runs (one per seed)."""
    out: dict[tuple, dict[float, list[float]]] = {}
    for s in finished_runs(results_root):
        v = s.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out.setdefault(group_key(s, group_by), {}).setdefault(float(s["lr"]), []).append(float(v))
    return out


def best_runs(results_root: str | Path, group_by: tuple[str, ...] = GROUP_BY, key: str = "val_loss") -> dict[tuple, dict]:
    """For each group, the run with the lowest ``key`` at the lr whose mean ``key`` over seeds is lowest."""
    scores = lr_scores(results_root, group_by, key)
    best_lr = {g: min(d, key=lambda lr: sum(d[lr]) / len(d[lr])) for g, d in scores.items()}
    best: dict[tuple, dict] = {}
    for s in finished_runs(results_root):
        g, v = group_key(s, group_by), s.get(key)
        if g not in best_lr or v is None or float(s["lr"]) != best_lr[g] or (isinstance(v, float) and math.isnan(v)):
            continue
        if g not in best or v < best[g][key]:
            best[g] = s
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.sweep", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_root", nargs="?", default="runs", help="folder of run folders (default: runs)")
    p.add_argument("--key", default="val_loss", help="summary.json field to minimise (default: val_loss)")
    args = p.parse_args(argv)
    if not Path(args.results_root).is_dir():
        print(f"error: {args.results_root} is not a folder of runs", file=sys.stderr)
        return 2
    scores = lr_scores(args.results_root, key=args.key)
    best = best_runs(args.results_root, key=args.key)
    if not best:
        print(f"no finished runs with a {args.key} under {args.results_root}")
        return 1
    for g, s in sorted(best.items(), key=lambda kv: str(kv[0])):
        info = dict(zip(GROUP_BY, g))
        grid = "  ".join(f"{lr:g}: {sum(v) / len(v):.4f} (n={len(v)})" for lr, v in sorted(scores[g].items()))
        edge = " (edge of the grid)" if len(scores[g]) > 1 and float(s["lr"]) in (min(scores[g]), max(scores[g])) else ""
        print(f"{info['arch']} {info['task']} [{info['budget']}, d_model {info['d_model']} x {info['n_layers']}, seq {info['seq_len']}, "
              f"batch {info['batch_size']}]: best lr={s['lr']:g}{edge}  mean {args.key} by lr: {grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
