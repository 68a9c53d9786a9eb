"""Timings in fresh processes (eval/isolate.py) and the steady allocator (eval/malloc.py).

No test here times anything against a threshold: speed is measured by ``eval throughput``; these
check the plumbing (pooling arithmetic, process round trip, the allocator switch)."""
from __future__ import annotations

import math
import platform
import statistics

import pytest

from eval import malloc
from eval.isolate import load_source, measure_sources, pool_rows
from eval.throughput import ThroughputSettings, arch_source, median_iqr


def _row(context, prefill, decode, status="ok", **mem):
    row = {"arch": "a", "context": context, "batch": 1, "status": status}
    if status == "ok":
        row.update({"prefill_samples_s": prefill, "decode_samples_s": decode, "prefill_tok_s": context / statistics.median(prefill),
                    "decode_tok_s": 1 / statistics.median(decode), **mem})
    return row


def test_pool_rows_pools_samples_of_every_process():
    runs = [
        [_row(100, [1.0, 1.0, 1.0], [0.1, 0.1], held_mem_bytes=10), _row(200, [], [], status="skipped: estimated 99 s > max_seconds=1")],
        [_row(100, [2.0, 2.0, 2.0], [0.3, 0.3], held_mem_bytes=30), _row(200, [4.0], [0.5], held_mem_bytes=50)],
    ]
    at100, at200 = pool_rows(runs)
    # pooled: six prefill samples, half at 1 s and half at 2 s -> median 1.5 s, IQR 1 s
    assert at100["prefill_ms"] == pytest.approx(1500.0)
    assert at100["prefill_tok_s"] == pytest.approx(100 / 1.5)
    assert at100["prefill_spread"] == pytest.approx(1.0 / 1.5)
    assert at100["decode_ms_per_token"] == pytest.approx(200.0)
    assert at100["decode_tok_s"] == pytest.approx(5.0)
    assert at100["prefill_tok_s_by_process"] == pytest.approx([100.0, 50.0])
    assert at100["decode_tok_s_by_process"] == pytest.approx([10.0, 1 / 0.3])
    assert (at100["processes"], at100["processes_ok"], at100["held_mem_bytes"]) == (2, 2, 20)
    assert sorted(at100["prefill_samples_s"]) == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    # a context one process skipped: the other's samples, the count says so
    assert at200["status"] == "ok" and (at200["processes"], at200["processes_ok"]) == (2, 1)
    assert at200["prefill_ms"] == pytest.approx(4000.0) and at200["prefill_spread"] == 0.0
    # no process measured it: the first status stays
    (none,) = pool_rows([[_row(200, [], [], status="skipped: x")], [_row(200, [], [], status="skipped: y")]])
    assert none["status"] == "skipped: x" and none["processes_ok"] == 0 and "prefill_ms" not in none


def test_pool_rows_refuses_processes_that_measured_different_contexts():
    with pytest.raises(ValueError, match=r"different numbers of contexts: \[1, 2\]"):
        pool_rows([[_row(8, [1.0], [1.0])], [_row(8, [1.0], [1.0]), _row(16, [1.0], [1.0])]])


def test_median_iqr_inclusive_quartiles():
    assert median_iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, 2.0)
    assert median_iqr([7.0]) == (7.0, 0.0)


def test_measure_sources_in_fresh_processes_pools_them():
    """Two spawned processes per source: every row says so, and its numbers pool both."""
    src = arch_source("attention", {"d_model": 16, "n_layers": 1}, vocab_size=32)
    s = ThroughputSettings(contexts=[8, 16], decode_steps=4, repeats=2, warmup=1, min_run_time=0.01, min_blocks=2, threads=1, processes=2)
    rows = measure_sources([src], s)
    assert [r["context"] for r in rows] == [8, 16]
    for r in rows:
        assert r["status"] == "ok" and r["arch"] == "attention" and r["threads"] == 1
        assert (r["processes"], r["processes_ok"]) == (2, 2)
        assert len(r["prefill_tok_s_by_process"]) == len(r["decode_tok_s_by_process"]) == 2
        assert len(r["decode_samples_s"]) == 4 and len(r["prefill_samples_s"]) >= 4
        assert all(math.isfinite(x) and x > 0 for x in (r["prefill_tok_s"], r["decode_tok_s"], *r["prefill_tok_s_by_process"]))
        assert r["params"] == load_source(src).num_params()
        assert r["state_bytes_measured"] == r["state_bytes"]


def test_measure_sources_in_this_process_and_a_failing_source():
    src = arch_source("attention", {"d_model": 16, "n_layers": 1}, vocab_size=32)
    s = ThroughputSettings(contexts=[8], decode_steps=2, repeats=1, warmup=0, min_run_time=0.01, min_blocks=1, processes=0)
    (row,) = measure_sources([src], s)
    assert row["status"] == "ok" and "processes" not in row
    with pytest.raises(FileNotFoundError, match="no config arch/no_such_arch.yaml"):
        measure_sources([dict(src, arch="no_such_arch")], s)
    bad = dict(src, arch="no_such_arch", label="no_such_arch")
    with pytest.raises(RuntimeError, match="measuring no_such_arch in a fresh process failed: FileNotFoundError"):
        measure_sources([bad], ThroughputSettings(contexts=[8], processes=1))
    with pytest.raises(ValueError, match="exactly one of"):
        load_source({"label": "x"})


def test_processes_setting_is_checked():
    with pytest.raises(ValueError, match="processes must be >= 0.*got -1"):
        ThroughputSettings(processes=-1)
    with pytest.raises(ValueError, match="min_blocks must be >= 1, got 0"):
        ThroughputSettings(min_blocks=0)


def test_steady_allocator_switch(monkeypatch):
    monkeypatch.setenv(malloc.ENV, "system")
    assert malloc.steady_allocator() == "system" == malloc.allocator_state()
    monkeypatch.setenv(malloc.ENV, "jemalloc")
    with pytest.raises(ValueError, match="SEQARENA_MALLOC='jemalloc'.*'steady'.*'system'"):
        malloc.steady_allocator()
    monkeypatch.delenv(malloc.ENV)
    state = malloc.steady_allocator()
    if platform.libc_ver()[0] == "glibc":
        assert state == "steady"
    else:
        assert state.startswith("unavailable")


def test_fresh_processes_see_the_callers_seqarena_switches_now(monkeypatch):
    """A fork server keeps the environment it started with; the caller's SEQARENA_* variables are
    passed with every measurement, so a switch set later still reaches the measuring process."""
    src = arch_source("attention", {"d_model": 16, "n_layers": 1}, vocab_size=32)
    s = ThroughputSettings(contexts=[8], decode_steps=2, repeats=1, warmup=0, min_run_time=0.01, min_blocks=1, processes=1)
    assert measure_sources([src], s)[0]["status"] == "ok"  # the server is running now
    monkeypatch.setenv(malloc.ENV, "bogus")
    with pytest.raises(RuntimeError, match="SEQARENA_MALLOC='bogus'"):
        measure_sources([src], s)


def test_speed_band_is_the_interquartile_range_in_tokens_per_second():
    from eval.plots import _speed_band

    row = {"context": 100, "batch": 2, "prefill_samples_s": [1.0, 2.0, 3.0, 4.0, 5.0], "decode_samples_s": [0.5, 0.5]}
    assert _speed_band(row, "prefill") == pytest.approx((200 / 4.0, 200 / 2.0))  # quartiles 2 s and 4 s
    assert _speed_band(row, "decode") == pytest.approx((4.0, 4.0))
    assert _speed_band({"context": 1, "decode_samples_s": [0.1]}, "decode") is None


def test_eval_throughput_writes_json_csv_and_plots(tmp_path):
    import csv
    import json

    from eval.__main__ import main

    args = ["throughput", "archs=[attention,hgrn]", "model=tiny", "contexts=[8,16]", "decode_steps=2", "repeats=1",
            "min_run_time=0.01", "min_blocks=2", "processes=1", f"out={tmp_path}"]
    assert main(args) == 0
    rows = json.loads((tmp_path / "throughput.json").read_text())
    assert [(r["arch"], r["context"], r["processes"]) for r in rows] == [("attention", 8, 1), ("attention", 16, 1), ("hgrn", 8, 1), ("hgrn", 16, 1)]
    assert all(len(r["prefill_samples_s"]) >= 2 for r in rows)
    assert {r["allocator"] for r in rows} == {"steady" if platform.libc_ver()[0] == "glibc" else rows[0]["allocator"]}
    with open(tmp_path / "throughput.csv") as f:
        header = next(csv.reader(f))
    assert "prefill_tok_s" in header and "prefill_samples_s" not in header and "decode_tok_s_by_process" not in header
    for name in ("prefill_vs_context.png", "decode_vs_context.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
