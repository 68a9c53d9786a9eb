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


def _key_depth(task, inputs: torch.Tensor) -> torch.Tensor | None:
    """Depth in [0, 1] of the passkey in each example (first position of ``task.KEY``), or None."""
    key = getattr(task, "KEY", None)
    if key is None:
        return None
    hit = inputs == key  # (N, L)
    if not bool(hit.any(1).all()):
        return None
    pos = hit.float().argmax(1)  # (N,) first KEY marker
    return pos / max(1, inputs.shape[1] - 1)


@torch.inference_mode()
def passkey_grid(model, task, lengths: Sequence[int], n_depths: int = 4, num_examples: int = 64,
                 seed: int = 4321, batch_size: int = 16) -> list[dict]:
    """Passkey retrieval over a (length x depth) grid; depth 0 = key at the start, 1 = at the end.

    For each length, ``num_examples`` are generated (the key at a random depth) and binned by
    where the key sits into ``n_depths`` equal bins. Rows: ``{length, depth_lo, depth_hi,
    examples, accuracy (digits right), exact (whole key right), status}``.
    """
    model.eval()
    dev = _device(model)
    rows = []
    for L in lengths:
        try:
            batch = task.generate(num_examples, int(L), seed)
        except (ValueError, AssertionError) as e:
            rows.append({"length": int(L), "status": f"skipped: {e}"})
            continue
        x, y = batch["inputs"], batch["targets"]  # (N, L)
        depth = _key_depth(task, x)
        if depth is None:
            rows.append({"length": int(L), "status": f"skipped: {type(task).__name__} has no KEY marker to locate"})
            continue
        right = torch.zeros(x.shape[0])
        exact = torch.zeros(x.shape[0])
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
            pred = model(xb).argmax(-1)  # (b, L)
            mask = yb != -100
            ok = ((pred == yb) & mask).sum(1).float()  # (b,)
            right[i:i + batch_size] = (ok / mask.sum(1).clamp(min=1)).cpu()
            exact[i:i + batch_size] = (ok == mask.sum(1)).float().cpu()
        for b in range(n_depths):
            lo, hi = b / n_depths, (b + 1) / n_depths
            sel = (depth >= lo) & ((depth < hi) if b + 1 < n_depths else (depth <= hi))
            n = int(sel.sum())
            rows.append({"length": int(L), "depth_lo": lo, "depth_hi": hi, "examples": n,
                         "accuracy": right[sel].mean().item() if n else float("nan"),
                         "exact": exact[sel].mean().item() if n else float("nan"),
                         "status": "ok" if n else "skipped: no example at this depth"})
    return rows


def evaluate_run(model, cfg, task, settings, progress: Callable[[str], None] | None = None) -> dict:
    """Every quality measurement that fits the run's task. ``settings``: the ``quality`` config.

    Returns ``{"task": name, "accuracy_vs_length": rows?, "loss_by_position": rows?, "passkey": rows?}``.
    """
    task_name = str(cfg.task.name)
    train_len = int(cfg.get("seq_len", 0) or cfg.task.get("seq_len", 0) or 0) or None
    out: dict = {"task": task_name, "train_len": train_len}
    mults = list(settings.get("length_multipliers", [0.5, 1, 2, 4]))
    test_lens = [int(x) for x in (cfg.task.get("test_seq_lens") or [])]
    if task_name == "text":
        L = int(settings.get("text_seq_len", 0) or 0) or int(round((train_len or 256) * float(settings.get("text_length_multiplier", 1))))
        if not settings.get("text_seq_len") and test_lens:
            L = max(test_lens)
        if progress:
            progress("text loss by position")
        rows = loss_by_position(model, task.val_tokens(), L, n_buckets=int(settings.get("n_buckets", 8)),
                                max_windows=int(settings.get("max_windows", 16)), batch_size=int(settings.get("text_batch_size", 4)))
        for r in rows:
            r["extrapolated"] = bool(train_len is not None and r["end"] > train_len)
        out["loss_by_position"] = rows
        return out
    lengths = [int(x) for x in settings.get("lengths", None) or []] or test_lens or sorted(
        {max(8, int(round(m * (train_len or 64)))) for m in mults})
    if progress:
        progress(f"{task_name} accuracy vs length")
    out["accuracy_vs_length"] = accuracy_vs_length(
        model, task, lengths, num_examples=int(settings.get("num_examples", 64)),
        batch_size=int(settings.get("batch_size", 16)), train_len=train_len)
    if task_name == "passkey":
        out["passkey"] = passkey_grid(model, task, lengths, n_depths=int(settings.get("n_depths", 4)),
                                      num_examples=int(settings.get("passkey_examples", 64)))
    return out
