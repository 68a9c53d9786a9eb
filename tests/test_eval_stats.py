"""Statistics of compare: Student-t intervals on known values, and tie marking."""
from __future__ import annotations

import math

import pytest

from eval.stats import mean_ci, t_quantile, tied_with_best


@pytest.mark.parametrize("df, q", [(1, 12.7062047), (2, 4.3026527), (3, 3.1824463), (4, 2.7764451), (10, 2.2281389), (30, 2.0422725)])
def test_t_quantile_matches_tables(df, q):
    assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-6)
    assert t_quantile(0.025, df) == pytest.approx(-q, abs=1e-6)


def test_t_interval_of_1_2_3():
    s = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729749464 / math.sqrt(3)  # s = 1, n = 3
    assert s["mean"] == 2.0 and s["n"] == 3 and s["std"] == pytest.approx(1.0)
    assert s["ci95"] == pytest.approx([2 - half, 2 + half], abs=1e-9)


def test_interval_edge_cases():
    assert mean_ci([0.5]) == {"mean": 0.5, "ci95": [0.5, 0.5], "n": 1, "std": None}
    assert mean_ci([None, float("nan")])["n"] == 0
    assert mean_ci([2.0, 2.0, 2.0])["ci95"] == [2.0, 2.0]
    with pytest.raises(ValueError, match="p must be in"):
        t_quantile(1.0, 3)


def test_every_arch_overlapping_the_best_is_tied():
    s = {"a": {"mean": 0.90, "ci95": [0.85, 0.95]},   # best
         "b": {"mean": 0.80, "ci95": [0.70, 0.86]},   # overlaps a's interval: tied
         "c": {"mean": 0.50, "ci95": [0.40, 0.60]},   # clearly worse
         "d": {"mean": None, "ci95": [None, None]}}   # failed: never wins
    assert sorted(tied_with_best(s, "max")) == ["a", "b"]
    # lower is better: c is best, nothing overlaps it
    assert tied_with_best(s, "min") == ["c"]
    assert tied_with_best({}, "max") == []
