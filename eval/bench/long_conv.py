"""Causal long convolution (Hyena): FFT form vs the sequential ref, and vs a direct (quadratic)
F.conv1d.

Rows: u (B=1, C=256, L), k (C, L), bias (C,), fp32. bench="fwd" / "fwd+bwd"; base = the sequential
``long_conv_ref`` (run up to ``max_ref``) and a direct depthwise ``F.conv1d`` with an L-tap filter
(O(L^2 C)); ratio = base_ms / fft_ms (speedup of the FFT form).

    python -m eval.bench.long_conv [--quick]
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from archs.ops.long_conv import long_conv, long_conv_ref

from .common import bench_parser, fwd_bwd, print_table, time_ms


def direct_conv(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The same convolution as one grouped F.conv1d with an L-tap filter: u (B, C, L) -> (B, C, L)."""
    L = u.shape[2]
    y = F.conv1d(F.pad(u, (L - 1, 0)), k[:, :L].flip(-1)[:, None], groups=u.shape[1])
    return y + bias[:, None] * u


def run(quick: bool = False, lengths=None, channels: int = 256, max_ref: int = 1024) -> list[dict]:
    lengths = lengths or ([257, 1024] if quick else [1024, 4096, 16384])
    rows = []
    for L in lengths:
        g = torch.Generator().manual_seed(L)
        for bench in ("fwd", "fwd+bwd"):
            grad = bench == "fwd+bwd"
            ins = [torch.randn(1, channels, L, generator=g, requires_grad=grad),
                   torch.randn(channels, L, generator=g, requires_grad=grad),
                   torch.randn(channels, generator=g, requires_grad=grad)]

            def timed(fn):
                if grad:
                    return time_ms(fwd_bwd(fn, ins), warmup=1, repeats=3, max_seconds=10)
                with torch.no_grad():
                    return time_ms(lambda: fn(*ins), warmup=1, repeats=3, max_seconds=10)

            fft = timed(long_conv)
            bases = [("direct_conv1d", direct_conv)] + ([("ref", long_conv_ref)] if L <= max_ref else [])
            for vs, fn in bases:
                base = timed(fn)
                rows.append({"bench": bench, "L": L, "vs": vs, "base_ms": base, "fft_ms": fft, "ratio": base / fft})
    return rows


def main(argv=None) -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--lengths", type=int, nargs="+", default=None)
    a = ap.parse_args(argv)
    print_table(run(a.quick, a.lengths), f"long_conv (C=256, batch 1, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
