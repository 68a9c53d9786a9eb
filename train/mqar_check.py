"""MQAR at matched compute: attention within a CPU-time budget, every other arch at the same FLOPs.

    python -m train.mqar_check                    # 60 s of attention training; every mixer + attention_conv
    python -m train.mqar_check --seconds 120 --archs attention,attention_conv,gla,mamba
    python -m train.mqar_check --short-conv 4     # every arch with a short conv in front (Zoology's setting)
    python -m train.mqar_check --archs attention_conv,deltanet --seeds 0,1,2   # mean and range over seeds

Setting: MQAR (Zoology), sequence 128, 8 key-value pairs, d_model 64, 2 layers. The FLOP
budget is calibrated once: attention's training FLOPs per CPU-second on this machine (a few
timed steps, process CPU time) x ``--seconds``; every arch then trains on that many FLOPs (its own steps
follow from its FLOPs per token). Reports recall accuracy on the validation set at the
training length and, without retraining, at longer lengths (extrapolation). A benchmark,
not a test: numbers depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from eval.config import resolve_archs

from .api import compose_config, load_run, plan_run, train_run
from .budget import train_flops_per_step
from .data import build_task
from .data.datamodule import train_batch
from .module import LMModule, masked_accuracy_counts, masked_lm_loss


def overrides(arch: str, args, seed: int = 0) -> list[str]:
    return [
        f"arch={arch}", "task=mqar", "task.num_kv_pairs=8", "task.seq_len=128", "model.d_model=64", "model.n_layers=2",
        f"batch_size={args.batch_size}", f"lr={args.lr}", f"results_root={args.results_root}", f"name={run_name(arch, args, seed)}",
        "log_every=25", "val_every=100", "val_batches=8", "warmup_frac=0.05", "trainer.progress_bar=false",
        f"seed={seed}", f"arch.short_conv={args.short_conv or 'null'}",
    ]


def run_name(arch: str, args, seed: int = 0) -> str:
    return arch + (f"-short_conv{args.short_conv}" if args.short_conv else "") + (f"-seed{seed}" if seed else "")


def calibrate_flops_per_s(args, seed: int, steps: int = 6) -> float:
    """Attention's training FLOPs per CPU-second here (process CPU time over all threads, so a
    shared, busy machine is not penalised for time it waits): a few optimizer steps after a warm-up."""
    plain = [o for o in overrides("attention", args, seed) if not o.startswith("arch.short_conv")]  # the budget is plain attention's
    plan = plan_run(compose_config(plain + ["budget.max_steps=1"]))
    model, task = plan["model"], plan["task"]
    lit = LMModule(model, lr=args.lr)
    opt = lit.configure_optimizers()["optimizer"]
    times = []
    for i in range(steps + 1):
        b = train_batch(task, args.batch_size, 128, 0, i)
        t0 = time.process_time()
        loss = masked_lm_loss(model(b["inputs"]), b["targets"])
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.process_time() - t0)
    per_step = sorted(times[1:])[len(times[1:]) // 2]  # median
    return train_flops_per_step(model, 128, args.batch_size) / per_step


@torch.no_grad()
def accuracy(model, task, seq_len: int, n: int = 256, seed: int = 12345) -> float:
    d = task.generate(n, seq_len, seed)
    correct = scored = 0
    for i in range(0, n, 64):
        c, s = masked_accuracy_counts(model(d["inputs"][i : i + 64]), d["targets"][i : i + 64])
        correct, scored = correct + c, scored + s
    return correct / max(scored, 1)


def summarize(arch: str, params: int, runs: list[dict], lengths: list[int]) -> dict:
    """One row per arch: means over seeds (steps, FLOPs, time, loss, accuracies) and, with more
    than one seed, the range of the training-length accuracy."""
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    row = {"arch": arch, "params": params, "seeds": len(runs), "steps": round(mean["steps"]),
           "train_flops": mean["train_flops"], "train_s": round(mean["train_s"], 1), "val_loss": round(mean["val_loss"], 3)}
    row.update({f"acc@{L}": round(mean[f"acc@{L}"], 3) for L in lengths})
    if len(runs) > 1:
        accs = [r[f"acc@{lengths[0]}"] for r in runs]
        row[f"acc@{lengths[0]} range"] = f"{min(accs):.3f}-{max(accs):.3f}"
    return row


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="attention's training CPU-seconds; sets the FLOP budget")
    p.add_argument("--flops", type=float, default=None, help="use this FLOP budget instead of calibrating")
    p.add_argument("--archs", default="all,attention_conv",
                   help="comma-separated arch configs (configs/arch/*.yaml); 'all' = every registered mixer")
    p.add_argument("--batch-size", type=int, default=8, help="small batches: more steps per CPU-second, which recall needs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (one keeps timings steady)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seeds", default="0", help="comma-separated seeds (init and data); rows give the mean and the range")
    p.add_argument("--short-conv", type=int, default=None, help="put a short conv of this kernel in front of every mixer")
    p.add_argument("--lengths", default="128,256,512", help="evaluation lengths")
    p.add_argument("--results-root", default="runs/mqar_check")
    args = p.parse_args(argv)
    archs = resolve_archs(args.archs.split(","))
    seeds = [int(x) for x in args.seeds.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    flops = args.flops or calibrate_flops_per_s(args, seeds[0]) * args.seconds
    conv = f", short conv {args.short_conv} in front of every mixer" if args.short_conv else ""
    print(f"# MQAR seq 128, 8 kv pairs, d_model 64, 2 layers, batch {args.batch_size}, lr {args.lr}, {torch.get_num_threads()} thread(s){conv}; "
          f"budget {flops:.3g} training FLOPs ({'given' if args.flops else f'{args.seconds:g} CPU-s of attention here'})")
    lengths = [int(x) for x in args.lengths.split(",")]
    rows = []
    for arch in archs:
        runs = []
        for seed in seeds:
            t0 = time.time()
            try:
                summary = train_run(compose_config(overrides(arch, args, seed) + [f"budget.flops={flops}"]))
            except Exception as e:  # keep going: one broken arch should not hide the others
                print(f"{arch} seed {seed}: failed: {type(e).__name__}: {e}")
                continue
            model, cfg, _ = load_run(Path(args.results_root) / run_name(arch, args, seed))
            task = build_task(cfg.task)
            params = summary["params"]
            run = {"steps": summary["steps"], "train_flops": summary["train_flops"], "train_s": summary["wall_time_s"],
                   "val_loss": summary["val_loss"],
                   **{f"acc@{L}": accuracy(model, task, L) for L in lengths}}
            runs.append(run)
            print(f"arch={arch} seed={seed} params={params} " + " ".join(f"{k}={v:.4g}" for k, v in run.items()),
                  f"(total {time.time() - t0:.0f} s)", flush=True)
        if runs:
            rows.append(summarize(arch, params, runs, lengths))
    if rows:
        keys = list(rows[0])
        print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
        for r in rows:
            print("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) and k == "train_flops" else str(r[k]) for k in keys) + " |")
    return rows


if __name__ == "__main__":
    main()
