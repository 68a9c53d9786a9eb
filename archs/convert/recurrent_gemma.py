"""RecurrentGemmaForCausalLM (Griffin): RG-LRU recurrent blocks and local MQA attention in a repeating
pattern (``config.block_types``, 2b: recurrent, recurrent, attention), each with a GeGLU MLP.

Model-level knobs it needs: embeddings times sqrt(hidden_size) (HF keeps that factor as a bf16
buffer, so the converter reads the buffer's value), RMSNorms scaling by (1 + w), a tanh-GeLU gated MLP
of width intermediate_size / 2 with biases, RoPE on the first half of each head (partial rotary),
an attention output bias, and logit soft-capping.

HF layout -> seqarena: ``model.embed_tokens`` -> ``embed``; per layer ``temporal_pre_norm`` ->
``norm1``, ``channel_pre_norm`` -> ``norm2``, ``mlp_block.[gate_proj; up_proj]`` -> ``mlp.w13``
(weights and biases), ``mlp_block.down_proj`` -> ``mlp.w2``; a recurrent ``temporal_block``:
``linear_x/y/out`` one to one, ``conv_1d.weight`` (W, 1, k) -> ``conv_weight`` (W, k), ``conv_1d.bias``
-> ``conv_bias``, ``rg_lru.{input,recurrent}_gate_{weight,bias}`` one to one, ``rg_lru.recurrent_param``
-> ``a_param``; an attention ``temporal_block``: ``q_proj``, ``[k_proj; v_proj]`` -> ``kv_proj``,
``o_proj``; ``model.final_norm`` -> ``norm``; the head is tied to the embedding.
"""
from __future__ import annotations

import torch

from . import register_converter
from ._common import build_and_load, hf_state, require, unsupported
from ._decoder import rope_scaling, rope_theta

_KINDS = {"recurrent": "rglru", "attention": "attention"}
_RGLRU_SAME = ("linear_x.weight", "linear_x.bias", "linear_y.weight", "linear_y.bias", "linear_out.weight",
               "linear_out.bias")
_GATES = ("input_gate_weight", "input_gate_bias", "recurrent_gate_weight", "recurrent_gate_bias")


def _partial_rotary_factor(c) -> float:
    params = getattr(c, "rope_parameters", None) or {}
    return float(params.get("partial_rotary_factor", getattr(c, "partial_rotary_factor", 0.5)))


@register_converter("recurrent_gemma")
def convert_recurrent_gemma(hf_model):
    c = hf_model.config
    mt = "recurrent_gemma"
    require(mt, c, "hidden_activation", ("gelu_pytorch_tanh",))
    if rope_scaling(c) is not None:
        raise unsupported(mt, "rope type", rope_scaling(c)["rope_type"])
    D, n_layers, H = c.hidden_size, c.num_hidden_layers, c.num_attention_heads
    if c.intermediate_size % 2:
        raise unsupported(mt, "intermediate_size (odd: the MLP uses intermediate_size // 2)", c.intermediate_size)
    unknown = sorted(set(c.block_types) - set(_KINDS))
    if unknown:
        raise unsupported(mt, "block_types", unknown)
    head_dim = c.head_dim
    rope_dim = int(head_dim * _partial_rotary_factor(c))
    layers = [_KINDS[b] for b in (list(c.block_types) * n_layers)[:n_layers]]
    mixer_kwargs = {}
    if "rglru" in layers:
        mixer_kwargs["rglru"] = dict(lru_width=c.lru_width, n_heads=H, conv_width=c.conv1d_width)
    if "attention" in layers:
        mixer_kwargs["attention"] = dict(n_heads=H, n_kv_heads=c.num_key_value_heads, head_dim=head_dim,
                                         window=c.attention_window_size, rope_base=rope_theta(c), rope_dim=rope_dim,
                                         qkv_bias=bool(c.attention_bias), o_bias=True)
    # HF multiplies the embeddings by a bf16 buffer holding sqrt(hidden_size): use its exact value
    normalizer = getattr(hf_model.model, "normalizer", None)
    embed_scale = float(normalizer) if normalizer is not None else D ** 0.5
    tied = hf_model.lm_head.weight.data_ptr() == hf_model.model.embed_tokens.weight.data_ptr()
    kwargs = dict(vocab_size=c.vocab_size, d_model=D, n_layers=n_layers, layers=layers, mixer_kwargs=mixer_kwargs,
                  mlp="geglu_tanh", mlp_hidden=c.intermediate_size // 2, mlp_bias=True, tie_embeddings=tied,
                  norm_eps=float(c.rms_norm_eps), norm_unit_offset=True, embed_scale=embed_scale,
                  logit_soft_cap=float(c.logits_soft_cap) if c.logits_soft_cap else None)
    sd = hf_state(hf_model, mt)
    t = {"embed.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.final_norm.weight"]}
    if not tied:
        t["head.weight"] = sd["lm_head.weight"]
    for i, kind in enumerate(layers):
        hf, me = f"model.layers.{i}.", f"blocks.{i}."
        t[me + "norm1.weight"] = sd[hf + "temporal_pre_norm.weight"]
        t[me + "norm2.weight"] = sd[hf + "channel_pre_norm.weight"]
        mlp = hf + "mlp_block."
        for p in ("weight", "bias"):
            t[me + f"mlp.w13.{p}"] = torch.cat([sd[mlp + f"gate_proj.{p}"], sd[mlp + f"up_proj.{p}"]])
            t[me + f"mlp.w2.{p}"] = sd[mlp + f"down_proj.{p}"]
        tb = hf + "temporal_block."
        if kind == "rglru":
            for name in _RGLRU_SAME:
                t[me + "mixer." + name] = sd[tb + name]
            t[me + "mixer.conv_weight"] = sd[tb + "conv_1d.weight"][:, 0]
            t[me + "mixer.conv_bias"] = sd[tb + "conv_1d.bias"]
            for name in _GATES:
                t[me + "mixer." + name] = sd[tb + "rg_lru." + name]
            t[me + "mixer.a_param"] = sd[tb + "rg_lru.recurrent_param"]
        else:
            t[me + "mixer.q_proj.weight"] = sd[tb + "q_proj.weight"]
            t[me + "mixer.kv_proj.weight"] = torch.cat([sd[tb + "k_proj.weight"], sd[tb + "v_proj.weight"]])
            t[me + "mixer.o_proj.weight"] = sd[tb + "o_proj.weight"]
            t[me + "mixer.o_proj.bias"] = sd[tb + "o_proj.bias"]
            if c.attention_bias:
                t[me + "mixer.q_proj.bias"] = sd[tb + "q_proj.bias"]
                t[me + "mixer.kv_proj.bias"] = torch.cat([sd[tb + "k_proj.bias"], sd[tb + "v_proj.bias"]])
    return build_and_load(mt, hf_model, kwargs, t)
