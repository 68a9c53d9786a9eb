"""``python -m eval <command> [key=value ...]``: the evaluation entry point.

Commands (each composes ``configs/eval/<command>.yaml`` with Hydra overrides;
``python -m eval <command> --help`` lists its settings):

    python -m eval compare                        # the main job: configs/compare/quick.yaml
    python -m eval compare compare=long_context   # another preset
    python -m eval compare compare=recall         # MQAR recall frontier over widths 32/64/128
    python -m eval compare compare=all            # every registered arch (hours of CPU)
    python -m eval compare compare.only=[attention,deltanet] results_root=/tmp/r   # a subset of the preset
    python -m eval compare compare.launcher=joblib compare.n_jobs=2   # runs as parallel processes
    python -m eval throughput model=small contexts=[1024,4096] batch_size=4
    python -m eval quality run=results/quick/runs/mqar-mamba2-lr0.003-s0
    python -m eval throughput model_dir=exported/mamba   # a save_pretrained folder (train.export, from_transformers)
    python -m eval quality model_dir=exported/mamba model_task=mqar   # or tokens_file=ids.txt for text
    python -m eval ops quick=true                 # every eval/bench/*.py benchmark

``compare --wait`` (= ``lock_wait=true``) waits for another compare writing the same folder.
Exit status: 0 ok; 1 some arch failed; 2 bad arguments; 3 the compare folder is in use;
143 / 130 stopped by SIGTERM / SIGINT (rerun the same command to resume).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

COMMANDS = ("compare", "throughput", "quality", "ops")


HELP = {
    "compare": "the experiment: an lr grid per (arch, task) at the first seed, the lr chosen on validation loss, more "
               "seeds at that lr, 95% Student-t intervals, timings; writes <results_root>/<compare.name>/compare.md, "
               ".csv, .json and plots. Presets: configs/compare/*.yaml (compare=<name>).",
    "throughput": "prefill tokens/s, decode latency and state memory of untrained models at several contexts "
                  "(torch.utils.benchmark: warm-up, repeats, median and IQR; spreads above max_spread flagged).",
    "quality": "accuracy vs length, loss by position and passkey grid of one trained run (run=<run folder>).",
    "ops": "the op benchmarks in eval/bench/: fast ops vs their sequential references (quick=true: small sizes).",
}


def _usage() -> str:
    return __doc__.split("\n", 1)[1]


def _command_help(cmd: str) -> str:
    """What the command does and its settings (the composed config, with the preset's comments in the files)."""
    from .config import compose, config_dir

    cfg = compose(f"eval/{cmd}", [])
    files = f"configs/eval/{cmd}.yaml" + (", configs/compare/*.yaml" if cmd == "compare" else "")
    return (f"usage: python -m eval {cmd} [key=value ...]\n\n{HELP[cmd]}\n\n"
            f"Settings (override any with key=value; commented in {files} under {config_dir()}):\n\n"
            + OmegaConf.to_yaml(cfg))


def cmd_compare(cfg) -> int:
    from .compare import run_compare

    result = run_compare(cfg, progress=bool(cfg.get("progress", True)))
    out = Path(str(cfg.results_root)) / result["name"]
    print((out / "compare.md").read_text())
    print(f"wrote {out}/compare.md, compare.csv, compare.json and {len(result['plots'])} plots "
          f"({result['compute_time_s'] / 60:.1f} min of compute; this invocation {result['invocation_time_s']:.0f} s)")
    for e in result["errors"]:
        print(f"FAILED {e['arch']} ({e['stage']}): {e['error']}", file=sys.stderr)
    return 1 if result["errors"] else 0


def cmd_throughput(cfg) -> int:
    from .bench.common import print_table
    from .config import resolve_archs
    from .io import write_csv, write_json
    from .isolate import print_progress as progress
    from .throughput import ThroughputSettings, format_rows, run_throughput

    settings = ThroughputSettings.from_cfg(cfg)
    if cfg.get("model_dir"):  # a save_pretrained folder (exported run, converted HF model)
        from .pretrained import throughput_rows

        rows = throughput_rows(cfg, settings, progress)
        size = f"model_dir={cfg.model_dir}"
    else:
        rows = run_throughput(resolve_archs(cfg.archs), cfg.model, settings, vocab_size=int(cfg.vocab_size), seed=int(cfg.seed),
                              progress=progress)
        size = f"d_model={cfg.model.d_model}, n_layers={cfg.model.n_layers}"
    where = f"{settings.processes} fresh processes per model, samples pooled" if settings.processes else "in this process"
    alloc = ", ".join(sorted({str(r.get("allocator")) for r in rows if r.get("allocator")})) or "?"
    print_table(format_rows(rows, settings.max_spread), title=f"throughput (batch {settings.batch_size}, {settings.dtype}, "
                f"{settings.torch_device()}, {size}; {where}; allocator {alloc})")
    if cfg.get("out"):
        from . import plots

        out = Path(str(cfg.out))
        write_json(out / "throughput.json", rows)
        scalar = [k for k in dict.fromkeys(k for r in rows for k in r) if not any(isinstance(r.get(k), list) for r in rows)]
        write_csv(out / "throughput.csv", rows, scalar)  # the per-sample lists are in the json
        plots.prefill_vs_context(rows, out / "prefill_vs_context.png")
        plots.decode_vs_context(rows, out / "decode_vs_context.png")
        print(f"wrote {cfg.out}/throughput.json, throughput.csv, prefill_vs_context.png, decode_vs_context.png "
              "(shaded: interquartile range of the timed samples)")
    return 0


def cmd_quality(cfg) -> int:
    import train

    from .bench.common import print_table
    from .io import write_json
    from .quality import evaluate_run

    if cfg.get("model_dir"):  # a save_pretrained folder (exported run, converted HF model)
        from .pretrained import load_model_dir, quality_inputs

        model = load_model_dir(cfg.model_dir).float()
        run_cfg, task = quality_inputs(cfg, model)
        out = evaluate_run(model, run_cfg, task, cfg)
        print(f"model {cfg.model_dir}: task {out['task']}")
    else:
        if not cfg.get("run"):
            raise SystemExit("quality: give the run folder, e.g. python -m eval quality run=results/quick/runs/mqar-mamba2-lr0.003-s0, "
                             "or a saved model folder: model_dir=<save_pretrained folder>")
        run_dir = Path(str(cfg.run))
        if not run_dir.is_dir():
            raise SystemExit(f"quality: run folder {run_dir} does not exist")
        model, run_cfg, summary = train.load_run(run_dir)
        model = model.float().eval()
        out = evaluate_run(model, run_cfg, train.build_task(run_cfg.task), cfg)
        print(f"run {run_dir}: arch {summary.get('arch')}, task {out['task']}, trained at length {out['train_len']}")
    for key in ("loss_by_position", "accuracy_vs_length", "passkey"):
        if key in out:
            print_table(out[key], title=key)
    if cfg.get("out"):
        write_json(Path(str(cfg.out)) / "quality.json", out)
    return 0


def cmd_ops(cfg) -> int:
    from .ops import run_ops

    only = cfg.get("only")
    only = [only] if isinstance(only, str) else (list(only) if only else None)
    results = run_ops(only, quick=bool(cfg.quick))
    return 1 if any(isinstance(v, Exception) for v in results.values()) else 0


def main(argv: list[str] | None = None) -> int:
    from train.lock import FolderLockedError
    from train.signals import RunInterrupted, raising_signals

    try:
        with raising_signals():
            return _main(argv)
    except RunInterrupted as e:
        print(f"stopped: {e}", file=sys.stderr)
        return e.exit_code
    except FolderLockedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as e:  # a bad setting (e.g. compare.name): one clear line
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [("lock_wait=true" if a == "--wait" else a) for a in argv]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    cmd, overrides = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"unknown command {cmd!r}; expected one of: {', '.join(COMMANDS)}\n\n{_usage()}", file=sys.stderr)
        return 2
    if any(o in ("-h", "--help", "help") for o in overrides):
        print(_command_help(cmd))
        return 0
    if cmd != "compare" and "lock_wait=true" in argv:
        print(f"{cmd}: --wait only applies to compare", file=sys.stderr)
        return 2
    bad = [o for o in overrides if "=" not in o]
    if bad:
        print(f"{cmd}: arguments must be key=value overrides, got {bad}", file=sys.stderr)
        return 2
    from .config import compose

    cfg = compose(f"eval/{cmd}", overrides)
    if cfg.get("print_config"):
        print(OmegaConf.to_yaml(cfg))
    return {"compare": cmd_compare, "throughput": cmd_throughput, "quality": cmd_quality, "ops": cmd_ops}[cmd](cfg)


if __name__ == "__main__":
    sys.exit(main())
