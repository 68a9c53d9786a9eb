"""mLSTM op: chunkwise == sequential ref (values and gradients of q, k, v, i, log_f and the initial
(C, n, m) state) on lengths that are not multiples of the chunk, fp32 and fp64; strong gates stay
finite; the ref's steps match the closed-form unstabilized memory; bad shapes raise clear errors."""
import pytest
import torch
import torch.nn.functional as F

from archs.ops.mlstm import chunk_mlstm, mlstm_ref
from helpers import close_for_dtype as _close

B, H, K, V = 2, 2, 8, 6


def _inputs(T, dtype, with_init, gen, gate_scale=1.0):
    mk = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)
    ins = {"q": mk(B, T, H, K), "k": mk(B, T, H, K), "v": mk(B, T, H, V),
           "i": gate_scale * mk(B, T, H), "log_f": F.logsigmoid(gate_scale * mk(B, T, H) + 2)}
    if with_init:
        ins["C0"], ins["n0"], ins["m0"] = mk(B, H, K, V), mk(B, H, K), mk(B, H)
    return {n: t.requires_grad_() for n, t in ins.items()}


def _run(fn, ins, **kw):
    init = (ins["C0"], ins["n0"], ins["m0"]) if "C0" in ins else None
    h, (C, n, m) = fn(ins["q"], ins["k"], ins["v"], ins["i"], ins["log_f"], initial_state=init, output_final_state=True, **kw)
    return h, C, n, m


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("with_init", [False, True], ids=["s0", "init"])
@pytest.mark.parametrize("T", [1, 7, 65, 130])
def test_chunk_matches_ref(T, with_init, dtype):
    gen = torch.Generator().manual_seed(T + 1000 * with_init)
    ins = _inputs(T, dtype, with_init, gen)
    ref = _run(mlstm_ref, ins)
    cot = [torch.randn(r.shape, generator=gen, dtype=dtype) for r in ref]
    g_ref = torch.autograd.grad(sum((r * c).sum() for r, c in zip(ref, cot)), list(ins.values()))
    for cs in (64, 16):
        out = _run(chunk_mlstm, ins, chunk_size=cs)
        assert out[0].shape == (B, T, H, V) and out[0].dtype == dtype
        for what, a, r in zip(("h", "C", "n", "m"), out, ref):
            _close(a, r, dtype, f"chunk{cs} T={T} {what}")
        grads = torch.autograd.grad(sum((a * c).sum() for a, c in zip(out, cot)), list(ins.values()))
        for name, a, r in zip(ins, grads, g_ref):
            _close(a, r, dtype, f"chunk{cs} T={T} grad {name}")


def test_ref_is_the_unstabilized_mlstm():
    """exp(m) C and exp(m) n are the plain sums of exp(i_s + sum log f) k v^T and k (xLSTM eqs. 19-21)."""
    gen = torch.Generator().manual_seed(3)
    T = 9
    ins = {n: t.detach() for n, t in _inputs(T, torch.float64, False, gen).items()}
    h, C, n, m = _run(mlstm_ref, ins)
    q, k, v, i, lf = ins["q"], ins["k"], ins["v"], ins["i"], ins["log_f"]
    cum = lf.cumsum(1)  # (B, T, H)
    w = (cum[:, -1:] - cum + i).exp()  # (B, T, H) weight of token s in the final memory
    C_plain = torch.einsum("bth,bthk,bthv->bhkv", w, k, v)
    n_plain = torch.einsum("bth,bthk->bhk", w, k)
    _close(m.exp()[..., None, None] * C, C_plain, torch.float64, "exp(m) C")
    _close(m.exp()[..., None] * n, n_plain, torch.float64, "exp(m) n")
    qs = q[:, -1] * K ** -0.5
    want = torch.einsum("bhk,bhkv->bhv", qs, C_plain) / (torch.maximum((qs * n_plain).sum(-1).abs(), torch.ones(())) + 1e-6 * m.exp())[..., None]
    _close(h[:, -1], want, torch.float64, "h_T from the plain memory")


@pytest.mark.parametrize("fn", [mlstm_ref, chunk_mlstm])
def test_strong_gates_stay_finite(fn):
    gen = torch.Generator().manual_seed(0)
    ins = _inputs(70, torch.float32, False, gen, gate_scale=60.0)  # exp(60) overflows without the stabilizer
    h, C, n, m = _run(fn, ins)
    assert all(torch.isfinite(t).all() for t in (h, C, n, m))
    h.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in ins.values())


def test_exp_forget_gate_positive_log_f():
    """An exp forget gate can have log f > 0; the stabilizer keeps the chunkwise form exact."""
    gen = torch.Generator().manual_seed(5)
    ins = _inputs(40, torch.float64, True, gen)
    ins["log_f"] = torch.randn(B, 40, H, generator=gen, dtype=torch.float64).requires_grad_()
    for a, r in zip(_run(chunk_mlstm, ins, chunk_size=16), _run(mlstm_ref, ins)):
        _close(a, r, torch.float64, "exp forget gate")


def test_bad_shapes_raise():
    q = torch.randn(B, 5, H, K)
    v = torch.randn(B, 5, H, V)
    g = torch.randn(B, 5, H)
    with pytest.raises(ValueError, match=r"i \(input gate pre-activation\) has shape \(2, 5\)"):
        chunk_mlstm(q, q, v, g[..., 0], g)
    with pytest.raises(ValueError, match="initial_state must be \\(C, n, m\\)"):
        chunk_mlstm(q, q, v, g, g, initial_state=(torch.zeros(B, H, K, V), torch.zeros(B, H, K)))
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
        chunk_mlstm(q, q, v, g, g, chunk_size=0)
    with pytest.raises(ValueError, match="eps must be a non-negative number, got -1"):
        mlstm_ref(q, q, v, g, g, eps=-1)
