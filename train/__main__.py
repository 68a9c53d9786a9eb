"""``python -m train [overrides]`` / ``python -m train -m <sweeps>``: the Hydra app.

Each run writes ``${results_root}/${name}/``. In a multirun the swept overrides are appended
to the default name (``attention-mqar-d64x2-lr=0.001``) so sweep points do not collide.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, open_dict

from .api import configs_dir, train_run


def _sweep_name(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN and not any(o.split("=")[0].lstrip("+~") == "name" for o in hc.overrides.task):
        tag = hc.job.override_dirname.replace("/", "_")
        if tag:
            with open_dict(cfg):
                cfg.name = f"{cfg.name}-{tag}"


@hydra.main(config_path=str(configs_dir()), config_name="train", version_base=None)
def main(cfg: DictConfig) -> float | None:
    _sweep_name(cfg)
    try:
        summary = train_run(cfg)
    except ValueError as e:  # bad config: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if summary:
        keys = ("name", "params", "steps", "tokens", "train_flops", "final_train_loss", "val_loss", "val_acc", "wall_time_s")
        print(" ".join(f"{k}={summary.get(k)}" for k in keys))
        return summary.get("val_loss")
    return None


if __name__ == "__main__":
    main()
