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
        # __dataclass_fields__ (a dict, in field order): dataclasses.fields() costs more, and this runs every step
        return [v for v in (getattr(self, n) for n in self.__dataclass_fields__) if isinstance(v, torch.Tensor)]

    @property
    def batch_size(self) -> int:
        return self.tensors()[0].shape[0]

    def numel_per_sequence(self) -> int:
        """Numbers held per sequence (what ``Mixer.state_size`` predicts)."""
        return sum(t[0].numel() for t in self.tensors())

    def nbytes_per_sequence(self) -> int:
        return sum(t[0].numel() * t.element_size() for t in self.tensors())

    def detach(self) -> "MixerState":
        """A copy whose tensors are cut from the autograd graph (truncated BPTT carries this)."""
        return dataclasses.replace(self, **{f.name: _detach(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def to_dict(self) -> dict:
        """The fields as a plain dict of tensors, numbers and nested dicts (checkpointable with
        ``torch.save`` and loadable with ``weights_only=True``); ``load_dict`` reverses it."""
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def load_dict(self, fields: dict) -> "MixerState":
        """Set the fields from ``to_dict()`` output (of a state of the same mixer); returns self."""
        names = {f.name for f in dataclasses.fields(self)}
        if set(fields) != names:
            raise ValueError(f"{type(self).__name__}.load_dict: expected fields {sorted(names)}, got {sorted(fields)}")
        for name, value in fields.items():
            current = getattr(self, name)
            if isinstance(current, MixerState):
                current.load_dict(value)
            else:
                setattr(self, name, value)
        return self


def _detach(v):
    if isinstance(v, torch.Tensor):
        return v.detach()
    return v.detach() if isinstance(v, MixerState) else v


def _to_plain(v):
    return v.to_dict() if isinstance(v, MixerState) else v


def can_update_in_place(*tensors: torch.Tensor | None) -> bool:
    """True when a state may be overwritten in place: autograd is off (``torch.no_grad()`` or
    ``torch.inference_mode()``) and none of ``tensors`` (the state and the update) carries a graph.

    Otherwise an in-place write could clobber a value a backward pass still needs, so mixers update
    their state out of place (functionally) and gradients flow through it."""
    return not torch.is_grad_enabled() and not any(t is not None and t.requires_grad for t in tensors)
