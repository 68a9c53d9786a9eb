"""MistralForCausalLM: no biases; ``sliding_window`` (if set) on every layer."""
from __future__ import annotations

from . import register_converter
from ._decoder import convert_decoder


@register_converter("mistral")
def convert_mistral(hf_model):
    c = hf_model.config
    window = getattr(c, "sliding_window", None)
    return convert_decoder(hf_model, "mistral", qkv_bias=False, o_bias=False, windows=[window] * c.num_hidden_layers)
