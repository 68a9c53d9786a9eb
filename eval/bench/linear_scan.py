"""linear_scan on every available CPU path vs the sequential ref (decode steps of every mixer:
``eval/bench/decode.py``).

Rows (one table, same keys):
  bench="scan fwd" / "scan fwd+bwd": shape (B=4, L, D=256), real fp32 and complex64;
      ref_ms = ``linear_scan_ref``, pure_ms = the pure-PyTorch form (chunked, recursive),
      compiled_ms = the compiled CPU kernel ("n/a" without a compiler); speedups ref / path.
      With one torch thread the times are CPU time (``common.cpu_clock``).

    python -m eval.bench.linear_scan [--quick] [--threads N]
"""
from __future__ import annotations


import torch

from archs.ops import _compile
from archs.ops.linear_rnn import linear_scan, linear_scan_ref

from .common import bench_parser, cpu_clock, fwd_bwd, print_table, time_ms



def _inputs(L: int, dtype: torch.dtype, B: int = 4, D: int = 256, grad: bool = False):
    g = torch.Generator().manual_seed(L)
    real = torch.float32
    r = 0.5 + 0.5 * torch.rand(B, L, D, generator=g, dtype=real)
    if dtype.is_complex:
        a = torch.polar(r, 6.283 * torch.rand(B, L, D, generator=g, dtype=real))
    else:
        a = r
    b = torch.randn(B, L, D, generator=g, dtype=dtype)
    h0 = torch.randn(B, D, generator=g, dtype=dtype)
    return [t.requires_grad_(grad) for t in (a, b, h0)]


def _as_real(fn):
    """fn with a complex output viewed as real (so fwd_bwd's loss sees both parts)."""
    def wrapped(*ins):
        h = fn(*ins)
        return torch.view_as_real(h) if h.is_complex() else h
    return wrapped


def scan_rows(lengths, dtypes=(torch.float32, torch.complex64), repeats: int = 3) -> list[dict]:
    paths = ["pure", "compiled"] if _compile.compiler() is not None else ["pure"]
    rows = []
    for dtype in dtypes:
        for L in lengths:
            for kind in ("fwd", "fwd+bwd"):
                ins = _inputs(L, dtype, grad=kind == "fwd+bwd")
                if kind == "fwd":
                    run_fast, run_ref = (lambda: linear_scan(*ins)), (lambda: linear_scan_ref(*ins))
                else:
                    run_fast, run_ref = fwd_bwd(_as_real(linear_scan), ins), fwd_bwd(_as_real(linear_scan_ref), ins)
                ms = {"compiled": "n/a"}
                with torch.set_grad_enabled(kind == "fwd+bwd"):
                    ms["ref"] = time_ms(run_ref, repeats=repeats, clock=cpu_clock())
                    for path in paths:
                        with _compile.forced("1" if path == "compiled" else "0"):
                            ms[path] = time_ms(run_fast, repeats=repeats, clock=cpu_clock())
                ratio = lambda p: ms["ref"] / ms[p] if isinstance(ms[p], float) else "n/a"
                rows.append({"bench": f"scan {kind}", "dtype": str(dtype)[6:], "L": L, "ref_ms": ms["ref"],
                             "pure_ms": ms["pure"], "compiled_ms": ms["compiled"], "ref/pure": ratio("pure"),
                             "ref/compiled": ratio("compiled")})
    return rows


def run(quick: bool = False) -> list[dict]:
    if quick:
        return scan_rows([512, 2048], repeats=2)
    return scan_rows([512, 2048, 8192])


def main(argv=None) -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print_table(run(a.quick), f"linear_scan: each path vs the ref ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
