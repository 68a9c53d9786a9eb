"""mLSTM op: chunkwise ``chunk_mlstm`` vs the sequential ``mlstm_ref`` (xLSTM's stabilized recurrence).

Rows: shapes q, k (B=1, L, H=4, K=64), v (B, L, H, V=64), gates (B, L, H), fp32, CPU/GPU;
bench="fwd" / "fwd+bwd", base_ms = ``mlstm_ref``, ms = ``chunk_mlstm`` (chunk 64),
ratio = base_ms / ms (speedup of the chunkwise form). The ref loops over L in Python.

    python -m eval.bench.mlstm [--quick] [--lengths 512 2048]
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from archs.ops.mlstm import chunk_mlstm, mlstm_ref

from .common import bench_parser, fwd_bwd, print_table, time_ms


def _inputs(L: int, B: int = 1, H: int = 4, K: int = 64, V: int = 64, grad: bool = False, device=None):
    gen = torch.Generator().manual_seed(L)
    mk = lambda *s: torch.randn(*s, generator=gen)
    ins = [mk(B, L, H, K), mk(B, L, H, K), mk(B, L, H, V), mk(B, L, H), F.logsigmoid(mk(B, L, H) + 3)]
    return [t.to(device).requires_grad_(grad) for t in ins]


def op_rows(lengths, repeats: int = 3, device=None) -> list[dict]:
    rows = []
    for L in lengths:
        for mode in ("fwd", "fwd+bwd"):
            grad = mode == "fwd+bwd"
            ins = _inputs(L, grad=grad, device=device)

            def timed(fn):
                f = lambda *a: fn(*a)[0]
                if grad:
                    return time_ms(fwd_bwd(f, ins), repeats=repeats, max_seconds=10.0)
                with torch.no_grad():
                    return time_ms(lambda: f(*ins), repeats=repeats, max_seconds=10.0)

            t_chunk, t_ref = timed(chunk_mlstm), timed(mlstm_ref)
            rows.append({"bench": mode, "op": "mlstm", "vs": "ref", "L": L, "base_ms": t_ref, "ms": t_chunk, "ratio": t_ref / t_chunk})
    return rows


def run(quick: bool = False) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else None
    return op_rows([512] if quick else [512, 2048], repeats=2 if quick else 3, device=device)


def main(argv=None) -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--lengths", type=int, nargs="+", default=None)
    a = ap.parse_args(argv)
    rows = op_rows(a.lengths) if a.lengths else run(a.quick)
    print_table(rows, f"mlstm: chunkwise vs sequential ref ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
