"""The gated and the DPLR (generalized) delta rules: chunked WY form vs the sequential ref.

Rows (one table, same keys), shapes q, k (B=1, L, H=4, K=64), v (B, L, H, V=64), fp32, CPU/GPU:
  bench="fwd" / "fwd+bwd", op="gated_delta_rule" | "dplr_delta_rule", base_ms = ``<op>_ref`` (a Python
  loop over L), ms = ``chunk_<op>`` (its default chunk: 64 gated, 32 dplr), ratio = base_ms / ms (speedup of the chunked form;
  the issue's target is >= 20x for fwd+bwd at L = 2048). The two are timed alternately (median of
  ``repeats`` each), so both see the same load on a busy machine.
Inputs as the mixers feed them: L2-normalised keys, beta / in-context rates in (0, 1), log decays in
(-inf, 0) (Gated DeltaNet: one per head; RWKV-7: one per key channel, a = -kappa_hat, b = kappa_hat * iclr).

On CUDA with fla installed the chunked op is fla's kernel.

    python -m eval.bench.delta_rules [--quick] [--threads N] [--lengths L ...]
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from archs.ops.dplr_delta_rule import chunk_dplr_delta_rule, dplr_delta_rule_ref
from archs.ops.gated_delta_rule import chunk_gated_delta_rule, gated_delta_rule_ref

from .common import bench_parser, fwd_bwd, print_table, sync, time_ms

OPS = {
    "gated_delta_rule": (chunk_gated_delta_rule, gated_delta_rule_ref),
    "dplr_delta_rule": (chunk_dplr_delta_rule, dplr_delta_rule_ref),
}


def _inputs(op: str, L: int, B: int = 1, H: int = 4, K: int = 64, V: int = 64, grad: bool = False, device=None):
    gen = torch.Generator().manual_seed(L)
    mk = lambda *s: torch.randn(*s, generator=gen)
    q, k, v = mk(B, L, H, K), F.normalize(mk(B, L, H, K), dim=-1), mk(B, L, H, V)
    if op == "gated_delta_rule":
        ins = [q, k, v, F.logsigmoid(mk(B, L, H) + 3), torch.sigmoid(mk(B, L, H))]
    else:
        kk = F.normalize(mk(B, L, H, K), dim=-1)
        ins = [q, k, v, -kk, kk * torch.sigmoid(mk(B, L, H, K)), -0.6 * torch.sigmoid(mk(B, L, H, K))]
    return [t.to(device).requires_grad_(grad) for t in ins]


def paired_ms(fn_a, fn_b, repeats: int = 3, warmup: int = 1) -> tuple[float, float]:
    """Median ms of ``fn_a()`` and of ``fn_b()``, timed alternately (a, b, a, b, ...): on a loaded
    machine both see the same load, so their ratio is steadier than two separate medians."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((fn_a, ta), (fn_b, tb)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            out.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(ta), statistics.median(tb)


def op_rows(lengths, repeats: int = 3, device=None, max_ref: int = 4096) -> list[dict]:
    rows = []
    for op, (chunk, ref) in OPS.items():
        for L in lengths:
            for mode in ("fwd", "fwd+bwd"):
                grad = mode == "fwd+bwd"
                ins = _inputs(op, L, grad=grad, device=device)

                def make(fn):
                    if grad:
                        return fwd_bwd(fn, ins)

                    def run():
                        with torch.no_grad():
                            fn(*ins)
                    return run

                if L <= max_ref:  # alternate the two so that both see the same machine load
                    t_chunk, t_ref = paired_ms(make(chunk), make(ref), repeats=repeats)
                else:
                    t_chunk, t_ref = time_ms(make(chunk), repeats=repeats, max_seconds=10.0), float("nan")
                rows.append({"bench": mode, "op": op, "vs": "ref", "L": L, "base_ms": t_ref, "ms": t_chunk, "ratio": t_ref / t_chunk})
    return rows


def run(quick: bool = False) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else None
    if quick:
        return op_rows([512], repeats=2, device=device)
    return op_rows([512, 2048], device=device)


def main(argv=None) -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--lengths", type=int, nargs="+", default=None, help="lengths (default 512 2048)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = "cuda" if torch.cuda.is_available() else None
    rows = op_rows(a.lengths, device=device) if a.lengths else run(a.quick)
    print_table(rows, f"delta rules: chunked vs sequential ref ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
