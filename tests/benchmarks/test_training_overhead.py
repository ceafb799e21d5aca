"""Smoke test of benchmarks/training_overhead.py at tiny scale (no timing assertions)."""

import json

from benchmarks import training_overhead


def test_quick_run_reports_both_heads(tmp_path, capsys):
    rc = training_overhead.main(["--quick", "--results-dir", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "MRL-E" in out and "MRL" in out
    run = json.loads((tmp_path / "results" / "training_overhead.json").read_text())
    (result,) = run["results"]
    for clock in ("cpu", "wall"):
        assert set(result[clock]["ratio"]) == {"mrl", "mrl-e"}
        assert all(v > 0 for v in result[clock]["step_ms"].values())
    assert "## Training overhead" in (tmp_path / "RESULTS.md").read_text()
