"""The linear-RNN mixers beyond the generic equivalence suite: constructor errors, the
parametrisations' invariants (gate bounds, LRU ring init), state layout and dtype."""
import math

import pytest
import torch

from archs import build_mixer


@pytest.mark.parametrize(
    "name,kw,match",
    [
        ("hgrn", {"lower_bound": 1.0}, r"lower_bound must be a number in \[0, 1\), got 1.0"),
        ("hgrn", {"lower_bound": -0.1}, "lower_bound"),
        ("lru", {"r_min": 0.9, "r_max": 0.5}, "expected 0 <= r_min < r_max < 1, got r_min=0.9, r_max=0.5"),
        ("lru", {"r_max": 1.0}, "r_max=1.0"),
        ("lru", {"d_state": 0}, "d_state must be a positive int"),
        ("lru", {"max_phase": 0.0}, "max_phase must be > 0"),
        ("mingru", {"expand": 0}, "expand must be a positive number"),
        ("lstm", {"hidden": -3}, "hidden must be a positive int or None, got -3"),
    ],
)
def test_bad_constructor_args(name, kw, match):
    with pytest.raises(ValueError, match=match):
        build_mixer(name, 32, **kw)


def test_hgrn_forget_gate_respects_lower_bound():
    m = build_mixer("hgrn", 16, lower_bound=0.7)
    f, b, g = m._gates(10 * torch.randn(3, 50, 16))
    assert f.min() >= 0.7 and f.max() <= 1.0


def test_lru_ring_init_and_gamma():
    m = build_mixer("lru", 32, d_state=64, r_min=0.4, r_max=0.9, max_phase=math.pi / 10)
    lam = m._lambda(torch.float64)
    r = lam.abs()
    assert r.min() >= 0.4 - 1e-6 and r.max() <= 0.9 + 1e-6
    assert lam.angle().min() >= 0 and lam.angle().max() <= math.pi / 10 + 1e-6
    gamma = torch.exp(m.gamma_log.double())
    assert torch.allclose(gamma, torch.sqrt(1 - r**2), atol=1e-6)


def test_lru_state_is_a_real_view_and_half_precision_computes_in_fp32():
    m = build_mixer("lru", 32, d_state=8).to(torch.bfloat16)
    st = m.init_state(2)
    assert st.h.shape == (2, 8, 2) and st.h.dtype == torch.float32
    assert st.numel_per_sequence() == m.state_size(5) == 16
    y, st = m.prefill(torch.randn(2, 5, 32, dtype=torch.bfloat16), st)
    assert y.dtype == torch.bfloat16 and st.h.abs().sum() > 0


def test_mingru_candidate_activation_is_positive_and_continuous():
    from archs.mixers.mingru import _g

    v = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    assert (_g(v) > 0).all()
    assert abs(_g(torch.tensor(-1e-12, dtype=torch.float64)) - _g(torch.tensor(0.0, dtype=torch.float64))) < 1e-9


def test_lstm_state_is_batch_first_and_projection_only_when_needed():
    m = build_mixer("lstm", 32, hidden=48)
    st = m.init_state(3)
    assert st.h.shape == st.c.shape == (3, 48) and m.out_proj is not None
    assert build_mixer("lstm", 32).out_proj is None

