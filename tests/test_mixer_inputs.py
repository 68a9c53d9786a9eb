"""Edge inputs, for every registered mixer and its ``test_variants`` (and wrapped in ``ShortConv``):
an empty batch (B = 0) or an empty sequence (L = 0) gives an empty output from forward, prefill and
step; integer input, a state of another mixer, of another dtype or on another device are clear
errors naming both sides; ``max_seq_len`` (when set) is enforced.
"""
from __future__ import annotations

import pytest
import torch

from archs import build_mixer, mixer_names
from helpers import assert_rel_close
from test_mixer_equivalence import CASES, D, _build


@pytest.mark.parametrize("name,kw", CASES)
def test_empty_batch_and_sequence(name, kw):
    m = _build(name, kw, torch.float32)
    with torch.no_grad():
        for B, L in ((0, 5), (2, 0), (0, 0)):
            x = torch.randn(B, L, D)
            assert m(x).shape == (B, L, D), f"{name}: forward on {(B, L, D)}"
            y, st = m.prefill(x)
            assert y.shape == (B, L, D) and st.batch_size == B, f"{name}: prefill on {(B, L, D)}"
        y_t, st = m.step(torch.randn(0, D), m.init_state(0))
        assert y_t.shape == (0, D) and st.batch_size == 0
        # an empty prefill leaves the state as it was: the continuation equals a fresh run
        x = torch.randn(2, 6, D)
        _, st = m.prefill(x[:, :0])
        y, _ = m.prefill(x, st)
        assert_rel_close(y, m(x), 1e-5, f"{name}: prefill after an empty prefill")


@pytest.mark.parametrize("name,kw", CASES)
def test_integer_input_is_an_error(name, kw):
    m = _build(name, kw, torch.float32)
    with pytest.raises(TypeError, match="floating-point.*int64"):
        m(torch.ones(2, 3, D, dtype=torch.long))
    with pytest.raises(TypeError, match="floating-point.*int32"):
        m.prefill(torch.ones(2, 3, D, dtype=torch.int32))
    with pytest.raises(TypeError, match="floating-point.*int64"):
        m.step(torch.ones(2, D, dtype=torch.long), m.init_state(2))


def _foreign_state(m):
    """A state of another registered mixer whose state class differs from m's."""
    own = type(m.init_state(2))
    for other in mixer_names():
        st = build_mixer(other, D).init_state(2)
        if type(st) is not own:
            return st
    raise AssertionError("every registered mixer has the same state class")


@pytest.mark.parametrize("name,kw", CASES)
def test_foreign_state_is_an_error(name, kw):
    m = _build(name, kw, torch.float32)
    x = torch.randn(2, 3, D)
    st = _foreign_state(m)
    for call in (lambda: m.prefill(x, st), lambda: m.step(x[:, 0], st)):
        with pytest.raises(TypeError, match=f"{type(st).__name__}.*{type(m.init_state(2)).__name__}"):
            call()
    # a state of another dtype
    st64 = m.init_state(2, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64.*float32"):
        m.prefill(x, st64)
    with pytest.raises(TypeError, match="float64.*float32"):
        m.step(x[:, 0], st64)
    # a state on another device (meta stands in for a GPU)
    st_meta = m.init_state(2, device="meta")
    with pytest.raises(ValueError, match="meta.*cpu"):
        m.step(x[:, 0], st_meta)


@pytest.mark.parametrize("name", mixer_names())
def test_max_seq_len_is_enforced(name):
    m = build_mixer(name, D).eval()
    assert m.max_seq_len is None  # no mixer here has a hard limit
    m.max_seq_len = 8
    with torch.no_grad():
        assert m(torch.randn(1, 8, D)).shape == (1, 8, D)
        with pytest.raises(ValueError, match="length 9.*max_seq_len=8"):
            m(torch.randn(1, 9, D))
        with pytest.raises(ValueError, match="length 9.*max_seq_len=8"):
            m.prefill(torch.randn(1, 9, D))
