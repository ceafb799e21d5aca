"""benchmarks/text_seeds.py: mean and sample std over seeds, against statistics by hand."""

import json

import pytest

from benchmarks import text_seeds


def _run(tmp_path, name, r1):
    run = tmp_path / name
    run.mkdir()
    recall = {"8": {"1": r1, "5": 0.5, "10": 0.6}, "16": {"1": r1 + 0.1, "5": 0.6, "10": 0.7}}
    (run / "results.json").write_text(json.dumps({"MRL": {"recall": recall}}))
    return str(run)


def test_mean_and_sample_std_per_dim(tmp_path, capsys):
    runs = [_run(tmp_path, f"s{i}", r) for i, r in enumerate((0.1, 0.2, 0.3))]
    summary = text_seeds.summarize(text_seeds.load(runs))
    mean, std = summary["MRL"]["8"]["1"]
    assert mean == pytest.approx(0.2) and std == pytest.approx(0.1)  # sqrt(0.02 / 2)
    assert summary["MRL"]["16"]["10"] == pytest.approx((0.7, 0.0))
    assert text_seeds.main(runs) == 0
    out = capsys.readouterr().out
    assert "3 seeds" in out and "| 8 | 0.200 ± 0.100 |" in out


def test_a_folder_without_results_is_one_line(tmp_path, capsys):
    assert text_seeds.main([str(tmp_path)]) == 2
    assert "No results.json" in capsys.readouterr().err
