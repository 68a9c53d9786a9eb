"""selective_scan (fast) == selective_scan_ref (sequential definition): values and grads of every
input, fp32 and fp64, odd lengths, grouped B/C, initial/last state; split scans; bad shapes.
Every path (pure PyTorch, compiled CPU kernel: the ``cpu_path`` fixture) is tested."""
import pytest
import torch

from archs.ops import selective_scan, selective_scan_ref
from archs.ops.selective_scan import cpu, scan
from helpers import close_for_dtype as _close, assert_outputs_and_grads_match



def _inputs(b, d, n, l, g, dtype, seed, full=True):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)
    Bshape = (b, n, l) if g == 0 else (b, g, n, l)
    ins = {
        "u": r(b, d, l), "delta": r(b, d, l) * 0.5, "A": -torch.rand(d, n, generator=gen, dtype=dtype) * 3 - 0.1,
        "B": r(*Bshape), "C": r(*Bshape),
    }
    if full:
        ins.update(D=r(d), z=r(b, d, l), delta_bias=r(d) * 0.3, initial_state=r(b, d, n))
    return {k: v.requires_grad_() for k, v in ins.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("l", [1, 7, 37, 130])
@pytest.mark.parametrize("g", [0, 1, 2])
@pytest.mark.parametrize("block", [None, 3, 16])
def test_fast_matches_ref_values_and_grads(dtype, l, g, block, monkeypatch, cpu_path):
    if block is not None:  # several cache blocks / checkpoint blocks (default: one block)
        if l == 1:
            pytest.skip("one step is one block")
        monkeypatch.setattr(scan, "BLOCK_ELEMS", block * 2 * 4 * 3)
        monkeypatch.setattr(cpu, "CKPT", block)
    ins = _inputs(2, 4, 3, l, g, dtype, seed=l + 100 * g)
    kw = dict(delta_softplus=True, return_last_state=True)
    assert_outputs_and_grads_match(selective_scan(**ins, **kw), selective_scan_ref(**ins, **kw), ins, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [8, 16])
def test_common_state_sizes(n, dtype, cpu_path, monkeypatch):
    """d_state 8 and 16 (Mamba's default), several checkpoint blocks, channels not a multiple of the lanes."""
    monkeypatch.setattr(cpu, "CKPT", 8)
    ins = _inputs(2, 22, n, 21, 2, dtype, seed=n)
    kw = dict(delta_softplus=True, return_last_state=True)
    assert_outputs_and_grads_match(selective_scan(**ins, **kw), selective_scan_ref(**ins, **kw), ins, dtype)


def test_minimal_arguments_and_no_softplus(cpu_path):
    ins = _inputs(1, 3, 2, 9, 0, torch.float64, seed=1, full=False)
    _close(selective_scan(**ins), selective_scan_ref(**ins), torch.float64)
    (selective_scan(**ins) ** 2).sum().backward()  # grads without D, z, bias or state


def test_split_scan_continues_from_last_state(cpu_path):
    ins = _inputs(2, 4, 3, 23, 2, torch.float64, seed=3, full=False)
    u, dl, A, B, C = (ins[k].detach() for k in ("u", "delta", "A", "B", "C"))
    full = selective_scan(u, dl, A, B, C, return_last_state=True)
    y1, s1 = selective_scan(u[..., :10], dl[..., :10], A, B[..., :10], C[..., :10], return_last_state=True)
    y2, s2 = selective_scan(u[..., 10:], dl[..., 10:], A, B[..., 10:], C[..., 10:], return_last_state=True, initial_state=s1)
    _close(torch.cat([y1, y2], -1), full[0], torch.float64)
    _close(s2, full[1], torch.float64)


def test_low_precision_runs(cpu_path):
    ins = {k: v.detach().bfloat16() for k, v in _inputs(2, 4, 3, 11, 0, torch.float32, seed=5).items()}
    y = selective_scan(**ins, delta_softplus=True)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_empty_sequence(cpu_path):
    ins = _inputs(2, 4, 3, 0, 0, torch.float32, seed=5)
    y, s = selective_scan(**ins, return_last_state=True)
    assert y.shape == (2, 4, 0) and torch.equal(s, ins["initial_state"])


def test_bad_shapes_raise_clear_errors():
    ins = {k: v.detach() for k, v in _inputs(2, 4, 3, 5, 0, torch.float32, seed=0, full=False).items()}
    bad = dict(ins, A=torch.randn(6, 3))
    with pytest.raises(ValueError, match=r"A has 6 channels but u has 4; expected A of shape \(d, n\) = \(4, n\)"):
        selective_scan(**bad)
    with pytest.raises(ValueError, match="3 groups, which does not divide d = 4"):
        selective_scan(**dict(ins, B=torch.randn(2, 3, 3, 5), C=torch.randn(2, 3, 3, 5)))
    with pytest.raises(ValueError, match=r"u must have shape \(b, d, l\)"):
        selective_scan(**dict(ins, u=torch.randn(4, 5)))
    with pytest.raises(ValueError, match=r"B must have shape \(b, n, l\) = \(2, 3, 5\)"):
        selective_scan(**dict(ins, B=torch.randn(2, 4, 5)))
    with pytest.raises(ValueError, match=r"D must have shape \(d,\)"):
        selective_scan(**ins, D=torch.randn(3))
    with pytest.raises(ValueError, match="initial_state"):
        selective_scan(**ins, initial_state=torch.randn(2, 4, 4))


def test_dispatch_takes_the_selected_path(cpu_path, monkeypatch):
    calls = []
    real = cpu.selective_scan_cpu
    monkeypatch.setattr(cpu, "selective_scan_cpu", lambda *a, **k: calls.append(1) or real(*a, **k))
    ins = _inputs(1, 2, 2, 5, 0, torch.float32, seed=2, full=False)
    selective_scan(**ins)
    assert len(calls) == (1 if cpu_path == "compiled" else 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transposed_views_as_in_mamba(dtype, cpu_path):
    """u, delta, z as (b, l, d) -> (b, d, l) views and B, C as slices of one (b, l, ...) projection,
    as the Mamba mixer passes them (the compiled path reads them in place, with their strides)."""
    gen = torch.Generator().manual_seed(11)
    b, d, n, l = 2, 20, 16, 45
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)
    xz = r(b, l, 3 * d).requires_grad_()
    proj = r(b, l, 3 + 2 * n).requires_grad_()
    A = (-torch.rand(d, n, generator=gen, dtype=dtype) * 3 - 0.1).requires_grad_()
    D, bias = r(d).requires_grad_(), (r(d) * 0.3).requires_grad_()
    kw = dict(D=D, delta_bias=bias, delta_softplus=True, return_last_state=True)

    def args():
        u, delta, z = xz.transpose(1, 2).split(d, dim=1)  # (b, d, l) views, time stride 3d
        _, Bm, Cm = proj.split([3, n, n], dim=-1)  # (b, l, n) views, row stride 3 + 2n
        assert not z.is_contiguous() and Bm.stride(-1) == 1
        return (u, delta, A, Bm.transpose(1, 2), Cm.transpose(1, 2)), z

    ins = {"xz": xz, "proj": proj, "A": A, "D": D, "bias": bias}
    (a, z), (a2, z2) = args(), args()
    fast = selective_scan(*a, z=z, **kw)
    ref = selective_scan_ref(*a2, z=z2, **kw)
    assert_outputs_and_grads_match(fast, ref, ins, dtype)
