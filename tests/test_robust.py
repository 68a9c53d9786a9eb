"""Issue 15's reproductions (the fast ones): locks, confined names, data identity, held-out split,
corrupt files, non-finite checkpoints, symlinked temp names, argument validation.

The CLI-level reproductions (two trainers on one name, SIGTERM / SIGINT, sweeps with a name)
are in test_robust_processes.py (slow, real processes).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from trainutil import REPO, tiny_cfg

import train.module
from train import config_hash, train_run
from train.callbacks import read_metrics
from train.checkpoint import CorruptFileWarning, check_checkpoint, read_checkpoint
from train.config import check_name, run_dir
from train.data import TextTask, build_task
from train.data.text import byte_split
from train.lock import FolderLock, FolderLockedError
from train.module import NonFiniteLossError, masked_lm_loss

ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def _holder(folder, hold_s: float = 60.0) -> subprocess.Popen:
    """A real second process that takes ``folder``'s lock, says so, and holds it for ``hold_s``."""
    # train/lock.py loaded on its own (it imports only the standard library): no torch import, a fast start
    code = textwrap.dedent(f"""
        import importlib.util, sys, time
        spec = importlib.util.spec_from_file_location("lock", {str(REPO / "train" / "lock.py")!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        lock = mod.FolderLock({str(folder)!r}).acquire()
        print("locked", flush=True)
        time.sleep({hold_s})
        lock.release()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


# ---- 1. two processes on one folder ---------------------------------------------------------------
def test_lock_held_by_another_process_is_a_clear_error_then_free_after_it_ends(tmp_path):
    p = _holder(tmp_path / "x", hold_s=1.0)
    try:
        with pytest.raises(FolderLockedError, match=rf"run folder .*x is in use by pid {p.pid} on host \S+.*--wait"):
            FolderLock(tmp_path / "x", what="run folder").acquire()
        with FolderLock(tmp_path / "x", wait=30):  # waits for the holder to finish
            info = json.loads((tmp_path / "x" / ".lock").read_text())
            assert info["pid"] == os.getpid()
    finally:
        p.wait(timeout=60)


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    p = _holder(tmp_path / "x")
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert json.loads((tmp_path / "x" / ".lock").read_text())["pid"] == p.pid  # the dead holder's record is there
    with FolderLock(tmp_path / "x"):
        assert json.loads((tmp_path / "x" / ".lock").read_text())["pid"] == os.getpid()


def test_train_run_refuses_a_run_folder_in_use(tmp_path):
    p = _holder(tmp_path / "x")
    try:
        with pytest.raises(FolderLockedError, match=f"pid {p.pid}"):
            train_run(tiny_cfg(tmp_path, "name=x"))
        assert sorted(f.name for f in (tmp_path / "x").iterdir()) == [".lock"]  # nothing of ours written
    finally:
        p.kill()
        p.wait()


def test_eval_compare_refuses_a_compare_folder_in_use(tmp_path, capsys):
    from eval.__main__ import main

    p = _holder(tmp_path / "tiny")
    try:
        assert main(["compare", "compare=tiny", f"results_root={tmp_path}", "progress=false"]) == 3
        err = capsys.readouterr().err
        assert f"compare folder {tmp_path / 'tiny'} is in use by pid {p.pid}" in err
        assert not (tmp_path / "tiny" / "runs").exists()
    finally:
        p.kill()
        p.wait()


# ---- 2. one data file: a real held-out split ---------------------------------------------------
def test_single_file_holds_out_its_last_bytes_and_train_never_overlaps(tmp_path):
    f = tmp_path / "c.txt"
    data = bytes(range(256)) * 40 + b"the end"
    f.write_bytes(data)
    t = build_task({"name": "text", "source": "files", "data_files": str(f), "val_percent": 5.0})
    tr, va = t.train_tokens(), t.val_tokens()
    stream = data + b"\n"
    n_val = int(len(stream) * 0.05)
    assert va.numel() == n_val and tr.numel() == len(stream) - n_val
    assert bytes(tr.tolist()) + bytes(va.tolist()) == stream  # a partition of the file: no byte in both
    assert bytes(va.tolist()).endswith(b"the end\n")
    # every training window lies before the held-out bytes
    b = t.train_batch(64, 32, seed=3)
    assert int(b["targets"].numel()) and tr.numel() - 1 >= 32
    with pytest.raises(ValueError, match="too few"):
        byte_split(torch.zeros(3, dtype=torch.uint8), 10.0)


def test_non_utf8_corpus_is_read_as_bytes(tmp_path):
    f = tmp_path / "latin1.txt"
    data = ("caf\xe9 na\xefve " * 200).encode("latin-1") + b"\xff\xfe\x80"
    f.write_bytes(data)
    t = TextTask(source="files", data_files=str(f), val_percent=10.0)
    assert bytes(t.train_tokens().tolist()) + bytes(t.val_tokens().tolist()) == data + b"\n"
    s = train_run(tiny_cfg(tmp_path, "task=text", "task.source=files", f"task.data_files={f}", "task.seq_len=32",
                           "budget.max_steps=2", "val_every=2", "name=latin1"))
    assert s["finished"]


def test_max_files_zero_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="task.max_files must be a positive int or null .*got 0"):
        train_run(tiny_cfg(tmp_path, "task=text", "task.max_files=0", "name=m0"))
    with pytest.raises(ValueError, match="max_files must be a positive int"):
        TextTask(max_files=0)


# ---- 3. editing a data file changes the run ---------------------------------------------------
def test_editing_a_data_file_changes_the_run_hash_and_retrains(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("first corpus " * 300)
    over = ("task=text", "task.source=files", f"task.data_files={f}", "task.seq_len=32", "budget.max_steps=2", "val_every=2", "name=t")
    a = train_run(tiny_cfg(tmp_path, *over))
    f.write_text("another corpus " * 300)
    assert config_hash(tiny_cfg(tmp_path, *over)) != a["config_hash"]
    b = train_run(tiny_cfg(tmp_path, *over))
    assert b["config_hash"] != a["config_hash"] and not b["resumed"] and b["val_loss"] != a["val_loss"]


# ---- 4. names stay under results_root ---------------------------------------------------------
@pytest.mark.parametrize("name", ["../../victim", "/tmp/abs", "a/b", "..", ".", "", "x\x00y"])
def test_a_name_that_leaves_results_root_is_refused(tmp_path, name):
    with pytest.raises(ValueError, match="must be a single folder name"):
        train_run(tiny_cfg(tmp_path / "root", f"name='{name}'" if name else "name=''"))
    assert not (tmp_path / "victim").exists() and not (tmp_path / "root").exists()


def test_a_run_folder_symlinked_outside_is_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "x").symlink_to(tmp_path / "outside")
    with pytest.raises(ValueError, match="outside results_root"):
        run_dir(tiny_cfg(tmp_path / "root", "name=x"))
    assert check_name("attention-mqar-d32x1-lr=0.01,seed=1") == "attention-mqar-d32x1-lr=0.01,seed=1"


def test_compare_name_that_leaves_results_root_is_refused(tmp_path, capsys):
    from eval.__main__ import main

    assert main(["compare", "compare=tiny", "compare.name=../../x", f"results_root={tmp_path / 'r'}", "progress=false"]) == 2
    assert "compare.name='../../x' must be a single folder name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "r").exists()


# ---- 5. corrupt checkpoints and metrics ---------------------------------------------------------
def _crash_at(monkeypatch, call: int):
    n = {"calls": 0}

    def loss(logits, targets):
        if torch.is_grad_enabled():
            n["calls"] += 1
            if n["calls"] == call:
                raise RuntimeError("simulated crash")
        return masked_lm_loss(logits, targets)

    monkeypatch.setattr(train.module, "masked_lm_loss", loss)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    return root, train_run(tiny_cfg(root, "name=ref"))


def _same_rows(a, b):
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for k in ("train_loss", "val_loss", "lr"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-6, nan_ok=True), (ra["step"], k)


def test_truncated_last_checkpoint_is_moved_aside_and_the_previous_one_resumes(tmp_path, monkeypatch, reference):
    root, ref = reference
    _crash_at(monkeypatch, 5)  # dies in step 5: last.ckpt = step 4, prev.ckpt = step 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(tiny_cfg(tmp_path, "name=r"))
    monkeypatch.undo()
    ck = tmp_path / "r" / "checkpoints"
    assert read_checkpoint(ck / "last.ckpt")["global_step"] == 4 and read_checkpoint(ck / "prev.ckpt")["global_step"] == 2
    data = (ck / "last.ckpt").read_bytes()
    (ck / "last.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.warns(CorruptFileWarning) as seen:
        s = train_run(tiny_cfg(tmp_path, "name=r"))
    msgs = [str(w.message) for w in seen]
    assert any("last.ckpt is unreadable" in m for m in msgs) and any("resuming from" in m and "prev.ckpt" in m for m in msgs)
    assert (ck / "last.ckpt.corrupt").exists() and s["resumed"] and s["finished"] and s["steps"] == 6
    assert s["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-6)
    _same_rows(read_metrics(root / "ref" / "metrics.csv"), read_metrics(tmp_path / "r" / "metrics.csv"))


def test_no_readable_checkpoint_restarts_from_scratch_with_a_warning(tmp_path, monkeypatch, reference):
    _, ref = reference
    _crash_at(monkeypatch, 5)
    with pytest.raises(RuntimeError):
        train_run(tiny_cfg(tmp_path, "name=r"))
    monkeypatch.undo()
    ck = tmp_path / "r" / "checkpoints"
    for f in ("last.ckpt", "prev.ckpt"):
        (ck / f).write_bytes(b"\0" * 4096)  # a power cut: the size is there, the bytes are not
    with pytest.warns(CorruptFileWarning):
        s = train_run(tiny_cfg(tmp_path, "name=r"))
    assert not s["resumed"] and s["finished"] and s["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-6)


def test_nul_padded_metrics_are_moved_aside_and_the_run_resumes(tmp_path, monkeypatch, reference):
    root, _ = reference
    _crash_at(monkeypatch, 6)  # dies in step 6 after the step-4 row; last.ckpt = step 4 (ckpt_every=2)
    with pytest.raises(RuntimeError):
        train_run(tiny_cfg(tmp_path, "name=r"))
    monkeypatch.undo()
    m = tmp_path / "r" / "metrics.csv"
    m.write_bytes(m.read_bytes() + b"\0" * 2048)
    with pytest.warns(CorruptFileWarning, match="NUL bytes"):
        s = train_run(tiny_cfg(tmp_path, "name=r"))
    assert s["resumed"] and s["finished"] and (tmp_path / "r" / "metrics.csv.corrupt").read_bytes().endswith(b"\0" * 2048)
    _same_rows(read_metrics(root / "ref" / "metrics.csv"), read_metrics(m))


def test_readers_of_a_finished_runs_nul_padded_metrics_keep_the_rows_before_the_damage(tmp_path, reference):
    """eval's training curve and read_metrics of a finished run whose metrics.csv a power cut padded."""
    import shutil

    from eval.jobs import curve

    root, _ = reference
    shutil.copytree(root / "ref", tmp_path / "ref")
    m = tmp_path / "ref" / "metrics.csv"
    good = read_metrics(m)
    m.write_bytes(m.read_bytes() + b"\0" * 512)
    with pytest.warns(CorruptFileWarning, match="NUL bytes"):
        rows = read_metrics(m)
    _same_rows(good, rows)
    with pytest.warns(CorruptFileWarning, match="NUL bytes"):
        assert len(curve(tmp_path / "ref")) == sum(r["train_loss"] == r["train_loss"] for r in good)


def test_the_config_hash_lives_in_the_checkpoint_and_resume_checks_it(reference):
    root, ref = reference
    ck = root / "ref" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(ck)["seqarena_config_hash"] == ref["config_hash"]
    assert check_checkpoint(ck, ref["config_hash"]) == ("ok", None)
    status, why = check_checkpoint(ck, "0" * 16)
    assert status == "stale" and "config hash" in why


def test_a_corrupt_summary_is_moved_aside_and_the_run_finishes(tmp_path, reference):
    import shutil

    root, ref = reference
    shutil.copytree(root / "ref", tmp_path / "ref")
    (tmp_path / "ref" / "summary.json").write_bytes(b'{"finished": tr' + b"\0" * 100)
    with pytest.warns(CorruptFileWarning, match="summary.json"):
        s = train_run(tiny_cfg(tmp_path, "name=ref"))
    assert s["finished"] and s["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-6)


# ---- 7. never a checkpoint with non-finite weights ------------------------------------------------
def test_diverging_run_never_checkpoints_nonfinite_weights(tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        train_run(tiny_cfg(tmp_path, "name=div", "lr=1e6", "trainer.ckpt_every=1", "budget.max_steps=20", "warmup_frac=0"))
    for f in (tmp_path / "div" / "checkpoints").glob("*.ckpt"):
        sd = read_checkpoint(f)["state_dict"]
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point()), f
    assert not (tmp_path / "div" / "summary.json").exists()


# ---- 8. temp files never follow a planted symlink ------------------------------------------------
def test_planted_symlinks_at_old_temp_names_are_not_followed(tmp_path, reference):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "root" / "s"
    (run / "checkpoints").mkdir(parents=True)
    for name in (".config.yaml.tmp", "metrics.csv.tmp", ".summary.json.tmp", "checkpoints/.last.ckpt.tmp", "metrics.csv"):
        (run / name).symlink_to(victim)
    s = train_run(tiny_cfg(tmp_path / "root", "name=s"))
    assert s["finished"] and victim.read_text() == "precious"
    assert not (run / "metrics.csv").is_symlink() and read_metrics(run / "metrics.csv")


# ---- 9. smaller items -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, 2.5, True, "3"])
def test_generate_rejects_bad_max_new_tokens(bad):
    from archs import LanguageModel

    m = LanguageModel(vocab_size=16, d_model=16, n_layers=1, layers="attention")
    with pytest.raises(ValueError, match=f"max_new_tokens must be an int >= 0, got {bad!r}"):
        m.generate(torch.zeros(1, 3, dtype=torch.long), bad)
    assert m.generate(torch.zeros(1, 3, dtype=torch.long), 0).shape == (1, 3)


@pytest.mark.parametrize("override,message", [
    ("seed=-1", "seed must be an int >= 0"),
    ("min_lr_ratio=2", "min_lr_ratio must be in [0, 1]"),
    ("lock_wait=-5", "lock_wait must be true, false or a positive number"),
    ("trainer.progress_bar=maybe", "trainer.progress_bar must be true, false or auto"),
    ("weight_decay=nan", "weight_decay must be >= 0"),
])
def test_every_setting_is_validated(tmp_path, override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train_run(tiny_cfg(tmp_path, "name=bad", override))
    assert not (tmp_path / "bad").exists()


def test_eval_cli_rejects_wait_for_other_commands(capsys):
    from eval.__main__ import main

    assert main(["ops", "--wait"]) == 2 and "--wait only applies to compare" in capsys.readouterr().err


def test_signal_handlers_defer_inside_training_and_raise_outside():
    from train import signals

    with signals.deferred_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop.signum == signal.SIGTERM  # only noted: the checkpoint callback acts on it
    with pytest.raises(signals.RunInterrupted) as e:
        with signals.raising_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert e.value.exit_code == 143 and "SIGTERM" in str(e.value)
    with pytest.raises(signals.RunInterrupted, match="twice") as e:
        with signals.deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert e.value.exit_code == 130
    assert signal.getsignal(signal.SIGTERM) is not None and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_mixed_folder_never_resumes_another_configs_checkpoint(tmp_path, reference):
    """Issue 15 #1's aftermath: config.yaml of run B next to run A's checkpoint (no summary)."""
    import shutil

    from omegaconf import OmegaConf

    from train import plan_run

    root, ref = reference
    shutil.copytree(root / "ref", tmp_path / "ref")
    (tmp_path / "ref" / "summary.json").unlink()
    cfg_b = tiny_cfg(tmp_path, "name=ref", "lr=0.02")
    OmegaConf.save(OmegaConf.create(plan_run(cfg_b)["cfg"]), tmp_path / "ref" / "config.yaml")
    s = train_run(cfg_b)
    assert not s["resumed"] and s["lr"] == 0.02 and s["config_hash"] != ref["config_hash"]
