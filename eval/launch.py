"""Dispatch compare jobs: in this process (sequential, the default) or through a Hydra launcher.

``launcher: sequential`` runs ``run_job`` in a loop in this process (no start-up cost, the
fastest for tiny runs on a few cores). Any other value is a Hydra launcher plugin name
(``joblib``: processes on this machine, ``n_jobs`` of them; ``submitit_slurm`` /
``submitit_local``: through ``hydra-submitit-launcher``, extra ``[slurm]``): the pending jobs are
written to a plan file and ``python -m eval.job -m hydra/launcher=<name> index=0,..,n-1`` runs
them; every job writes its own result file, read back here. Jobs whose result is already on
disk (same spec) are not launched again.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import io
from .jobs import cached_result, run_job


def launch(specs: Sequence[dict], launcher: str = "sequential", n_jobs: int = 1, overrides: Sequence[str] = (),
           plan_dir: str | Path | None = None, progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Results of ``specs`` (same order). ``progress(spec)`` is called as each job is done (sequential) or found."""
    results: dict[str, dict] = {}
    pending = []
    for s in specs:
        r = cached_result(s)
        if r is not None:
            results[s["id"]] = r
            if progress:
                progress(s)
        else:
            pending.append(s)
    if pending and launcher == "sequential":
        for s in pending:
            results[s["id"]] = run_job(s)
            if progress:
                progress(s)
    elif pending:
        _hydra_multirun(pending, launcher, n_jobs, overrides, Path(plan_dir or Path(pending[0]["out"]) / "jobs"))
        for s in pending:
            r = cached_result(s)
            results[s["id"]] = r if r is not None else {
                "id": s["id"], "arch": s["arch"], "config": s["config"], "task": s["task"], "lr": s["lr"], "seed": s["seed"],
                "phase": s.get("phase"), "val_loss": None, "metrics": {},
                "error": f"launcher {launcher}: the job wrote no result (see its output above)"}
            if progress:
                progress(s)
    return [results[s["id"]] for s in specs]


def _hydra_multirun(specs: list[dict], launcher: str, n_jobs: int, overrides: Sequence[str], plan_dir: Path) -> None:
    plan_dir.mkdir(parents=True, exist_ok=True)
    plan = io.write_json(plan_dir / f"plan-{specs[0]['id']}.json", list(specs))
    cmd = [sys.executable, "-m", "eval.job", "-m", f"plan={plan}", "index=" + ",".join(str(i) for i in range(len(specs))),
           f"hydra/launcher={launcher}"]
    if launcher == "joblib":
        cmd.append(f"hydra.launcher.n_jobs={int(n_jobs)}")
    cmd += list(overrides)
    env = dict(os.environ, SEQARENA_SWEEP_DIR=str(plan_dir / "hydra"))
    root = str(Path(__file__).resolve().parents[1])  # the folder holding eval/, train/, archs/
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"launcher {launcher}: {' '.join(cmd[1:4])} ... exited with {proc.returncode}:\n{proc.stdout[-3000:]}")
