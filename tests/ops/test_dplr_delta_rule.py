"""DPLR (generalized) delta rule: chunked form == sequential ref (values and gradients of q, k, v, a,
b, gk and the initial state) on lengths that are not chunk multiples, fp32 and fp64, with strong
decays; it reduces to the gated delta rule; fla dispatch layout; errors."""
import pytest
import torch
import torch.nn.functional as F

from archs.ops import chunk_dplr_delta_rule, dplr_delta_rule_ref, gated_delta_rule_ref
from archs.ops.dplr_delta_rule import decayed_scores
from archs.ops.dplr_delta_rule.chunk import decayed_scores_autograd
from helpers import assert_chunked_matches_ref, close_for_dtype

B, H, K, V = 2, 2, 8, 6


def _inputs(T, dtype, with_init, gen, decay_mult=1.0):
    """RWKV-7's use: a = -kappa_hat, b = kappa_hat * iclr with kappa_hat L2-normalised, iclr in (0, 1)."""
    mk = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)
    kk = F.normalize(mk(B, T, H, K), dim=-1)
    ins = {
        "q": mk(B, T, H, K),
        "k": 0.3 * mk(B, T, H, K),
        "v": mk(B, T, H, V),
        "a": -kk,
        "b": kk * torch.sigmoid(mk(B, T, H, K)),
        "gk": F.logsigmoid(mk(B, T, H, K) + 2) * decay_mult,
    }
    if with_init:
        ins["initial_state"] = mk(B, H, K, V)
    return {n: t.requires_grad_() for n, t in ins.items()}


def _run(fn, ins, **kw):
    return fn(ins["q"], ins["k"], ins["v"], ins["a"], ins["b"], ins["gk"], initial_state=ins.get("initial_state"),
              output_final_state=True, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("with_init", [False, True], ids=["s0", "init"])
@pytest.mark.parametrize("T", [1, 7, 37, 130])
def test_chunk_matches_ref(T, with_init, dtype):
    gen = torch.Generator().manual_seed(T + 1000 * with_init)
    ins = _inputs(T, dtype, with_init, gen)
    # 64: four 16-token sub-chunks per chunk; 32: two
    assert_chunked_matches_ref(_run, chunk_dplr_delta_rule, dplr_delta_rule_ref, ins, (64, 32), dtype,
                               shapes=[(B, T, H, V), (B, H, K, V)])


@pytest.mark.parametrize("decay_mult", [30.0, 1e4], ids=["strong", "extreme"])
def test_strong_decay_stays_finite_and_exact(decay_mult):
    ins = _inputs(45, torch.float64, True, torch.Generator().manual_seed(3), decay_mult)
    assert_chunked_matches_ref(_run, chunk_dplr_delta_rule, dplr_delta_rule_ref, ins, (32,), torch.float64, finite=True)


def test_reduces_to_gated_delta_rule():
    """a = -exp(g) k, b = beta k, k' = beta k, gk = g (every channel): the gated delta rule."""
    gen = torch.Generator().manual_seed(4)
    mk = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    T = 41
    q, k, v = mk(B, T, H, K), F.normalize(mk(B, T, H, K), dim=-1), mk(B, T, H, V)
    g, beta, s0 = F.logsigmoid(mk(B, T, H) + 1), torch.sigmoid(mk(B, T, H)), mk(B, H, K, V)
    o_g, s_g = gated_delta_rule_ref(q, k, v, g, beta, initial_state=s0, output_final_state=True)
    bk = beta[..., None] * k
    o, s = chunk_dplr_delta_rule(q, bk, v, -g.exp()[..., None] * k, bk, g[..., None].expand(B, T, H, K),
                                 initial_state=s0, output_final_state=True, chunk_size=32)
    close_for_dtype(o, o_g, torch.float64, "output")
    close_for_dtype(s, s_g, torch.float64, "state")


@pytest.mark.parametrize("C", [1, 2, 32])
@pytest.mark.parametrize("strict", [False, True])
def test_decayed_scores_match_direct_form(strict, C):
    """The binary-tree scores equal the direct sum over channels (mild decays, where the direct form is safe)."""
    gen = torch.Generator().manual_seed(6)
    x, y = torch.randn(3, C, K, generator=gen, dtype=torch.float64), torch.randn(3, C, K, generator=gen, dtype=torch.float64)
    gc = F.logsigmoid(torch.randn(3, C, K, generator=gen, dtype=torch.float64)).cumsum(1)
    gx = torch.cat([torch.zeros_like(gc[:, :1]), gc[:, :-1]], 1) if strict else gc  # gc_{t-1} for strict rows
    direct = torch.einsum("btk,btsk,bsk->bts", x, (gx[:, :, None] - gc[:, None]).exp(), y).tril(-1 if strict else 0)
    A = decayed_scores(x[:, None], gx[:, None], y[:, None], gc, torch.tensor([0.0 if strict else 1.0], dtype=torch.float64))
    close_for_dtype(A[:, 0, 0], direct, torch.float64, "scores")


@pytest.mark.parametrize("decay_mult", [1.0, 1e3], ids=["mild", "strong"])
@pytest.mark.parametrize("C", [1, 2, 16])
def test_decayed_scores_backward_matches_autograd(C, decay_mult):
    """The hand-written backward of the score tree == autograd through the same forward (fp64)."""
    gen = torch.Generator().manual_seed(C)
    mk = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    gc = (F.logsigmoid(mk(2, C, K)) * decay_mult).cumsum(1)
    gp = torch.cat([torch.zeros_like(gc[:, :1]), gc[:, :-1]], 1)
    ins = [mk(2, 2, C, K).requires_grad_(), torch.stack([gc, gp], 1).requires_grad_(), mk(2, 2, C, K).requires_grad_(),
           gc.clone().requires_grad_()]
    diag = torch.tensor([1.0, 0.0], dtype=torch.float64)
    A, A_ref = decayed_scores(*ins, diag), decayed_scores_autograd(*ins, diag)
    close_for_dtype(A, A_ref, torch.float64, "scores")
    w = mk(*A.shape)
    grads = torch.autograd.grad((A * w).sum(), ins)
    grads_ref = torch.autograd.grad((A_ref * w).sum(), ins, allow_unused=True)
    for name, g, r in zip(("x", "gx", "y", "gy"), grads, grads_ref):
        close_for_dtype(g, torch.zeros_like(g) if r is None else r, torch.float64, f"grad of {name}")


def test_decayed_scores_needs_power_of_two():
    x = torch.zeros(1, 1, 6, 2)
    with pytest.raises(ValueError, match="power of two, got 6"):
        decayed_scores(x, x, x, x[:, 0], torch.ones(1))


@pytest.mark.parametrize("fn", [chunk_dplr_delta_rule, dplr_delta_rule_ref])
def test_bad_shapes_raise(fn):
    q = torch.randn(2, 5, 3, 4)
    v = torch.randn(2, 5, 3, 6)
    with pytest.raises(ValueError, match="v has shape"):
        fn(q, q, torch.randn(2, 4, 3, 6), q, q, q)
    with pytest.raises(ValueError, match=r"b has shape \(2, 5, 3\); expected \(2, 5, 3, 4\)"):
        fn(q, q, v, q, q[..., 0], q)
    with pytest.raises(ValueError, match=r"gk \(log decay per key channel\) has shape \(2, 5, 3, 6\); expected \(2, 5, 3, 4\)"):
        fn(q, q, v, q, q, torch.zeros(2, 5, 3, 6))
    with pytest.raises(ValueError, match="initial_state has shape"):
        fn(q, q, v, q, q, q, initial_state=torch.zeros(2, 3, 6, 4))


def test_kernel_dispatch_passes_btHk_layout(monkeypatch):
    import archs.ops._common as common

    calls = []

    def fake(q, k, v, a, b, gk, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None):
        calls.append((a.shape, gk.shape, scale, output_final_state))
        return v * 2, torch.zeros(1)

    monkeypatch.setattr(common, "gpu_kernel", lambda module, attr, *ts: fake if (module, attr) == ("fla.ops.generalized_delta_rule", "chunk_dplr_delta_rule") else None)
    q = torch.randn(1, 3, 2, 4)
    o, s = chunk_dplr_delta_rule(q, q, q, q, q, q, scale=1.0)
    assert torch.equal(o, q * 2) and s is None
    assert calls == [((1, 3, 2, 4), (1, 3, 2, 4), 1.0, False)]
