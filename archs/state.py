"""Recurrent state held by a mixer between ``prefill`` / ``step`` calls."""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class MixerState:
    """Base class for a mixer's state: a small dataclass of tensors whose first dim is batch.

    Subclasses add tensor fields (conv window, SSM state, KV cache, ...). ``step`` and
    ``prefill`` update these tensors in place only when ``can_update_in_place`` says so (autograd
    off and no tensor carrying a graph); otherwise they replace them with new tensors, so gradients
    flow through a carried state (truncated BPTT). They always return the state.
    """

    def tensors(self) -> list[torch.Tensor]:
        return [v for v in (getattr(self, f.name) for f in dataclasses.fields(self)) if isinstance(v, torch.Tensor)]

    @property
    def batch_size(self) -> int:
        return self.tensors()[0].shape[0]

    def numel_per_sequence(self) -> int:
        """Numbers held per sequence (what ``Mixer.state_size`` predicts)."""
        return sum(t[0].numel() for t in self.tensors())

    def nbytes_per_sequence(self) -> int:
        return sum(t[0].numel() * t.element_size() for t in self.tensors())


def can_update_in_place(*tensors: torch.Tensor | None) -> bool:
    """True when a state may be overwritten in place: autograd is off (``torch.no_grad()`` or
    ``torch.inference_mode()``) and none of ``tensors`` (the state and the update) carries a graph.

    Otherwise an in-place write could clobber a value a backward pass still needs, so mixers update
    their state out of place (functionally) and gradients flow through it."""
    return not torch.is_grad_enabled() and not any(t is not None and t.requires_grad for t in tensors)
