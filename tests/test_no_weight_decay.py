"""``Mixer.no_weight_decay()`` over the registry, and the trainer's optimizer groups built from it.

Every mixer (and variant, and ShortConv wrapper) names only parameters it has, including every
norm parameter, every bias and the decay-type parameters (A_log, D, dt_bias, decay, bonus, LRU's
nu/theta/gamma); ``train.module.param_groups`` decays exactly the other parameters of a
LanguageModel (embeddings, Block and final norms undecayed).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from archs import LanguageModel, build_mixer, mixer_names
from archs.layers import RMSNorm
from archs.mixers._linear_attn import HeadNorm
from test_mixer_equivalence import CASES, D, _build
from train.module import param_groups

# parameters that hold decay rates, step sizes, skips or bonuses: never decayed (by their name)
DECAY_TYPE = {"A_log", "D", "dt_bias", "decay", "bonus", "nu_log", "theta_log", "gamma_log"}
NORMS = (RMSNorm, HeadNorm, nn.LayerNorm, nn.GroupNorm)


def _expected_at_least(module: nn.Module) -> set[str]:
    """Norm parameters, biases and decay-type parameters of ``module``, found independently."""
    want = set()
    for mod_name, mod in module.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for n, _ in mod.named_parameters(recurse=False):
            if isinstance(mod, NORMS) or n in DECAY_TYPE or n == "bias" or n.endswith("_bias") or n.startswith("bias_"):
                want.add(prefix + n)
    return want


@pytest.mark.parametrize("name,kw", CASES)
def test_no_weight_decay_names(name, kw):
    m = _build(name, kw, torch.float32)
    names = m.no_weight_decay()
    params = dict(m.named_parameters())
    assert isinstance(names, set)
    assert names <= set(params), f"{name}: no_weight_decay names unknown parameters {sorted(names - set(params))}"
    missing = _expected_at_least(m) - names
    assert not missing, f"{name}: no_weight_decay() misses {sorted(missing)}"
    assert names != set(params), f"{name}: no_weight_decay() names every parameter"


def test_no_weight_decay_known_mixers():
    nwd = lambda n: build_mixer(n, D).no_weight_decay()  # noqa: E731
    assert {"A_log", "D", "dt_proj.bias", "conv_bias"} <= nwd("mamba") and "x_proj.weight" not in nwd("mamba")
    assert {"A_log", "D", "dt_bias", "norm.weight"} <= nwd("mamba2")
    assert {"maa_x", "maa", "decay", "bonus", "ln_x.weight", "ln_x.bias"} <= nwd("rwkv6") and "decay_w1" not in nwd("rwkv6")
    assert {"norm.weight", "gk_up.bias"} <= nwd("gla")
    assert {"norm.weight", "norm.bias"} <= nwd("retnet")
    assert {"norm.weight"} <= nwd("deltanet") and {"norm.weight"} <= nwd("hgrn")
    assert {"nu_log", "theta_log", "gamma_log", "D"} <= nwd("lru")
    assert {"lstm.bias_ih_l0", "lstm.bias_hh_l0"} == nwd("lstm")
    assert nwd("attention") == set() and nwd("mingru") == set()


@pytest.mark.parametrize("name", mixer_names())
def test_optimizer_groups_honour_no_weight_decay(name):
    torch.manual_seed(0)
    lm = LanguageModel(vocab_size=17, d_model=D, n_layers=2, layers=name, short_conv=3)
    decay, no_decay = param_groups(lm, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    got = {id(p) for p in no_decay["params"]}
    want = {"embed.weight", "norm.weight"}
    for i, block in enumerate(lm.blocks):
        want |= {f"blocks.{i}.{n}" for n in ("norm1.weight", "norm2.weight")}
        want |= {f"blocks.{i}.mixer.{n}" for n in block.mixer.no_weight_decay()}
    params = dict(lm.named_parameters())
    assert got == {id(params[n]) for n in want}, f"{name}: undecayed {sorted(n for n, p in params.items() if id(p) in got)}"
    assert len(decay["params"]) + len(no_decay["params"]) == len(params)  # each parameter once (head tied)
    assert not got & {id(p) for p in decay["params"]}
