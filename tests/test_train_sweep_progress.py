"""train.sweep never ranks runs of different budgets together; python -m train's progress lines."""
from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
import torch

from train.progress import ProgressLines
from train.sweep import best_runs, main


def _run(root, name, lr, seed, val_loss, flops=1e12, d_model=64):
    d = root / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "name": name, "arch": "gla", "task": "mqar", "lr": lr, "seed": seed, "val_loss": val_loss, "finished": True,
        "budget_flops": flops, "steps": 100, "d_model": d_model, "n_layers": 2, "seq_len": 64, "batch_size": 8}))


def test_sweep_groups_by_budget_and_averages_seeds(tmp_path, capsys):
    _run(tmp_path, "a", 1e-3, 0, 2.0)
    _run(tmp_path, "b", 1e-3, 1, 2.0)
    _run(tmp_path, "c", 3e-3, 0, 1.5)   # the best single run ...
    _run(tmp_path, "d", 3e-3, 1, 3.0)   # ... but its lr's mean over seeds (2.25) is worse than 1e-3's (2.0)
    _run(tmp_path, "e", 1e-2, 0, 0.5, flops=4e12)  # a bigger budget: its own group, never ranked against the others
    best = best_runs(tmp_path)
    assert len(best) == 2
    by_budget = {g[2]: s for g, s in best.items()}
    assert by_budget["1e+12 FLOPs"]["lr"] == 1e-3 and by_budget["4e+12 FLOPs"]["name"] == "e"
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "best lr=0.001 (edge of the grid)" in out and "0.003: 2.2500 (n=2)" in out
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "are never ranked against each other" in " ".join(capsys.readouterr().out.split())


def test_progress_lines_start_line_and_eta():
    model = SimpleNamespace(flops_per_token=lambda L: 1000.0, num_params=lambda: 117_056)
    trainer = SimpleNamespace(is_global_zero=True, max_steps=4, global_step=0)
    out = io.StringIO()
    cb = ProgressLines("runs/x", seq_len=16, tokens_per_step=64, every_s=0.0, stream=out)
    cb.on_train_start(trainer, SimpleNamespace(model=model))
    for step in range(1, 5):
        trainer.global_step = step
        cb.on_train_batch_end(trainer, None, {"loss": torch.tensor(2.0)}, None, step)
    lines = out.getvalue().splitlines()
    assert lines[0] == "run runs/x: 117k params, 4 steps of 64 tokens, 7.68e+05 training FLOPs"
    assert len(lines) == 5 and lines[1].startswith("step 1/4 (25%) loss 2.000 |") and "ETA" in lines[1]
    assert lines[-1].startswith("step 4/4 (100%)") and lines[-1].endswith("ETA 0:00")
