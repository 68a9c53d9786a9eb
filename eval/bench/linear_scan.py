"""linear_scan: fast (chunked, recursive) vs the sequential ref (decode steps of every mixer:
``eval/bench/decode.py``).

Rows (one table, same keys):
  bench="scan fwd" / "scan fwd+bwd": shape (B=4, L, D=256), real fp32 and complex64;
      base_ms = ``linear_scan_ref``, ms = ``linear_scan``, ratio = speedup (ref / fast).

    python -m eval.bench.linear_scan [--quick] [--threads N]
"""
from __future__ import annotations

import argparse

import torch

from archs.ops.linear_rnn import linear_scan, linear_scan_ref

from .common import fwd_bwd, print_table, time_ms



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
    rows = []
    for dtype in dtypes:
        for L in lengths:
            ins = _inputs(L, dtype)
            with torch.no_grad():
                ref = time_ms(lambda: linear_scan_ref(*ins), repeats=repeats)
                fast = time_ms(lambda: linear_scan(*ins), repeats=repeats)
            rows.append({"bench": "scan fwd", "dtype": str(dtype)[6:], "L": L, "base_ms": ref, "ms": fast, "ratio": ref / fast})
            ins = _inputs(L, dtype, grad=True)
            ref = time_ms(fwd_bwd(_as_real(linear_scan_ref), ins), repeats=repeats)
            fast = time_ms(fwd_bwd(_as_real(linear_scan), ins), repeats=repeats)
            rows.append({"bench": "scan fwd+bwd", "dtype": str(dtype)[6:], "L": L, "base_ms": ref, "ms": fast, "ratio": ref / fast})
    return rows


def run(quick: bool = False) -> list[dict]:
    if quick:
        return scan_rows([512, 2048], repeats=2)
    return scan_rows([512, 2048, 8192])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print_table(run(a.quick), f"linear_scan fast vs ref ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
