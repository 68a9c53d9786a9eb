"""LightningModule around ``archs.LanguageModel``: masked next-token loss, AdamW, warmup + cosine.

Stateful training (truncated BPTT; ``stateful=True``, batches (inputs, targets, reset)): each step
runs ``model.prefill`` from the state the previous step left, then keeps that state detached from
the graph (so backward stops at the window's start) and trimmed to ``carry_tokens`` tokens
(``Mixer.trim_state``: attention keeps that many keys and values; recurrent states are constant
size). ``reset`` (the first window of an epoch) starts from an empty state. Validation carries its
own state across its batches the same way, from empty. The carried training state is saved in the
checkpoint, so a resumed run continues exactly.
"""
from __future__ import annotations

import contextlib
import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from archs.mixer import no_weight_decay_names

from .data.synthetic import IGNORE


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the run stops and the last good checkpoint is kept."""


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over scored positions. logits (B, L, V), targets (B, L) with -100 = unscored."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


@torch.no_grad()
def masked_accuracy_counts(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(correct, scored) argmax predictions over positions with a target."""
    scored = targets != IGNORE  # (B, L)
    correct = (logits.argmax(-1) == targets) & scored
    return int(correct.sum()), int(scored.sum())


def no_decay_parameter_names(model: nn.Module) -> set[str]:
    """Names (as in ``model.named_parameters()``) the optimizer must not decay: what every mixer's
    ``no_weight_decay()`` names (A_log, D, dt_bias, decay and bonus parameters, its norms and
    biases), the Block and LanguageModel norms and any other bias (``no_weight_decay_names``), and
    the embeddings (with the head tied to them)."""
    names = no_weight_decay_names(model)
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    names |= {n for n, p in model.named_parameters() if id(p) in embeddings}
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: ``weight_decay`` on every parameter except ``no_decay_parameter_names(model)``."""
    skip = no_decay_parameter_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # each shared (tied) parameter once
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _tensors_to(fields: dict, device) -> dict:
    """A ``MixerState.to_dict()`` dict with every tensor (nested ones too) moved to ``device``."""
    return {k: _tensors_to(v, device) if isinstance(v, dict) else v.to(device) if isinstance(v, torch.Tensor) else v
            for k, v in fields.items()}


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup from 1/warmup to 1 over ``warmup_steps``, then cosine to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


class LMModule(L.LightningModule):
    """Trains ``model`` on (inputs, targets) batches; targets use -100 for unscored positions."""

    def __init__(self, model: nn.Module, lr: float, weight_decay: float = 0.1, warmup_steps: int = 0,
                 total_steps: int = 1, min_lr_ratio: float = 0.1, betas: tuple[float, float] = (0.9, 0.95),
                 stateful: bool = False, carry_tokens: int | None = None):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.betas = lr, weight_decay, tuple(betas)
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup_steps, total_steps, min_lr_ratio
        if stateful and (not isinstance(carry_tokens, int) or carry_tokens < 1):
            raise ValueError(f"LMModule: stateful training needs carry_tokens, a positive int, got {carry_tokens!r}")
        self.stateful, self.carry_tokens = stateful, carry_tokens
        self._carried: list | None = None  # the training state carried to the next step (stateful)
        self._carried_saved: list | None = None  # ... as loaded from a checkpoint, until the next step

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    def _prefill_carried(self, inputs: torch.Tensor, reset: torch.Tensor, state: list | None):
        """logits of ``inputs`` from ``state`` (None or ``reset``: empty), and the state to carry on:
        detached and trimmed to ``carry_tokens``."""
        if bool(reset.any()):
            state = None
        logits, state = self.model.prefill(inputs, state)
        state = [blk.mixer.trim_state(st.detach(), self.carry_tokens) for blk, st in zip(self.model.blocks, state)]
        return logits, state

    def _training_logits(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.stateful:
            inputs, targets = batch  # (B, L), (B, L)
            return self.model(inputs), targets
        inputs, targets, reset = batch  # (B, L), (B, L), (B,)
        if self._carried is None and self._carried_saved is not None and not bool(reset.any()):
            saved = [_tensors_to(d, inputs.device) for d in self._carried_saved]  # checkpoints load on the CPU
            self._carried = [st.load_dict(d) for st, d in zip(self.model.init_state(inputs.shape[0]), saved)]
        self._carried_saved = None
        logits, self._carried = self._prefill_carried(inputs, reset, self._carried)
        return logits, targets

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.stateful and self._carried is not None:
            checkpoint["carried_state"] = [st.to_dict() for st in self._carried]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._carried, self._carried_saved = None, checkpoint.get("carried_state")

    def training_step(self, batch, batch_idx):
        logits, targets = self._training_logits(batch)
        loss = masked_lm_loss(logits, targets)
        finite = bool(torch.isfinite(loss.detach()))
        if self.trainer is not None and self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}: stopping; "
                "the last good checkpoint is kept (try a lower lr or more warmup)"
            )
        return loss

    @torch.no_grad()
    def evaluate(self, batches) -> dict[str, float]:
        """Summed loss, scored-position count and correct count over ``batches`` (this rank only)."""
        was_training = self.model.training
        self.model.eval()
        loss_sum, n, correct = 0.0, 0, 0
        state = None  # stateful: carried across the validation batches, from empty
        for inputs, targets, *reset in batches:
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            ctx = self.trainer.precision_plugin.forward_context() if self._trainer is not None else contextlib.nullcontext()
            with ctx:
                if self.stateful:
                    logits, state = self._prefill_carried(inputs, reset[0] if reset else torch.tensor([state is None]), state)
                else:
                    logits = self.model(inputs)
            scored = int((targets != IGNORE).sum())
            loss_sum += float(masked_lm_loss(logits, targets)) * scored
            c, _ = masked_accuracy_counts(logits, targets)
            correct, n = correct + c, n + scored
        self.model.train(was_training)
        return {"loss_sum": loss_sum, "count": n, "correct": correct}

    def configure_optimizers(self):
        opt = torch.optim.AdamW(param_groups(self.model, self.weight_decay), lr=self.lr, betas=self.betas)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, self.warmup_steps, self.total_steps, self.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

