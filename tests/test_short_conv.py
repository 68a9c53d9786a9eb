"""ShortConv at the block, model and config level (the mixer-level equivalences of every wrapped
mixer are in the generic suite, tests/test_mixer_equivalence.py, cases ``<mixer>-short_conv3``)."""
from __future__ import annotations

import pytest
import torch

from archs import Block, LanguageModel, ShortConv, build_language_model, build_mixer
from helpers import assert_rel_close
from train import compose_config
from train.api import plan_run

V, D = 61, 32


def test_hybrid_model_with_short_conv_modes_and_generate_agree():
    torch.manual_seed(0)
    lm = LanguageModel(V, D, 4, layers=["mamba", "attention"], short_conv=4).double().eval()
    assert all(isinstance(b.mixer, ShortConv) and b.mixer.conv_size == 4 for b in lm.blocks)
    tok = torch.randint(0, V, (2, 21))
    with torch.no_grad():
        logits = lm(tok)
        a, st = lm.prefill(tok[:, :9])
        steps = []
        for t in range(9, 21):
            l_t, st = lm.step(tok[:, t], st)
            steps.append(l_t[:, None])
    assert_rel_close(torch.cat([a, *steps], 1), logits, 1e-10, "LanguageModel(short_conv=4)")
    out = lm.generate(tok[:, :5], max_new_tokens=6, temperature=0)
    with torch.no_grad():
        for i in range(5, 11):
            assert torch.equal(lm(out[:, :i])[:, -1].argmax(-1), out[:, i])


def test_short_conv_accounting_adds_its_window_and_flops():
    inner = build_mixer("gla", D)
    wrapped = Block(D, build_mixer("gla", D), short_conv=4).mixer
    assert wrapped.state_size(100) == inner.state_size(100) + D * 3
    assert wrapped.flops_per_token(100) == pytest.approx(inner.flops_per_token(100) + 2 * D * 4)
    assert wrapped.name == "gla+short_conv"


def test_short_conv_from_config_changes_the_model_and_its_flops():
    plain = plan_run(compose_config(["arch=gla", "model.d_model=32", "model.n_layers=2", "budget.max_steps=1"]))
    conv = plan_run(compose_config(["arch=gla", "arch.short_conv=4", "model.d_model=32", "model.n_layers=2", "budget.max_steps=1"]))
    assert all(isinstance(b.mixer, ShortConv) for b in conv["model"].blocks)
    assert not any(isinstance(b.mixer, ShortConv) for b in plain["model"].blocks)
    assert conv["model"].num_params() == plain["model"].num_params() + 2 * 32 * 4
    lm = build_language_model({"name": "x", "layers": "lru", "short_conv": 2}, {"d_model": 16, "n_layers": 1}, 32)
    assert lm.blocks[0].mixer.conv_size == 2


@pytest.mark.parametrize("bad", [1, 0, 2.5, True, "4"])
def test_bad_conv_size_is_named(bad):
    with pytest.raises(ValueError, match=rf"ShortConv: conv_size must be an int >= 2, got {bad!r}"):
        ShortConv(build_mixer("lru", D), bad)
    with pytest.raises(TypeError, match="ShortConv: mixer must be a Mixer, got Linear"):
        ShortConv(torch.nn.Linear(D, D), 4)
