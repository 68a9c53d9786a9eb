"""Mamba2ForCausalLM: (RMSNorm -> Mamba-2 mixer -> residual) blocks without MLP, any n_groups.

HF ``backbone.layers.i.mixer.*`` maps one to one onto our ``Mamba2`` (conv1d.weight (c, 1, k) ->
conv_weight (c, k); ``norm.weight``: the gated RMSNorm, per group of d_inner // n_groups as in HF).
"""
from __future__ import annotations

from . import register_converter
from ._common import build_and_load, hf_state, mamba_backbone_tensors, require, unsupported

_SAME = ("in_proj.weight", "in_proj.bias", "dt_bias", "A_log", "D", "norm.weight", "out_proj.weight", "out_proj.bias",
         "conv1d.bias")


@register_converter("mamba2")
def convert_mamba2(hf_model):
    c = hf_model.config
    require("mamba2", c, "hidden_act", ("silu",))
    D = c.hidden_size
    di = int(c.expand * D)
    if di % D or c.num_heads * c.head_dim != di:
        raise unsupported("mamba2", "expand * hidden_size vs num_heads * head_dim", (di, c.num_heads * c.head_dim))
    mamba2 = dict(d_state=c.state_size, d_conv=c.conv_kernel, expand=di // D, headdim=c.head_dim, n_groups=c.n_groups,
                  chunk_size=int(c.chunk_size), conv_bias=bool(c.use_conv_bias), bias=bool(c.use_bias),
                  norm_eps=float(c.layer_norm_epsilon), time_step_limit=tuple(float(v) for v in c.time_step_limit))
    tied = bool(getattr(c, "tie_word_embeddings", False))
    kwargs = dict(vocab_size=c.vocab_size, d_model=D, n_layers=c.num_hidden_layers, layers="mamba2",
                  mixer_kwargs={"mamba2": mamba2}, mlp=None, tie_embeddings=tied, norm_eps=float(c.layer_norm_epsilon))
    sd = hf_state(hf_model, "mamba2")
    t = mamba_backbone_tensors(sd, c.num_hidden_layers, tied, _SAME)
    return build_and_load("mamba2", hf_model, kwargs, t)
