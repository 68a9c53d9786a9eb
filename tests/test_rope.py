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
