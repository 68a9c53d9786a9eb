"""Tasks and data module: layouts, determinism, scored positions, errors, text corpus, resume-safe batches."""
from __future__ import annotations

import json

import pytest
import torch

from train.data import IGNORE, MQAR, TASK_NAMES, build_task
from train.data.datamodule import StepBatches, rank_slice, train_batch, val_batch
from train.data.text import TextTask, is_val, stdlib_files

SYNTH = ["mqar", "selective_copy", "induction", "passkey"]


@pytest.mark.parametrize("name", SYNTH)
@pytest.mark.parametrize("seq_len", [64, 200])
def test_synthetic_shapes_determinism_vocab(name, seq_len):
    task = build_task({"name": name})
    a, b = task.generate(6, seq_len, seed=3), task.generate(6, seq_len, seed=3)
    c = task.generate(6, seq_len, seed=4)
    assert a["inputs"].shape == a["targets"].shape == (6, seq_len)
    assert a["inputs"].dtype == a["targets"].dtype == torch.long
    assert torch.equal(a["inputs"], b["inputs"]) and torch.equal(a["targets"], b["targets"])
    assert not torch.equal(a["inputs"], c["inputs"])
    assert 0 <= int(a["inputs"].min()) and int(a["inputs"].max()) < task.vocab_size
    scored = a["targets"][a["targets"] != IGNORE]
    assert scored.numel() > 0 and int(scored.min()) >= 0 and int(scored.max()) < task.vocab_size
    expected = {"mqar": task.num_kv_pairs if name == "mqar" else 0, "selective_copy": getattr(task, "num_tokens", 0),
                "induction": 1, "passkey": getattr(task, "num_digits", 0)}[name]
    assert ((a["targets"] != IGNORE).sum(1) == expected).all()


def test_mqar_answers_are_the_bound_values():
    task = MQAR(vocab_size=64, num_kv_pairs=4)
    d = task.generate(20, 40, seed=0)
    half = 32
    for x, y in zip(d["inputs"], d["targets"]):
        keys, vals = x[0:8:2], x[1:8:2]
        assert (keys >= 1).all() and (keys < half).all() and (vals >= half).all()
        assert len(set(keys.tolist())) == 4
        bind = dict(zip(keys.tolist(), vals.tolist()))
        pos = (y != IGNORE).nonzero()[:, 0]
        assert all(int(p) >= 8 for p in pos)
        for p in pos.tolist():
            assert bind[int(x[p])] == int(y[p])  # the query key sits at p; its value is the target
        assert sorted(int(x[p]) for p in pos) == sorted(bind)  # each key queried once
        later = x[8:]
        assert not (later >= half).any()  # no value after the context: answers are never inputs


def test_mqar_answers_never_leak_into_inputs_with_filler():
    task = MQAR(vocab_size=64, num_kv_pairs=4, random_filler=True)
    d = task.generate(50, 40, seed=3)
    pos = (d["targets"] != IGNORE).nonzero()
    nxt = pos[pos[:, 1] + 1 < 40]
    # the input after a query is filler: it equals the answer only by chance (1 in 63), not always
    same = (d["inputs"][nxt[:, 0], nxt[:, 1] + 1] == d["targets"][nxt[:, 0], nxt[:, 1]]).float().mean()
    assert same < 0.2


def test_selective_copy_and_passkey_targets_reproduce_hidden_tokens():
    sc = build_task({"name": "selective_copy", "num_tokens": 4})
    d = sc.generate(5, 30, seed=1)
    for x, y in zip(d["inputs"], d["targets"]):
        data = x[:26][x[:26] >= 2]
        assert torch.equal(y[y != IGNORE], data)
    pk = build_task({"name": "passkey", "num_digits": 3})
    d = pk.generate(5, 40, seed=1)
    for x, y in zip(d["inputs"], d["targets"]):
        k = int((x == pk.KEY).nonzero()[0, 0])
        assert torch.equal(y[y != IGNORE], x[k + 1 : k + 4])


def test_induction_target_is_token_after_first_trigger():
    t = build_task({"name": "induction"})
    d = t.generate(8, 50, seed=2)
    for x, y in zip(d["inputs"], d["targets"]):
        p = int((x == t.TRIGGER).nonzero()[0, 0])
        assert p < 49 and int(x[-1]) == t.TRIGGER and int(y[-1]) == int(x[p + 1])


@pytest.mark.parametrize("name,short", [("mqar", 31), ("selective_copy", 15), ("passkey", 11), ("induction", 3)])
def test_too_short_seq_len_names_the_value(name, short):
    with pytest.raises(ValueError, match=f"seq_len={short}"):
        build_task({"name": name}).generate(2, short, seed=0)


def test_unknown_task_lists_known():
    with pytest.raises(ValueError, match="unknown task 'nope'.*mqar"):
        build_task({"name": "nope"})
    assert set(TASK_NAMES) == {"mqar", "selective_copy", "induction", "passkey", "text"}


def test_bad_task_option_is_named():
    with pytest.raises(ValueError, match="num_kv_pairs"):
        build_task({"name": "mqar", "vocab_size": 16, "num_kv_pairs": 8})


# ---- text -------------------------------------------------------------------------------------
def test_stdlib_corpus_split_is_fixed_and_disjoint():
    files = stdlib_files(40)
    assert len(files) == 40 and files == sorted(files) == stdlib_files(40)
    keys = [k for k, _ in files]
    val = [k for k in keys if is_val(k, 10.0)]
    assert 0 < len(val) < len(keys)
    t = TextTask(max_files=40)
    v = t.val_tokens()
    assert t.vocab_size == 256 and v.dim() == 1 and v.dtype == torch.long and v.numel() > 1000
    assert int(v.max()) < 256
    b = t.train_batch(4, 64, seed=7)
    assert torch.equal(b["inputs"][:, 1:], b["targets"][:, :-1])  # packed: next-byte targets
    assert torch.equal(b["inputs"], t.train_batch(4, 64, seed=7)["inputs"])
    vb = t.val_batch(3, 64, 0)
    assert torch.equal(vb["inputs"][0], v[:64])


def test_text_from_local_text_and_json_files(tmp_path):
    docs = [f"document number {i}\n" * 20 for i in range(12)]
    paths = []
    for i, d in enumerate(docs):
        p = tmp_path / f"d{i}.txt"
        p.write_text(d)
        paths.append(str(p))
    t = build_task({"name": "text", "source": "files", "data_files": paths, "val_percent": 20.0, "cache_dir": str(tmp_path / "c")})
    assert t.val_tokens().numel() > 0 and t.train_tokens().numel() > 0
    js = tmp_path / "x.jsonl"
    js.write_text("\n".join(json.dumps({"body": d}) for d in docs))
    t = build_task({"name": "text", "source": "files", "data_files": str(js), "val_files": str(js), "text_field": "body",
                    "cache_dir": str(tmp_path / "c")})
    assert bytes(t.val_tokens()[:17].tolist()) == b"document number 0"
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        build_task({"name": "text", "source": "files", "data_files": str(tmp_path / "missing.txt")}).val_tokens()


# ---- data module ------------------------------------------------------------------------------
def test_batches_are_a_pure_function_of_seed_and_step():
    task = build_task({"name": "mqar"})
    full = StepBatches(task, 8, 64, seed=5)
    it = iter(full)
    first = [next(it) for _ in range(5)]
    resumed = iter(StepBatches(task, 8, 64, seed=5, start_step=3))
    for want in first[3:]:
        got = next(resumed)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    b = train_batch(task, 8, 64, 5, 2)
    assert torch.equal(b["inputs"], first[2][0])
    assert not torch.equal(val_batch(task, 8, 64, 5, 0)["inputs"], train_batch(task, 8, 64, 5, 0)["inputs"])


def test_rank_slices_tile_the_global_batch():
    task = build_task({"name": "induction"})
    b = train_batch(task, 8, 32, 0, 0)
    parts = [rank_slice(b, r, 2) for r in range(2)]
    assert torch.equal(torch.cat([p["inputs"] for p in parts]), b["inputs"])
    r1 = next(iter(StepBatches(task, 8, 32, seed=0, rank=1, world=2)))
    assert torch.equal(r1[0], parts[1]["inputs"])
