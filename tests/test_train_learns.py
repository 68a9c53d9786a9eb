"""The trainer, the MQAR task and a model together learn: not only "runs", but solves recall.

Attention with a short conv (arch=attention_conv, Zoology's attention baseline) reaches near-perfect
associative recall on a small MQAR in a few hundred steps; a broken mask, shifted targets, a leaking
or unlearnable task, or a bad optimizer setup all show up here as accuracy near chance.
"""
from __future__ import annotations

from trainutil import tiny_cfg

from train import train_run


def test_attention_conv_solves_small_mqar(tmp_path):
    s = train_run(tiny_cfg(
        tmp_path, "arch=attention_conv", "model.d_model=64", "model.n_layers=2", "task.vocab_size=64",
        "task.seq_len=64", "task.num_kv_pairs=8", "batch_size=8", "lr=3e-3", "budget.max_steps=450",
        "val_every=450", "val_batches=8", "log_every=50", "trainer.ckpt_every=1000", "seed=0",
    ))
    assert s["finished"] and s["steps"] == 450
    assert s["val_acc"] >= 0.9, f"attention_conv should solve MQAR(8 pairs, seq 64) in 450 steps, got {s['val_acc']:.3f}"
