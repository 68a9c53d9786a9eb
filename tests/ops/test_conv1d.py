"""causal_conv1d: fast (grouped F.conv1d, or the compiled CPU kernel: ``cpu_path``) == sequential ref in
values and grads; step == full; errors."""
import pytest
import torch

from archs.ops import causal_conv1d, causal_conv1d_ref, causal_conv1d_step
from helpers import close_for_dtype as _close



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("L", [1, 7, 37])
@pytest.mark.parametrize("W", [1, 4])
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("with_init", [False, True])
def test_fast_matches_ref(dtype, L, W, activation, with_init, cpu_path):
    g = torch.Generator().manual_seed(L * 10 + W)
    B, D = 2, 5
    x = torch.randn(B, D, L, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(D, W, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(D, generator=g, dtype=dtype, requires_grad=True)
    init = torch.randn(B, D, W - 1, generator=g, dtype=dtype, requires_grad=True) if with_init else None
    ins = [x, w, b] + ([init] if with_init else [])
    y1, f1 = causal_conv1d(x, w, b, activation, initial_states=init, return_final_states=True)
    y2, f2 = causal_conv1d_ref(x, w, b, activation, initial_states=init, return_final_states=True)
    _close(y1, y2, dtype)
    _close(f1, f2, dtype)
    dy = torch.randn(y1.shape, generator=g, dtype=dtype)
    df = torch.randn(f1.shape, generator=g, dtype=dtype)
    g1 = torch.autograd.grad((y1 * dy).sum() + (f1 * df).sum(), ins)
    g2 = torch.autograd.grad((y2 * dy).sum() + (f2 * df).sum(), ins)
    for a, r in zip(g1, g2):
        _close(a, r, dtype)


@pytest.mark.parametrize("state_len", [3, 4])
def test_step_and_split_match_full(state_len, cpu_path):
    torch.manual_seed(0)
    B, D, L, W = 2, 6, 11, 4
    x, w, b = torch.randn(B, D, L, dtype=torch.float64), torch.randn(D, W, dtype=torch.float64), torch.randn(D, dtype=torch.float64)
    full = causal_conv1d(x, w, b, "silu")
    state = x.new_zeros(B, D, state_len)
    ys = [causal_conv1d_step(x[:, :, t], state, w, b, "silu") for t in range(L)]
    _close(torch.stack(ys, 2), full, torch.float64)
    assert torch.equal(state[:, :, -1], x[:, :, -1])
    y_a, s_a = causal_conv1d(x[:, :, :5], w, b, "silu", return_final_states=True)
    y_b = causal_conv1d(x[:, :, 5:], w, b, "silu", initial_states=s_a)
    _close(torch.cat([y_a, y_b], 2), full, torch.float64)


def test_no_bias_and_empty(cpu_path):
    x, w = torch.randn(1, 3, 0), torch.randn(3, 4)
    assert causal_conv1d(x, w).shape == (1, 3, 0)
    assert causal_conv1d_ref(x, w).shape == (1, 3, 0)


def test_bad_input_errors(cpu_path):
    x = torch.randn(2, 4, 9)
    with pytest.raises(ValueError, match=r"weight must have shape \(D, W\) = \(4, W\)"):
        causal_conv1d(x, torch.randn(3, 4))
    with pytest.raises(ValueError, match="x must have shape"):
        causal_conv1d(x[0], torch.randn(4, 4))
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(x, torch.randn(4, 4), activation="relu")
    with pytest.raises(ValueError, match=r"initial_states must have shape \(B, D, W-1\) = \(2, 4, 3\)"):
        causal_conv1d(x, torch.randn(4, 4), initial_states=torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="conv_state"):
        causal_conv1d_step(x[:, :, 0], torch.zeros(2, 4, 2), torch.randn(4, 4))


@pytest.mark.parametrize("W,state_len", [(4, 3), (4, 5), (1, 0)])
def test_step_state_out_of_place_matches_full_in_values_and_gradients(W, state_len):
    """causal_conv1d_step_state with autograd on rebuilds the window (no in-place write): token by
    token it equals the full conv, and so do the gradients of x, weight and bias; with autograd
    off it is the in-place causal_conv1d_step."""
    from archs.ops.conv1d import causal_conv1d_step_state

    torch.manual_seed(0)
    B, D, L = 2, 5, 9
    x = torch.randn(B, D, L, dtype=torch.float64, requires_grad=True)
    w = torch.randn(D, W, dtype=torch.float64, requires_grad=True)
    b = torch.randn(D, dtype=torch.float64, requires_grad=True)
    full = causal_conv1d_ref(x, w, b, "silu")
    state, ys = x.new_zeros(B, D, state_len), []
    for t in range(L):
        y, new = causal_conv1d_step_state(x[:, :, t], state, w, b, "silu")
        assert new is not state and new.shape == state.shape
        ys.append(y)
        state = new
    steps = torch.stack(ys, 2)
    _close(steps, full, torch.float64)
    dy = torch.randn_like(full)
    g_steps = torch.autograd.grad((steps * dy).sum(), [x, w, b])
    g_full = torch.autograd.grad((full * dy).sum(), [x, w, b])
    for a, r in zip(g_steps, g_full):
        _close(a, r, torch.float64)
    with torch.no_grad():
        st = torch.zeros(B, D, state_len, dtype=torch.float64)
        y, same = causal_conv1d_step_state(x.detach()[:, :, 0], st, w, b, "silu")
    assert same is st and torch.equal(y, full[:, :, 0].detach())


def test_dispatch_takes_the_selected_path(cpu_path, monkeypatch):
    from archs.ops.conv1d import cpu

    calls = []
    real = cpu.causal_conv1d_cpu
    monkeypatch.setattr(cpu, "causal_conv1d_cpu", lambda *a, **k: calls.append(1) or real(*a, **k))
    causal_conv1d(torch.randn(2, 3, 9), torch.randn(3, 4), activation="silu")
    assert len(calls) == (1 if cpu_path == "compiled" else 0)


def test_transposed_input_view(cpu_path):
    """x as a (B, L, D) -> (B, D, L) view (as the Mamba mixers pass it): same values and grads."""
    g = torch.Generator().manual_seed(3)
    xl = torch.randn(2, 11, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    y1 = causal_conv1d(xl.transpose(1, 2), w, b, "silu")
    y2 = causal_conv1d_ref(xl.transpose(1, 2), w, b, "silu")
    _close(y1, y2, torch.float64)
    dy = torch.randn(y1.shape, generator=g, dtype=torch.float64)
    for a, r in zip(torch.autograd.grad(y1, (xl, w, b), dy), torch.autograd.grad(y2, (xl, w, b), dy)):
        _close(a, r, torch.float64)
