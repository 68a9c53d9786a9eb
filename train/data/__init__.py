"""Tasks (synthetic recall tasks and byte-level text) and the data module that feeds them."""
from __future__ import annotations

from .synthetic import IGNORE, MQAR, SYNTHETIC_TASKS, Induction, Passkey, SelectiveCopy
from .text import TextTask

TASK_NAMES = sorted([*SYNTHETIC_TASKS, "text"])


def build_task(task_cfg):
    """Build a task from its config (configs/task/<name>.yaml): ``name`` plus constructor kwargs.

    Synthetic tasks have ``vocab_size`` and ``generate(num_examples, seq_len, seed)``; the text
    task has ``vocab_size`` = 256 and ``val_tokens()``. ``seq_len`` in the config is the training
    length and is not a task constructor argument.
    """
    cfg = dict(task_cfg)
    name = cfg.pop("name", None)
    cfg.pop("seq_len", None)
    cfg.pop("test_seq_lens", None)
    if name == "text":
        return TextTask(**cfg)
    if name not in SYNTHETIC_TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
    try:
        return SYNTHETIC_TASKS[name](**cfg)
    except TypeError as e:
        raise ValueError(f"task {name!r}: bad option in {sorted(cfg)}: {e}") from None


def task_data_version(name: str) -> int | None:
    """The ``data_version`` of a task by name (None for an unknown name)."""
    cls = TextTask if name == "text" else SYNTHETIC_TASKS.get(name)
    return None if cls is None else cls.data_version


__all__ = ["IGNORE", "MQAR", "Induction", "Passkey", "SelectiveCopy", "TextTask", "TASK_NAMES", "build_task", "task_data_version"]
