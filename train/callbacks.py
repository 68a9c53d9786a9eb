"""Callbacks: metrics.csv + validation (``MetricsLogger``) and atomic ``last.ckpt`` (``LastCheckpoint``).

Both keep what a resumed run needs in the checkpoint (Lightning saves callback state), and
``MetricsLogger`` drops any metrics.csv rows written after the checkpoint a run resumes
from, so an interrupted-then-resumed run leaves the same file as an uninterrupted one.
"""
from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import lightning as L
import torch

CSV_COLUMNS = ["step", "tokens", "flops", "train_loss", "val_loss", "val_acc", "lr", "tokens_per_s"]


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """metrics.csv as a list of dicts of floats (empty cells -> NaN)."""
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()} for row in csv.DictReader(f)]


class MetricsLogger(L.Callback):
    """Every ``log_every`` steps: mean train loss since the last row, lr, tokens/s; every
    ``val_every`` steps and at the end: val loss (and accuracy on scored positions for
    synthetic tasks) over the data module's fixed validation batches. Rows go to
    ``metrics.csv`` and the Lightning logger (TensorBoard), from rank 0."""

    def __init__(self, path: str | Path, log_every: int, val_every: int, total_steps: int,
                 tokens_per_step: int, train_flops_per_token: float, with_accuracy: bool):
        self.path = Path(path)
        self.log_every, self.val_every, self.total_steps = log_every, val_every, total_steps
        self.tokens_per_step, self.train_flops_per_token = tokens_per_step, train_flops_per_token
        self.with_accuracy = with_accuracy
        # carried in checkpoints
        self.loss_sum, self.loss_n, self.train_time_s = 0.0, 0, 0.0
        self.last: dict[str, float] = {}
        # per process only
        self._t0 = self._window_t = 0.0
        self._window_tokens = 0

    # ---- checkpointed state --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "loss_n": self.loss_n, "train_time_s": self.train_time_s, "last": dict(self.last)}

    def load_state_dict(self, state: dict) -> None:
        self.loss_sum, self.loss_n = state["loss_sum"], state["loss_n"]
        self.train_time_s, self.last = state["train_time_s"], dict(state["last"])

    # ---- hooks ---------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._prepare_csv(trainer.global_step)
        self._window_t, self._window_tokens = 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        dt = time.perf_counter() - self._t0
        self.train_time_s += dt
        self._window_t += dt
        self._window_tokens += self.tokens_per_step
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.loss_sum += float(loss.detach())
        self.loss_n += 1
        step = trainer.global_step
        last = step >= self.total_steps
        do_val = step % self.val_every == 0 or last
        if not (step % self.log_every == 0 or do_val):
            return
        pl_module.log("loss", loss.detach(), prog_bar=True, logger=False)
        train_loss = _reduce_mean(trainer, self.loss_sum, self.loss_n)
        row = {
            "step": step,
            "tokens": step * self.tokens_per_step,
            "flops": step * self.tokens_per_step * self.train_flops_per_token,
            "train_loss": train_loss,
            "val_loss": "",
            "val_acc": "",
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "tokens_per_s": self._window_tokens / max(self._window_t, 1e-9),
        }
        if do_val:
            stats = pl_module.evaluate(trainer.datamodule.val_batches())
            tot = _reduce_sum(trainer, [stats["loss_sum"], stats["count"], stats["correct"]])
            row["val_loss"] = tot[0] / max(tot[1], 1)
            row["val_acc"] = tot[2] / max(tot[1], 1) if self.with_accuracy else math.nan
        self.loss_sum, self.loss_n = 0.0, 0
        self._window_t, self._window_tokens = 0.0, 0
        self.last.update({k: v for k, v in row.items() if v != ""})
        self.last["train_time_s"] = self.train_time_s
        if trainer.is_global_zero:
            self._append(row)
            if trainer.logger is not None:
                trainer.logger.log_metrics({k: v for k, v in row.items() if v != "" and k != "step" and not _isnan(v)}, step=step)

    # ---- csv -----------------------------------------------------------------------------
    def _prepare_csv(self, resume_step: int) -> None:
        """Fresh file with a header, or (resuming) keep only rows up to the checkpoint's step."""
        rows = []
        if resume_step > 0 and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step") and int(float(r["step"])) <= resume_step]
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, CSV_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)

    def _append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, CSV_COLUMNS).writerow({k: _fmt(v) for k, v in row.items()})
            f.flush()


class LastCheckpoint(L.Callback):
    """Save ``checkpoints/last.ckpt`` every ``every`` steps and at the end, atomically
    (write a temp file, then ``os.replace``), so a kill never leaves a torn checkpoint."""

    def __init__(self, dirpath: str | Path, every: int, total_steps: int):
        self.dirpath, self.every, self.total_steps = Path(dirpath), every, total_steps

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every == 0 or step >= self.total_steps:
            tmp = self.dirpath / ".last.ckpt.tmp"
            trainer.save_checkpoint(tmp)  # every rank calls it (a barrier); rank 0 writes
            if trainer.is_global_zero:
                os.replace(tmp, self.last_path)


def _reduce_sum(trainer, values: list[float]) -> list[float]:
    if trainer.world_size == 1:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=trainer.strategy.root_device)
    return trainer.strategy.reduce(t, reduce_op="sum").tolist()


def _reduce_mean(trainer, total: float, n: int) -> float:
    s, c = _reduce_sum(trainer, [total, n])
    return s / max(c, 1)


def _isnan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _fmt(v):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return v
