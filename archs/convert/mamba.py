"""MambaForCausalLM: a stack of (RMSNorm -> Mamba mixer -> residual) blocks without MLP.

HF ``backbone.layers.i.mixer.*`` maps one to one onto our ``Mamba`` (conv1d.weight (d, 1, k) ->
conv_weight (d, k)); ``backbone.norm_f`` -> ``norm``; ``backbone.embeddings`` -> ``embed``.
"""
from __future__ import annotations

from . import register_converter
from ._common import build_and_load, hf_state, mamba_backbone_tensors, require, unsupported

_SAME = ("in_proj.weight", "in_proj.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "A_log", "D",
         "out_proj.weight", "out_proj.bias", "conv1d.bias")


@register_converter("mamba")
def convert_mamba(hf_model):
    c = hf_model.config
    require("mamba", c, "hidden_act", ("silu",))
    D, di = c.hidden_size, c.intermediate_size
    if di % D:
        raise unsupported("mamba", "intermediate_size / hidden_size (expand)", di / D)
    mamba = dict(d_state=c.state_size, d_conv=c.conv_kernel, expand=di // D, dt_rank=int(c.time_step_rank),
                 conv_bias=bool(c.use_conv_bias), bias=bool(c.use_bias))
    tied = bool(getattr(c, "tie_word_embeddings", True))
    kwargs = dict(vocab_size=c.vocab_size, d_model=D, n_layers=c.num_hidden_layers, layers="mamba",
                  mixer_kwargs={"mamba": mamba}, mlp=None, tie_embeddings=tied, norm_eps=float(c.layer_norm_epsilon))
    sd = hf_state(hf_model, "mamba")
    t = mamba_backbone_tensors(sd, c.num_hidden_layers, tied, _SAME)
    return build_and_load("mamba", hf_model, kwargs, t)
