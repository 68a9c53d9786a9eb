"""Shared assertions for the test suite."""
from __future__ import annotations

import torch

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, tol: float | None = None, what: str = "") -> None:
    """max|a - e| <= tol * max(1, max|e|): "relative" in the max-norm, absolute for small outputs."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    tol = TOL[expected.dtype if not expected.is_complex() else torch.float32] if tol is None else tol
    err = (actual - expected).abs().max().item() if actual.numel() else 0.0
    scale = max(1.0, expected.abs().max().item() if expected.numel() else 0.0)
    assert err <= tol * scale, f"{what}: max abs error {err:.3e} > {tol:.1e} x {scale:.3g}"


def close_for_dtype(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    """``assert_rel_close`` at the suite's tolerance for ``dtype`` (fp32 1e-5, fp64 1e-10)."""
    assert_rel_close(actual, expected, TOL[dtype], what)


def assert_outputs_and_grads_match(fast: tuple, ref: tuple, inputs: dict, dtype: torch.dtype) -> None:
    """Outputs of a fast op equal its reference's, and so do the gradients of every input
    under the same random cotangents for every output."""
    gen = torch.Generator().manual_seed(7)
    for i, (a, r) in enumerate(zip(fast, ref)):
        close_for_dtype(a, r, dtype, f"output {i}")
    cot = [torch.randn(r.shape, generator=gen, dtype=dtype) for r in ref]
    names = list(inputs)
    g_fast = torch.autograd.grad(sum((a * c).sum() for a, c in zip(fast, cot)), [inputs[k] for k in names])
    g_ref = torch.autograd.grad(sum((r * c).sum() for r, c in zip(ref, cot)), [inputs[k] for k in names])
    for k, a, r in zip(names, g_fast, g_ref):
        close_for_dtype(a, r, dtype, f"grad {k}")


def assert_split_state_grads_match_forward(m, x: torch.Tensor, tol: float = 1e-10) -> None:
    """Parameter gradients through a carried state equal the full forward's: two prefills
    (tokens [0, 5) then [5, 8)) and then a ``step`` per remaining token, against ``m(x)``, under
    the same random output weights. ``x`` is (B, L, D) with L > 8."""
    w = torch.randn(x.shape, dtype=x.dtype)

    def grads(y):
        m.zero_grad()
        (y * w).sum().backward()
        return {n: p.grad.clone() for n, p in m.named_parameters()}

    g_ref = grads(m(x))
    ya, st = m.prefill(x[:, :5])
    yb, st = m.prefill(x[:, 5:8], st)
    ys = [ya, yb]
    for t in range(8, x.shape[1]):
        y_t, st = m.step(x[:, t], st)
        ys.append(y_t[:, None])
    g = grads(torch.cat(ys, 1))
    for n in g_ref:
        assert_rel_close(g[n], g_ref[n], tol, f"grad {n}")


def assert_chunked_matches_ref(run, chunked, ref, ins: dict, chunk_sizes, dtype: torch.dtype, shapes=None,
                               finite: bool = False) -> None:
    """For each chunk size: ``run(chunked, ins, chunk_size=cs)`` equals ``run(ref, ins)`` in values
    and in the gradients of every input (a fresh reference graph per comparison). ``shapes``: the
    expected shape of each output; ``finite``: every output must be finite too."""
    for cs in chunk_sizes:
        expected = run(ref, ins)
        out = run(chunked, ins, chunk_size=cs)
        assert out[0].dtype == dtype, f"chunk {cs}: dtype {out[0].dtype} != {dtype}"
        if shapes is not None:
            assert [tuple(o.shape) for o in out] == [tuple(s) for s in shapes], f"chunk {cs}: shapes {[tuple(o.shape) for o in out]}"
        if finite:
            assert all(torch.isfinite(o).all() for o in out), f"chunk {cs}: a non-finite output"
        assert_outputs_and_grads_match(out, expected, ins, dtype)
