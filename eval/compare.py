"""``python -m eval compare``: one run per (arch, task) at matched compute, measured and tabulated.

Steps, with one progress bar over all of them:

1. train (or reuse) a run per arch and task through ``train.train_run`` (a finished run whose
   config hash matches is reused; an unfinished one resumes from its last checkpoint);
2. quality of each run (``eval.quality``) and throughput / state memory of each arch
   (``eval.throughput``); each arch's measurements are cached in ``cache/<arch>.json`` under
   a key of the run hashes and settings, so a rerun after an interruption skips them;
3. the table (``compare.md``, ``compare.csv``, ``compare.json``) and PNG plots, all written
   atomically into ``<results_root>/<name>/``.

The preset (``configs/compare/*.yaml``, group ``compare``) says which archs and tasks, the
trainer overrides that set the budget, and the throughput / quality settings.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from . import io, plots
from . import table as tbl
from .config import resolve_archs
from .quality import evaluate_run
from .throughput import ThroughputSettings, measure_model

CACHE_VERSION = 1
STATE_CONTEXTS = [2**k for k in range(8, 17)]  # 256 .. 64k, analytic state size


def _plain(x) -> Any:
    return OmegaConf.to_container(x, resolve=True) if isinstance(x, DictConfig) or OmegaConf.is_config(x) else x


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_overrides(c: DictConfig, arch: str, task: str, runs_root: Path) -> list[str]:
    """Trainer overrides for one run: the preset's common ones, its per-task ones, the user's extra
    ones (``compare.train.extra_overrides``, e.g. ``[arch.short_conv=4]``), then arch/task/name/root."""
    per_task = _plain(c.train.get("task_overrides", {}) or {}).get(task, []) or []
    extra = _plain(c.train.get("extra_overrides", [])) or []
    return [*(_plain(c.train.get("overrides", [])) or []), *per_task, *extra,
            f"arch={arch}", f"task={task}", f"name={task}-{arch}", f"results_root={runs_root}"]


def read_curve(run_dir: Path) -> list[tuple[float, float]]:
    """(flops, loss) points from a run's metrics.csv: train loss, or val loss when that is all there is."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))

    def pts(key):
        out = []
        for r in rows:
            try:
                fl, lo = float(r.get("flops") or "nan"), float(r.get(key) or "nan")
            except ValueError:
                continue
            if math.isfinite(fl) and math.isfinite(lo):
                out.append((fl, lo))
        return out

    train = pts("train_loss")
    return train if len(train) >= 2 else (train or pts("val_loss"))


class Compare:
    """One compare job; ``run()`` does it all and returns the JSON-able result."""

    def __init__(self, cfg: DictConfig, progress: bool = True):
        self.cfg = cfg
        self.c = cfg.compare
        from train.config import confined

        self.out = confined(str(cfg.results_root), self.c.name, "compare.name")  # one folder name under results_root
        self.name = self.out.name
        self.runs_root = self.out / "runs"
        self.archs = resolve_archs(self.c.archs)
        self.tasks = [str(t) for t in self.c.tasks]
        if not self.tasks:
            raise ValueError("compare: tasks must list at least one task (e.g. [mqar, text])")
        self.primary = str(self.c.get("primary_task") or ("text" if "text" in self.tasks else self.tasks[0]))
        if self.primary not in self.tasks:
            raise ValueError(f"compare: primary_task={self.primary!r} is not in tasks {self.tasks}")
        self.tp = ThroughputSettings.from_cfg(self.c.throughput)
        self.state_at = int(self.c.get("state_at", 8192))
        self.table_contexts = [int(x) for x in (self.c.get("table_contexts") or self.tp.contexts[:2])]
        self.progress = progress
        self.summaries: dict[str, dict[str, dict]] = {t: {} for t in self.tasks}
        self.measured: dict[str, dict] = {}
        self.errors: list[dict] = []

    # ---- steps ---------------------------------------------------------------------------
    def run(self) -> dict:
        from tqdm.auto import tqdm

        threads = torch.get_num_threads()
        if self.c.get("threads"):
            torch.set_num_threads(int(self.c.threads))
        try:
            return self._run(tqdm)
        finally:
            torch.set_num_threads(threads)

    def _run(self, tqdm) -> dict:
        from train.lock import FolderLock

        with FolderLock(self.out, wait=self.cfg.get("lock_wait", False), what="compare folder"):  # one compare per folder
            return self._run_locked(tqdm)

    def _run_locked(self, tqdm) -> dict:
        t0 = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        units = len(self.archs) * (len(self.tasks) + 1) + 1
        with tqdm(total=units, desc=f"compare {self.name}", unit="step", disable=not self.progress, dynamic_ncols=True) as bar:
            for arch in self.archs:
                for task in self.tasks:
                    bar.set_postfix_str(f"train {task}-{arch}")
                    self._train(arch, task)
                    bar.update(1)
                bar.set_postfix_str(f"measure {arch}")
                self._measure(arch, lambda s: bar.set_postfix_str(f"measure {s}"))
                bar.update(1)
            bar.set_postfix_str("write table and plots")
            result = self._write(time.time() - t0)
            bar.update(1)
        return result

    def _train(self, arch: str, task: str) -> None:
        import train

        try:
            run_cfg = train.compose_config(train_overrides(self.c, arch, task, self.runs_root))
            with _quiet():
                summary = dict(train.train_run(run_cfg))
            summary["run_dir"] = str(self.runs_root / f"{task}-{arch}")
            self.summaries[task][arch] = summary
        except Exception as e:  # one broken arch must not sink the whole table
            self._error(arch, f"train {task}", e)

    def _measure(self, arch: str, progress) -> None:
        """Quality of each finished run and throughput of the primary run's model (cached)."""
        runs = {t: self.summaries[t].get(arch) for t in self.tasks}
        have = {t: s for t, s in runs.items() if s}
        if not have:
            return
        key = _hash({"v": CACHE_VERSION, "arch": arch, "runs": {t: s.get("config_hash") for t, s in have.items()},
                     "throughput": _plain(self.c.throughput), "quality": _plain(self.c.quality),
                     "state_at": self.state_at})
        cache_path = self.out / "cache" / f"{arch}.json"
        cached = io.read_json(cache_path)
        if cached and cached.get("key") == key and not self.c.get("force_measure", False):
            self.measured[arch] = cached
            return
        import train

        m: dict[str, Any] = {"key": key, "quality": {}, "throughput": [], "state": []}
        tp_model = None
        for task, s in have.items():
            try:
                with _quiet():
                    model, run_cfg, _ = train.load_run(s["run_dir"])
                    model = model.float().eval()
                    task_obj = train.build_task(run_cfg.task)
                    m["quality"][task] = evaluate_run(model, run_cfg, task_obj, self.c.quality, progress=progress)
                if task == self.primary or tp_model is None:
                    tp_model = model
            except Exception as e:
                self._error(arch, f"quality {task}", e)
        if tp_model is not None:
            try:
                m["throughput"] = measure_model(tp_model, self.tp, arch=arch, progress=progress)
                m["state"] = [{"arch": arch, "context": L, "state_numel": tp_model.state_size(L),
                               "state_mib": tp_model.state_size(L) * 4 / 2**20} for L in sorted({*STATE_CONTEXTS, self.state_at})]
                m["params"] = tp_model.num_params()
            except Exception as e:
                self._error(arch, "throughput", e)
        self.measured[arch] = m
        if not any(err["arch"] == arch for err in self.errors):
            io.write_json(cache_path, m)

    def _error(self, arch: str, stage: str, e: BaseException) -> None:
        msg = f"{type(e).__name__}: {e}"
        self.errors.append({"arch": arch, "stage": stage, "error": msg, "traceback": traceback.format_exc()})
        logging.getLogger("eval.compare").error("%s failed for %s: %s", stage, arch, msg)

    # ---- table -----------------------------------------------------------------------------
    def columns(self) -> list[tbl.Column]:
        C = tbl.Column
        cols = [C("arch", "arch", "text"), C("params", "params", "count"),
                C("train_flops", "train FLOPs", "sci"), C("tokens", "tokens", "count")]
        for t in self.tasks:
            if t == "text":
                cols += [C("text_val_loss", "text val loss", "float", "min"), C("text_ppl", "text ppl", "float", "min")]
            else:
                cols += [C(f"{t}_acc", f"{t} acc", "acc", "max")]
                if self.c.quality.get("table_length_multiplier"):
                    cols += [C(f"{t}_acc_long", f"{t} acc @{self.c.quality.table_length_multiplier:g}x len", "acc", "max")]
        for kind, label in (("prefill", "prefill"), ("decode", "decode")):
            for L in self.table_contexts:
                cols.append(C(f"{kind}_tok_s@{L}", f"{label} tok/s @{_k(L)}", "int", "max"))
        cols.append(C(f"state_mib@{self.state_at}", f"state MiB @{_k(self.state_at)}", "mib", "min"))
        return cols

    def rows(self) -> list[dict]:
        out = []
        mult = self.c.quality.get("table_length_multiplier")
        for arch in self.archs:
            r: dict[str, Any] = {"arch": arch}
            p = self.summaries[self.primary].get(arch) or {}
            r.update(params=p.get("params"), train_flops=p.get("train_flops"), tokens=p.get("tokens"),
                     train_wall_s=sum(float(self.summaries[t].get(arch, {}).get("wall_time_s") or 0) for t in self.tasks))
            m = self.measured.get(arch, {})
            for t in self.tasks:
                s = self.summaries[t].get(arch) or {}
                if t == "text":
                    vl = _f(s.get("val_loss"))
                    r["text_val_loss"] = vl
                    r["text_ppl"] = math.exp(vl) if vl is not None and vl < 50 else None
                else:
                    r[f"{t}_acc"] = _f(s.get("val_acc"))
                    q = (m.get("quality") or {}).get(t) or {}
                    if mult and q.get("train_len"):
                        want = int(round(mult * q["train_len"]))
                        for row in q.get("accuracy_vs_length", []):
                            if row.get("length") == want and row.get("status") == "ok":
                                r[f"{t}_acc_long"] = row.get("accuracy")
            for row in m.get("throughput", []):
                if row.get("status") == "ok":
                    r[f"prefill_tok_s@{row['context']}"] = row["prefill_tok_s"]
                    r[f"decode_tok_s@{row['context']}"] = row["decode_tok_s"]
            for row in m.get("state", []):
                if row["context"] == self.state_at:
                    r[f"state_mib@{self.state_at}"] = row["state_mib"]
            r["error"] = "; ".join(f"{e['stage']}: {e['error']}" for e in self.errors if e["arch"] == arch) or None
            out.append(r)
        return out

    def _write(self, wall: float) -> dict:
        cols, rows = self.columns(), self.rows()
        tp_rows = [r for a in self.archs for r in self.measured.get(a, {}).get("throughput", [])]
        state_rows = [r for a in self.archs for r in self.measured.get(a, {}).get("state", [])]
        curves = {t: {a: read_curve(Path(s["run_dir"])) for a, s in self.summaries[t].items()} for t in self.tasks}
        acc_plots = {}
        for t in self.tasks:
            if t == "text":
                continue
            acc_rows, train_len = [], None
            for a in self.archs:
                q = (self.measured.get(a, {}).get("quality") or {}).get(t) or {}
                train_len = train_len or q.get("train_len")
                acc_rows += [{"arch": a, **r} for r in q.get("accuracy_vs_length", [])]
            acc_plots[t] = (acc_rows, train_len)

        files = {"loss_vs_flops": plots.loss_vs_flops(curves, self.out / "loss_vs_flops.png"),
                 "decode_vs_context": plots.decode_vs_context(tp_rows, self.out / "decode_vs_context.png"),
                 "prefill_vs_context": plots.prefill_vs_context(tp_rows, self.out / "prefill_vs_context.png"),
                 "state_vs_context": plots.state_vs_context(state_rows, self.out / "state_vs_context.png")}
        for t, (acc_rows, train_len) in acc_plots.items():
            stem = "accuracy_vs_length" if len(acc_plots) == 1 else f"accuracy_vs_length_{t}"
            files[stem] = plots.accuracy_vs_length(acc_rows, self.out / f"{stem}.png", train_len=train_len, task=t)

        result = {
            "name": self.name, "archs": self.archs, "tasks": self.tasks, "primary_task": self.primary,
            "wall_time_s": wall, "device": self.tp.torch_device().type, "torch": torch.__version__,
            "columns": [c.__dict__ for c in cols], "rows": rows, "best": tbl.winners(rows, cols),
            "runs": self.summaries, "curves": curves, "throughput": tp_rows, "state": state_rows,
            "quality": {a: self.measured.get(a, {}).get("quality", {}) for a in self.archs},
            "errors": [{k: v for k, v in e.items() if k != "traceback"} for e in self.errors],
            "plots": {k: str(Path(v).name) for k, v in files.items()}, "preset": _plain(self.c),
        }
        io.write_json(self.out / "compare.json", result)
        io.write_csv(self.out / "compare.csv", rows, [c.key for c in cols] + ["train_wall_s", "error"])
        io.write_text(self.out / "compare.md", self.markdown(cols, rows, files, wall))
        return result

    def markdown(self, cols, rows, files, wall) -> str:
        dev = self.tp.torch_device().type
        lines = [f"# Comparison: {self.name}", "",
                 f"{len(self.archs)} architectures x tasks {', '.join(self.tasks)} at matched training compute "
                 f"({dev}, torch {torch.__version__}; wall time {wall / 60:.1f} min). Best value per column in **bold** "
                 "(↑ higher is better, ↓ lower is better; params / FLOPs / tokens are matched or descriptive). "
                 f"params / FLOPs / tokens are from the {self.primary} runs; throughput at batch {self.tp.batch_size}, "
                 f"{self.tp.dtype}, on the trained model; state = numbers held per sequence x 4 bytes (analytic).", "",
                 tbl.markdown(rows, cols)]
        errs = [r for r in rows if r.get("error")]
        if errs:
            lines += ["", "Failures:", ""] + [f"- {r['arch']}: {r['error']}" for r in errs]
        skipped = [r for a in self.archs for r in self.measured.get(a, {}).get("throughput", []) if r.get("status") != "ok"]
        if skipped:
            lines += ["", "Skipped throughput measurements:", ""] + [f"- {r['arch']} @ {r['context']}: {r['status']}" for r in skipped]
        lines += ["", "Plots: " + ", ".join(f"[{k}]({Path(v).name})" for k, v in files.items()), ""]
        return "\n".join(lines)


def _k(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def _f(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


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
