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
