"""Evaluating a saved model folder (``LanguageModel.save_pretrained``: an exported run or a converted
HuggingFace checkpoint) with ``python -m eval throughput|quality model_dir=<folder>``.

    python -c "import archs, transformers as t; archs.from_transformers(
        t.AutoModelForCausalLM.from_pretrained('state-spaces/mamba-130m-hf')).save_pretrained('hf/mamba-130m')"
    python -m eval throughput model_dir=hf/mamba-130m contexts=[1024,4096]
    python -m eval quality model_dir=hf/mamba-130m model_task=mqar           # synthetic tasks: token ids < vocab
    python -m eval quality model_dir=hf/mamba-130m tokens_file=val_ids.txt   # text loss by position, your tokenizer
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf


def load_model_dir(model_dir) -> "torch.nn.Module":
    """The model in ``model_dir`` (config.json + model.safetensors), in eval mode; clear error if it is not one."""
    from archs import LanguageModel

    path = Path(str(model_dir))
    if not path.is_dir():
        raise SystemExit(f"model_dir: {path} is not a folder (expected one written by LanguageModel.save_pretrained "
                         f"or `python -m train.export`)")
    try:
        return LanguageModel.from_pretrained(path).eval()
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"model_dir: {e}") from None


class TokenStream:
    """A text 'task' over a given token stream: ``val_tokens()`` for ``loss_by_position``."""

    name = "text"

    def __init__(self, tokens: torch.Tensor, vocab_size: int):
        self.tokens, self.vocab_size = tokens, vocab_size

    def val_tokens(self) -> torch.Tensor:
        return self.tokens


def read_tokens_file(path, vocab_size: int) -> torch.Tensor:
    """Whitespace-separated integer token ids (e.g. ``" ".join(map(str, tokenizer(text).input_ids))``) -> (N,) long."""
    path = Path(str(path))
    if not path.is_file():
        raise SystemExit(f"tokens_file: no file at {path}")
    try:
        ids = [int(t) for t in path.read_text().split()]
    except ValueError as e:
        raise SystemExit(f"tokens_file: {path} must hold whitespace-separated integer token ids ({e})") from None
    tokens = torch.tensor(ids, dtype=torch.long)
    if tokens.numel() < 2 or tokens.min() < 0 or tokens.max() >= vocab_size:
        raise SystemExit(f"tokens_file: {path} must hold at least 2 ids in [0, {vocab_size}); "
                         f"got {tokens.numel()} ids in [{tokens.min().item() if tokens.numel() else '-'}, "
                         f"{tokens.max().item() if tokens.numel() else '-'}]")
    return tokens


def quality_inputs(cfg, model):
    """(run-like cfg with ``task``, task object) for ``evaluate_run`` on a model folder."""
    from train import build_task

    from .config import load_group

    if cfg.get("tokens_file"):
        task_cfg = OmegaConf.create({"name": "text"})  # no training length: set text_seq_len for the window
        return OmegaConf.create({"task": task_cfg}), TokenStream(read_tokens_file(cfg.tokens_file, model.vocab_size), model.vocab_size)
    task_cfg = load_group("task", str(cfg.get("model_task") or "text"))
    task = build_task(task_cfg)
    if task.vocab_size > model.vocab_size or (task_cfg.name == "text" and task.vocab_size != model.vocab_size):
        raise SystemExit(f"quality: task {task_cfg.name!r} uses a vocabulary of {task.vocab_size} tokens but the model in "
                         f"{cfg.model_dir} has {model.vocab_size}; for text in the model's own tokenization pass "
                         f"tokens_file=<whitespace-separated token ids>")
    return OmegaConf.create({"task": task_cfg}), task


def throughput_rows(cfg, settings, progress=None) -> list[dict]:
    """Throughput rows for the model in ``cfg.model_dir`` (its own size; ``model``/``archs`` are ignored),
    in ``settings.processes`` fresh processes (``eval/isolate.py``)."""
    from .isolate import measure_sources

    load_model_dir(cfg.model_dir)  # a clear error here, before any process is started
    src = {"label": Path(str(cfg.model_dir)).name, "model_dir": str(Path(str(cfg.model_dir)).resolve())}
    return measure_sources([src], settings, progress=progress)
