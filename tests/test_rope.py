"""RoPE: scores depend on the relative offset only, and do depend on it."""
from __future__ import annotations

import torch

from archs.rope import Rotary


def _score(rot, q, k, i, j):
    cq, sq = rot.cos_sin(i, 1, None, torch.float64)
    ck, sk = rot.cos_sin(j, 1, None, torch.float64)
    return (rot.rotate(q, cq, sq) * rot.rotate(k, ck, sk)).sum()


def test_scores_are_relative_and_position_sensitive():
    torch.manual_seed(0)
    rot = Rotary(16)
    q, k = torch.randn(1, 1, 1, 16, dtype=torch.float64), torch.randn(1, 1, 1, 16, dtype=torch.float64)
    for i, j, shift in [(5, 2, 100), (9, 9, 4000), (70, 0, 65000)]:
        assert torch.allclose(_score(rot, q, k, i, j), _score(rot, q, k, i + shift, j + shift), atol=1e-9)
    offsets = torch.stack([_score(rot, q, k, 10, 10 - d) for d in range(8)])
    assert offsets.std() > 1e-3  # the offset changes the score: a previous-token head is expressible
    cos, sin = rot.cos_sin(0, 1, None, torch.float64)
    assert torch.equal(rot.rotate(q, cos, sin), q)  # position 0 is the identity


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def test_bf16_keeps_fp64_frequencies_at_long_context():
    """.to(bfloat16) (Lightning bf16-true) must not cast the frequencies: at position 16k a bf16
    inv_freq is off by ~0.4% (its 8-bit mantissa), i.e. tens of radians of angle."""
    import copy

    from archs import build_mixer

    torch.manual_seed(0)
    att = build_mixer("attention", 64, n_heads=2).double()
    half = copy.deepcopy(att).to(torch.bfloat16)
    assert half.rotary.inv_freq.dtype == torch.float64
    assert torch.equal(half.rotary.inv_freq, att.rotary.inv_freq)
    x = torch.randn(1, 32, 64, dtype=torch.float64)
    start = 16384
    ref = att._qkv(x, start)
    got = half._qkv(x.to(torch.bfloat16), start)
    errs = [_rel(g, r) for g, r in zip(got, ref)]
    assert max(errs) < 2e-2, errs  # bf16 rounding of the projections, not of the angles
    # what the defect looked like: the same module with its frequencies rounded to bf16
    broken = copy.deepcopy(half)
    broken.rotary.inv_freq = att.rotary.inv_freq.to(torch.bfloat16).double()
    bad = broken._qkv(x.to(torch.bfloat16), start)
    assert _rel(bad[0], ref[0]) > 0.3
    # bf16-mixed: autocast runs the projections in bf16, the angles stay exact
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = att.float()._qkv(x.float(), start)
    assert max(_rel(g, r) for g, r in zip(mixed, ref)) < 2e-2


def test_rope_scaling_is_checked():
    import pytest

    with pytest.raises(ValueError, match="unknown rope_type 'longrope'"):
        Rotary(8, scaling={"rope_type": "longrope", "factor": 2.0})
    with pytest.raises(ValueError, match=r"needs \['low_freq_factor', 'high_freq_factor'"):
        Rotary(8, scaling={"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 32})
    assert Rotary(8, scaling={"rope_type": "default"}).scaling is None


def test_lightning_bf16_true_keeps_fp64_frequencies():
    from lightning.pytorch.plugins.precision import HalfPrecision

    from archs import LanguageModel

    model = LanguageModel(vocab_size=16, d_model=32, n_layers=2, layers=["attention", "retnet"])
    model = HalfPrecision("bf16-true").convert_module(model)
    assert model.embed.weight.dtype == torch.bfloat16
    for b in model.blocks:
        assert b.mixer.rotary.inv_freq.dtype == torch.float64
