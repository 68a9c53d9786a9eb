"""The Llama family (Llama, Mistral, Qwen2): pre-norm decoder, RoPE attention with GQA, SwiGLU MLP.

HF layout -> seqarena: ``model.embed_tokens`` -> ``embed``; per layer ``input_layernorm`` -> ``norm1``,
``self_attn.q_proj`` -> ``mixer.q_proj``, ``[k_proj; v_proj]`` -> ``mixer.kv_proj``, ``o_proj`` ->
``mixer.o_proj``, ``post_attention_layernorm`` -> ``norm2``, ``[gate_proj; up_proj]`` -> ``mlp.w13``,
``down_proj`` -> ``mlp.w2``; ``model.norm`` -> ``norm``; ``lm_head`` -> ``head``.
"""
from __future__ import annotations

import torch

from ..model import LanguageModel
from ._common import build_and_load, hf_state, require


def rope_scaling(config) -> dict | None:
    """HF ``rope_parameters`` (v5) or ``rope_scaling`` (v4) -> our scaling dict (None = plain RoPE)."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return None
    params["rope_type"] = kind
    params.pop("type", None)
    params.pop("rope_theta", None)
    if kind == "dynamic":  # HF scales against max_position_embeddings
        params["max_position_embeddings"] = config.max_position_embeddings
    return params


def rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def convert_decoder(hf_model, model_type: str, qkv_bias: bool, o_bias: bool, windows: list[int | None]) -> LanguageModel:
    """Convert a Llama-style ``*ForCausalLM``; ``windows[i]`` is layer i's sliding window (None = full)."""
    c = hf_model.config
    require(model_type, c, "hidden_act", ("silu",))
    require(model_type, c, "mlp_bias", (False,))
    require(model_type, c, "pretraining_tp", (1,))
    n_layers, D = c.num_hidden_layers, c.hidden_size
    n_heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or D // n_heads
    attention = dict(n_heads=n_heads, n_kv_heads=c.num_key_value_heads or n_heads, head_dim=head_dim,
                     rope_base=rope_theta(c), rope_scaling=rope_scaling(c), qkv_bias=qkv_bias, o_bias=o_bias)
    tied = bool(getattr(c, "tie_word_embeddings", False))
    kwargs = dict(vocab_size=c.vocab_size, d_model=D, n_layers=n_layers, layers="attention",
                  mixer_kwargs={"attention": attention}, mlp="swiglu", mlp_hidden=c.intermediate_size,
                  tie_embeddings=tied, norm_eps=float(c.rms_norm_eps),
                  layer_kwargs=[{"window": w} if w is not None else {} for w in windows])
    sd = hf_state(hf_model, model_type)
    t = {"embed.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"]}
    if not tied:
        t["head.weight"] = sd["lm_head.weight"]
    for i in range(n_layers):
        hf, me = f"model.layers.{i}.", f"blocks.{i}."
        t[me + "norm1.weight"] = sd[hf + "input_layernorm.weight"]
        t[me + "norm2.weight"] = sd[hf + "post_attention_layernorm.weight"]
        t[me + "mixer.q_proj.weight"] = sd[hf + "self_attn.q_proj.weight"]
        t[me + "mixer.kv_proj.weight"] = torch.cat([sd[hf + "self_attn.k_proj.weight"], sd[hf + "self_attn.v_proj.weight"]])
        t[me + "mixer.o_proj.weight"] = sd[hf + "self_attn.o_proj.weight"]
        if qkv_bias:
            t[me + "mixer.q_proj.bias"] = sd[hf + "self_attn.q_proj.bias"]
            t[me + "mixer.kv_proj.bias"] = torch.cat([sd[hf + "self_attn.k_proj.bias"], sd[hf + "self_attn.v_proj.bias"]])
        if o_bias:
            t[me + "mixer.o_proj.bias"] = sd[hf + "self_attn.o_proj.bias"]
        t[me + "mlp.w13.weight"] = torch.cat([sd[hf + "mlp.gate_proj.weight"], sd[hf + "mlp.up_proj.weight"]])
        t[me + "mlp.w2.weight"] = sd[hf + "mlp.down_proj.weight"]
    return build_and_load(model_type, hf_model, kwargs, t)
