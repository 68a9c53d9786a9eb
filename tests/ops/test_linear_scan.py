"""linear_scan (chunked, recursive, custom backward) == linear_scan_ref (the loop) in values and
gradients of a, b, h0: real and complex, fp32 and fp64, lengths that are not multiples of the
chunk (and long enough for two levels of recursion), a near 0, near 1, negative; broadcasting; errors. Both CPU paths (pure PyTorch, compiled kernel:
the ``cpu_path`` fixture)."""
import pytest
import torch

import archs.ops.linear_rnn.scan as scan_module
from archs.ops import linear_scan, linear_scan_ref
from archs.ops.linear_rnn.scan import CHUNK
from helpers import assert_rel_close

TOL = {torch.float32: 1e-5, torch.complex64: 1e-5, torch.float64: 1e-10, torch.complex128: 1e-10}
DTYPES = [torch.float32, torch.float64, torch.complex64, torch.complex128]
LENGTHS = [1, 7, CHUNK + 1, 3 * CHUNK + 5, CHUNK * CHUNK + 77]  # the last: two levels of recursion
SMALL = 4  # a small chunk size for deep recursion at short lengths


@pytest.fixture
def small_chunk(monkeypatch):
    monkeypatch.setattr(scan_module, "CHUNK", SMALL)


def _decay(shape, dtype, kind, g):
    """a of the given kind: 'mixed' (|a| in [0, 1), some exact zeros), 'near0', 'near1', 'negative'."""
    real = torch.float64
    if kind == "near1":
        r = 1 - 1e-6 * torch.rand(shape, generator=g, dtype=real)
    elif kind == "near0":
        r = 1e-6 * torch.rand(shape, generator=g, dtype=real)
    else:
        r = torch.rand(shape, generator=g, dtype=real)
        if kind == "mixed":
            r = torch.where(torch.rand(shape, generator=g, dtype=real) < 0.05, 0.0, r)
    if dtype.is_complex:
        a = torch.polar(r, 2 * torch.pi * torch.rand(shape, generator=g, dtype=real))
    else:
        a = -r if kind == "negative" else r
    return a.to(dtype)


def _compare(a, b, h0, dtype, what):
    ins = [t for t in (a, b, h0) if t is not None]
    for t in ins:
        t.requires_grad_(True)
    h_fast = linear_scan(a, b, h0)
    h_ref = linear_scan_ref(a, b, h0)
    assert h_fast.dtype == h_ref.dtype == dtype
    assert_rel_close(h_fast, h_ref, TOL[dtype], f"{what}: values")
    gh = torch.randn(h_ref.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    g_fast = torch.autograd.grad(h_fast, ins, gh)
    g_ref = torch.autograd.grad(h_ref, ins, gh)
    for nm, x, y in zip("a b h0".split(), g_fast, g_ref):
        assert_rel_close(x, y, TOL[dtype], f"{what}: grad of {nm}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("L", LENGTHS)
@pytest.mark.parametrize("with_h0", [False, True], ids=["no_h0", "h0"])
def test_fast_matches_ref(dtype, L, with_h0, cpu_path):
    if L > 3 * CHUNK and not with_h0 and dtype in (torch.float64, torch.complex64):
        pytest.skip("covered by the other dtypes at this length (keeps the suite fast)")
    g = torch.Generator().manual_seed(L)
    a = _decay((2, L, 3), dtype, "mixed", g)
    b = torch.randn(2, L, 3, generator=g, dtype=dtype)
    h0 = torch.randn(2, 3, generator=g, dtype=dtype) if with_h0 else None
    _compare(a, b, h0, dtype, f"L={L}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("kind", ["near0", "near1", "negative"])
def test_extreme_decays(dtype, kind, small_chunk, cpu_path):
    if kind == "negative" and dtype.is_complex:
        pytest.skip("complex decays already cover every phase")
    g = torch.Generator().manual_seed(3)
    L = 2 * SMALL**3 + 9  # three recursion levels
    a = _decay((1, L, 4), dtype, kind, g)
    b = torch.randn(1, L, 4, generator=g, dtype=dtype)
    h0 = torch.randn(1, 4, generator=g, dtype=dtype)
    _compare(a, b, h0, dtype, kind)


def test_all_zero_decay_is_identity_on_b(cpu_path):
    b = torch.randn(2, 100, 5)
    assert torch.equal(linear_scan(torch.zeros_like(b), b, torch.randn(2, 5)), b)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=["f64", "c128"])
def test_broadcast_and_feature_dims(dtype, cpu_path):
    """a time-invariant a of shape (1, 1, ...) and extra feature dims; grads reduce to input shapes."""
    g = torch.Generator().manual_seed(5)
    L = 2 * CHUNK + 3
    a = _decay((1, 1, 3, 2), dtype, "mixed", g)
    b = torch.randn(2, L, 3, 2, generator=g, dtype=dtype)
    h0 = torch.randn(2, 3, 2, generator=g, dtype=dtype)
    _compare(a, b, h0, dtype, "broadcast a")


def test_real_decay_complex_input_promotes(cpu_path):
    g = torch.Generator().manual_seed(6)
    a = torch.rand(2, 40, 3, generator=g, dtype=torch.float64)
    b = torch.randn(2, 40, 3, generator=g, dtype=torch.complex128)
    _compare(a, b, None, torch.complex128, "real a, complex b")


def test_gradcheck_complex(small_chunk, cpu_path):
    g = torch.Generator().manual_seed(7)
    L = SMALL * SMALL + 3
    a = _decay((1, L, 2), torch.complex128, "mixed", g).requires_grad_()
    b = torch.randn(1, L, 2, generator=g, dtype=torch.complex128, requires_grad=True)
    h0 = torch.randn(1, 2, generator=g, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(linear_scan, (a, b, h0))


def test_empty_and_bf16(cpu_path):
    b = torch.randn(2, 0, 3)
    assert linear_scan(b, b).shape == (2, 0, 3)
    a = torch.rand(2, 70, 3, dtype=torch.bfloat16)
    b = torch.randn(2, 70, 3, dtype=torch.bfloat16)
    h = linear_scan(a, b)
    ref = linear_scan_ref(a.double(), b.double())
    assert h.dtype == torch.bfloat16 and (h.double() - ref).abs().max() < 0.1 * max(1, ref.abs().max())


def test_public_names_are_the_functions():
    import archs.ops
    from archs.ops.linear_rnn import linear_scan as fn

    assert archs.ops.linear_scan is fn and callable(archs.ops.linear_scan_ref)


@pytest.mark.parametrize(
    "a_shape,b_shape,h0_shape,match",
    [
        ((2, 5, 3), (2, 5, 4), None, r"a of shape \(2, 5, 3\) and b of shape \(2, 5, 4\) do not broadcast"),
        ((5,), (5,), None, "at least 2 dims"),
        ((2, 5, 3), (2, 5, 3), (2, 4), r"h0 has shape \(2, 4\); expected \(B, \.\.\.\) = \(2, 3\)"),
        ((2, 5, 3), (2, 5, 3), (2, 5, 3), r"h0 has shape \(2, 5, 3\)"),
    ],
)
def test_bad_shapes(a_shape, b_shape, h0_shape, match):
    h0 = None if h0_shape is None else torch.randn(h0_shape)
    for fn in (linear_scan, linear_scan_ref):
        with pytest.raises(ValueError, match=match):
            fn(torch.rand(a_shape), torch.randn(b_shape), h0)


def test_integer_inputs_rejected():
    with pytest.raises(ValueError, match="expected floating or complex"):
        linear_scan(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=["f64", "c128"])
@pytest.mark.parametrize("cotangent", ["expanded", "transposed"])
def test_gradient_of_h_with_any_strides(dtype, cotangent, cpu_path):
    """The incoming gradient may be a broadcast (from .sum()) or a non-contiguous view."""
    g = torch.Generator().manual_seed(8)
    L = 2 * CHUNK + 3
    a = _decay((2, L, 5), dtype, "mixed", g).requires_grad_()
    b = torch.randn(2, L, 5, generator=g, dtype=dtype, requires_grad=True)
    if cotangent == "expanded":
        gh = torch.ones((), dtype=dtype).expand(2, L, 5)
    else:
        gh = torch.randn(5, L, 2, generator=g, dtype=dtype).transpose(0, 2)
    got = torch.autograd.grad(linear_scan(a, b), (a, b), gh)
    want = torch.autograd.grad(linear_scan_ref(a, b), (a, b), gh)
    for x, y, nm in zip(got, want, "ab"):
        assert_rel_close(x, y, TOL[dtype], f"grad of {nm}")


def test_dispatch_takes_the_selected_path(cpu_path, monkeypatch):
    import archs.ops.linear_rnn.cpu as cpu

    calls = []
    real = cpu.LinearScanCPU.apply
    monkeypatch.setattr(cpu.LinearScanCPU, "apply", lambda *a: calls.append(1) or real(*a))
    linear_scan(torch.rand(2, 9, 3), torch.randn(2, 9, 3))
    assert len(calls) == (1 if cpu_path == "compiled" else 0)
