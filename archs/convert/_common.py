"""Helpers shared by the converters: reading the HF state dict, checking options, loading weights."""
from __future__ import annotations

import torch

from ..model import LanguageModel


def unsupported(model_type: str, what: str, value) -> ValueError:
    return ValueError(f"from_transformers({model_type}): {what}={value!r} is not supported by seqarena")


def require(model_type: str, config, name: str, allowed) -> None:
    """Raise when ``config.<name>`` is set to something other than the values in ``allowed``."""
    value = getattr(config, name, allowed[0])
    if value not in allowed:
        raise unsupported(model_type, name, value)


def hf_state(hf_model, model_type: str) -> dict[str, torch.Tensor]:
    """The HF state dict, detached; checks that it is a causal LM (has an output head)."""
    state = {k: v.detach() for k, v in hf_model.state_dict().items()}
    if "lm_head.weight" not in state and not getattr(hf_model.config, "tie_word_embeddings", False):
        raise ValueError(f"from_transformers({model_type}): {type(hf_model).__name__} has no lm_head; "
                         f"pass the *ForCausalLM model")
    return state


def build_and_load(model_type: str, hf_model, kwargs: dict, tensors: dict[str, torch.Tensor]) -> LanguageModel:
    """Build ``LanguageModel(**kwargs)`` in the HF model's dtype and device and load ``tensors`` (all of them,
    every parameter covered; a tied head is skipped)."""
    ref = next(hf_model.parameters())
    model = LanguageModel(**kwargs).to(device=ref.device, dtype=ref.dtype)
    expected = set(model.state_dict()) - ({"head.weight"} if kwargs.get("tie_embeddings", True) else set())
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:  # a converter bug, not a user error
        raise RuntimeError(f"from_transformers({model_type}): weight map incomplete: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        own = model.state_dict()
        for name, t in tensors.items():
            if own[name].shape != t.shape:
                raise RuntimeError(f"from_transformers({model_type}): {name} has shape {tuple(t.shape)} in the HF model, "
                                   f"{tuple(own[name].shape)} here")
            own[name].copy_(t)
    return model.eval()


def mamba_backbone_tensors(sd: dict[str, torch.Tensor], n_layers: int, tied: bool,
                           same: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Our tensors from the state dict of an HF Mamba / Mamba-2 backbone (the same layout): embedding,
    final norm, head unless tied, each layer's pre-norm and depthwise conv (D, 1, W) -> (D, W), and the
    mixer tensors named in ``same`` (``conv1d.bias`` -> ``conv_bias``) where the model has them."""
    t = {"embed.weight": sd["backbone.embeddings.weight"], "norm.weight": sd["backbone.norm_f.weight"]}
    if not tied:
        t["head.weight"] = sd["lm_head.weight"]
    for i in range(n_layers):
        hf, me = f"backbone.layers.{i}.", f"blocks.{i}."
        t[me + "norm1.weight"] = sd[hf + "norm.weight"]
        t[me + "mixer.conv_weight"] = sd[hf + "mixer.conv1d.weight"][:, 0]
        for name in same:
            if hf + "mixer." + name in sd:
                t[me + "mixer." + name.replace("conv1d.", "conv_")] = sd[hf + "mixer." + name]
    return t
