"""Quality of a trained model beyond its validation loss.

* ``loss_by_position``: next-token loss on text, averaged over windows, in position buckets
  (does the model use long context? does it extrapolate past its training length?);
* ``accuracy_vs_length``: accuracy on a synthetic task (MQAR, selective copy, induction,
  passkey) at several sequence lengths, including lengths beyond training;
* ``passkey_grid``: passkey retrieval accuracy over a (depth x length) grid.

Tasks follow the trainer's contract: ``task.generate(num_examples, seq_len, seed)`` returns
``inputs`` (N, L) long and ``targets`` (N, L) long with -100 at unscored positions; a text
task has ``val_tokens()`` (a 1-D long tensor).
"""
from __future__ import annotations

import inspect
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def _scored(model, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int) -> tuple[float, float, int]:
    """(summed loss, correct count, scored count) of ``model`` on (N, L) inputs / targets."""
    dev = _device(model)
    loss = correct = n = 0.0
    for i in range(0, inputs.shape[0], batch_size):
        x, y = inputs[i:i + batch_size].to(dev), targets[i:i + batch_size].to(dev)  # (b, L)
        logits = model(x).float()  # (b, L, V)
        mask = y != -100
        if not mask.any():
            continue
        loss += F.cross_entropy(logits[mask], y[mask], reduction="sum").item()
        correct += (logits.argmax(-1)[mask] == y[mask]).sum().item()
        n += mask.sum().item()
    return loss, correct, int(n)


def accuracy_vs_length(model, task, lengths: Sequence[int], num_examples: int = 64, seed: int = 1234,
                       batch_size: int = 16, train_len: int | None = None) -> list[dict]:
    """Rows ``{length, accuracy, loss, scored, extrapolated, status}`` (one per length).

    A length the task cannot generate (e.g. too short for its key-value pairs) gives a row
    with ``status = "skipped: <reason>"``.
    """
    model.eval()
    rows = []
    for L in lengths:
        row = {"length": int(L), "extrapolated": bool(train_len is not None and L > train_len)}
        try:
            batch = task.generate(num_examples, int(L), seed)
        except (ValueError, AssertionError) as e:
            row["status"] = f"skipped: {e}"
            rows.append(row)
            continue
        loss, correct, n = _scored(model, batch["inputs"], batch["targets"], batch_size)
        row.update(accuracy=correct / n if n else float("nan"), loss=loss / n if n else float("nan"), scored=n, status="ok")
        rows.append(row)
    return rows


@torch.inference_mode()
def loss_by_position(model, tokens: torch.Tensor, seq_len: int, n_buckets: int = 8, max_windows: int = 16,
                     batch_size: int = 4) -> list[dict]:
    """Mean next-token loss by position on a 1-D token stream, in ``n_buckets`` equal buckets.

    ``tokens`` (T,) is cut into up to ``max_windows`` windows of ``seq_len + 1`` tokens
    (spread over the stream); position p predicts token p + 1 of its window.
    Rows: ``{bucket, start, end, loss, ppl}`` with positions [start, end).
    """
    model.eval()
    tokens = tokens.reshape(-1).long()
    span = seq_len + 1
    count = tokens.numel() // span
    if count < 1:
        raise ValueError(f"loss_by_position: the text has {tokens.numel()} tokens, fewer than seq_len + 1 = {span}")
    starts = torch.linspace(0, (count - 1) * span, min(count, max_windows)).long().tolist()
    windows = torch.stack([tokens[s:s + span] for s in starts])  # (W, L + 1)
    dev = _device(model)
    total = torch.zeros(seq_len, dtype=torch.float64)
    for i in range(0, windows.shape[0], batch_size):
        w = windows[i:i + batch_size].to(dev)
        logits = model(w[:, :-1]).float()  # (b, L, V)
        nll = F.cross_entropy(logits.transpose(1, 2), w[:, 1:], reduction="none")  # (b, L)
        total += nll.sum(0).double().cpu()
    per_pos = total / windows.shape[0]  # (L,)
    n_buckets = max(1, min(n_buckets, seq_len))
    edges = torch.linspace(0, seq_len, n_buckets + 1).round().long().tolist()
    rows = []
    for b in range(n_buckets):
        lo, hi = edges[b], edges[b + 1]
        loss = per_pos[lo:hi].mean().item()
        rows.append({"bucket": b, "start": lo, "end": hi, "loss": loss, "ppl": math.exp(min(loss, 50.0))})
    return rows


def passkey_grid(model, task, lengths: Sequence[int], depths: Sequence[float], num_examples: int = 16,
                 seed: int = 4321, batch_size: int = 8) -> list[dict]:
    """Passkey retrieval accuracy for every (length, depth); depth 0 = key at the start, 1 = at the end.

    Needs a task whose ``generate`` accepts ``depth=`` (the trainer's passkey task); otherwise
    each row says so in ``status``.
    """
    params = inspect.signature(task.generate).parameters
    rows = []
    for L in lengths:
        for d in depths:
            row = {"length": int(L), "depth": float(d)}
            if "depth" not in params:
                row["status"] = f"skipped: {type(task).__name__}.generate has no depth= argument"
            else:
                try:
                    batch = task.generate(num_examples, int(L), seed, depth=float(d))
                except (ValueError, AssertionError) as e:
                    row["status"] = f"skipped: {e}"
                else:
                    _, correct, n = _scored(model, batch["inputs"], batch["targets"], batch_size)
                    row.update(accuracy=correct / n if n else float("nan"), status="ok")
            rows.append(row)
    return rows


def evaluate_run(model, cfg, task, settings, progress: Callable[[str], None] | None = None) -> dict:
    """Every quality measurement that fits the run's task. ``settings``: the ``quality`` config.

    Returns ``{"task": name, "accuracy_vs_length": rows?, "loss_by_position": rows?, "passkey": rows?}``.
    """
    task_name = str(cfg.task.name)
    train_len = int(cfg.task.get("seq_len", 0) or 0) or None
    out: dict = {"task": task_name, "train_len": train_len}
    mults = list(settings.get("length_multipliers", [0.5, 1, 2, 4]))
    if task_name == "text":
        L = int(settings.get("text_seq_len", 0) or train_len or 256)
        out["loss_by_position"] = loss_by_position(
            model, task.val_tokens(), L, n_buckets=int(settings.get("n_buckets", 8)),
            max_windows=int(settings.get("max_windows", 16)), batch_size=int(settings.get("batch_size", 4)))
        return out
    lengths = [int(l) for l in settings.get("lengths", None) or []] or sorted(
        {max(8, int(round(m * (train_len or 64)))) for m in mults})
    if progress:
        progress(f"{task_name} accuracy vs length")
    out["accuracy_vs_length"] = accuracy_vs_length(
        model, task, lengths, num_examples=int(settings.get("num_examples", 64)),
        batch_size=int(settings.get("batch_size", 16)), train_len=train_len)
    if task_name == "passkey":
        out["passkey"] = passkey_grid(model, task, lengths, list(settings.get("depths", [0.0, 0.25, 0.5, 0.75, 1.0])),
                                      num_examples=int(settings.get("passkey_examples", 16)))
    return out
