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
