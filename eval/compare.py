"""``python -m eval compare``: the experiment. Tuned learning rates, seeds, confidence intervals.

Protocol, for every arch config (and width, when the preset sweeps ``widths``) and task:

1. **lr selection**: one run per lr of ``lr_grid`` (one list, or one per task) at the first seed; the lr with the lowest
   *validation* loss (``eval/jobs.py``: a fixed validation set, never the test metric) is chosen.
   A chosen lr at either end of the grid is flagged (the optimum may lie outside it).
2. **seeds**: at the chosen lr, the other ``seeds`` (the grid's first-seed run counts as one).
3. **scoring** on fixed sets, the same for every arch and seed: MQAR accuracy on >= ``min_scored``
   answers per run and length; text loss on ``text_tokens`` held-out tokens (``eval/jobs.py``).
4. **statistics**: every quality metric as the mean and a 95% Student-t interval over seeds
   (``eval/stats.py``); the table bolds every arch whose interval overlaps the best one's.
5. **timings** (``eval/throughput.py``): prefill and decode of each arch's trained model at several
   contexts, warmed up and repeated (``torch.utils.benchmark``), median with IQR; a spread above
   ``max_spread`` is flagged. Measured in fresh processes (``throughput.processes``,
   ``eval/isolate.py``), never in the process that trained: speed depends on a process's history.

Runs are independent jobs dispatched by ``eval/launch.py`` (in-process, or through a Hydra launcher:
joblib processes, submitit on SLURM). Every job writes its result file; a rerun reuses them (and
keeps the wall times recorded when they ran). Outputs in ``<results_root>/<name>/``:
``compare.md``, ``compare.csv``, ``compare.json`` (``runs``, ``lr_selection``, ``summary``: see
``Compare._write``) and PNG plots, all written atomically.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from . import io, plots
from . import table as tbl
from .config import resolve_archs
from .launch import launch
from .stats import mean_ci, tied_with_best
from .isolate import measure_sources
from .throughput import ThroughputSettings, thread_policy

CACHE_VERSION = 3
STATE_CONTEXTS = [2**k for k in range(8, 17)]  # 256 .. 64k, analytic state size


def _plain(x) -> Any:
    return OmegaConf.to_container(x, resolve=True) if OmegaConf.is_config(x) else x


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def lr_tag(lr: float) -> str:
    return f"{float(lr):g}"


def train_overrides(c: DictConfig, arch: str, task: str, runs_root: Path, name: str | None = None) -> list[str]:
    """Trainer overrides for one run: the preset's common ones, its per-task ones, the user's extra
    ones (``compare.train.extra_overrides``, e.g. ``[arch.short_conv=4]``), then arch/task/name/root."""
    per_task = _plain(c.train.get("task_overrides", {}) or {}).get(task, []) or []
    extra = _plain(c.train.get("extra_overrides", [])) or []
    return [*(_plain(c.train.get("overrides", [])) or []), *per_task, *extra,
            f"arch={arch}", f"task={task}", f"name={name or f'{task}-{arch}'}", f"results_root={runs_root}"]


def arch_families(c: DictConfig) -> dict[str, str]:
    """arch config -> family, from the preset's ``families`` map (family -> arch configs)."""
    out = {}
    for fam, names in (_plain(c.get("families")) or {}).items():
        for n in resolve_archs(names) if names else []:
            out.setdefault(n, str(fam))
    return out


def preset_archs(c: DictConfig) -> list[str]:
    """The preset's arch configs: every member of ``families`` (in order), then ``archs`` (may hold ``all``)."""
    names = [n for names in (_plain(c.get("families")) or {}).values() if names for n in resolve_archs(names)]
    extra = _plain(c.get("archs"))
    if extra:
        names += resolve_archs(extra)
    only = _plain(c.get("only"))
    if only:
        keep = resolve_archs(only)
        missing = [n for n in keep if n not in names]
        if missing:
            raise ValueError(f"compare.only: {missing} are not in this preset's archs {names}")
        names = [n for n in names if n in keep]
    if not names:
        raise ValueError("compare: no architectures; set compare.families and/or compare.archs")
    return list(dict.fromkeys(names))


class Compare:
    """One compare job; ``run()`` does it all and returns the JSON-able result."""

    def __init__(self, cfg: DictConfig, progress: bool = True):
        self.cfg = cfg
        self.c = c = cfg.compare
        from train.config import confined

        self.out = confined(str(cfg.results_root), c.name, "compare.name")  # one folder name under results_root
        self.name = self.out.name
        self.runs_root = self.out / "runs"
        self.archs = preset_archs(c)
        self.family = arch_families(c)
        self.tasks = [str(t) for t in c.tasks]
        if not self.tasks:
            raise ValueError("compare: tasks must list at least one task (e.g. [mqar, text])")
        self.primary = str(c.get("primary_task") or ("text" if "text" in self.tasks else self.tasks[0]))
        if self.primary not in self.tasks:
            raise ValueError(f"compare: primary_task={self.primary!r} is not in tasks {self.tasks}")
        grid = _plain(c.lr_grid)
        self.lr_grid = {t: [float(x) for x in (grid.get(t) or []) if x is not None] if isinstance(grid, dict) else
                        [float(x) for x in grid] for t in self.tasks}  # task -> lrs
        self.seeds = [int(s) for s in c.seeds]
        for t, g in self.lr_grid.items():
            if not g or any(not (x > 0 and math.isfinite(x)) for x in g):
                raise ValueError(f"compare: lr_grid for {t} must be positive numbers, got {grid}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"compare: seeds must be distinct ints, got {list(c.seeds)}")
        self.widths = [int(w) for w in (c.get("widths") or [])] or [None]
        self.configs = [(a, w) for a in self.archs for w in self.widths]  # one table row each
        self.tp = ThroughputSettings.from_cfg(c.throughput) if c.get("throughput") else None
        self.threads = c.get("threads")
        self.state_at = int(c.get("state_at", 8192))
        self.progress = progress
        self.errors: list[dict] = []
        self.measured: dict[str, dict] = {}

    def label(self, arch: str, width: int | None) -> str:
        return arch if width is None else f"{arch}-d{width}"

    # ---- jobs ----------------------------------------------------------------------------
    def spec(self, arch: str, width: int | None, task: str, lr: float, seed: int, phase: str) -> dict:
        label = self.label(arch, width)
        run_id = f"{task}-{label}-lr{lr_tag(lr)}-s{seed}"
        ov = train_overrides(self.c, arch, task, self.runs_root, name=run_id) + [f"lr={lr}", f"seed={seed}"]
        if width is not None:
            ov.append(f"model.d_model={width}")
        return {"id": run_id, "arch": arch, "config": label, "task": task, "lr": lr, "seed": seed, "phase": phase,
                "overrides": ov, "eval": _plain(self.c.eval), "threads": self.threads, "out": str(self.out)}

    def _launch(self, specs, bar) -> list[dict]:
        def tick(s):
            bar.set_postfix_str(f"{s['id']}")
            bar.update(1)

        results = launch(specs, str(self.c.get("launcher") or "sequential"), int(self.c.get("n_jobs") or 1),
                         _plain(self.c.get("launcher_overrides")) or [], progress=tick)
        for r in results:
            if r.get("error"):
                self._error(r["config"], f"train {r['task']} lr={lr_tag(r['lr'])} seed={r['seed']}", r["error"])
        return results

    def run(self) -> dict:
        from tqdm.auto import tqdm

        from train.lock import FolderLock

        with FolderLock(self.out, wait=self.cfg.get("lock_wait", False), what="compare folder"):  # one compare per folder
            return self._run_locked(tqdm)

    def _run_locked(self, tqdm) -> dict:
        t0 = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        n_grid = len(self.configs) * sum(len(g) for g in self.lr_grid.values())
        n_seeds = len(self.configs) * len(self.tasks) * (len(self.seeds) - 1)
        total = n_grid + n_seeds + (len(self.archs) if self.tp else 0)
        with thread_policy(self.threads), tqdm(total=total, desc=f"compare {self.name}", unit="run",
                                               disable=not self.progress, dynamic_ncols=True) as bar:
            grid = self._launch([self.spec(a, w, t, lr, self.seeds[0], "lr_grid") for a, w in self.configs
                                 for t in self.tasks for lr in self.lr_grid[t]], bar)
            self.lr_selection = self.select_lr(grid)
            more = []
            for a, w in self.configs:
                for t in self.tasks:
                    chosen = self.lr_selection[self.label(a, w)][t]["chosen"]
                    if chosen is None:
                        bar.update(len(self.seeds) - 1)
                        continue
                    more += [self.spec(a, w, t, chosen, s, "seeds") for s in self.seeds[1:]]
            seeded = self._launch(more, bar)
            self.all_runs = grid + seeded
            self.runs = self.chosen_runs(self.all_runs)
            if self.tp:
                for arch in self.archs:
                    bar.set_postfix_str(f"measure {arch}")
                    self._measure(arch)
                    bar.update(1)
            return self._write(time.time() - t0)

    def select_lr(self, grid: list[dict]) -> dict:
        """``{config: {task: {"grid": {lr: val_loss}, "chosen": lr, "edge": bool}}}`` (lowest val loss)."""
        sel: dict[str, dict] = {}
        for a, w in self.configs:
            label = self.label(a, w)
            for t in self.tasks:
                g = {lr_tag(r["lr"]): r.get("val_loss") for r in grid if r["config"] == label and r["task"] == t}
                ok = {k: v for k, v in g.items() if v is not None and math.isfinite(v)}
                chosen = float(min(ok, key=ok.get)) if ok else None
                lrs = self.lr_grid[t]
                edge = chosen is not None and len(lrs) > 1 and chosen in (min(lrs), max(lrs))
                sel.setdefault(label, {})[t] = {"grid": g, "chosen": chosen, "edge": edge}
        return sel

    def chosen_runs(self, runs: list[dict]) -> list[dict]:
        """The runs at each (config, task)'s chosen lr, one per seed (the ones the statistics use)."""
        out = []
        for r in runs:
            ch = self.lr_selection.get(r["config"], {}).get(r["task"], {}).get("chosen")
            if ch is not None and lr_tag(r["lr"]) == lr_tag(ch) and r["seed"] in self.seeds and not r.get("error"):
                out.append(r)
        return out

    def _measure(self, arch: str) -> None:
        """Throughput and state memory of ``arch``'s trained model (primary task, chosen lr, first seed); cached."""
        width = self.widths[0]
        label = self.label(arch, width)
        run = next((r for r in self.runs if r["config"] == label and r["task"] == self.primary and r["seed"] == self.seeds[0]), None)
        if run is None:
            return
        settings = _plain(self.c.throughput)
        key = _hash({"v": CACHE_VERSION, "arch": arch, "run": run.get("key"), "throughput": settings, "threads": self.threads,
                     "state_at": self.state_at})
        cache_path = self.out / "cache" / f"{arch}.json"
        cached = io.read_json(cache_path)
        if cached and cached.get("key") == key and not self.c.get("force_measure", False):
            self.measured[arch] = cached
            return
        import train

        t0 = time.time()
        m: dict[str, Any] = {"key": key, "throughput": [], "state": []}
        try:
            with _quiet():
                model, _, _ = train.load_run(run["run_dir"])
            model = model.float().eval()
            tp = self.tp if self.tp.threads is not None else dataclasses.replace(self.tp, threads=self.threads)
            m["throughput"] = measure_sources([{"label": arch, "run_dir": str(run["run_dir"])}], tp)
            m["state"] = [{"arch": arch, "context": L, "state_numel": model.state_size(L),
                           "state_mib": model.state_size(L) * 4 / 2**20} for L in sorted({*STATE_CONTEXTS, self.state_at})]
        except Exception as e:
            self._error(arch, "throughput", f"{type(e).__name__}: {e}")
            self.measured[arch] = m
            return
        m["seconds"] = time.time() - t0
        self.measured[arch] = m
        io.write_json(cache_path, m)

    def _error(self, config: str, stage: str, msg: str) -> None:
        self.errors.append({"arch": config, "stage": stage, "error": msg})
        logging.getLogger("eval.compare").error("%s failed for %s: %s", stage, config, msg)

    # ---- statistics ------------------------------------------------------------------------
    def metric_names(self) -> list[tuple[str, str, str]]:
        """(metric key, header, better) of every quality metric, in table order."""
        out = []
        for t in self.tasks:
            if t == "text":
                out += [("text_loss", "text loss", "min")]
            else:
                mult = self.c.get("table_length_multiplier")
                out += [(f"{t}_acc", f"{t} acc", "max")]
                if mult:
                    out += [(f"{t}_acc_long", f"{t} acc @{float(mult):g}x len", "max")]
        return out

    def run_metrics(self, r: dict) -> dict[str, float | None]:
        """One run's metrics under summary names (``mqar_acc``, ``text_loss``, ``*_val_loss``, ...)."""
        t, m = r["task"], r.get("metrics") or {}
        out: dict[str, float | None] = {f"{t}_val_loss": r.get("val_loss"), f"{t}_train_wall_s": r.get("wall_time_s")}
        if t == "text":
            out["text_loss"] = m.get("loss")
        else:
            out[f"{t}_acc"] = m.get("acc")
            seq = r.get("seq_len")
            mult = self.c.get("table_length_multiplier")
            if mult and seq:
                out[f"{t}_acc_long"] = m.get(f"acc@{int(round(float(mult) * seq))}")
            for k, v in m.items():
                if k.startswith("acc@"):
                    out[f"{t}_{k}"] = v
        return out

    def summary(self) -> dict[str, dict[str, dict]]:
        """``summary[config][metric] = {"mean", "ci95": [lo, hi], "n"}`` over the chosen-lr seeds."""
        per: dict[str, dict[str, list]] = {}
        for r in self.runs:
            for k, v in self.run_metrics(r).items():
                per.setdefault(r["config"], {}).setdefault(k, []).append(v)
        eq = self.equal_wall_clock()
        for cfg_label, vals in eq["values"].items():
            per.setdefault(cfg_label, {})[eq["metric"]] = vals
        return {label: {k: {kk: s[kk] for kk in ("mean", "ci95", "n")} for k, s in ((k, mean_ci(v)) for k, v in m.items())}
                for label, m in per.items()}

    def equal_wall_clock(self) -> dict:
        """Training loss of the primary task at the same wall-clock seconds for every config: T = the
        shortest chosen-lr training time; each run's loss curve is read at T (linear interpolation)."""
        runs = [r for r in self.runs if r["task"] == self.primary and r.get("curve")]
        ends = [r["curve"][-1]["seconds"] for r in runs if r["curve"][-1]["seconds"] > 0]
        T = min(ends) if ends else None
        values: dict[str, list] = {}
        if T:
            for r in runs:
                values.setdefault(r["config"], []).append(_interp(r["curve"], T))
        return {"seconds": T, "metric": f"{self.primary}_train_loss@equal_wall", "values": values}

    # ---- table -----------------------------------------------------------------------------
    def columns(self) -> list[tbl.Column]:
        C = tbl.Column
        cols = [C("arch", "arch", "text"), C("family", "family", "text"), C("params", "params", "count"),
                C("train_flops", "train FLOPs", "sci"), C("tokens", "tokens", "count"),
                C("train_wall_s", "train wall s", "sec")]
        for key, header, better in self.metric_names():
            cols.append(C(key, header, "acc" if "acc" in key else "float", better, ci=True))
        for t in self.tasks:
            cols.append(C(f"{t}_lr", f"{t} lr", "text"))
        eq = self.equal_wall_clock()
        if eq["seconds"]:
            cols.append(C(eq["metric"], f"{self.primary} train loss @{eq['seconds']:.3g}s", "float", "min", ci=True))
        if self.tp:
            for kind in ("prefill", "decode"):
                for L in self.tp.contexts:
                    cols.append(C(f"{kind}_tok_s@{L}", f"{kind} tok/s @{_k(L)}", "int", "max"))
        if self.tp:
            cols.append(C(f"state_mib@{self.state_at}", f"state MiB @{_k(self.state_at)}", "mib", "min"))
        else:  # the recall frontier's x axis
            cols.append(C("state_numel", f"state numbers @{self.primary} len", "count"))
        return cols

    def rows(self, summary: dict) -> list[dict]:
        out = []
        max_spread = float(self.c.throughput.get("max_spread", 0.2)) if self.tp else 0.2
        for a, w in self.configs:
            label = self.label(a, w)
            r: dict[str, Any] = {"arch": label, "family": self.family.get(a, "other")}
            prim = [x for x in self.runs if x["config"] == label and x["task"] == self.primary]
            if prim:
                r.update(params=prim[0].get("params"), state_numel=prim[0].get("state_numel"), train_flops=_mean([x.get("train_flops") for x in prim]),
                         tokens=_mean([x.get("tokens") for x in prim]))
            walls = [_mean([x.get("wall_time_s") for x in self.runs if x["config"] == label and x["task"] == t]) for t in self.tasks]
            r["train_wall_s"] = sum(walls) if walls and all(v is not None for v in walls) else None
            for key, _, _ in self.metric_names():
                r[key] = summary.get(label, {}).get(key)
            eq = self.equal_wall_clock()
            if eq["seconds"]:
                r[eq["metric"]] = summary.get(label, {}).get(eq["metric"])
            for t in self.tasks:
                s = self.lr_selection.get(label, {}).get(t, {})
                r[f"{t}_lr"] = None if s.get("chosen") is None else lr_tag(s["chosen"]) + (" (edge)" if s.get("edge") else "")
            m = self.measured.get(a, {})
            for row in m.get("throughput", []):
                if row.get("status") == "ok":
                    for kind in ("prefill", "decode"):
                        r[f"{kind}_tok_s@{row['context']}"] = row[f"{kind}_tok_s"]
                        r[f"{kind}_tok_s@{row['context']}!"] = (row.get(f"{kind}_spread") or 0) > max_spread
            state_L = self.state_at
            ref = next((x for x in self.runs if x["config"] == label), None)
            if ref is not None and m.get("state"):
                r[f"state_mib@{state_L}"] = next((s["state_mib"] for s in m["state"] if s["context"] == state_L), None)
            elif ref is not None:
                r[f"state_mib@{state_L}"] = None
            r["error"] = "; ".join(f"{e['stage']}: {e['error']}" for e in self.errors if e["arch"] in (label, a)) or None
            out.append(r)
        return out

    # ---- files -------------------------------------------------------------------------------
    def _write(self, invocation_s: float) -> dict:
        summary = self.summary()
        cols, rows = self.columns(), self.rows(summary)
        compute_s = sum(float(r.get("job_time_s") or 0) for r in self.all_runs) + sum(
            float(m.get("seconds") or 0) for m in self.measured.values())
        cpu = [r.get("cpu_time_s") for r in self.all_runs if not r.get("error")]
        cpu_s = sum(cpu) if cpu and all(c is not None for c in cpu) else None  # the runs' own CPU seconds
        old = io.read_json(self.out / "compare.json") or {}
        first_wall = old.get("wall_time_s") if old.get("spec_key") == self.spec_key() else None
        wall = first_wall or max(compute_s, invocation_s)  # a rerun keeps the first complete run's time
        tp_rows = [r for a in self.archs for r in self.measured.get(a, {}).get("throughput", [])]
        state_rows = [r for a in self.archs for r in self.measured.get(a, {}).get("state", [])]
        seed0 = [r for r in self.runs if r["seed"] == self.seeds[0]]
        curves = {t: {r["config"]: [(p["flops"], p["loss"]) for p in r.get("curve", [])] for r in seed0 if r["task"] == t} for t in self.tasks}
        wall_curves = {t: {r["config"]: [(p["seconds"], p["loss"]) for p in r.get("curve", [])] for r in seed0 if r["task"] == t}
                       for t in self.tasks}
        files = {"loss_vs_flops": plots.loss_vs_flops(curves, self.out / "loss_vs_flops.png"),
                 "loss_vs_wall_clock": plots.loss_vs_wall_clock(wall_curves, self.out / "loss_vs_wall_clock.png"),
                 "val_loss_vs_lr": plots.val_loss_vs_lr(self.lr_selection, self.out / "val_loss_vs_lr.png")}
        for t in self.tasks:
            if t == "text":
                continue
            pts = self.frontier_points(t, summary)
            files[f"recall_frontier_{t}" if len(self.tasks) > 2 else "recall_frontier"] = plots.recall_frontier(
                pts, self.out / (f"recall_frontier_{t}.png" if len(self.tasks) > 2 else "recall_frontier.png"), task=t)
            files[f"accuracy_vs_length_{t}"] = plots.accuracy_vs_length_ci(
                self.length_points(t, summary), self.out / f"accuracy_vs_length_{t}.png",
                train_len=next((r.get("seq_len") for r in self.runs if r["task"] == t), None), task=t)
        if self.tp:
            files.update(decode_vs_context=plots.decode_vs_context(tp_rows, self.out / "decode_vs_context.png"),
                         prefill_vs_context=plots.prefill_vs_context(tp_rows, self.out / "prefill_vs_context.png"),
                         state_vs_context=plots.state_vs_context(state_rows, self.out / "state_vs_context.png"))
        eq = self.equal_wall_clock()
        result = {
            "name": self.name, "spec_key": self.spec_key(), "archs": [self.label(a, w) for a, w in self.configs],
            "families": {self.label(a, w): self.family.get(a, "other") for a, w in self.configs},
            "tasks": self.tasks, "primary_task": self.primary, "lr_grid": self.lr_grid, "seeds": self.seeds,
            "ci_method": "Student t over seeds, 95% two-sided: mean +- t(0.975, n-1) * s / sqrt(n)",
            "wall_time_s": wall, "compute_time_s": compute_s, "invocation_time_s": invocation_s, "runs_cpu_time_s": cpu_s,
            "device": "cpu" if not torch.cuda.is_available() else "cuda", "torch": torch.__version__, "threads": self.threads,
            "runs": [{k: v for k, v in r.items() if k not in ("curve", "traceback", "key")} for r in self.all_runs],
            "lr_selection": {c: {t: {"grid": s["grid"], "chosen": s["chosen"], "edge": s["edge"]} for t, s in d.items()}
                             for c, d in self.lr_selection.items()},
            "summary": summary, "equal_wall_clock_s": eq["seconds"],
            "curves": {r["id"]: r.get("curve", []) for r in self.runs},
            "columns": [c.__dict__ for c in cols], "rows": rows, "tied_best": tbl.tied(rows, cols),
            "throughput": tp_rows, "state": state_rows,
            "errors": self.errors, "plots": {k: Path(v).name for k, v in files.items()}, "preset": _plain(self.c),
        }
        io.write_json(self.out / "compare.json", result)
        csv_rows = [{k: (v["mean"] if isinstance(v, dict) else v) for k, v in r.items()} for r in rows]
        for r, full in zip(csv_rows, rows):
            for c in cols:
                if c.ci and isinstance(full.get(c.key), dict):
                    r[c.key + "_ci_lo"], r[c.key + "_ci_hi"] = full[c.key]["ci95"]
        keys = [k for c in cols for k in ([c.key, c.key + "_ci_lo", c.key + "_ci_hi"] if c.ci else [c.key])]
        io.write_csv(self.out / "compare.csv", csv_rows, keys + ["error"])
        io.write_text(self.out / "compare.md", self.markdown(cols, rows, files, wall, invocation_s))
        return result

    def spec_key(self) -> str:
        return _hash({"archs": self.configs, "tasks": self.tasks, "grid": self.lr_grid, "seeds": self.seeds,
                      "train": _plain(self.c.train), "eval": _plain(self.c.eval), "throughput": _plain(self.c.get("throughput"))})

    def frontier_points(self, task: str, summary: dict) -> list[dict]:
        pts = []
        for a, w in self.configs:
            label = self.label(a, w)
            s = summary.get(label, {}).get(f"{task}_acc")
            run = next((r for r in self.runs if r["config"] == label and r["task"] == task), None)
            if s and s["mean"] is not None and run:
                pts.append({"arch": a, "label": label, "state": run["state_numel"], "acc": s["mean"], "ci95": s["ci95"]})
        return pts

    def length_points(self, task: str, summary: dict) -> list[dict]:
        pts = []
        for a, w in self.configs:
            label = self.label(a, w)
            for k, s in summary.get(label, {}).items():
                if k.startswith(f"{task}_acc@") and s["mean"] is not None:
                    pts.append({"arch": label, "length": int(k.split("@")[1]), "accuracy": s["mean"], "ci95": s["ci95"]})
        return pts

    def markdown(self, cols, rows, files, wall, invocation_s) -> str:
        eq = self.equal_wall_clock()
        edge = any(s["edge"] for d in self.lr_selection.values() for s in d.values())
        threads = self.threads or torch.get_num_threads()
        lines = [
            f"# Comparison: {self.name}", "",
            f"{len(self.configs)} configurations x tasks {', '.join(self.tasks)}, matched training FLOPs per task; "
            f"lr chosen per (arch, task) from " + "; ".join(f"{t} {{{', '.join(lr_tag(x) for x in g)}}}" for t, g in self.lr_grid.items())
            + f" on validation loss (seed "
            f"{self.seeds[0]}), then {len(self.seeds)} seeds at that lr. Quality cells: mean ± half-width of the 95% "
            f"Student-t interval over seeds; **bold**: every arch whose interval overlaps the best one's (statistically "
            f"tied). ↑ higher is better, ↓ lower is better. Scored on fixed sets: >= {int(self.c.eval.min_scored):,} "
            f"answers per run and length (recall), {int(self.c.eval.text_tokens):,} held-out tokens (text loss, "
            f"nats/byte; the lr was chosen on another {int(self.c.eval.text_tokens):,}).",
            "",
            f"Wall time {wall / 60:.1f} min of compute ({torch.get_num_threads() if not self.threads else threads} torch "
            f"thread(s), torch {torch.__version__}; this invocation {invocation_s:.0f} s{self._cpu_note()}). `train wall s`: training time "
            f"of one run (mean over seeds), summed over tasks."
            + (f" `train loss @{eq['seconds']:.3g}s`: {self.primary} training loss after the same wall-clock seconds "
               f"(the shortest run's)." if eq["seconds"] else ""),
            "",
            tbl.markdown(rows, cols)]
        if edge:
            lines += ["", "(edge): the chosen lr is at the end of the grid; the best lr may lie outside it."]
        if self.tp:
            where = (f"in {self.tp.processes} fresh process{'es' if self.tp.processes > 1 else ''} per arch, samples pooled"
                     if self.tp.processes else "in this process")
            lines += ["", f"Speed: trained model, batch {self.tp.batch_size}, {self.tp.dtype}, {where}, after a warm-up at each "
                          f"context; median of repeated timings (torch.utils.benchmark); † = spread (IQR / median) above "
                          f"{float(self.c.throughput.get('max_spread', 0.2)):.0%}; bold = best median. State = numbers "
                          "held per sequence x 4 bytes (analytic)."]
        errs = [r for r in rows if r.get("error")]
        if errs:
            lines += ["", "Failures:", ""] + [f"- {r['arch']}: {r['error']}" for r in errs]
        skipped = [r for a in self.archs for r in self.measured.get(a, {}).get("throughput", []) if r.get("status") != "ok"]
        if skipped:
            lines += ["", "Skipped throughput measurements:", ""] + [f"- {r['arch']} @ {r['context']}: {r['status']}" for r in skipped]
        lines += ["", "Plots: " + ", ".join(f"[{k}]({Path(v).name})" for k, v in files.items()), ""]
        return "\n".join(lines)

    def _cpu_note(self) -> str:
        cpu = [r.get("cpu_time_s") for r in self.all_runs if not r.get("error")]
        if not cpu or any(c is None for c in cpu):
            return ""
        return f"; the runs took {sum(cpu) / 60:.1f} CPU-minutes (a wall time far above this means a busy machine)"


def _interp(curve: list[dict], T: float) -> float | None:
    prev = None
    for p in curve:
        if p["seconds"] >= T:
            if prev is None or p["seconds"] == prev["seconds"]:
                return p["loss"]
            f = (T - prev["seconds"]) / (p["seconds"] - prev["seconds"])
            return prev["loss"] + f * (p["loss"] - prev["loss"])
        prev = p
    return prev["loss"] if prev else None


def _mean(xs) -> float | None:
    xs = [float(x) for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _k(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


class _quiet:
    """Keep the compare output to its progress bar: Lightning's info logs, its known deprecation
    chatter and ``datasets``' loading bars are silenced while the many small runs train."""

    IGNORE = (r".*isinstance\(treespec, LeafSpec\).*", r".*does not have many workers.*", r".*weights_only.*")

    def __enter__(self):
        names = ["lightning", "lightning.pytorch", "pytorch_lightning", "lightning.fabric",
                 "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"]
        names += [n for n in logging.root.manager.loggerDict if n.startswith(("lightning", "pytorch_lightning"))]
        self.levels = {n: logging.getLogger(n).level for n in dict.fromkeys(names)}
        for n in self.levels:
            logging.getLogger(n).setLevel(logging.WARNING)
        self.warn = warnings.catch_warnings()
        self.warn.__enter__()
        for pattern in self.IGNORE:
            warnings.filterwarnings("ignore", message=pattern)
        self.ds = None
        try:
            from datasets.utils import logging as ds_logging

            self.ds = ds_logging
            self.ds_bars = ds_logging.is_progress_bar_enabled()
            ds_logging.disable_progress_bar()
        except Exception:  # datasets missing or a different version: leave its bars alone
            self.ds = None
        return self

    def __exit__(self, *exc):
        for n, lvl in self.levels.items():
            logging.getLogger(n).setLevel(lvl)
        self.warn.__exit__(*exc)
        if self.ds is not None and self.ds_bars:
            self.ds.enable_progress_bar()
        return False


def run_compare(cfg: DictConfig, progress: bool = True) -> dict:
    return Compare(cfg, progress=progress).run()
