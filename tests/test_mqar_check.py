"""train.mqar_check end to end on a tiny budget: rows per arch config, run folders, the short-conv switch."""
from __future__ import annotations

from train.mqar_check import main


def test_mqar_check_rows_and_runs(tmp_path, capsys):
    rows = main(["--archs", "lru,attention_conv", "--flops", "2e9", "--lengths", "128,256", "--results-root", str(tmp_path)])
    assert [r["arch"] for r in rows] == ["lru", "attention_conv"]
    assert all(r["steps"] >= 1 and 0 <= r["acc@128"] <= 1 and "acc@256" in r for r in rows)
    assert {p.name for p in tmp_path.iterdir()} == {"lru", "attention_conv"}
    assert "| arch | params | seeds | steps |" in capsys.readouterr().out


def test_mqar_check_short_conv_runs_apart(tmp_path, capsys):
    rows = main(["--archs", "lru", "--flops", "2e9", "--lengths", "128", "--short-conv", "3", "--results-root", str(tmp_path)])
    assert len(rows) == 1 and (tmp_path / "lru-short_conv3").is_dir()
    assert "short conv 3 in front of every mixer" in capsys.readouterr().out


def test_mqar_check_seeds_average_and_range(tmp_path):
    rows = main(["--archs", "lru", "--flops", "1e9", "--lengths", "128", "--seeds", "0,1", "--results-root", str(tmp_path)])
    assert rows[0]["seeds"] == 2 and "acc@128 range" in rows[0]
    lo, hi = (float(x) for x in rows[0]["acc@128 range"].split("-"))
    assert lo <= rows[0]["acc@128"] <= hi
    assert {p.name for p in tmp_path.iterdir()} == {"lru", "lru-seed1"}
