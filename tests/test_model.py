"""LanguageModel and Block: the same equivalences at the model level, generation, accounting."""
from __future__ import annotations

import pytest
import torch

from archs import Block, LanguageModel, build_mixer, mixer_names
from helpers import assert_rel_close

V, D = 61, 32


def _model(layers, n_layers=2, dtype=torch.float64):
    torch.manual_seed(0)
    return LanguageModel(V, D, n_layers, layers=layers).to(dtype).eval()


@pytest.mark.parametrize("name", mixer_names())
def test_block_modes_agree(name):
    torch.manual_seed(0)
    blk = Block(D, name).double().eval()
    x = torch.randn(2, 11, D, dtype=torch.float64)
    with torch.no_grad():
        y = blk(x)
        y_pre, st = blk.prefill(x[:, :6])
        ys = [y_pre]
        for t in range(6, 11):
            y_t, st = blk.step(x[:, t], st)
            ys.append(y_t[:, None])
    assert_rel_close(torch.cat(ys, 1), y, 1e-10, f"Block({name})")


@pytest.mark.parametrize("name", mixer_names())
def test_language_model_modes_agree(name):
    lm = _model(name)
    tok = torch.randint(0, V, (2, 23))
    with torch.no_grad():
        logits = lm(tok)
        assert logits.shape == (2, 23, V)
        a, st = lm.prefill(tok[:, :10])
        b, st = lm.prefill(tok[:, 10:17], st)
        steps = []
        for t in range(17, 23):
            l_t, st = lm.step(tok[:, t], st)
            steps.append(l_t[:, None])
    assert_rel_close(torch.cat([a, b, *steps], 1), logits, 1e-10, f"LanguageModel({name})")


@pytest.mark.parametrize("name", mixer_names())
def test_greedy_generate_is_argmax_of_forward(name):
    lm = _model(name)
    prompt = torch.randint(0, V, (3, 5))
    out = lm.generate(prompt, max_new_tokens=12, temperature=0)
    assert out.shape == (3, 17) and torch.equal(out[:, :5], prompt)
    with torch.no_grad():
        for i in range(5, 17):
            assert torch.equal(lm(out[:, :i])[:, -1].argmax(-1), out[:, i]), f"{name}: token {i}"


def test_sampling_respects_top_k_and_seed():
    lm = _model("attention")
    prompt = torch.randint(0, V, (2, 4))
    g1 = lm.generate(prompt, 8, temperature=1.0, top_k=1)
    assert torch.equal(g1, lm.generate(prompt, 8, temperature=0))  # top_k=1 is greedy
    s1 = lm.generate(prompt, 8, top_k=5, generator=torch.Generator().manual_seed(3))
    s2 = lm.generate(prompt, 8, top_k=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)


def test_hybrid_pattern_cycles():
    lm = LanguageModel(V, D, 5, layers=["attention", "attention"])
    assert lm.layer_names == ["attention"] * 5


def test_tied_head_and_accounting():
    lm = _model("attention")
    assert lm.head.weight is lm.embed.weight
    assert lm.num_params() == sum(p.numel() for p in lm.parameters())
    assert lm.num_params(non_embedding=True) == lm.num_params() - V * D
    assert lm.state_size(100) == sum(b.mixer.state_size(100) for b in lm.blocks)
    assert lm.flops_per_token(64) > 2 * D * V


def test_attention_decode_cache_grows_without_full_copies():
    m = build_mixer("attention", D, n_heads=2)
    st = m.init_state(1)  # default capacity 256
    with torch.no_grad():
        _, st = m.prefill(torch.randn(1, 250, D), st)
        caps = {st.k.shape[2]}
        for _ in range(600):
            _, st = m.step(torch.randn(1, D), st)
            caps.add(st.k.shape[2])
    assert st.length == 850
    assert len(caps) <= 4, f"cache reallocated {len(caps)} times for 600 tokens: {sorted(caps)}"


def test_one_query_decode_sees_all_keys():
    """The known bug: a 1-query step through SDPA's is_causal=True attends only to key 0."""
    m = build_mixer("attention", D, n_heads=2).double()
    x = torch.randn(1, 8, D, dtype=torch.float64)
    with torch.no_grad():
        full = m(x)
        _, st = m.prefill(x[:, :7])
        y_t, _ = m.step(x[:, 7], st)
        _, st = m.prefill(x[:, :7])
        y_pre1, _ = m.prefill(x[:, 7:], st)  # one-token prefill continuing a cache
    assert_rel_close(y_t, full[:, 7], 1e-10, "step")
    assert_rel_close(y_pre1[:, 0], full[:, 7], 1e-10, "one-token prefill")


def test_sliding_window_sees_only_window():
    m = build_mixer("attention", D, n_heads=2, window=4).double()
    x = torch.randn(1, 12, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, :5] += 1.0  # tokens 0..4 are outside the window of token 9 (which sees 6..9)
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    assert_rel_close(y2[:, 9:], y[:, 9:], 1e-12, "window")
    assert (y2[:, 5] - y[:, 5]).abs().max() > 1e-6
