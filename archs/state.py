"""Recurrent state held by a mixer between ``prefill`` / ``step`` calls."""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class MixerState:
    """Base class for a mixer's state: a small dataclass of tensors whose first dim is batch.

    Subclasses add tensor fields (conv window, SSM state, KV cache, ...). ``step`` and
    ``prefill`` may update these tensors in place and always return the state.
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
