"""LightningDataModule over any task: batch ``i`` is a pure function of (seed, i).

Training data is an endless ``IterableDataset`` that starts at the trainer's restored
``global_step``, so a run resumed from a checkpoint sees exactly the batches the
uninterrupted run would have seen. Under DDP every rank draws the same global batch and
keeps its own contiguous slice, so the mean gradient equals single-process training on the
global batch.
"""
from __future__ import annotations

import hashlib
import itertools

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset


def derive_seed(*parts) -> int:
    """A 63-bit seed from any parts (e.g. (run seed, "train", step)); stable across machines."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1


def train_batch(task, batch_size: int, seq_len: int, seed: int, step: int) -> dict[str, torch.Tensor]:
    """The global training batch of ``step``: inputs, targets (batch_size, seq_len) [, reset (batch_size,)
    for a stateful task: consecutive windows per row, the model's state carried between steps]."""
    if getattr(task, "stateful", False):
        return task.stream_train_batch(batch_size, seq_len, seed, step)
    s = derive_seed(seed, "train", step)
    if getattr(task, "synthetic", False):
        return task.generate(batch_size, seq_len, s)
    return task.train_batch(batch_size, seq_len, s)


def val_batch(task, batch_size: int, seq_len: int, seed: int, index: int) -> dict[str, torch.Tensor]:
    """Validation batch ``index`` (fixed for a seed; disjoint stream from training)."""
    if getattr(task, "synthetic", False):
        return task.generate(batch_size, seq_len, derive_seed(seed, "val", index))
    if getattr(task, "stateful", False):
        return task.stream_val_batch(batch_size, seq_len, index)
    return task.val_batch(batch_size, seq_len, index)


def rank_slice(batch: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    if world == 1:
        return batch
    n = batch["inputs"].shape[0] // world
    return {k: v[rank * n : (rank + 1) * n] for k, v in batch.items()}


def as_tuple(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """(inputs, targets) or, for a stateful task, (inputs, targets, reset)."""
    return tuple(batch[k] for k in ("inputs", "targets", "reset") if k in batch)


class StepBatches(IterableDataset):
    """Endless training batches for steps start, start+1, ... (this rank's slice of each)."""

    def __init__(self, task, batch_size: int, seq_len: int, seed: int, start_step: int = 0, rank: int = 0, world: int = 1):
        self.task, self.batch_size, self.seq_len, self.seed = task, batch_size, seq_len, seed
        self.start_step, self.rank, self.world = start_step, rank, world

    def __iter__(self):
        for step in itertools.count(self.start_step):
            b = rank_slice(train_batch(self.task, self.batch_size, self.seq_len, self.seed, step), self.rank, self.world)
            yield as_tuple(b)


class TaskDataModule(L.LightningDataModule):
    """Train batches from (seed, step); ``val_batches()`` is a fixed list of this rank's slices."""

    def __init__(self, task, batch_size: int, seq_len: int, seed: int, val_batches: int = 4):
        super().__init__()
        self.task, self.batch_size, self.seq_len, self.seed, self.n_val = task, batch_size, seq_len, seed, val_batches
        self._val: list | None = None

    def _rank_world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        start = self.trainer.global_step if self.trainer is not None else 0  # restored on resume
        ds = StepBatches(self.task, self.batch_size, self.seq_len, self.seed, start, rank, world)
        return DataLoader(ds, batch_size=None, num_workers=0)

    def val_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self._val is None:
            rank, world = self._rank_world()
            self._val = []
            for i in range(self.n_val):
                b = rank_slice(val_batch(self.task, self.batch_size, self.seq_len, self.seed, i), rank, world)
                self._val.append(as_tuple(b))
        return self._val
