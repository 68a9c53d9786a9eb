"""ssd (chunked) == ssd_ref (sequential definition): values and grads of every input, fp32 and
fp64, lengths that are not multiples of the chunk, groups, D of both shapes; split; errors."""
import pytest
import torch

from archs.ops import ssd, ssd_ref
from archs.ops.ssd import segsum
from helpers import close_for_dtype as _close, assert_outputs_and_grads_match



def _inputs(b, l, h, p, g, n, dtype, seed, D_shape=None, full=True):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)
    ins = {"x": r(b, l, h, p), "dt": r(b, l, h) * 0.5, "A": -torch.rand(h, generator=gen, dtype=dtype) * 4 - 0.1,
           "B": r(b, l, g, n), "C": r(b, l, g, n)}
    if full:
        ins.update(z=r(b, l, h, p), dt_bias=r(h) * 0.3, initial_states=r(b, h, p, n))
        if D_shape is not None:
            ins["D"] = r(*D_shape)
    return {k: v.requires_grad_() for k, v in ins.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("l", [1, 7, 37, 130])
@pytest.mark.parametrize("g, D_shape", [(1, (4,)), (2, (4, 3)), (4, None)])
def test_fast_matches_ref_values_and_grads(dtype, l, g, D_shape):
    ins = _inputs(2, l, 4, 3, g, 5, dtype, seed=l + 10 * g, D_shape=D_shape)
    kw = dict(chunk_size=16, dt_softplus=True, return_final_states=True)
    assert_outputs_and_grads_match(ssd(**ins, **kw), ssd_ref(**ins, **kw), ins, dtype)


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_chunk_size_does_not_change_result(chunk_size):
    ins = {k: v.detach() for k, v in _inputs(1, 23, 2, 3, 1, 4, torch.float64, seed=2, full=False).items()}
    _close(ssd(**ins, chunk_size=chunk_size), ssd_ref(**ins), torch.float64)


def test_strong_decay_stays_finite():
    ins = {k: v.detach() for k, v in _inputs(1, 200, 2, 3, 1, 4, torch.float32, seed=2, full=False).items()}
    ins["A"] = torch.tensor([-50.0, -1e4])
    ins["dt"] = ins["dt"].abs() * 10
    y = ssd(**ins, chunk_size=64)
    assert torch.isfinite(y).all()
    _close(y, ssd_ref(**ins), torch.float32)


def test_split_continues_from_final_states():
    ins = {k: v.detach() for k, v in _inputs(2, 29, 2, 3, 1, 4, torch.float64, seed=4, full=False).items()}
    y, s = ssd(**ins, chunk_size=8, return_final_states=True)
    first = {k: (v[:, :12] if v.dim() > 1 else v) for k, v in ins.items()}
    rest = {k: (v[:, 12:] if v.dim() > 1 else v) for k, v in ins.items()}
    y1, s1 = ssd(**first, chunk_size=8, return_final_states=True)
    y2, s2 = ssd(**rest, chunk_size=8, initial_states=s1, return_final_states=True)
    _close(torch.cat([y1, y2], 1), y, torch.float64)
    _close(s2, s, torch.float64)


def test_segsum():
    a = torch.randn(6, dtype=torch.float64)
    s = segsum(a)
    assert s[3, 1].item() == pytest.approx((a[2] + a[3]).item()) and s[2, 2].item() == 0 and s[1, 3].item() == float("-inf")


def test_low_precision_and_empty():
    ins = {k: v.detach().bfloat16() for k, v in _inputs(2, 11, 2, 3, 1, 4, torch.float32, seed=5, full=False).items()}
    assert ssd(**ins, dt_softplus=True).dtype == torch.bfloat16
    ins = {k: v.detach() for k, v in _inputs(2, 0, 2, 3, 1, 4, torch.float32, seed=5).items()}
    y, s = ssd(**ins, return_final_states=True)
    assert y.shape == (2, 0, 2, 3) and torch.equal(s, ins["initial_states"])


def test_bad_shapes_raise_clear_errors():
    ins = {k: v.detach() for k, v in _inputs(2, 5, 4, 3, 2, 4, torch.float32, seed=0, full=False).items()}
    with pytest.raises(ValueError, match=r"A must have shape \(h,\) = \(4,\)"):
        ssd(**dict(ins, A=torch.randn(3)))
    with pytest.raises(ValueError, match="3 groups, which does not divide h = 4"):
        ssd(**dict(ins, B=torch.randn(2, 5, 3, 4), C=torch.randn(2, 5, 3, 4)))
    with pytest.raises(ValueError, match=r"x must have shape \(b, l, h, p\)"):
        ssd(**dict(ins, x=torch.randn(2, 5, 12)))
    with pytest.raises(ValueError, match=r"dt must have shape \(b, l, h\)"):
        ssd(**dict(ins, dt=torch.randn(2, 5, 3)))
    with pytest.raises(ValueError, match="D must have shape"):
        ssd(**ins, D=torch.randn(3))
    with pytest.raises(ValueError, match="chunk_size"):
        ssd(**ins, chunk_size=0)
