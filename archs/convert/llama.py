"""LlamaForCausalLM: ``attention_bias`` puts a bias on q, k, v and o alike; no sliding window."""
from __future__ import annotations

from . import register_converter
from ._decoder import convert_decoder


@register_converter("llama")
def convert_llama(hf_model):
    bias = bool(getattr(hf_model.config, "attention_bias", False))
    return convert_decoder(hf_model, "llama", qkv_bias=bias, o_bias=bias, windows=[None] * hf_model.config.num_hidden_layers)
