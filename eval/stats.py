"""Statistics of a comparison: Student-t confidence intervals over seeds and tie marking.

* ``t_quantile(p, df)``: the quantile of Student's t distribution, exact for integer ``df``
  (Abramowitz & Stegun 26.7.3-26.7.4: closed-form CDF for integer degrees of freedom, inverted
  by bisection); no scipy needed.
* ``mean_ci(values)``: mean and the two-sided 95% Student-t interval over seeds,
  ``mean +- t_{0.975, n-1} * s / sqrt(n)`` (``s`` the sample standard deviation). With one value
  the interval is that value (n = 1, no spread known).
* ``tied_with_best``: the rows whose interval overlaps the interval of the best mean, i.e. the
  ones the data cannot tell apart from the best (all of them are marked, not one winner).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence


def t_cdf_two_sided(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df`` >= 1 (A&S 26.7.3 / 26.7.4)."""
    if df < 1 or int(df) != df:
        raise ValueError(f"t_cdf_two_sided: df must be a positive int, got {df!r}")
    t = abs(float(t))
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 0:  # 26.7.4: sin(theta) * (1 + cos^2/2 + 1*3 cos^4/(2*4) + ...), df/2 terms
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c * c * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    if df == 1:
        return 2 * theta / math.pi
    term, total = c, c  # 26.7.3: (2/pi)(theta + sin(theta)(cos + 2/3 cos^3 + ...)), (df-1)/2 terms
    for k in range(1, (df - 1) // 2):
        term *= c * c * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + s * total)


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with integer ``df`` (e.g. ``t_quantile(0.975, 2) = 4.3027``)."""
    if not 0 < p < 1:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p!r}")
    if p == 0.5:
        return 0.0
    target = abs(2 * p - 1)  # P(|T| < q)
    lo, hi = 0.0, 1.0
    while t_cdf_two_sided(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf_two_sided(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    q = (lo + hi) / 2
    return q if p > 0.5 else -q


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """``{"mean", "ci95": [lo, hi], "n", "std"}`` over the finite values (Student t over seeds).

    No finite value: mean and interval are None, n = 0.
    """
    xs = [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return {"mean": None, "ci95": [None, None], "n": 0, "std": None}
    m = sum(xs) / n
    if n == 1:
        return {"mean": m, "ci95": [m, m], "n": 1, "std": None}
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return {"mean": m, "ci95": [m - half, m + half], "n": n, "std": sd}


def tied_with_best(summaries: Mapping[str, dict], better: str) -> list[str]:
    """Names whose 95% interval overlaps the interval of the best mean (``better``: "max" or "min").

    ``summaries[name] = {"mean", "ci95": [lo, hi], ...}`` as from ``mean_ci``; entries without a
    mean never win. The best one is always in the list.
    """
    if better not in ("max", "min"):
        raise ValueError(f"tied_with_best: better must be 'max' or 'min', got {better!r}")
    have = {k: s for k, s in summaries.items() if s and s.get("mean") is not None}
    if not have:
        return []
    pick = max if better == "max" else min
    best = pick(have, key=lambda k: have[k]["mean"])
    blo, bhi = have[best]["ci95"]
    out = []
    for k, s in have.items():
        lo, hi = s["ci95"]
        if lo <= bhi and blo <= hi:
            out.append(k)
    return out
