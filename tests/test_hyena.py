"""hyena: the decode step (direct conv over the kept history) equals the FFT forward past the tap
cache's first size, the filter is defined for every position, the state grows one vector per
token, gradients flow through a carried state, weight-decay marks and errors."""
from __future__ import annotations

import pytest
import torch

from archs import build_mixer
from helpers import assert_rel_close, assert_split_state_grads_match_forward

D = 16


def _mixer(**kw):
    torch.manual_seed(0)
    return build_mixer("hyena", D, filter_order=16, emb_dim=5, filter_scale=64.0, **kw).double().eval()


def test_long_decode_equals_fft_forward():
    """300 tokens: the cached taps (first built for 256 positions) regrow and stay exact."""
    m = _mixer()
    x = torch.randn(2, 300, D, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
        y_pre, st = m.prefill(x[:, :250])
        ys = [y_pre]
        for t in range(250, 300):
            y_t, st = m.step(x[:, t], st)
            ys.append(y_t[:, None])
    assert_rel_close(torch.cat(ys, 1), y, 1e-10, "prefill 250 then 50 steps vs forward")
    assert st.length == 300 and st.numel_per_sequence() == m.state_size(300)
    assert m.state_size(300) - m.state_size(299) == D  # one vector per token (order 2)


def test_filter_is_defined_for_every_position():
    m = _mixer()
    with torch.no_grad():
        short, long = m._taps(40), m._taps(1000)
    assert_rel_close(long[..., :40], short, 1e-12, "taps do not depend on the length asked for")
    assert long[..., -1].abs().max() < long[..., 0].abs().max()  # the decay window


def test_tap_cache_follows_parameter_updates():
    m = _mixer()
    x = torch.randn(1, 6, D, dtype=torch.float64)
    with torch.no_grad():
        _, st = m.prefill(x[:, :5])
        m.step(x[:, 5], st)  # builds the cache
        m.filter.mlp[-1].weight.mul_(1.5)  # an optimizer-like in-place update
        y = m(x)
        _, st = m.prefill(x[:, :5])
        y_t, _ = m.step(x[:, 5], st)
    assert_rel_close(y_t, y[:, 5], 1e-10, "step after a parameter update")


@pytest.mark.parametrize("order", [2, 3])
def test_gradients_flow_through_carried_state(order):
    m = _mixer(order=order)
    x = torch.randn(2, 11, D, dtype=torch.float64)
    assert_split_state_grads_match_forward(m, x)


def test_no_weight_decay_and_errors():
    m = build_mixer("hyena", D)
    nwd = m.no_weight_decay()
    # the implicit filter and the skip bias, besides the biases every mixer leaves undecayed
    assert "filter_bias" in nwd and all(n.startswith("filter.") or n.endswith("bias") for n in nwd)
    assert {n for n, _ in m.filter.named_parameters(prefix="filter")} <= nwd
    assert "in_proj.weight" not in nwd
    with pytest.raises(ValueError, match=r"hyena: order must be an int >= 2, got 1"):
        build_mixer("hyena", D, order=1)
    with pytest.raises(ValueError, match=r"emb_dim must be an odd int >= 3 \(1 \+ 2 bands\), got 4"):
        build_mixer("hyena", D, emb_dim=4)
    with pytest.raises(ValueError, match=r"filter_scale must be a positive number, got 0"):
        build_mixer("hyena", D, filter_scale=0)
