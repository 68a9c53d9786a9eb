"""Truncated BPTT: states detach, checkpoint and trim (attention's KV cache keeps its last tokens);
the text task's stateful batches are consecutive windows per row; a stateful run trains, and the
carried state changes the loss compared with stateless evaluation of the same windows."""
from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
import torch

from archs import build_mixer, mixer_names
from helpers import assert_rel_close
from test_mixer_equivalence import CASES, D, _build
from train.callbacks import read_metrics
from train.data import TextTask
from trainutil import tiny_cfg

from train import train_run


# ---- the state: detach, to_dict / load_dict, trim --------------------------------------------
@pytest.mark.parametrize("name,kw", CASES)
def test_state_detach_and_dict_round_trip(name, kw):
    m = _build(name, kw, torch.float64)
    x = torch.randn(2, 11, D, dtype=torch.float64, requires_grad=True)
    _, st = m.prefill(x[:, :6])
    det = st.detach()
    assert all(not t.requires_grad for t in det.tensors())
    loaded = m.init_state(2, dtype=torch.float64).load_dict(det.to_dict())  # shares det's tensors
    # with autograd on, neither prefill writes into the shared tensors
    y_ref, _ = m.prefill(x[:, 6:], st.detach())
    y, _ = m.prefill(x[:, 6:], loaded)
    assert_rel_close(y, y_ref, 1e-12, f"{name}: prefill from a state rebuilt by load_dict")
    assert m.trim_state(det, 4) is not None


@pytest.mark.parametrize("name,kw", [("attention", {}), ("attention", {"n_heads": 4, "n_kv_heads": 2}), ("fox", {})],
                         ids=["plain", "gqa", "fox"])
def test_attention_trimmed_cache_sees_the_last_tokens(name, kw):
    """After trim_state(keep=8) at position 20, the queries at 20.. attend to keys 12..t: the same
    as a fresh run over x[12:] (RoPE is relative), outputs from position 20 on."""
    torch.manual_seed(0)
    m = build_mixer(name, D, **kw).double().eval()
    x = torch.randn(2, 30, D, dtype=torch.float64)
    with torch.no_grad():
        _, st = m.prefill(x[:, :20])
        st = m.trim_state(st, 8)
        assert st.numel_per_sequence() == m.state_size(8)
        y_a, st = m.prefill(x[:, 20:25], st)
        y_b = torch.stack([m.step(x[:, t], st)[0] for t in range(25, 27)], 1)  # step also sees only the kept keys
        fresh = m(x[:, 12:27])
    assert_rel_close(y_a, fresh[:, 8:13], 1e-10, "prefill after trim")
    assert_rel_close(y_b[:, :1], fresh[:, 13:14], 1e-10, "step after trim")


def test_trim_bounds_growing_states_and_leaves_constant_ones_alone():
    for name in mixer_names():
        m = build_mixer(name, D)
        _, st = m.prefill(torch.randn(1, 12, D))
        n = st.numel_per_sequence()
        trimmed = m.trim_state(st, 4).numel_per_sequence()
        if m.state_size(12) > m.state_size(4):  # a state that grows with the context (a KV cache, a history)
            assert trimmed == m.state_size(4), name
        else:
            assert trimmed == n, name
    m = build_mixer("attention", D, window=5)
    _, st = m.prefill(torch.randn(1, 12, D))
    assert m.trim_state(st, 3).numel_per_sequence() == m.state_size(12)  # a ring buffer is already bounded


# ---- stateful text batches ----------------------------------------------------------------------
def _corpus(tmp_path: Path) -> tuple[str, str]:
    """Two real text files (stdlib sources): ~60 kB training, ~20 kB validation."""
    src = Path(sysconfig.get_paths()["stdlib"])
    train = (src / "argparse.py").read_text()[:60_000]
    val = (src / "textwrap.py").read_text()[:20_000]
    (tmp_path / "train.txt").write_text(train)
    (tmp_path / "val.txt").write_text(val)
    return str(tmp_path / "train.txt"), str(tmp_path / "val.txt")


def test_stream_batches_are_consecutive_windows(tmp_path):
    tr, va = _corpus(tmp_path)
    task = TextTask(source="files", data_files=tr, val_files=va, stateful=True, cache_dir=str(tmp_path / "cache"))
    B, L = 4, 32
    toks = task.train_tokens()
    S = toks.numel() // B
    W = (S - 1 - (L - 1)) // L
    b0 = task.stream_train_batch(B, L, 0, 0)
    assert b0["reset"].all()
    prev = b0
    for step in range(1, 5):
        b = task.stream_train_batch(B, L, 0, step)
        assert not b["reset"].any()
        assert torch.equal(b["inputs"][:, 0], prev["targets"][:, -1])  # row b continues its own text
        assert torch.equal(b["inputs"][:, 1:], b["targets"][:, :-1])
        prev = b
    for r in range(B):  # row r reads its own segment [r S, (r + 1) S) of the stream
        start = int(torch.nonzero((toks.unfold(0, L, 1)[r * S:(r + 1) * S] == b0["inputs"][r]).all(1))[0]) + r * S
        assert r * S <= start < r * S + L
    nxt = task.stream_train_batch(B, L, 0, W)  # a new epoch: reset, differently cut windows
    assert nxt["reset"].all()
    v0, v1 = task.stream_val_batch(B, L, 0), task.stream_val_batch(B, L, 1)
    assert v0["reset"].all() and not v1["reset"].any() and torch.equal(v1["inputs"][:, 0], v0["targets"][:, -1])
    with pytest.raises(ValueError, match="batch_size=4096.*seq_len=32"):
        task.stream_train_batch(4096, L, 0, 0)
    with pytest.raises(ValueError, match="stateful_context"):
        TextTask(stateful=True, stateful_context=0)


# ---- training ---------------------------------------------------------------------------------------
def _stateful_run(tmp_path, arch: str, *extra: str):
    tr, va = _corpus(tmp_path)
    return train_run(tiny_cfg(
        tmp_path / arch, f"arch={arch}", "task=text", "task.source=files", f"task.data_files={tr}", f"task.val_files={va}",
        f"task.cache_dir={tmp_path / 'cache'}", "task.stateful=true", "task.seq_len=32", "batch_size=4",
        "budget.max_steps=60", "log_every=10", "val_every=60", "val_batches=4", "trainer.ckpt_every=1000", "lr=1e-2",
        *extra,
    ))


@pytest.mark.parametrize("arch", ["hgrn", "attention"])
def test_stateful_training_learns_and_the_state_matters(tmp_path, arch):
    from train.api import load_run
    from train.module import LMModule

    s = _stateful_run(tmp_path, arch, "task.stateful_context=16")
    assert s["finished"] and s["steps"] == 60
    rows = [r for r in read_metrics(Path(s["run_dir"]) / "metrics.csv") if r.get("train_loss") == r.get("train_loss")]
    first, last = rows[0]["train_loss"], rows[-1]["train_loss"]
    assert last < first - 0.5, f"{arch}: stateful training loss {first:.3f} -> {last:.3f}"
    # the same trained model on the same validation windows: carrying the state vs not
    model, cfg, _ = load_run(s["run_dir"])
    task = TextTask(source="files", data_files=cfg.task.data_files, val_files=cfg.task.val_files, stateful=True,
                    cache_dir=cfg.task.cache_dir)
    batches = [tuple(task.stream_val_batch(4, 32, i).values()) for i in range(4)]
    carried = LMModule(model, lr=1e-3, stateful=True, carry_tokens=16).evaluate(batches)
    fresh = LMModule(model, lr=1e-3).evaluate(batches)
    assert carried["count"] == fresh["count"]
    gap = (fresh["loss_sum"] - carried["loss_sum"]) / carried["count"]
    print(f"{arch}: train loss {first:.3f} -> {last:.3f}; val loss carried {carried['loss_sum'] / carried['count']:.4f}, stateless {fresh['loss_sum'] / fresh['count']:.4f}")
    assert abs(gap) > 1e-3, f"{arch}: the carried state does not change the validation loss"
    assert s["val_loss"] == pytest.approx(carried["loss_sum"] / carried["count"], rel=1e-4)


def test_stateful_resume_after_a_crash_continues_the_carried_state(tmp_path, monkeypatch):
    """The carried state is in the checkpoint: a run that crashes and resumes logs the same metrics
    as an uninterrupted one (a resumed run starting from an empty state would not)."""
    import train.module
    from test_train_api import _fail_at

    tr, va = _corpus(tmp_path)
    cfg = lambda root, *o: tiny_cfg(  # noqa: E731
        root, "arch=attention", "task=text", "task.source=files", f"task.data_files={tr}", f"task.val_files={va}",
        f"task.cache_dir={tmp_path / 'cache'}", "task.stateful=true", "task.stateful_context=24", "task.seq_len=16",
        "batch_size=2", "budget.max_steps=8", "log_every=1", "val_every=4", "val_batches=2", *o)
    ref = train_run(cfg(tmp_path / "ref"))
    _fail_at(monkeypatch, 6, "crash")  # dies in step 6; last.ckpt is from step 3 (4 would do too)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(cfg(tmp_path / "cut", "trainer.ckpt_every=3"))
    monkeypatch.undo()
    assert train.module.masked_lm_loss.__name__ == "masked_lm_loss"
    resumed = train_run(cfg(tmp_path / "cut", "trainer.ckpt_every=3"))
    assert resumed["resumed"] and resumed["steps"] == 8
    a = read_metrics(Path(ref["run_dir"]) / "metrics.csv")
    b = read_metrics(Path(resumed["run_dir"]) / "metrics.csv")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for k in ("train_loss", "val_loss"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-6, abs=1e-7, nan_ok=True), (ra["step"], k)


@pytest.mark.parametrize("name,kw", CASES)
def test_carried_state_under_autocast(name, kw):
    """bf16-mixed training carries fp32 states through autocast (whose matmuls hand mixers bf16):
    forward, prefill after prefill and a step run and keep the state's dtype."""
    m = _build(name, kw, torch.float32).train()
    x = torch.randn(2, 9, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
        _, st = m.prefill(x[:, :5])
        dtypes = [t.dtype for t in st.tensors()]
        _, st = m.prefill(x[:, 5:8], st.detach())
        y_t, st = m.step(x[:, 8], st)
    assert torch.isfinite(y.float()).all() and torch.isfinite(y_t.float()).all()
    assert [t.dtype for t in st.tensors()] == dtypes == [t.dtype for t in m.init_state(2).tensors()]
