"""Plain progress lines for ``python -m train`` when stdout is not a terminal (a log file, a pipe, CI).

    run runs/attention-mqar-d64x2: attention on mqar, 117k params, 900 steps, 2.00e+12 training FLOPs
    step 90/900 (10%) loss 4.812 | 3,210 tok/s | elapsed 0:12 | ETA 1:48

A line at the start, then one every ``every_s`` seconds (and at the end); the ETA is the
remaining steps at the mean step time so far. On a terminal Lightning's progress bar does this.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

import lightning as L


def _clock(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _count(n: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


class ProgressLines(L.Callback):
    """Start line (run folder, params, steps, FLOPs) and periodic progress lines with an ETA."""

    def __init__(self, run_dir: str | Path, seq_len: int, tokens_per_step: int, every_s: float = 10.0,
                 lines: bool = True, stream: TextIO | None = None):
        from .budget import TRAIN_FLOPS_FACTOR

        self.run_dir, self.seq_len, self.tokens_per_step = str(run_dir), int(seq_len), int(tokens_per_step)
        self.factor, self.every_s, self.lines = TRAIN_FLOPS_FACTOR, float(every_s), lines
        self.stream = stream
        self._t0 = self._last = 0.0
        self._start_step = 0
        self._loss: float | None = None

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        model, steps = pl_module.model, int(trainer.max_steps)
        flops = self.factor * float(model.flops_per_token(self.seq_len)) * self.tokens_per_step * steps
        resumed = f", resuming at step {trainer.global_step}" if trainer.global_step else ""
        self._print(f"run {self.run_dir}: {_count(model.num_params())} params, {steps} steps of "
                    f"{self.tokens_per_step} tokens, {flops:.3g} training FLOPs{resumed}")
        self._t0 = self._last = time.perf_counter()
        self._start_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not (self.lines and trainer.is_global_zero):
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._loss = float(loss.detach()) if self._loss is None else 0.9 * self._loss + 0.1 * float(loss.detach())
        now, step, total = time.perf_counter(), trainer.global_step, int(trainer.max_steps)
        if now - self._last < self.every_s and step < total:
            return
        self._last = now
        done = max(1, step - self._start_step)
        per_step = (now - self._t0) / done
        self._print(f"step {step}/{total} ({100 * step / max(total, 1):.0f}%) loss {self._loss:.3f} | "
                    f"{self.tokens_per_step / per_step:,.0f} tok/s | elapsed {_clock(now - self._t0)} | "
                    f"ETA {_clock(per_step * (total - step))}")
