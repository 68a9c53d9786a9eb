"""Callbacks: metrics.csv + validation (``MetricsLogger``) and atomic ``last.ckpt`` (``LastCheckpoint``).

Both keep what a resumed run needs in the checkpoint (Lightning saves callback state), and
``MetricsLogger`` drops any metrics.csv rows written after the checkpoint a run resumes
from, so an interrupted-then-resumed run leaves the same file as an uninterrupted one.
"""
from __future__ import annotations

import csv
import io
import math
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from . import signals
from .atomic import write_bytes, write_text
from .checkpoint import CKPT_HASH_KEY, CorruptFileWarning, save_checkpoint
from .module import NonFiniteLossError

CSV_COLUMNS = ["step", "tokens", "flops", "train_loss", "val_loss", "val_acc", "lr", "tokens_per_s"]


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """metrics.csv as a list of dicts of floats (empty cells -> NaN); of a damaged file, the rows
    before the damage (``read_metrics_rows``)."""
    return [{k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()} for row in read_metrics_rows(path)]


class NonFiniteWeightsError(NonFiniteLossError):
    """An update left NaN / inf in the weights; they are not checkpointed."""


def read_metrics_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of metrics.csv that parse (strings). A damaged file (NUL bytes, non-UTF-8, a torn or
    short row) is copied aside to ``metrics.csv.corrupt`` with a warning; the rows before the damage
    are returned."""
    path = Path(path)
    data = path.read_bytes()
    cut = data.find(b"\0")
    good = data if cut < 0 else data[:cut]
    why = None if cut < 0 else f"NUL bytes from offset {cut}"
    try:
        text = good.decode("utf-8")
    except UnicodeDecodeError as e:
        text, why = good[: e.start].decode("utf-8"), why or f"non-UTF-8 byte at offset {e.start}"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):  # a torn last line
        lines, why = lines[:-1], why or "a torn last line"
    rows = []
    reader = csv.DictReader(lines)
    for r in reader:
        try:
            if None in r or any(v is None for v in r.values()):
                raise ValueError("wrong number of fields")
            float(r["step"])
        except (ValueError, KeyError, TypeError) as e:
            why = why or f"bad row {reader.line_num}: {e}"
            break
        rows.append(r)
    if reader.fieldnames is not None and list(reader.fieldnames) != CSV_COLUMNS:
        why, rows = why or f"unexpected header {reader.fieldnames}", []
    if why:
        dest = path.with_name(path.name + ".corrupt")
        write_bytes(dest, data)
        warnings.warn(f"{path} is damaged ({why}); a copy is in {dest.name}; kept the {len(rows)} rows before the damage",
                      CorruptFileWarning, stacklevel=2)
    return rows


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
        """Fresh file with a header, or (resuming) keep only rows up to the checkpoint's step.

        A file that cannot be parsed (NUL padding after a power cut, a torn line) is copied aside
        to ``metrics.csv.corrupt`` with a warning and the rows before the damage are kept."""
        rows = read_metrics_rows(self.path) if resume_step > 0 and self.path.exists() else []
        rows = [r for r in rows if int(float(r["step"])) <= resume_step]
        buf = io.StringIO()
        w = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
        write_text(self.path, buf.getvalue())

    def _append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, CSV_COLUMNS).writerow({k: _fmt(v) for k, v in row.items()})
            f.flush()


class LastCheckpoint(L.Callback):
    """Save ``checkpoints/last.ckpt`` every ``every`` steps, at the end, and when a SIGTERM / SIGINT
    came in (then stop the trainer), atomically (``train.checkpoint.save_checkpoint``), with the
    run's ``config_hash`` inside. Weights with NaN / inf are never saved: the run stops with
    ``NonFiniteWeightsError`` and the last good checkpoint stays."""

    def __init__(self, dirpath: str | Path, every: int, total_steps: int, config_hash: str | None = None):
        self.dirpath, self.every, self.total_steps = Path(dirpath), every, total_steps
        self.config_hash = config_hash

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[CKPT_HASH_KEY] = self.config_hash

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        stop = bool(signals.requested)
        if trainer.world_size > 1:  # every rank must take the same decision (the save is a barrier)
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not (stop or step % self.every == 0 or step >= self.total_steps):
            return
        bad = [n for n, p in pl_module.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
        if bad:
            raise NonFiniteWeightsError(
                f"non-finite weights after step {step} ({len(bad)} tensors, e.g. {bad[0]}): not saving them; "
                f"the last good checkpoint in {self.dirpath} is kept (try a lower lr or more warmup)")
        save_checkpoint(trainer, self.dirpath)
        if stop:
            trainer.should_stop = True


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
