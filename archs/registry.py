"""The one registry of sequence mixers.

Mixers register themselves with ``@register_mixer("name")``. Every module in
``archs/mixers/`` is imported on first use of the registry, so adding a mixer is one
new file there: it is then buildable by name, listed by ``mixer_names()``, and tested
by the generic equivalence suite.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .mixer import Mixer

_REGISTRY: dict[str, type["Mixer"]] = {}
_discovered = False


def register_mixer(name: str) -> Callable[[type["Mixer"]], type["Mixer"]]:
    """Class decorator: make ``cls`` buildable as ``build_mixer(name, d_model, **kw)``."""

    def wrap(cls: type["Mixer"]) -> type["Mixer"]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"mixer name {name!r} is already registered to {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    from . import mixers

    for info in pkgutil.iter_modules(mixers.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{mixers.__name__}.{info.name}")


def mixer_names() -> list[str]:
    """Sorted names of every registered mixer."""
    _discover()
    return sorted(_REGISTRY)


def mixer_class(name: str) -> type["Mixer"]:
    """The class registered under ``name``; unknown names list the known ones."""
    _discover()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise KeyError(f"unknown mixer {name!r}; known mixers: {', '.join(mixer_names())}")
    return _REGISTRY[name]


def build_mixer(name: str, d_model: int, **kwargs) -> "Mixer":
    """Build the mixer registered as ``name``: an nn.Module mapping (B, L, d_model) -> (B, L, d_model)."""
    return mixer_class(name)(d_model, **kwargs)
