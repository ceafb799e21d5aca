"""Smoke tests of benchmarks/serving.py at tiny scale on loopback (no timing assertions)."""

import json

import pytest

from benchmarks import serving

# The HTTP service (`mrl serve`) lands separately; skip until it is importable.
pytest.importorskip("mrl_keras.serving.service.app")


def _run(tmp_path, backends):
    rc = serving.main(
        [
            "--quick",
            "--backends",
            backends,
            "--cache",
            str(tmp_path / "cache"),
            "--results-dir",
            str(tmp_path),
        ]
    )
    assert rc == 0
    run = json.loads((tmp_path / "results" / "serving.json").read_text())
    assert all(r["errors"] == 0 and r["ok"] > 0 for r in run["rows"])
    assert "## Serving under load" in (tmp_path / "RESULTS.md").read_text()
    return {(r["backend"].split()[0], r["route"]) for r in run["rows"]}


def test_quick_run_local_backend(tmp_path, capsys):
    assert _run(tmp_path, "local") == {("local", "search"), ("local", "classify")}
    assert "service overhead" in capsys.readouterr().out


@pytest.mark.slow
def test_quick_run_local_and_grpc_backends(tmp_path):
    assert _run(tmp_path, "local,grpc") == {
        ("local", "search"),
        ("local", "classify"),
        ("gRPC", "search"),
        ("gRPC", "classify"),
    }
