"""Export a trained run to a self-contained model folder (``LanguageModel.save_pretrained``).

    python -m train.export runs/attention-mqar-d64x2 exported/attention-mqar    # -> config.json + model.safetensors
    from train.export import export_run; export_run(run_dir, out_dir)

The folder loads with ``archs.LanguageModel.from_pretrained(out_dir)`` (no Hydra config, no pickle)
and is what ``python -m eval throughput|quality model_dir=...`` take.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the weights of ``run_dir``'s ``checkpoints/last.ckpt`` (read with weights_only=True) to ``out_dir``."""
    from .api import load_run

    model, _, _ = load_run(run_dir)
    model.save_pretrained(out_dir)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run folder written by `python -m train` (config.yaml, checkpoints/last.ckpt)")
    parser.add_argument("out_dir", help="folder to write config.json and model.safetensors into")
    args = parser.parse_args(argv)
    try:
        out = export_run(args.run_dir, args.out_dir)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {args.run_dir} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
