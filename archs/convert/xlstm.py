"""xLSTMForCausalLM (xLSTM 7B layout): pre-norm blocks of (RMSNorm -> mLSTM layer -> residual,
RMSNorm -> SwiGLU FFN -> residual), a final RMSNorm, an untied head and logit soft-capping.

Model-level knobs it needs: the FFN width round_up(hidden_size * ffn_proj_factor, ffn_round_up_to_multiple_of),
biases on the FFN and on the block norms when ``use_bias`` (the final norm has none), logit soft-capping.
The mLSTM layer is our ``mlstm`` mixer (its own test: tests/test_fidelity_mlstm.py).

HF layout -> seqarena: ``backbone.embeddings`` -> ``embed``; per block ``norm_mlstm`` -> ``norm1``,
``norm_ffn`` -> ``norm2``; ``mlstm_layer.{q,k,v,ogate_preact,igate_preact,fgate_preact,out_proj}`` one
to one (weight_mode "fused": ``qkv_opreact`` split into q, k, v, ogate_preact and ``ifgate_preact``
into igate_preact, fgate_preact), ``mlstm_layer.multihead_norm`` (H * Dv,) -> ``mixer.norm`` (H, Dv);
``ffn.[proj_up_gate; proj_up]`` (or the fused ``proj_up_gate_z``) -> ``mlp.w13``, ``ffn.proj_down`` ->
``mlp.w2``; ``backbone.out_norm`` -> ``norm``; ``lm_head`` -> ``head``.
"""
from __future__ import annotations

import torch

from . import register_converter
from ._common import build_and_load, hf_state, require, unsupported

_LAYER = ("q", "k", "v", "ogate_preact", "igate_preact", "fgate_preact", "out_proj")


def _round_up(x: float, multiple: int) -> int:
    return int(((x + multiple - 1) // multiple) * multiple)


@register_converter("xlstm")
def convert_xlstm(hf_model):
    c = hf_model.config
    mt = "xlstm"
    require(mt, c, "weight_mode", ("single", "fused"))
    D, H, n_layers = c.hidden_size, c.num_heads, c.num_hidden_layers
    if getattr(c, "embedding_dim", D) != D:
        raise unsupported(mt, "embedding_dim != hidden_size", c.embedding_dim)
    bias = bool(c.use_bias)
    qk_dim, v_dim = int(D * c.qk_dim_factor), int(D * c.v_dim_factor)
    hidden = _round_up(D * c.ffn_proj_factor, c.ffn_round_up_to_multiple_of)
    mlstm = dict(n_heads=H, qk_dim_factor=float(c.qk_dim_factor), v_dim_factor=float(c.v_dim_factor),
                 gate_soft_cap=float(c.gate_soft_cap) if c.gate_soft_cap is not None else None,
                 norm_eps=float(c.norm_eps), eps=float(c.eps), bias=bias, chunk_size=int(c.chunk_size))
    # HF's xLSTMForCausalLM declares no tied weights: its head is its own even under tie_word_embeddings=True
    tied = hf_model.lm_head.weight.data_ptr() == hf_model.backbone.embeddings.weight.data_ptr()
    cap = getattr(c, "output_logit_soft_cap", None)
    kwargs = dict(vocab_size=c.vocab_size, d_model=D, n_layers=n_layers, layers="mlstm", mixer_kwargs={"mlstm": mlstm},
                  mlp="swiglu", mlp_hidden=hidden, mlp_bias=bias, norm_bias=bias, tie_embeddings=tied,
                  norm_eps=float(c.norm_eps), logit_soft_cap=float(cap) if cap else None)
    sd = hf_state(hf_model, mt)
    t = {"embed.weight": sd["backbone.embeddings.weight"], "norm.weight": sd["backbone.out_norm.weight"]}
    if not tied:
        t["head.weight"] = sd["lm_head.weight"]
    params = ("weight", "bias") if bias else ("weight",)
    for i in range(n_layers):
        hf, me = f"backbone.blocks.{i}.", f"blocks.{i}."
        for p in params:
            t[me + f"norm1.{p}"] = sd[hf + f"norm_mlstm.{p}"]
            t[me + f"norm2.{p}"] = sd[hf + f"norm_ffn.{p}"]
        layer, mixer = hf + "mlstm_layer.", me + "mixer."
        if c.weight_mode == "single":
            for name in _LAYER:
                for p in ("weight", "bias"):
                    if layer + f"{name}.{p}" in sd:
                        t[mixer + f"{name}.{p}"] = sd[layer + f"{name}.{p}"]
            w13 = {p: torch.cat([sd[hf + f"ffn.proj_up_gate.{p}"], sd[hf + f"ffn.proj_up.{p}"]]) for p in params}
        else:  # fused: [q; k; v; o] and [i; f] stacked along the output dim
            for p in ("weight", "bias"):
                if layer + f"qkv_opreact.{p}" in sd:
                    q, k, v, o = sd[layer + f"qkv_opreact.{p}"].split([qk_dim, qk_dim, v_dim, v_dim])
                    t.update({mixer + f"q.{p}": q, mixer + f"k.{p}": k, mixer + f"v.{p}": v, mixer + f"ogate_preact.{p}": o})
                ig, fg = sd[layer + f"ifgate_preact.{p}"].split([H, H])
                t.update({mixer + f"igate_preact.{p}": ig, mixer + f"fgate_preact.{p}": fg})
            for p in ("weight", "bias"):
                if layer + f"out_proj.{p}" in sd:
                    t[mixer + f"out_proj.{p}"] = sd[layer + f"out_proj.{p}"]
            w13 = {p: sd[hf + f"ffn.proj_up_gate_z.{p}"] for p in params}  # [gate; z]: already our [W1; W3]
        t[mixer + "norm.weight"] = sd[layer + "multihead_norm.weight"].view(H, -1)
        if bias:
            t[mixer + "norm.bias"] = sd[layer + "multihead_norm.bias"].view(H, -1)
        for p in params:
            t[me + f"mlp.w13.{p}"] = w13[p]
            t[me + f"mlp.w2.{p}"] = sd[hf + f"ffn.proj_down.{p}"]
    return build_and_load(mt, hf_model, kwargs, t)
