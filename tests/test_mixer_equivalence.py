"""The equivalence suite: one generic test per property, over every registered mixer and its
declared ``test_variants``. Registering a mixer is all it takes to have it tested here.

For random inputs of odd lengths: forward == prefill == token-by-token step == prefill of a
prefix then of the rest with the carried state (fp32 1e-5 relative, fp64 1e-10); causality;
finite gradients; bf16 forward; ``state_size`` == numbers actually held in the state.
Each mixer also runs wrapped in ``ShortConv`` (the Zoology-style conv in front of a mixer).
"""
from __future__ import annotations

import pytest
import torch

from archs import ShortConv, build_mixer, mixer_class, mixer_names
from helpers import TOL, assert_rel_close

D = 32
B = 2
LENGTHS = [1, 7, 37, 130]


def _cases():
    for name in mixer_names():
        yield pytest.param(name, {}, id=name)
        for variant, kw in mixer_class(name).test_variants.items():
            yield pytest.param(name, kw, id=f"{name}-{variant}")
        yield pytest.param(name, {SHORT_CONV: 3}, id=f"{name}-short_conv3")


SHORT_CONV = "__short_conv"  # not a mixer kwarg: wrap the default mixer in ShortConv(conv_size=...)
CASES = list(_cases())


def _build(name, kw, dtype):
    torch.manual_seed(0)
    kw = dict(kw)
    conv = kw.pop(SHORT_CONV, None)
    m = build_mixer(name, D, **kw)
    if conv is not None:
        m = ShortConv(m, conv)
    return m.to(dtype).eval()


def _steps(m, x, state):
    ys = []
    for t in range(x.shape[1]):
        y, state = m.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1), state


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name,kw", CASES)
def test_forward_prefill_step_split_agree(name, kw, dtype):
    m = _build(name, kw, dtype)
    tol = TOL[dtype]
    with torch.no_grad():
        for L in LENGTHS:
            x = torch.randn(B, L, D, dtype=dtype)
            y = m(x)
            assert y.shape == (B, L, D) and y.dtype == dtype
            y_pre, _ = m.prefill(x)
            assert_rel_close(y_pre, y, tol, f"{name} L={L} prefill vs forward")
            y_step, _ = _steps(m, x, m.init_state(B, dtype=dtype))
            assert_rel_close(y_step, y, tol, f"{name} L={L} step vs forward")
            for cut in sorted({1, L // 3, L - 1} - {0, L}):
                ya, st = m.prefill(x[:, :cut])
                yb, st = m.prefill(x[:, cut:], st)
                assert_rel_close(torch.cat([ya, yb], 1), y, tol, f"{name} L={L} split prefill at {cut}")
            if L > 2:  # prefill, then continue token by token from the carried state
                cut = L // 2
                ya, st = m.prefill(x[:, :cut])
                yb, _ = _steps(m, x[:, cut:], st)
                assert_rel_close(torch.cat([ya, yb], 1), y, tol, f"{name} L={L} prefill then step")


@pytest.mark.parametrize("name,kw", CASES)
def test_causal(name, kw):
    m = _build(name, kw, torch.float64)
    L, p = 37, 20
    x = torch.randn(B, L, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, p:] = torch.randn(B, L - p, D, dtype=torch.float64)
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    assert_rel_close(y2[:, :p], y[:, :p], 1e-12, f"{name}: outputs before {p} changed with future inputs")
    assert (y2[:, p:] - y[:, p:]).abs().max() > 1e-6, f"{name}: output ignores its input"


@pytest.mark.parametrize("name,kw", CASES)
def test_gradients_finite(name, kw):
    m = _build(name, kw, torch.float32).train()
    x = torch.randn(B, 37, D, requires_grad=True)
    m(x).square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: parameter {pname} gets no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"


@pytest.mark.parametrize("name,kw", CASES)
def test_bf16_forward(name, kw):
    m = _build(name, kw, torch.bfloat16)
    x = torch.randn(B, 37, D, dtype=torch.bfloat16)
    with torch.no_grad():
        y = m(x)
        y_pre, st = m.prefill(x)
        y_t, _ = m.step(x[:, 0], st)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    assert torch.isfinite(y_t.float()).all()
    ref = _build(name, kw, torch.float32)(x.float())
    rel = (y.float() - ref).norm() / ref.norm().clamp_min(1e-6)
    assert rel < 0.1, f"{name}: bf16 forward differs from fp32 by {rel:.3f} (relative L2)"


@pytest.mark.parametrize("name,kw", CASES)
def test_state_size_matches_state(name, kw):
    m = _build(name, kw, torch.float32)
    for L in (1, 37, 130):
        with torch.no_grad():
            _, st = m.prefill(torch.randn(B, L, D))
        assert st.numel_per_sequence() == m.state_size(L), f"{name}: state_size({L})={m.state_size(L)} but the state holds {st.numel_per_sequence()}"
    assert m.flops_per_token(128) > 0


@pytest.mark.parametrize("name,kw", CASES)
def test_decode_from_init_state_with_max_len(name, kw):
    """init_state(max_seq_len=...) (what generate uses) gives the same decode as the default."""
    m = _build(name, kw, torch.float64)
    x = torch.randn(B, 9, D, dtype=torch.float64)
    with torch.no_grad():
        y, _ = _steps(m, x, m.init_state(B, dtype=torch.float64, max_seq_len=9))
        assert_rel_close(y, m(x), 1e-10, f"{name}: step from init_state(max_seq_len=9)")
