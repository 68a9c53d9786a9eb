"""``python -m eval.job -m plan=<plan.json> index=0,1,... [hydra/launcher=...]``: compare jobs as a Hydra app.

``eval compare`` writes the plan (a JSON list of job specs, see ``eval/jobs.py``) and starts this
app as a multirun over the indices, so Hydra's launcher plugins dispatch the jobs
(``hydra/launcher=joblib`` for processes on one machine, ``submitit_slurm`` for a SLURM cluster).
Each job writes its own result file; the compare reads them back.
"""
from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from .config import config_dir


@hydra.main(config_path=str(config_dir() / "eval"), config_name="job", version_base=None)
def main(cfg: DictConfig) -> None:
    from .jobs import run_job

    with open(str(cfg.plan), encoding="utf-8") as f:
        specs = json.load(f)
    i = int(cfg.index)
    if not 0 <= i < len(specs):
        raise SystemExit(f"eval.job: index={i} is outside the plan's {len(specs)} jobs ({cfg.plan})")
    r = run_job(specs[i])
    if r.get("error"):
        print(f"job {specs[i]['id']} failed: {r['error']}", flush=True)


if __name__ == "__main__":
    main()
