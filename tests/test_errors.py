"""Bad input gets a clear error that names the bad value and what was expected."""
from __future__ import annotations

import pytest
import torch

from archs import Block, LanguageModel, build_mixer, mixer_names


def test_unknown_mixer_lists_known_names():
    with pytest.raises(KeyError) as e:
        build_mixer("transformerxl", 64)
    msg = str(e.value)
    assert "transformerxl" in msg and all(n in msg for n in mixer_names())


def test_unknown_mixer_in_language_model():
    with pytest.raises(KeyError, match="nope"):
        LanguageModel(10, 32, 2, layers=["attention", "nope"])


def test_d_model_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"d_model=30 must be divisible by n_heads=4"):
        build_mixer("attention", 30, n_heads=4)
    with pytest.raises(ValueError, match=r"n_heads=4 must be divisible by n_kv_heads=3"):
        build_mixer("attention", 32, n_heads=4, n_kv_heads=3)


@pytest.mark.parametrize("bad", [1, 0, 2.5, "4"])
def test_attention_conv_size_must_be_an_int_of_at_least_2(bad):
    with pytest.raises(ValueError, match=rf"attention: conv_size must be an int >= 2 or None, got {bad!r}"):
        build_mixer("attention", 32, conv_size=bad)


@pytest.mark.parametrize("name", mixer_names())
def test_wrong_rank_and_width(name):
    m = build_mixer(name, 32)
    with pytest.raises(ValueError, match=r"expects x of shape \(B, L, 32\), got \(2, 5, 16\)"):
        m(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match=r"expects x of shape \(B, L, 32\), got \(5, 32\)"):
        m(torch.randn(5, 32))
    with pytest.raises(ValueError, match=r"expects x_t of shape \(B, 32\), got \(2, 1, 32\)"):
        m.step(torch.randn(2, 1, 32), m.init_state(2))


@pytest.mark.parametrize("name", mixer_names())
def test_step_before_init(name):
    m = build_mixer(name, 32)
    with pytest.raises(ValueError, match="init_state"):
        m.step(torch.randn(2, 32), None)


@pytest.mark.parametrize("name", mixer_names())
def test_state_batch_mismatch(name):
    m = build_mixer(name, 32)
    with pytest.raises(ValueError, match="state holds batch 3 but input has batch 2"):
        m.prefill(torch.randn(2, 4, 32), m.init_state(3))


def test_block_and_model_errors():
    with pytest.raises(ValueError, match="mlp"):
        Block(32, "attention", mlp="gelu")
    with pytest.raises(ValueError, match="d_model=32 but the block has d_model=64"):
        Block(64, build_mixer("attention", 32))
    lm = LanguageModel(10, 32, 1)
    with pytest.raises(ValueError, match=r"integer tokens of shape \(B, L\)"):
        lm(torch.randn(2, 3))
    with pytest.raises(ValueError, match="init_state"):
        lm.step(torch.zeros(2, dtype=torch.long), None)
    with pytest.raises(ValueError, match="top_k"):
        lm.generate(torch.zeros(1, 2, dtype=torch.long), 3, top_k=0)
    with pytest.raises(ValueError, match="n_layers"):
        LanguageModel(10, 32, 0)
    with pytest.raises(ValueError, match=r"longer than n_layers=2"):
        LanguageModel(10, 32, 2, layers=["attention", "attention", "attention"])
