"""Convert HuggingFace ``transformers`` causal LMs into seqarena ``LanguageModel``s.

    from transformers import AutoModelForCausalLM
    import archs
    hf = AutoModelForCausalLM.from_pretrained("state-spaces/mamba-130m-hf")   # any supported type
    lm = archs.from_transformers(hf)          # same logits, same greedy generation
    lm.save_pretrained("converted/mamba-130m")  # then: python -m eval throughput model_dir=converted/mamba-130m

One converter per ``config.model_type``, one file each in this package, registered with
``@register_converter("llama")``; every module here (not starting with "_") is imported on first use,
so a new model type is one new file. The converted model has the HF model's dtype and device.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

_CONVERTERS: dict[str, Callable] = {}
_discovered = False


def register_converter(model_type: str) -> Callable[[Callable], Callable]:
    """Decorator: ``fn(hf_model) -> LanguageModel`` converts HF models whose ``config.model_type`` is ``model_type``."""

    def wrap(fn: Callable) -> Callable:
        if model_type in _CONVERTERS and _CONVERTERS[model_type] is not fn:
            raise ValueError(f"a converter for model_type {model_type!r} is already registered")
        _CONVERTERS[model_type] = fn
        return fn

    return wrap


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def supported_model_types() -> list[str]:
    """Sorted HF ``model_type`` names that ``from_transformers`` converts."""
    _discover()
    return sorted(_CONVERTERS)


def from_transformers(hf_model):
    """A ``LanguageModel`` computing the same function as ``hf_model`` (a loaded HF ``*ForCausalLM``).

    Raises ``ValueError`` naming the supported model types when ``config.model_type`` has no converter,
    and when the model uses an option seqarena does not express (the message names it).
    """
    config = getattr(hf_model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise TypeError(f"from_transformers expects a HuggingFace transformers model (with .config.model_type), "
                        f"got {type(hf_model).__name__}")
    _discover()
    if model_type not in _CONVERTERS:
        raise ValueError(f"from_transformers: unsupported model_type {model_type!r} ({type(hf_model).__name__}); "
                         f"supported: {', '.join(supported_model_types())}")
    return _CONVERTERS[model_type](hf_model)


__all__ = ["from_transformers", "register_converter", "supported_model_types"]
