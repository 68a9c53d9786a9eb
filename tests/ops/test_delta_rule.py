"""Delta rule: chunked WY form == sequential ref (values and gradients of q, k, v, beta,
initial_state) on odd lengths, fp32 and fp64; the state really is a delta-rule memory; errors."""
import pytest
import torch
import torch.nn.functional as F

from archs.ops import chunk_delta_rule, delta_rule_ref
from helpers import close_for_dtype as _close

B, H, K, V = 2, 2, 8, 6


def _inputs(T, dtype, with_init, gen):
    mk = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)
    ins = {
        "q": mk(B, T, H, K),
        "k": F.normalize(mk(B, T, H, K), dim=-1),  # as the mixer feeds it: L2-normalised keys
        "v": mk(B, T, H, V),
        "beta": torch.sigmoid(mk(B, T, H)),
    }
    if with_init:
        ins["initial_state"] = mk(B, H, K, V)
    return {n: t.requires_grad_() for n, t in ins.items()}


def _run(fn, ins, **kw):
    return fn(ins["q"], ins["k"], ins["v"], ins["beta"], initial_state=ins.get("initial_state"), output_final_state=True, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("with_init", [False, True], ids=["s0", "init"])
@pytest.mark.parametrize("T", [1, 7, 65, 130])
def test_chunk_matches_ref(T, with_init, dtype):
    gen = torch.Generator().manual_seed(T + 1000 * with_init)
    ins = _inputs(T, dtype, with_init, gen)
    o_r, s_r = _run(delta_rule_ref, ins)
    do, ds = torch.randn(o_r.shape, generator=gen, dtype=dtype), torch.randn(s_r.shape, generator=gen, dtype=dtype)
    grads_r = torch.autograd.grad((o_r * do).sum() + (s_r * ds).sum(), list(ins.values()))
    for cs in (64, 16):
        o, s = _run(chunk_delta_rule, ins, chunk_size=cs)
        assert o.dtype == dtype and o.shape == (B, T, H, V) and s.shape == (B, H, K, V)
        _close(o, o_r, dtype, f"chunk{cs} output")
        _close(s, s_r, dtype, f"chunk{cs} final state")
        grads = torch.autograd.grad((o * do).sum() + (s * ds).sum(), list(ins.values()))
        for name, a, r in zip(ins, grads, grads_r):
            _close(a, r, dtype, f"chunk{cs} grad of {name}")


def test_beta_one_overwrites_memory():
    """With beta = 1 and orthonormal keys, reading key k_i returns exactly the last value written under it."""
    T = 6
    keys = torch.eye(K, dtype=torch.float64)[torch.tensor([0, 1, 0, 2, 1, 0])]  # (T, K)
    k = keys[None, :, None].expand(1, T, 1, K)
    v = torch.randn(1, T, 1, V, dtype=torch.float64)
    beta = torch.ones(1, T, 1, dtype=torch.float64)
    q = torch.zeros(1, T, 1, K, dtype=torch.float64)
    q[0, -1, 0, 1] = 1.0  # read key 1 at the end: last written at t = 4
    o, S = chunk_delta_rule(q, k, v, beta, scale=1.0, output_final_state=True, chunk_size=4)
    torch.testing.assert_close(o[0, -1, 0], v[0, 4, 0])
    torch.testing.assert_close(S[0, 0, 0], v[0, 5, 0])


def test_no_final_state_unless_asked():
    ins = _inputs(9, torch.float32, False, torch.Generator().manual_seed(0))
    for fn in (chunk_delta_rule, delta_rule_ref):
        o, s = fn(ins["q"], ins["k"], ins["v"], ins["beta"])
        assert s is None and o.shape == (B, 9, H, V)


@pytest.mark.parametrize("fn", [chunk_delta_rule, delta_rule_ref])
def test_bad_shapes_raise(fn):
    q = torch.randn(2, 5, 3, 4)
    v = torch.randn(2, 5, 3, 6)
    beta = torch.rand(2, 5, 3)
    with pytest.raises(ValueError, match="k has shape"):
        fn(q, torch.randn(2, 5, 3, 5), v, beta)
    with pytest.raises(ValueError, match=r"beta has shape \(2, 5\); expected \(2, 5, 3\)"):
        fn(q, q, v, beta[..., 0])
    with pytest.raises(ValueError, match="initial_state has shape"):
        fn(q, q, v, beta, initial_state=torch.zeros(2, 3, 6, 4))
