"""Selective state-space models: fast ops vs their sequential refs on every available CPU path,
the Mamba layer vs mambapy, and decode-step cost of mamba vs attention.

Tables (every ratio is measured in this run, nothing is extrapolated; with one torch thread the
ops and layer tables time CPU time, ``common.cpu_clock``, so other jobs on the machine do not count):
  "selective_scan": u (b=2, d=256, L), n=16, B/C (b, n, L), D, z, delta_bias, softplus; one row per
      (fwd | fwd+bwd, L) with ``ref_ms`` (``selective_scan_ref``), ``pure_ms`` (the pure-PyTorch
      form), ``compiled_ms`` (the compiled CPU kernel; "n/a" without a compiler) and the speedups
      ref / pure, ref / compiled. The ref runs only up to ``ref_max_len`` ("skipped" beyond).
  "ssd": x (b=2, L, h=8, p=32), n=64, g=1, chunk 64, D, z, dt_bias; base = ``ssd_ref``, ms = ``ssd``.
  "layer": our ``mamba`` mixer fwd+bwd (pure and compiled path) vs ``mambapy``'s MambaBlock
      (d_model 256, batch 4, L 1024, d_state 16, expand 2, d_conv 4); ratio = mambapy / ours.
      "skipped" if mambapy is not installed (``pip install mambapy``, the ``[bench]`` extra).
  "decode": one ``step`` after prefilling L tokens, d_model 256, batch 1; base = attention,
      ms = mamba, ratio = attention / mamba; "decode growth": mamba's step at the longest
      context / at the shortest (1.0 = flat).

    python -m eval.bench.ssm [--quick] [--threads N] [--only ops|layer|decode]
"""
from __future__ import annotations


import torch

from archs import build_mixer
from archs.ops import _compile
from archs.ops.selective_scan import selective_scan, selective_scan_ref
from archs.ops.ssd import ssd, ssd_ref

from .common import bench_parser, cpu_clock, fwd_bwd, print_table, time_ms
from .decode import decode_step_ms

SKIPPED = "skipped"
NA = "n/a"


def _row(bench, L, base, base_ms, ms, ratio_of=None):
    if isinstance(base_ms, float) and isinstance(ms, float):
        ratio = ratio_of(base_ms, ms) if ratio_of else base_ms / ms
    else:
        ratio = SKIPPED
    return {"bench": bench, "L": L, "base": base, "base_ms": base_ms, "ms": ms, "ratio": ratio}


def selective_scan_inputs(L: int, b: int = 2, d: int = 256, n: int = 16, grad: bool = False):
    g = torch.Generator().manual_seed(L)
    r = lambda *s: torch.randn(*s, generator=g)
    ins = [r(b, d, L), r(b, d, L), -torch.rand(d, n, generator=g) * 4 - 0.5, r(b, n, L), r(b, n, L), r(d), r(b, d, L), r(d)]
    return [t.requires_grad_(grad) for t in ins]


def ssd_inputs(L: int, b: int = 2, h: int = 8, p: int = 32, n: int = 64, grad: bool = False):
    g = torch.Generator().manual_seed(L)
    r = lambda *s: torch.randn(*s, generator=g)
    ins = [r(b, L, h, p), r(b, L, h), -torch.rand(h, generator=g) * 8 - 1, r(b, L, 1, n), r(b, L, 1, n), r(h), r(b, L, h, p), r(h)]
    return [t.requires_grad_(grad) for t in ins]


def _ss(fn):
    return lambda u, dl, A, B, C, D, z, db: fn(u, dl, A, B, C, D=D, z=z, delta_bias=db, delta_softplus=True)


def _ssd(fn):
    return lambda x, dt, A, B, C, D, z, db: fn(x, dt, A, B, C, chunk_size=64, D=D, z=z, dt_bias=db, dt_softplus=True)


def _paths() -> list[str]:
    """The CPU paths of the compiled-kernel switch that can run here."""
    return ["pure", "compiled"] if _compile.compiler() is not None else ["pure"]


def _on_path(path: str):
    return _compile.forced("1" if path == "compiled" else "0")


def _ratio(a, b):
    return a / b if isinstance(a, float) and isinstance(b, float) else NA if NA in (a, b) else SKIPPED


def selective_scan_rows(lengths, ref_max_len: int, repeats: int = 3) -> list[dict]:
    """ref, pure and compiled selective_scan side by side (fwd, and fwd+bwd)."""
    fast, ref = _ss(selective_scan), _ss(selective_scan_ref)
    rows = []
    for L in lengths:
        for kind in ("fwd", "fwd+bwd"):
            ins = selective_scan_inputs(L, grad=kind == "fwd+bwd")
            if kind == "fwd":
                run_fast, run_ref = (lambda: fast(*ins)), (lambda: ref(*ins))
            else:
                run_fast, run_ref = fwd_bwd(fast, ins), fwd_bwd(ref, ins)
            ms = {}
            with torch.set_grad_enabled(kind == "fwd+bwd"):
                for path in ("pure", "compiled"):
                    if path not in _paths():
                        ms[path] = NA
                        continue
                    with _on_path(path):
                        ms[path] = time_ms(run_fast, repeats=repeats, clock=cpu_clock())
                ms["ref"] = time_ms(run_ref, warmup=0, repeats=1, clock=cpu_clock()) if L <= ref_max_len else SKIPPED
            rows.append({"bench": f"selective_scan {kind}", "L": L, "ref_ms": ms["ref"], "pure_ms": ms["pure"],
                         "compiled_ms": ms["compiled"], "ref/pure": _ratio(ms["ref"], ms["pure"]),
                         "ref/compiled": _ratio(ms["ref"], ms["compiled"])})
    return rows


def ssd_rows(lengths, ref_max_len: int, repeats: int = 3) -> list[dict]:
    fast, ref = _ssd(ssd), _ssd(ssd_ref)
    rows = []
    for L in lengths:
        ins = ssd_inputs(L)
        with torch.no_grad():
            t_fast = time_ms(lambda: fast(*ins), repeats=repeats)
            t_ref = time_ms(lambda: ref(*ins), warmup=0, repeats=1) if L <= ref_max_len else SKIPPED
        rows.append(_row("ssd fwd", L, "ref", t_ref, t_fast))
        ins = ssd_inputs(L, grad=True)
        t_fast = time_ms(fwd_bwd(fast, ins), repeats=repeats)
        t_ref = time_ms(fwd_bwd(ref, ins), warmup=0, repeats=1) if L <= ref_max_len else SKIPPED
        rows.append(_row("ssd fwd+bwd", L, "ref", t_ref, t_fast))
    return rows


def layer_rows(d_model: int = 256, batch: int = 4, L: int = 1024, repeats: int = 3) -> list[dict]:
    """Our mamba layer on each CPU path vs mambapy's MambaBlock, fwd+bwd, in one run."""
    torch.manual_seed(0)
    x = torch.randn(batch, L, d_model, requires_grad=True)
    ours = build_mixer("mamba", d_model, d_state=16, expand=2, d_conv=4)

    def fb(m):
        def run():
            x.grad = None
            m.zero_grad(set_to_none=True)
            m(x).sum().backward()
        return run

    try:
        from mambapy.mamba import MambaBlock, MambaConfig
    except ImportError:
        t_theirs = SKIPPED
    else:
        theirs = MambaBlock(MambaConfig(d_model=d_model, n_layers=1, d_state=16, expand_factor=2, d_conv=4))
        t_theirs = time_ms(fb(theirs), repeats=repeats, clock=cpu_clock())
    rows = []
    for path in _paths():
        with _on_path(path):
            t_ours = time_ms(fb(ours), repeats=repeats, clock=cpu_clock())
        rows.append(_row(f"mamba layer fwd+bwd ({path})", L, "mambapy", t_theirs, t_ours))
    return rows


def decode_rows(contexts, d_model: int = 256, steps: int = 32) -> list[dict]:
    rows, mamba_ms = [], []
    for c in contexts:
        t_attn = decode_step_ms("attention", c, d_model=d_model, steps=steps)
        t_mamba = decode_step_ms("mamba", c, d_model=d_model, steps=steps)
        mamba_ms.append(t_mamba)
        rows.append(_row("decode step", c, "attention", t_attn, t_mamba))
    rows.append(_row("decode growth", f"{contexts[0]}->{contexts[-1]}", f"mamba@{contexts[0]}", mamba_ms[0], mamba_ms[-1],
                     ratio_of=lambda base, ms: ms / base))
    return rows


def run(quick: bool = False, only: str | None = None) -> dict[str, list[dict]]:
    """``{title: rows}`` (``quick``: small lengths only, for tests and smoke runs)."""
    out = {}
    if only in (None, "ops"):
        lengths, ref_max = ([64, 256], 256) if quick else ([256, 512, 1024, 2048, 4096, 8192], 2048)
        out["selective_scan (ratio = ref_ms / path_ms)"] = selective_scan_rows(lengths, ref_max, repeats=2 if quick else 3)
        out["ssd"] = ssd_rows(lengths, ref_max, repeats=2 if quick else 3)
    if only in (None, "layer"):
        out["layer (ratio = mambapy / ours)"] = layer_rows(d_model=64, batch=2, L=128, repeats=2) if quick else layer_rows()
    if only in (None, "decode"):
        out["decode"] = decode_rows([64, 256], steps=8) if quick else decode_rows([1024, 4096, 16384])
    return out


def main(argv=None) -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["ops", "layer", "decode"], default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    for title, rows in run(a.quick, a.only).items():
        print_table(rows, f"{title} ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
