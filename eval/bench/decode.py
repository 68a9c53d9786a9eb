"""Decode-step cost of every registered mixer at growing contexts.

Prefills a context of each length, then times single-token ``step`` calls. A constant-state
mixer should cost the same at 16k as at 1k; attention's step grows with its KV cache, Hyena's with
its input history (column "state grows"; each timed step appends one token to such a state).

    python -m eval.bench.decode [--contexts 1024 4096 16384] [--d-model 256] [--mixers attention mamba]
"""
from __future__ import annotations


import torch

from archs import build_mixer, mixer_names

from .common import bench_parser, print_table, time_ms


def decode_step_ms(name: str, context: int, d_model: int = 256, batch: int = 1, steps: int = 32, **kw) -> float:
    """Median time of one ``step`` after prefilling ``context`` tokens (ms)."""
    torch.manual_seed(0)
    m = build_mixer(name, d_model, **kw).eval()
    with torch.no_grad():
        state = m.init_state(batch, max_seq_len=context + steps + 8)
        chunk = 4096  # prefill in pieces: bounded memory for quadratic prefill
        for s in range(0, context, chunk):
            _, state = m.prefill(torch.randn(batch, min(chunk, context - s), d_model), state)
        x = torch.randn(batch, d_model)

        def one() -> None:
            m.step(x, state)

        # each call appends one token; `steps` calls barely move the context
        return time_ms(one, warmup=3, repeats=steps)


def run(quick: bool = False, contexts=None, mixers=None, d_model: int = 256) -> list[dict]:
    contexts = contexts or ([256, 1024] if quick else [1024, 4096, 16384])
    rows = []
    for name in mixers or mixer_names():
        ms = [decode_step_ms(name, c, d_model=d_model, steps=8 if quick else 32) for c in contexts]
        row = {"mixer": name}
        row.update({f"step_ms@{c}": t for c, t in zip(contexts, ms)})
        row[f"ratio {contexts[-1]}/{contexts[0]}"] = ms[-1] / ms[0]
        # a state that grows with the context (KV cache, Hyena's input history) makes the step grow too
        sizes = [build_mixer(name, d_model).state_size(c) for c in (contexts[0], contexts[-1])]
        row["state grows"] = "yes" if sizes[1] > sizes[0] else "no"
        rows.append(row)
    base = next((r for r in rows if r["mixer"] == "attention"), None)
    if base is not None:
        key = f"step_ms@{contexts[-1]}"
        for r in rows:
            r[f"speedup vs attention @{contexts[-1]}"] = base[key] / r[key]
    return rows


def main(argv=None) -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--contexts", type=int, nargs="+", default=None)
    ap.add_argument("--mixers", nargs="+", default=None)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    print_table(run(a.quick, a.contexts, a.mixers, a.d_model), f"decode step (d_model={a.d_model}, batch 1, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
