"""long_conv: the FFT form == the sequential ref in values and gradients (odd lengths, history,
bias); a split sequence with history == the whole; errors name the bad value."""
import pytest
import torch

from archs.ops.long_conv import long_conv, long_conv_ref
from helpers import close_for_dtype as _close


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("L,P", [(1, 0), (7, 0), (37, 0), (130, 0), (5, 3), (19, 40)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_fft_matches_ref(dtype, L, P, with_bias):
    g = torch.Generator().manual_seed(L + 7 * P)
    B, C = 2, 3
    u = torch.randn(B, C, L, generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(C, P + L + 2, generator=g, dtype=dtype, requires_grad=True)  # longer than needed
    bias = torch.randn(C, generator=g, dtype=dtype, requires_grad=True) if with_bias else None
    hist = torch.randn(B, C, P, generator=g, dtype=dtype, requires_grad=True) if P else None
    ins = [t for t in (u, k, bias, hist) if t is not None]
    y1, y2 = long_conv(u, k, bias, hist), long_conv_ref(u, k, bias, hist)
    assert y1.shape == (B, C, L)
    _close(y1, y2, dtype)
    dy = torch.randn(y1.shape, generator=g, dtype=dtype)
    for a, r in zip(torch.autograd.grad((y1 * dy).sum(), ins), torch.autograd.grad((y2 * dy).sum(), ins)):
        _close(a, r, dtype)


def test_split_with_history_equals_whole():
    torch.manual_seed(0)
    u, k, b = torch.randn(2, 4, 50, dtype=torch.float64), torch.randn(4, 50, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    whole = long_conv(u, k, b)
    parts = [long_conv(u[:, :, :20], k, b), long_conv(u[:, :, 20:21], k, b, u[:, :, :20]), long_conv(u[:, :, 21:], k, b, u[:, :, :21])]
    _close(torch.cat(parts, 2), whole, torch.float64)


def test_bf16_runs_in_fp32():
    u, k = torch.randn(1, 2, 33, dtype=torch.bfloat16), torch.randn(2, 33, dtype=torch.bfloat16)
    y = long_conv(u, k)
    assert y.dtype == torch.bfloat16
    ref = long_conv_ref(u.float(), k.float())
    assert (y.float() - ref).abs().max() <= 0.05 * ref.abs().max()


def test_errors():
    u = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"u must have shape \(B, C, L\), got \(3, 8\)"):
        long_conv(u[0], torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"k must have shape \(C, K\) = \(3, K\), got \(4, 8\)"):
        long_conv(u, torch.randn(4, 8))
    with pytest.raises(ValueError, match=r"the filter k has 8 taps but 2 history \+ 8 new positions need 10"):
        long_conv(u, torch.randn(3, 8), history=torch.randn(2, 3, 2))
    with pytest.raises(ValueError, match=r"history must have shape \(B, C, P\) = \(2, 3, P\), got \(1, 3, 2\)"):
        long_conv(u, torch.randn(3, 10), history=torch.randn(1, 3, 2))
    with pytest.raises(ValueError, match=r"bias must have shape \(C,\) = \(3,\), got \(2,\)"):
        long_conv(u, torch.randn(3, 8), bias=torch.randn(2))
