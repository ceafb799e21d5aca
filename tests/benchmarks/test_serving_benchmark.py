"""Smoke test of benchmarks/serving.py at tiny scale on loopback (no timing assertions)."""

import json

import pytest

from benchmarks import serving

# The HTTP service (`mrl serve`) lands separately; skip until it is importable.
pytest.importorskip("mrl_keras.serving.service")


def test_quick_run_serves_search_and_classify(tmp_path, capsys):
    rc = serving.main(
        ["--quick", "--cache", str(tmp_path / "cache"), "--results-dir", str(tmp_path)]
    )
    assert rc == 0
    run = json.loads((tmp_path / "results" / "serving.json").read_text())
    routes = {(r["backend"].split()[0], r["route"]) for r in run["rows"]}
    assert routes == {
        ("local", "search"),
        ("local", "classify"),
        ("gRPC", "search"),
        ("gRPC", "classify"),
    }
    assert all(r["errors"] == 0 and r["ok"] > 0 for r in run["rows"])
    assert "## Serving under load (issue 8)" in (tmp_path / "RESULTS.md").read_text()
    assert "service overhead" in capsys.readouterr().out
