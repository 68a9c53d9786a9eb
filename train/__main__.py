"""``python -m train [--wait] [overrides]`` / ``python -m train -m <sweeps>``: the Hydra app.

Each run writes ``${results_root}/${name}/``. In a multirun the swept overrides are appended
to the name (``attention-mqar-d64x2-lr=0.001``, or ``<your name>-lr=0.001`` with an explicit
``name=``) so sweep points never share a folder. ``--wait`` (= ``lock_wait=true``) waits for
another process using the same run folder instead of failing.

Exit status: 0 done; 2 bad config or missing data file; 3 the run folder is in use;
143 / 130 stopped by SIGTERM / SIGINT after saving a resumable checkpoint.

Output: a start line (run folder, params, steps, FLOPs); when stdout is not a terminal, a progress
line with an ETA every 10 seconds (on a terminal, Lightning's progress bar); a summary line at the end.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, open_dict

from .api import configs_dir, train_run
from .lock import FolderLockedError
from .signals import RunInterrupted, raising_signals


def _sweep_name(cfg: DictConfig) -> None:
    """In a multirun, append the swept overrides (``lr=0.001``) to the name (default or explicit)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return
    explicit = any(o.split("=")[0].lstrip("+~") == "name" for o in hc.overrides.task)
    args = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
    try:
        swept = {o.get_key_element() for o in OverridesParser.create().parse_overrides(args) if o.is_sweep_override()}
    except Exception:  # unparsable argv: fall back to every override of this job
        swept = {o.split("=")[0] for o in hc.overrides.task}
    swept -= {"name", "results_root"}
    if not explicit:
        swept -= {"arch", "task"}  # already in the default name
    tag = ",".join(o for o in hc.overrides.task if o.split("=")[0] in swept).replace("/", "_").replace("\\", "_")
    if tag:
        with open_dict(cfg):
            cfg.name = f"{cfg.name}-{tag}"


@hydra.main(config_path=str(configs_dir()), config_name="train", version_base=None)
def main(cfg: DictConfig) -> float | None:
    from pathlib import Path

    from .progress import ProgressLines

    _sweep_name(cfg)
    lines = ProgressLines(Path(str(cfg.results_root)) / str(cfg.name), int(cfg.seq_len), int(cfg.batch_size) * int(cfg.seq_len),
                          lines=not sys.stdout.isatty())
    try:
        summary = train_run(cfg, callbacks=[lines])
    except (ValueError, KeyError, FileNotFoundError) as e:  # bad config or missing data file: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except FolderLockedError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    if summary:
        keys = ("name", "params", "steps", "tokens", "train_flops", "final_train_loss", "val_loss", "val_acc", "wall_time_s")
        print(" ".join(f"{k}={summary.get(k)}" for k in keys))
        return summary.get("val_loss")
    return None


def _argv_wait(argv: list[str]) -> list[str]:
    """``--wait`` becomes the override ``lock_wait=true`` (Hydra does not know the flag)."""
    return [("lock_wait=true" if a == "--wait" else a) for a in argv]


def cli() -> int:
    sys.argv = [sys.argv[0], *_argv_wait(sys.argv[1:])]
    try:
        with raising_signals():
            main()
    except RunInterrupted as e:
        print(f"stopped: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(cli())
