"""Gated delta rule: chunked WY form == sequential ref (values and gradients of q, k, v, g, beta and
the initial state) on lengths that are not chunk multiples, fp32 and fp64, with strong decays; the
special cases it must reduce to; fla dispatch layout; errors."""
import pytest
import torch
import torch.nn.functional as F

from archs.ops import chunk_delta_rule, chunk_gated_delta_rule, gated_delta_rule_ref
from helpers import assert_chunked_matches_ref, close_for_dtype

B, H, K, V = 2, 2, 8, 6


def _inputs(T, dtype, with_init, gen, decay_mult=1.0):
    mk = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)
    ins = {
        "q": mk(B, T, H, K),
        "k": F.normalize(mk(B, T, H, K), dim=-1),  # as the mixer feeds it: L2-normalised keys
        "v": mk(B, T, H, V),
        "g": F.logsigmoid(mk(B, T, H) + 2) * decay_mult,
        "beta": torch.sigmoid(mk(B, T, H)),
    }
    if with_init:
        ins["initial_state"] = mk(B, H, K, V)
    return {n: t.requires_grad_() for n, t in ins.items()}


def _run(fn, ins, **kw):
    return fn(ins["q"], ins["k"], ins["v"], ins["g"], ins["beta"], initial_state=ins.get("initial_state"),
              output_final_state=True, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("with_init", [False, True], ids=["s0", "init"])
@pytest.mark.parametrize("T", [1, 7, 37, 130])
def test_chunk_matches_ref(T, with_init, dtype):
    gen = torch.Generator().manual_seed(T + 1000 * with_init)
    ins = _inputs(T, dtype, with_init, gen)
    assert_chunked_matches_ref(_run, chunk_gated_delta_rule, gated_delta_rule_ref, ins, (64, 16), dtype,
                               shapes=[(B, T, H, V), (B, H, K, V)])


@pytest.mark.parametrize("decay_mult", [30.0, 1e4], ids=["strong", "extreme"])
def test_strong_decay_stays_finite_and_exact(decay_mult):
    """log decays down to -1e4 per token: exp underflows to 0 in both forms; values and gradients finite and equal."""
    ins = _inputs(37, torch.float64, True, torch.Generator().manual_seed(3), decay_mult)
    assert_chunked_matches_ref(_run, chunk_gated_delta_rule, gated_delta_rule_ref, ins, (16,), torch.float64, finite=True)


def test_no_decay_is_the_delta_rule():
    ins = _inputs(21, torch.float64, True, torch.Generator().manual_seed(1))
    zero_g = torch.zeros_like(ins["g"])
    o, s = chunk_gated_delta_rule(ins["q"], ins["k"], ins["v"], zero_g, ins["beta"], initial_state=ins["initial_state"],
                                  output_final_state=True, chunk_size=8)
    o_d, s_d = chunk_delta_rule(ins["q"], ins["k"], ins["v"], ins["beta"], initial_state=ins["initial_state"],
                                output_final_state=True, chunk_size=8)
    close_for_dtype(o, o_d, torch.float64, "output")
    close_for_dtype(s, s_d, torch.float64, "state")


def test_split_sequence_carries_state():
    """Running [0, t) then [t, T) from the carried state equals one call over [0, T)."""
    ins = {n: t.detach() for n, t in _inputs(50, torch.float64, True, torch.Generator().manual_seed(2)).items()}
    o, s = _run(chunk_gated_delta_rule, ins, chunk_size=16)
    first = {n: (t[:, :19] if n != "initial_state" else t) for n, t in ins.items()}
    o1, s1 = _run(chunk_gated_delta_rule, first, chunk_size=16)
    second = {n: t[:, 19:] for n, t in ins.items() if n != "initial_state"} | {"initial_state": s1}
    o2, s2 = _run(chunk_gated_delta_rule, second, chunk_size=16)
    close_for_dtype(torch.cat([o1, o2], 1), o, torch.float64, "split output")
    close_for_dtype(s2, s, torch.float64, "split state")


def test_no_final_state_unless_asked():
    ins = _inputs(9, torch.float32, False, torch.Generator().manual_seed(0))
    for fn in (chunk_gated_delta_rule, gated_delta_rule_ref):
        o, s = fn(ins["q"], ins["k"], ins["v"], ins["g"], ins["beta"])
        assert s is None and o.shape == (B, 9, H, V)


def test_bf16_inputs_computed_in_fp32():
    ins = {n: t.detach() for n, t in _inputs(20, torch.float32, True, torch.Generator().manual_seed(5)).items()}
    o32, _ = _run(chunk_gated_delta_rule, ins)
    o16, s16 = _run(chunk_gated_delta_rule, {n: t.bfloat16() for n, t in ins.items()})
    assert o16.dtype == torch.bfloat16 and s16.dtype == torch.float32
    assert (o16.float() - o32).abs().max() < 0.05 * o32.abs().max()


@pytest.mark.parametrize("fn", [chunk_gated_delta_rule, gated_delta_rule_ref])
def test_bad_shapes_raise(fn):
    q = torch.randn(2, 5, 3, 4)
    v = torch.randn(2, 5, 3, 6)
    g = torch.rand(2, 5, 3)
    with pytest.raises(ValueError, match="k has shape"):
        fn(q, torch.randn(2, 5, 3, 5), v, g, g)
    with pytest.raises(ValueError, match=r"g \(log decay per head\) has shape \(2, 5, 3, 4\); expected \(2, 5, 3\)"):
        fn(q, q, v, q, g)
    with pytest.raises(ValueError, match=r"beta has shape \(2, 5\); expected \(2, 5, 3\)"):
        fn(q, q, v, g, g[..., 0])
    with pytest.raises(ValueError, match="initial_state has shape"):
        fn(q, q, v, g, g, initial_state=torch.zeros(2, 3, 6, 4))


def test_bad_chunk_size_raises():
    q = torch.randn(1, 5, 1, 4)
    g = torch.zeros(1, 5, 1)
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
        chunk_gated_delta_rule(q, q, q, g, g, chunk_size=0)


def test_kernel_dispatch_passes_btHk_layout(monkeypatch):
    """On CUDA the op calls fla.ops.gated_delta_rule.chunk_gated_delta_rule with (B, T, H, K) tensors
    and keyword scale / initial_state / output_final_state; faked here since CPU tensors never dispatch."""
    import archs.ops._common as common

    calls = []

    def fake(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None):
        calls.append((g.shape, beta.shape, scale, output_final_state))
        return v * 2, torch.zeros(1)

    monkeypatch.setattr(common, "gpu_kernel", lambda module, attr, *ts: fake if (module, attr) == ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule") else None)
    q, g = torch.randn(1, 3, 2, 4), torch.zeros(1, 3, 2)
    o, s = chunk_gated_delta_rule(q, q, q, g, g, scale=0.5)
    assert torch.equal(o, q * 2) and s is None
    assert calls == [((1, 3, 2), (1, 3, 2), 0.5, False)]
