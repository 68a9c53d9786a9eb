"""Linear-attention ops: chunked vs quadratic (parallel) vs sequential ref (decode steps of every
mixer: ``eval/bench/decode.py``).

Rows (one table, same keys), shapes q, k (B=1, L, H=4, K=64), v (B, L, H, V=64), fp32, CPU/GPU:
  bench="fwd" / "fwd+bwd", vs="parallel" or "ref": base_ms = ``parallel_<op>`` or ``<op>_ref``,
      ms = ``chunk_<op>`` (chunk 64), ratio = base_ms / ms (speedup of the chunked form).
      The quadratic form holds (B, H, L, L) scores (``parallel_gla``: (B, H, L, L, K) decays), so it is
      run only up to ``max_parallel`` (``max_parallel_gla``); the ref loops over L in Python and is run
      up to ``max_ref``.

Memory (analytic, largest intermediates of one head-batch, fp32): parallel ~ 4 B H L^2 bytes per
score-sized tensor (x L K for parallel_gla); chunked ~ 4 B H L C bytes (x 16 K / C for chunk_gla's
sub-chunk decays) plus the (L / C) chunk states of 4 B H K V bytes each.

    python -m eval.bench.linear_attn [--quick] [--threads N]
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from archs.ops.delta_rule import chunk_delta_rule, delta_rule_ref
from archs.ops.gla import (
    chunk_gla, chunk_retention, chunk_simple_gla, gla_ref, parallel_gla, parallel_retention,
    parallel_simple_gla, retention_ref, simple_gla_ref,
)

from .common import bench_parser, fwd_bwd, print_table, time_ms


# op -> (chunked, quadratic or None, ref, extra input: None | "g_head" | "g_key" | "beta")
OPS = {
    "retention": (chunk_retention, parallel_retention, retention_ref, None),
    "simple_gla": (chunk_simple_gla, parallel_simple_gla, simple_gla_ref, "g_head"),
    "gla": (chunk_gla, parallel_gla, gla_ref, "g_key"),
    "delta_rule": (chunk_delta_rule, None, delta_rule_ref, "beta"),
}


def _inputs(op: str, L: int, B: int = 1, H: int = 4, K: int = 64, V: int = 64, grad: bool = False, device=None):
    gen = torch.Generator().manual_seed(L)
    mk = lambda *s: torch.randn(*s, generator=gen)
    q, k, v = mk(B, L, H, K), mk(B, L, H, K), mk(B, L, H, V)
    extra = OPS[op][3]
    ins = [q, k, v]
    if extra == "g_head":
        ins.append(F.logsigmoid(mk(B, L, H) + 3))
    elif extra == "g_key":
        ins.append(F.logsigmoid(mk(B, L, H, K) + 3) / 4)
    elif extra == "beta":
        ins[1] = F.normalize(k, dim=-1)
        ins.append(torch.sigmoid(mk(B, L, H)))
    return [t.to(device).requires_grad_(grad) for t in ins]


def op_rows(lengths, max_parallel: int = 4096, max_parallel_gla: int = 1024, max_ref: int = 4096,
            repeats: int = 3, device=None) -> list[dict]:
    rows = []
    for op, (chunk, par, ref, _) in OPS.items():
        for L in lengths:
            bases = {"parallel": par if par is not None and L <= (max_parallel_gla if op == "gla" else max_parallel) else None,
                     "ref": ref if L <= max_ref else None}
            for mode in ("fwd", "fwd+bwd"):
                grad = mode == "fwd+bwd"
                ins = _inputs(op, L, grad=grad, device=device)

                def timed(fn):
                    if grad:
                        return time_ms(fwd_bwd(fn, ins), repeats=repeats, max_seconds=5.0)
                    with torch.no_grad():
                        return time_ms(lambda: fn(*ins), repeats=repeats, max_seconds=5.0)

                t_chunk = timed(chunk)
                for vs, fn in bases.items():
                    if fn is None:
                        continue
                    t = timed(fn)
                    rows.append({"bench": mode, "op": op, "vs": vs, "L": L, "base_ms": t, "ms": t_chunk, "ratio": t / t_chunk})
                if all(fn is None for fn in bases.values()):  # too long for both baselines: chunked time alone
                    rows.append({"bench": mode, "op": op, "vs": "-", "L": L, "base_ms": float("nan"), "ms": t_chunk, "ratio": float("nan")})
    return rows


def run(quick: bool = False) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else None
    if quick:
        return op_rows([512, 1024], max_parallel_gla=512, max_ref=512, repeats=2, device=device)
    return op_rows([512, 1024, 2048, 4096, 8192], device=device)


def main(argv=None) -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--lengths", type=int, nargs="+", default=None, help="op lengths (default 512 .. 8192)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.lengths:
        rows = op_rows(a.lengths, device="cuda" if torch.cuda.is_available() else None)
    else:
        rows = run(a.quick)
    print_table(rows, f"linear attention: chunked vs parallel vs ref ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
