"""Smoke test of benchmarks/retrieval_peers.py and its contenders (no timing assertions)."""

import json

import numpy as np
import pytest

from benchmarks import peers, retrieval_peers


def test_quick_run_measures_every_peer_and_the_tuned_ar(tmp_path, capsys):
    argv = ["--quick", "--cache", str(tmp_path / "cache"), "--results-dir", str(tmp_path)]
    assert retrieval_peers.main(argv) == 0
    out = capsys.readouterr().out
    for family in retrieval_peers.FAMILIES.values():
        assert family in out
    (path,) = (tmp_path / "results").glob("peers_*.json")
    run = json.loads(path.read_text())
    methods = {r["method"] for r in run["rows"]}
    for name in (
        "ScaNN single-shot (full d, AH 2/block)",
        "ScaNN single-shot (full d, AH 4/block)",
        "truncate z[:16] + ScaNN",
        "truncate z[:16] + HNSW",
        "FAISS IVF-PQ + RefineFlat (full d)",
        "FAISS HNSW (full d, M=32)",
    ):
        assert name in methods
    tuned = [r for r in run["rows"] if r["method"].startswith("AR auto-tuned")]
    assert tuned and {r["config"]["target"] for r in tuned} <= {0.9, 0.95, 0.98}
    assert all(r["recall"] >= r["config"]["target"] - 0.05 for r in tuned)
    assert {r["recall"] for r in run["rows"] if r["method"].startswith("exact")} == {1.0}
    assert all(e["target"] in (0.9, 0.95, 0.98) for e in run["summary"])
    section = (tmp_path / "RESULTS.md").read_text()
    assert retrieval_peers.SECTION in section and "AR (auto-tuned)" in section


def test_family_of_names_every_contender():
    assert retrieval_peers.family_of("truncate z[:64] + HNSW") == "trunc"
    assert retrieval_peers.family_of("FAISS HNSW (full d, M=32)") == "hnsw"
    assert retrieval_peers.family_of("FAISS IVF-PQ + RefineFlat (full d)") == "ivfpq"
    assert retrieval_peers.family_of("ScaNN single-shot (full d, AH 4/block)") == "scann"
    assert retrieval_peers.family_of("AR auto-tuned (mrl index tune, int8 store)") == "ar"


def test_truncate_prefix_is_renormalised():
    x = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    p = peers._prefix(x, 3)
    np.testing.assert_allclose(
        p, x[:, :3] / np.linalg.norm(x[:, :3], axis=1, keepdims=True), rtol=1e-6
    )


@pytest.mark.parametrize(
    "argv, match", [(["--methods", "lsh"], "unknown --methods"), (["--n", "0"], "must be >= 1")]
)
def test_bad_flags_exit_2(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        retrieval_peers.parse_args(argv)
    assert e.value.code == 2 and match in capsys.readouterr().err
