"""Training-step cost of the compare's tiny language models, per FLOP, against attention.

Rows: one per (arch, seq_len, CPU path): a model as ``configs/arch/<arch>.yaml`` with
``configs/model/tiny.yaml`` (d_model 64, 2 layers), byte vocabulary (256), batch 8; one AdamW
training step (forward, backward, update); all (arch, path) steps interleaved round by round,
each row the fastest of ``steps`` rounds after two warm-up rounds (CPU time with one torch thread,
``common.cpu_clock``).
FLOPs per step = 3 x ``flops_per_token(seq_len)`` x tokens (the trainer's budget rule).
``ratio`` = (ms / FLOP of this row) / (ms / FLOP of attention at the same length and path):
the issue-14 target is mamba <= 1.5 with the compiled path.

    python -m eval.bench.tiny_lm [--quick] [--threads N] [--profile ARCH]
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from archs import LanguageModel
from archs.ops import _compile

from .common import bench_parser, cpu_clock, print_table

ARCHS = ("attention", "mamba", "mamba2", "hgrn")
_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def build(arch: str, vocab: int = 256) -> LanguageModel:
    """The compare's tiny model of ``arch`` (its arch config, model=tiny)."""
    from omegaconf import OmegaConf

    a = OmegaConf.to_container(OmegaConf.load(_CONFIGS / "arch" / f"{arch}.yaml"))
    m = OmegaConf.to_container(OmegaConf.load(_CONFIGS / "model" / "tiny.yaml"))
    return LanguageModel(vocab, m["d_model"], m["n_layers"], layers=a["layers"], mixer_kwargs=a.get("mixer_kwargs"),
                         mlp=a.get("mlp", "swiglu"), short_conv=a.get("short_conv"))


def train_step(model: LanguageModel, batch: int, seq_len: int):
    """A closure running one AdamW step on random tokens (fixed batch)."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.vocab_size, (batch, seq_len + 1), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def rows(seq_lens=(64, 128), archs=ARCHS, batch: int = 8, steps: int = 10, paths=("pure", "compiled")) -> list[dict]:
    """Steps of every (arch, path) interleaved, ``steps`` rounds; each row keeps its fastest step
    (on a shared machine the minimum is the least disturbed measurement of the same work)."""
    if _compile.compiler() is None:
        paths = tuple(p for p in paths if p != "compiled")
    out = []
    for L in seq_lens:
        runs = {}
        for arch in archs:
            for path in paths:
                torch.manual_seed(0)
                model = build(arch)
                runs[arch, path] = (train_step(model, batch, L), 3 * model.flops_per_token(L) * batch * L, [])
        clock = cpu_clock()
        for r in range(steps + 2):  # two warm-up rounds
            for (arch, path), (step, _, times) in runs.items():
                with _compile.forced("1" if path == "compiled" else "0"):
                    t0 = clock()
                    step()
                    if r >= 2:
                        times.append(1e3 * (clock() - t0))
        for path in paths:
            base = min(runs["attention", path][2]) / runs["attention", path][1] if ("attention", path) in runs else None
            for arch in archs:
                _, flops, times = runs[arch, path]
                ms = min(times)
                out.append({"arch": arch, "L": L, "path": path, "step_ms": ms, "GFLOP": flops / 1e9,
                            "ratio": (ms / flops) / base if base else "n/a"})
    return out


def profile(arch: str, L: int = 64, batch: int = 8, row_limit: int = 15) -> None:
    """Print torch.profiler's top ops (self CPU time) for a few training steps of ``arch``."""
    step = train_step(build(arch), batch, L)
    step(), step()
    with torch.profiler.profile() as p:
        for _ in range(5):
            step()
    print(f"\n## {arch} (L={L}, batch {batch}, path {_compile.mode()}): 5 steps")
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit))


def run(quick: bool = False) -> list[dict]:
    return rows(seq_lens=(64,), steps=3) if quick else rows()


def main(argv=None) -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1, as the compare)")
    ap.add_argument("--profile", default=None, help="profile this arch's training step instead")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.profile:
        profile(a.profile)
        return
    print_table(run(a.quick), f"tiny LM training step, time per FLOP vs attention ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
