"""Unit tests of the evaluation pieces on small synthetic inputs (no training)."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

from archs import build_language_model
from eval import io, plots
from eval import table as tbl
from eval.quality import accuracy_vs_length, loss_by_position, passkey_grid
from eval.throughput import ThroughputSettings, measure_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_model(vocab=32, arch="attention"):
    torch.manual_seed(0)
    return build_language_model({"layers": arch, "mlp": "swiglu"}, {"d_model": 16, "n_layers": 1}, vocab)


def assert_png(path):
    import matplotlib.pyplot as plt

    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    img = plt.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


# ---- io -------------------------------------------------------------------------------------
def test_atomic_json_and_csv(tmp_path):
    p = io.write_json(tmp_path / "a" / "x.json", {"a": float("nan"), "b": (1, 2.5), "c": torch.tensor(3.0)})
    assert json.loads(p.read_text()) == {"a": None, "b": [1, 2.5], "c": 3.0}
    io.write_csv(tmp_path / "x.csv", [{"a": 1, "b": None}, {"a": 2, "c": "z"}])
    assert (tmp_path / "x.csv").read_text().splitlines() == ["a,b,c", "1,,", "2,,z"]
    assert sorted(os.listdir(tmp_path)) == ["a", "x.csv"]  # no temp files left


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.png"
    io.write_text(path, "old")

    class HalfFigure:  # writes part of the file, then is interrupted
        def savefig(self, fname, **kw):
            with open(fname, "wb") as f:
                f.write(PNG_SIGNATURE)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        io.save_figure(HalfFigure(), path)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.png"]  # the half-written temp file is gone


# ---- table ----------------------------------------------------------------------------------
COLS = [tbl.Column("arch", "arch", "text"), tbl.Column("params", "params", "count"),
        tbl.Column("loss", "loss", "float", "min"), tbl.Column("tok_s", "tok/s", "int", "max")]


def test_markdown_marks_best_per_column():
    rows = [{"arch": "a", "params": 1000, "loss": 2.5, "tok_s": 100.0},
            {"arch": "b", "params": 2000, "loss": 2.0, "tok_s": float("nan")},
            {"arch": "c", "params": 1500, "loss": None, "tok_s": 300.0}]
    md = tbl.markdown(rows, COLS).splitlines()
    assert md[0] == "| arch | params | loss ↓ | tok/s ↑ |"
    assert md[2] == "| a | 1k | 2.500 | 100 |"
    assert md[3] == "| b | 2k | **2.000** | - |"
    assert md[4] == "| c | 1.5k | - | **300** |"
    assert tbl.winners(rows, COLS) == {"loss": ["b"], "tok_s": ["c"]}


def test_ties_are_all_marked():
    rows = [{"arch": "a", "loss": 1.0}, {"arch": "b", "loss": 1.0}]
    assert tbl.winners(rows, COLS) == {"loss": ["a", "b"]}


# ---- plots ----------------------------------------------------------------------------------
def test_plots_are_valid_pngs(tmp_path):
    tp = [{"arch": a, "context": c, "decode_tok_s": 100.0 / (i + 1) / c ** 0.1, "prefill_tok_s": 1e3, "state_mib": c * 1e-3 * (i + 1), "status": "ok"}
          for i, a in enumerate(["attention", "mamba"]) for c in (256, 1024, 4096)]
    tp.append({"arch": "mamba", "context": 8192, "status": "skipped: too slow"})
    files = [
        plots.loss_vs_flops({"mqar": {"attention": [(1e9, 3.0), (2e9, 2.0)], "mamba": []}, "text": {}}, tmp_path / "l.png"),
        plots.decode_vs_context(tp, tmp_path / "d.png"),
        plots.prefill_vs_context(tp, tmp_path / "p.png"),
        plots.state_vs_context(tp, tmp_path / "s.png"),
        plots.accuracy_vs_length([{"arch": "a", "length": 64, "accuracy": 0.5, "status": "ok"}], tmp_path / "a.png", train_len=64),
        plots.decode_vs_context([], tmp_path / "empty.png"),  # no data: still a valid figure
    ]
    for f in files:
        assert_png(f)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "d.png", "empty.png", "l.png", "p.png", "s.png"]


# ---- throughput -----------------------------------------------------------------------------
def test_throughput_rows_are_finite_and_state_matches():
    model = tiny_model()
    s = ThroughputSettings(contexts=[8, 24], batch_size=2, decode_steps=3, warmup=0, repeats=1)
    rows = measure_model(model, s, arch="attention")
    assert [r["context"] for r in rows] == [8, 24]
    for r in rows:
        assert r["status"] == "ok", r
        for k in ("prefill_tok_s", "decode_tok_s", "decode_ms_per_token", "prefill_ms"):
            assert math.isfinite(r[k]) and r[k] > 0
        assert r["state_bytes_measured"] == r["state_bytes"] == model.state_size(r["context"]) * 4


def test_throughput_skips_instead_of_crashing():
    model = tiny_model()
    rows = measure_model(model, ThroughputSettings(contexts=[8, 1 << 20], mem_limit_gb=0.01, warmup=0, repeats=1, decode_steps=1))
    assert rows[0]["status"] == "ok"
    assert rows[1]["status"].startswith("skipped: estimated memory") and "mem_limit_gb=0.01" in rows[1]["status"]
    rows = measure_model(model, ThroughputSettings(contexts=[8, 64], max_seconds=0.0, warmup=0, repeats=1, decode_steps=1))
    assert rows[0]["status"] == "ok" and rows[1]["status"].startswith("skipped: estimated") and "max_seconds=0" in rows[1]["status"]


def test_throughput_settings_errors():
    with pytest.raises(ValueError, match="contexts must be positive"):
        ThroughputSettings(contexts=[0])
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        ThroughputSettings(dtype="fp8")


# ---- quality --------------------------------------------------------------------------------
class CountTask:
    """Predict the next of 0, 1, 2, ... (mod V) at every position; too-short lengths are refused."""

    vocab_size = 16

    def generate(self, n, L, seed):
        if L < 4:
            raise ValueError(f"count: seq_len={L} is too short; needs >= 4")
        x = (torch.arange(L) % 16).expand(n, L).clone()
        y = ((torch.arange(L) + 1) % 16).expand(n, L).clone()
        y[:, :2] = -100
        return {"inputs": x, "targets": y}


class Oracle(torch.nn.Module):
    """Logits that put all mass on (token + 1) mod V."""

    def __init__(self, V=16):
        super().__init__()
        self.V = V
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.nn.functional.one_hot((x + 1) % self.V, self.V).float() * 50 + self.w


def test_accuracy_vs_length_and_skips():
    rows = accuracy_vs_length(Oracle(), CountTask(), [2, 8, 32], num_examples=3, train_len=8)
    assert rows[0]["status"].startswith("skipped: count: seq_len=2")
    assert [r["accuracy"] for r in rows[1:]] == [1.0, 1.0]
    assert [r["extrapolated"] for r in rows] == [False, False, True]
    assert rows[2]["scored"] == 3 * 30


def test_loss_by_position_buckets():
    model = tiny_model(vocab=256)
    tokens = torch.randint(0, 256, (1000,))
    rows = loss_by_position(model, tokens, seq_len=30, n_buckets=4, max_windows=5)
    assert [(r["start"], r["end"]) for r in rows] == [(0, 8), (8, 15), (15, 22), (22, 30)]
    assert all(math.isfinite(r["loss"]) and abs(r["loss"] - math.log(256)) < 1.0 for r in rows)
    with pytest.raises(ValueError, match="fewer than seq_len"):
        loss_by_position(model, tokens[:10], seq_len=30)


def test_passkey_grid_bins_by_key_depth():
    from train.data import Passkey

    task = Passkey(vocab_size=32, num_digits=2)
    rows = passkey_grid(tiny_model(vocab=32), task, [24, 48], n_depths=3, num_examples=30)
    assert len(rows) == 6
    assert sum(r["examples"] for r in rows if r["length"] == 24) == 30
    assert all(0 <= r["accuracy"] <= 1 for r in rows if r["status"] == "ok")


# ---- command line ---------------------------------------------------------------------------
def test_throughput_command(capsys, tmp_path):
    from eval.__main__ import main

    assert main(["throughput", "archs=[attention]", "model=tiny", "contexts=[8,16]", "repeats=1", "warmup=0",
                 "decode_steps=2", f"out={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "attention" in out and "prefill tok/s" in out
    rows = json.loads((tmp_path / "throughput.json").read_text())
    assert [(r["arch"], r["context"], r["status"]) for r in rows] == [("attention", 8, "ok"), ("attention", 16, "ok")]


def test_ops_discovers_bench_modules():
    from eval.ops import bench_modules, run_ops

    names = bench_modules()
    assert "common" not in names and "decode" in names
    with pytest.raises(ValueError, match="unknown benchmark \\['nope'\\]; known: "):
        run_ops(["nope"])


# ---- confidence-interval table, flags, new plots, thread policy -----------------------------
def test_ci_columns_bold_every_tied_arch_and_flag_spread():
    from eval.stats import mean_ci

    cols = [tbl.Column("arch", "arch", "text"), tbl.Column("acc", "acc", "acc", "max", ci=True),
            tbl.Column("tok", "tok/s", "int", "max")]
    rows = [{"arch": "a", "acc": mean_ci([0.9, 0.92, 0.94]), "tok": 100, "tok!": True},
            {"arch": "b", "acc": mean_ci([0.85, 0.9, 0.95]), "tok": 50},   # overlaps a: tied
            {"arch": "c", "acc": mean_ci([0.1, 0.11, 0.12]), "tok": None}]  # clearly worse
    md = tbl.markdown(rows, cols).splitlines()
    assert md[2] == "| a | **0.920 ± 0.050** | **100 †** |"
    assert md[3] == "| b | **0.900 ± 0.124** | 50 |"
    assert md[4] == "| c | 0.110 ± 0.025 | - |"
    assert tbl.tied(rows, cols) == {"tok": ["a"], "acc": ["a", "b"]}


def test_frontier_lr_and_wall_clock_plots(tmp_path):
    pts = [{"arch": "attention", "label": "attention-d32", "state": 4096, "acc": 0.5, "ci95": [0.4, 0.6]},
           {"arch": "attention", "label": "attention-d64", "state": 8192, "acc": 0.8, "ci95": [0.7, 0.9]},
           {"arch": "gla", "label": "gla-d32", "state": 1024, "acc": 0.2, "ci95": [None, None]}]
    assert_png(plots.recall_frontier(pts, tmp_path / "recall_frontier.png"))
    sel = {"a": {"mqar": {"grid": {"0.001": 2.0, "0.003": 1.5, "0.01": None}, "chosen": 0.003}}}
    assert_png(plots.val_loss_vs_lr(sel, tmp_path / "lr.png"))
    assert_png(plots.loss_vs_wall_clock({"text": {"a": [(0.5, 3.0), (1.0, 2.5)]}}, tmp_path / "w.png"))
    assert_png(plots.accuracy_vs_length_ci([{"arch": "a", "length": 64, "accuracy": 0.5, "ci95": [0.4, 0.6]}],
                                           tmp_path / "len.png", train_len=64))


def test_throughput_reports_spread_and_keeps_the_thread_policy():
    from eval.throughput import thread_policy

    before = torch.get_num_threads()
    rows = measure_model(tiny_model(), ThroughputSettings(contexts=[8], decode_steps=4, repeats=2, warmup=1,
                                                          min_run_time=0.01, threads=1))
    assert rows[0]["threads"] == 1 and torch.get_num_threads() == before
    assert rows[0]["prefill_spread"] >= 0 and rows[0]["decode_spread"] >= 0
    with thread_policy(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
