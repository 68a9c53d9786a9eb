"""eval/bench/delta_rules.py: picked up by ``python -m eval ops`` and produces one row per op and mode
(tiny sizes here; the benchmark itself runs at L = 512 and 2048)."""
import math

from eval.bench import delta_rules
from eval.ops import bench_modules


def test_delta_rules_bench_rows():
    assert "delta_rules" in bench_modules()
    rows = delta_rules.op_rows([19], repeats=1)
    assert [(r["op"], r["bench"]) for r in rows] == [(op, mode) for op in delta_rules.OPS for mode in ("fwd", "fwd+bwd")]
    for r in rows:
        assert r["vs"] == "ref" and r["L"] == 19
        assert r["ms"] > 0 and r["base_ms"] > 0 and math.isclose(r["ratio"], r["base_ms"] / r["ms"])
