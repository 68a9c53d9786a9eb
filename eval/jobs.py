"""One compare job = train one (arch, task, lr, seed[, width]) run, then score it on fixed sets.

A job is a plain JSON-able dict (``spec``), so any launcher can run it in any process:
``run_job(spec)`` trains through ``train.train_run`` (a finished run is reused, an unfinished one
resumes), evaluates, and writes ``<out>/jobs/<id>.json`` atomically. A rerun whose spec is
unchanged reads that file and does nothing else, so the recorded times stay the original ones.

Evaluation sets (fixed: the same for every arch, lr and seed):

* synthetic tasks (MQAR ...): validation loss on ``ceil(min_scored / answers per example)``
  examples at the training length (seed ``VAL_SEED``; this is what the lr is chosen on), and
  test accuracy at every ``task.test_seq_lens`` on as many examples again, from another seed
  (``TEST_SEED``): at least ``min_scored`` scored answers per run and length;
* text: the held-out stream (files never trained on) is cut into two disjoint parts of
  ``text_tokens`` tokens each (or halves of what it holds): validation loss on the first (lr
  selection), test loss on the second (reported), in non-overlapping windows of the training
  length.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import io

VAL_SEED = 271_828
TEST_SEED = 314_159
JOB_VERSION = 1


def job_key(spec: dict) -> str:
    s = {k: v for k, v in spec.items() if k not in ("out",)}
    return hashlib.sha256(json.dumps({"v": JOB_VERSION, **s}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def result_path(spec: dict) -> Path:
    return Path(spec["out"]) / "jobs" / f"{spec['id']}.json"


def cached_result(spec: dict) -> dict | None:
    r = io.read_json(result_path(spec))
    return r if r and r.get("key") == job_key(spec) else None


@torch.inference_mode()
def synthetic_eval(model, task, seq_len: int, test_lens: list[int], min_scored: int, batch_size: int) -> dict:
    """Validation loss at the training length and test accuracy per length (>= min_scored answers each)."""
    from .quality import _scored

    per_example = _answers_per_example(task, seq_len)
    n = max(1, math.ceil(min_scored / per_example))
    d = task.generate(n, seq_len, VAL_SEED)
    loss, correct, scored = _scored(model, d["inputs"], d["targets"], batch_size)
    out: dict[str, Any] = {"val_loss": loss / scored, "val_scored": scored, "acc": {}, "scored": {}}
    for L in test_lens:
        n_L = max(1, math.ceil(min_scored / _answers_per_example(task, L)))
        d = task.generate(n_L, L, TEST_SEED)
        _, c, s = _scored(model, d["inputs"], d["targets"], batch_size)
        out["acc"][str(L)], out["scored"][str(L)] = c / s, s
    return out


def _answers_per_example(task, L: int) -> float:
    d = task.generate(8, L, 0)
    return max(1e-9, float((d["targets"] != -100).sum()) / 8)


@torch.inference_mode()
def text_eval(model, tokens: torch.Tensor, seq_len: int, text_tokens: int, batch_size: int) -> dict:
    """Mean next-token loss on two disjoint parts of the held-out stream: val (first) and test (second)."""
    tokens = tokens.reshape(-1).long()
    part = min(int(text_tokens), tokens.numel() // 2)
    if part < seq_len + 1:
        raise ValueError(f"text eval: the held-out stream has {tokens.numel()} tokens; need 2 x {seq_len + 1}")
    return {"val_loss": _stream_loss(model, tokens[:part], seq_len, batch_size), "val_tokens": _scored_tokens(part, seq_len),
            "test_loss": _stream_loss(model, tokens[part:2 * part], seq_len, batch_size), "test_tokens": _scored_tokens(part, seq_len)}


def _scored_tokens(n: int, seq_len: int) -> int:
    w = (n - 1) // seq_len
    return w * seq_len + (((n - 1) - w * seq_len) if (n - 1) % seq_len else 0)


def _stream_loss(model, tokens: torch.Tensor, seq_len: int, batch_size: int) -> float:
    """Loss over every token of ``tokens`` (T,) predicted in windows of ``seq_len`` (the last one shorter)."""
    dev = next(model.parameters()).device
    T = tokens.numel() - 1
    w = T // seq_len
    total, count = 0.0, 0
    if w:
        x = tokens[: w * seq_len].view(w, seq_len)  # (W, L)
        y = tokens[1 : w * seq_len + 1].view(w, seq_len)  # (W, L)
        for i in range(0, w, batch_size):
            logits = model(x[i:i + batch_size].to(dev)).float()  # (b, L, V)
            total += F.cross_entropy(logits.flatten(0, 1), y[i:i + batch_size].flatten().to(dev), reduction="sum").item()
            count += y[i:i + batch_size].numel()
    if T > w * seq_len:  # the tail window
        x, y = tokens[w * seq_len:T][None], tokens[w * seq_len + 1:T + 1][None]
        total += F.cross_entropy(model(x.to(dev)).float()[0], y[0].to(dev), reduction="sum").item()
        count += y.numel()
    return total / count


def curve(run_dir: Path) -> list[dict]:
    """metrics.csv rows as ``{flops, tokens, seconds, loss}``: training loss with the cumulative
    training time (each row's window of tokens at its measured tokens/s)."""
    from train.callbacks import read_metrics_rows  # a damaged file (NUL padding): the rows before the damage

    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    out, seconds, prev_tokens = [], 0.0, 0.0
    for r in read_metrics_rows(path):
        try:
            tokens, tps, loss, flops = (float(r.get(k) or "nan") for k in ("tokens", "tokens_per_s", "train_loss", "flops"))
        except ValueError:
            continue
        if math.isfinite(tokens) and math.isfinite(tps) and tps > 0:
            seconds += (tokens - prev_tokens) / tps
            prev_tokens = tokens
        if math.isfinite(loss):
            out.append({"flops": flops, "tokens": tokens, "seconds": seconds, "loss": loss})
    return out


def run_job(spec: dict) -> dict:
    """Train (or reuse) and evaluate one run; returns and writes its result record."""
    cached = cached_result(spec)
    if cached:
        return cached
    import train

    from .malloc import steady_allocator

    steady_allocator()  # training wall time is a timing too: the same allocator policy in every job process
    threads = torch.get_num_threads()
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    t0, cpu0 = time.time(), time.process_time()
    try:
        from .compare import _quiet

        cfg = train.compose_config(spec["overrides"])
        with _quiet():
            summary = dict(train.train_run(cfg))
        t_train = time.time() - t0
        run_dir = Path(summary["run_dir"])
        with _quiet():
            model, run_cfg, _ = train.load_run(run_dir)
        model = model.float().eval()
        task = train.build_task(run_cfg.task)
        seq_len = int(run_cfg.seq_len)
        ev = spec["eval"]
        metrics: dict[str, Any] = {}
        if getattr(task, "synthetic", False):
            lens = [int(x) for x in (run_cfg.task.get("test_seq_lens") or [seq_len])]
            e = synthetic_eval(model, task, seq_len, lens, int(ev["min_scored"]), int(ev.get("batch_size", 64)))
            val_loss = e["val_loss"]
            for L in lens:
                metrics[f"acc@{L}"] = e["acc"][str(L)]
            metrics["acc"] = e["acc"][str(seq_len)] if str(seq_len) in e["acc"] else None
            scored = e["scored"]
        else:
            e = text_eval(model, task.val_tokens(), seq_len, int(ev["text_tokens"]), int(ev.get("text_batch_size", 32)))
            val_loss = e["val_loss"]
            metrics["loss"] = e["test_loss"]
            scored = {"val": e["val_tokens"], "test": e["test_tokens"]}
        result = {
            "id": spec["id"], "key": job_key(spec), "arch": spec["arch"], "config": spec["config"], "task": spec["task"],
            "d_model": summary.get("d_model"), "lr": spec["lr"], "seed": spec["seed"], "phase": spec.get("phase"),
            "val_loss": val_loss, "metrics": metrics, "scored": scored,
            "train_flops": summary.get("train_flops"), "tokens": summary.get("tokens"), "steps": summary.get("steps"),
            "params": summary.get("params"), "wall_time_s": summary.get("wall_time_s"),
            "train_session_s": t_train, "job_time_s": time.time() - t0, "threads": torch.get_num_threads(),
            "cpu_time_s": time.process_time() - cpu0,  # this process's CPU seconds: what the job costs on a quiet machine
            "state_numel": int(model.state_size(seq_len)), "seq_len": seq_len,
            "curve": curve(run_dir), "run_dir": str(run_dir), "error": None,
        }
    except Exception as e:  # one broken run must not sink the comparison
        import traceback

        result = {"id": spec["id"], "key": job_key(spec), "arch": spec["arch"], "config": spec["config"], "task": spec["task"],
                  "lr": spec["lr"], "seed": spec["seed"], "phase": spec.get("phase"), "val_loss": None, "metrics": {},
                  "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    finally:
        torch.set_num_threads(threads)
    if result.get("error") is None:
        io.write_json(result_path(spec), result)
    return result
