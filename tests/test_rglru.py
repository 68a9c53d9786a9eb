"""rglru: fidelity to transformers' RecurrentGemma recurrent block (same weights, fp64), the
position-0 reset, gradients through a carried state, and weight-decay marks."""
from __future__ import annotations

import functools

import pytest
import torch

from archs import build_mixer
from helpers import assert_rel_close, assert_split_state_grads_match_forward

D, W, HEADS, K = 32, 48, 4, 4


def _hf_block():
    """A random RecurrentGemma recurrent block (fp64) whose scan accumulates in fp64 (the reference
    accumulates in fp32 by default, which would cap the comparison at fp32 precision)."""
    rg = pytest.importorskip("transformers.models.recurrent_gemma.modeling_recurrent_gemma")
    from transformers import RecurrentGemmaConfig

    torch.manual_seed(0)
    cfg = RecurrentGemmaConfig(vocab_size=64, hidden_size=D, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=HEADS, lru_width=W, conv1d_width=K, attention_window_size=8,
                               block_types=["recurrent"])
    model = rg.RecurrentGemmaForCausalLM(cfg).double().eval()
    block = model.model.layers[0].temporal_block
    assert isinstance(block, rg.RecurrentGemmaRecurrentBlock)
    with torch.no_grad():  # random weights of a useful scale everywhere (the reference init zeroes biases)
        for name, p in block.named_parameters():
            if name != "rg_lru.recurrent_param":
                p.normal_(0.0, 0.3 if "weight" in name else 0.1)
        a = torch.empty(W, dtype=torch.float64).uniform_(0.5, 0.999)
        block.rg_lru.recurrent_param.copy_(torch.log(1 / a - 1))
    block.rg_lru._rnn_scan = functools.partial(rg.RecurrentGemmaRglru._rnn_scan, block.rg_lru, acc_dtype=torch.float64)
    return block


def _ours_from(block):
    m = build_mixer("rglru", D, lru_width=W, n_heads=HEADS, conv_width=K).double().eval()
    lru = block.rg_lru
    with torch.no_grad():
        for lin in ("linear_x", "linear_y", "linear_out"):
            getattr(m, lin).load_state_dict(getattr(block, lin).state_dict())
        m.conv_weight.copy_(block.conv_1d.weight[:, 0])  # (W, 1, K) -> (W, K)
        m.conv_bias.copy_(block.conv_1d.bias)
        for name in ("input_gate_weight", "input_gate_bias", "recurrent_gate_weight", "recurrent_gate_bias"):
            getattr(m, name).copy_(getattr(lru, name))
        m.a_param.copy_(lru.recurrent_param)
    return m


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_matches_recurrent_gemma_block_fp64():
    block = _hf_block()
    m = _ours_from(block)
    B, L = 2, 29
    x = torch.randn(B, L, D, dtype=torch.float64)
    pos = torch.arange(L)[None].expand(B, L)
    with torch.no_grad():
        ref, _ = block(x, position_ids=pos, attention_mask=None, use_cache=False)
        y = m(x)
    err = _rel(y, ref)
    print(f"rglru vs RecurrentGemmaRecurrentBlock forward: max rel err {err:.2e}")
    assert err < 1e-12

    # the reference's cached decode: prefill 17 tokens, then one token at a time
    cut = 17
    with torch.no_grad():
        block._setup_cache(B, x.device, torch.float64)
        block.rg_lru.recurrent_states = block.rg_lru.recurrent_states.double()
        outs = [block(x[:, :cut], position_ids=pos[:, :cut], attention_mask=None, use_cache=True)[0]]
        for t in range(cut, L):
            outs.append(block(x[:, t:t + 1], position_ids=pos[:, t:t + 1], attention_mask=None, use_cache=True)[0])
        ref_dec = torch.cat(outs, 1)
        y_pre, st = m.prefill(x[:, :cut])
        ys = [y_pre]
        for t in range(cut, L):
            y_t, st = m.step(x[:, t], st)
            ys.append(y_t[:, None])
        ours_dec = torch.cat(ys, 1)
    err_dec = _rel(ours_dec, ref_dec)
    print(f"rglru vs RecurrentGemmaRecurrentBlock cached decode: max rel err {err_dec:.2e}")
    assert err_dec < 1e-12
    assert_rel_close(ref_dec, ref, 1e-10, "the reference's own decode == its forward")


def test_first_token_is_not_normalised():
    """Position 0 (a fresh state): h_0 = i_0 * u_0, without the sqrt(1 - a_0^2) factor."""
    m = build_mixer("rglru", D).double().eval()
    x = torch.randn(3, 1, D, dtype=torch.float64)
    with torch.no_grad():
        u = m.linear_x(x[:, 0]) * m.conv_weight[:, -1] + m.conv_bias  # the conv sees only x_0
        i = torch.sigmoid(m._block_diag(u, m.input_gate_weight, m.input_gate_bias))
        g = torch.nn.functional.gelu(m.linear_y(x[:, 0]), approximate="tanh")
        expect = m.linear_out(i * u * g)
        y, st = m.prefill(x)
    assert_rel_close(y[:, 0], expect, 1e-12, "y_0")
    assert st.seen == 1


def test_gradients_flow_through_carried_state():
    """Two prefills (and prefill + steps) give the same parameter gradients as one forward."""
    torch.manual_seed(0)
    m = build_mixer("rglru", D, n_heads=2).double()
    x = torch.randn(2, 11, D, dtype=torch.float64)
    assert_split_state_grads_match_forward(m, x)


def test_no_weight_decay_and_errors():
    m = build_mixer("rglru", D)
    biases = {n for n, _ in m.named_parameters() if n.endswith("bias")}
    assert m.no_weight_decay() == {"a_param"} | biases  # the decay parameter, and every bias as for every mixer
    with pytest.raises(ValueError, match=r"lru_width=48 must be divisible by n_heads=5"):
        build_mixer("rglru", D, lru_width=48, n_heads=5)
    with pytest.raises(ValueError, match=r"conv_width must be a positive int, got 0"):
        build_mixer("rglru", D, conv_width=0)
    with pytest.raises(ValueError, match=r"0 < a_min < a_max < 1, got a_min=0.9, a_max=1.5"):
        build_mixer("rglru", D, a_max=1.5)


@pytest.mark.parametrize("width,heads", [(32, 1), (128, 2), (200, 2), (192, 3), (1000, 10)])
def test_default_heads_divide_any_width(width, heads):
    assert build_mixer("rglru", width).n_heads == heads
