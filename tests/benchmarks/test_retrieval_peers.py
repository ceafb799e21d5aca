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


def test_a_run_without_a_cpu_time_bandwidth_is_measured_once_and_saved(tmp_path, monkeypatch):
    from pathlib import Path

    src = Path(retrieval_peers.__file__).parent / "results"
    run = json.loads(next(src.glob("peers_family-*_20000.json")).read_text())
    for key in ("bandwidth_by_cpu", "bandwidth_measured_at"):
        run.pop(key, None)
    run["bandwidth_gbs"] = 1.0  # a wall-time figure from a loaded machine
    (tmp_path / "results").mkdir()
    path = tmp_path / "results" / "peers_x_20000.json"
    path.write_text(json.dumps(run))
    measured = iter([10.0, 99.0])
    monkeypatch.setattr(retrieval_peers, "bandwidth_cpu_gbs", lambda: next(measured))
    first = retrieval_peers.render_results(tmp_path)
    saved = json.loads(path.read_text())
    assert saved["bandwidth_gbs"] == 10.0 and saved["bandwidth_by_cpu"]
    assert "after the run" in first and "10.0 GB/s" in first
    assert (tmp_path / "peers_pareto_x_20000.png").stat().st_size > 1000
    assert "(peers_pareto_x_20000.png)" in first
    limits = [e for e in saved["summary"] if "ar_limit_qps" in e]
    assert limits
    for entry in limits:
        bytes_touched = entry["best"]["ar"]["bytes_touched"]
        assert entry["ar_limit_qps"] == pytest.approx(10e9 / bytes_touched, rel=1e-6)
    assert retrieval_peers.render_results(tmp_path) == first  # not measured again (99.0)


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


def test_one_ar_index_with_several_shortlists_is_tuned_across_them(tmp_path):
    from benchmarks import synthetic
    from mrl_keras.retrieval_metrics import l2_normalize

    db, _ = synthetic.generate(3000, 32, 20, alpha=1.2, noise=0.8)
    tq, _ = synthetic.generate(80, 32, 20, alpha=1.2, noise=0.8, stream=synthetic.QUERY_STREAM)
    c = peers.TunedAdaptive(
        db, 1, 4, tmp_path, tq, targets=(0.9,), extra_shortlists=(8,), leaves_factor=0.5
    )
    c.build_threads = 1
    c.build()
    assert "D_s 4/8" in c.name and "0.5 x sqrt(N) leaves" in c.name
    from mrl_keras.serving.retrieval.shortlists import shortlist_dims
    from mrl_keras.serving.retrieval.tune import shortlist_options

    assert tuple(shortlist_dims(c.index)) == (4, 8)
    # every shortlist's tree has round(0.5 * sqrt(3000)) = 27 leaves (the default: 1 below 16k)
    assert {shortlist_options(c.index, m)["num_leaves"] for m in (4, 8)} == {27}
    (config,) = c.configs()
    assert config["D_s"] == config["shortlist_dim"] in (4, 8)
    ids = c.search(tq, config)
    x = l2_normalize(np.asarray(db, np.float32))
    exact = np.argsort(-(l2_normalize(tq) @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)])
    assert recall >= 0.85  # the 0.9 target, tuned on these very queries (30% held out)
    assert c.bytes_touched(config) > 0
    c.close()


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--methods", "lsh"], "unknown --methods"),
        (["--n", "0"], "must be >= 1"),
        (["--ar-dims", "32+x"], "--ar-dims: expected integers"),
        (["--ar-dims", "0"], "--ar-dims must be >= 1"),
        (["--scann-leaves", "1,x"], "--scann-leaves: expected numbers"),
        (["--scann-leaves", "0"], "--scann-leaves must be > 0"),
        (["--ar-leaves", "2,y"], "--ar-leaves: expected numbers"),
        (["--ar-leaves", "-1"], "--ar-leaves must be > 0"),
    ],
)
def test_bad_flags_exit_2(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        retrieval_peers.parse_args(argv)
    assert e.value.code == 2 and match in capsys.readouterr().err


def test_rows_of_two_processes_merge_into_one_run(tmp_path, monkeypatch):
    """A run killed part-way (e.g. by the OOM killer) and a second process measuring the rest:
    `--finalize-partial A B` saves one run of both processes' rows, saying who measured what."""
    from pathlib import Path

    src = Path(retrieval_peers.__file__).parent / "results"
    run = json.loads(next(src.glob("peers_family-*_20000.json")).read_text())
    first = [r for r in run["rows"] if retrieval_peers.family_of(r["method"]) in ("ar", "exact")]
    rest = [r for r in run["rows"] if r not in first]
    assert first and rest
    paths = []
    for i, rows in enumerate((first, rest)):
        part = {k: run[k] for k in ("dataset", "notes", "n", "d", "command")}
        part.update(rows=rows, skipped=[], started=1_796_000_000 + 3600 * i)
        paths.append(tmp_path / f"partial_{i}.json")
        paths[-1].write_text(json.dumps(part))
    monkeypatch.setattr(retrieval_peers, "bandwidth_cpu_gbs", lambda: 10.0)
    assert (
        retrieval_peers.main(
            ["--finalize-partial", *map(str, paths), "--results-dir", str(tmp_path)]
        )
        == 0
    )
    (saved,) = (tmp_path / "results").glob("peers_*.json")
    merged = json.loads(saved.read_text())
    assert len(merged["rows"]) == len(run["rows"])
    assert "Measured by 2 processes" in merged["notes"] and "process 2 (" in merged["notes"]
    expected = retrieval_peers.summarize(run["rows"], 10.0)
    for got, want in zip(merged["summary"], expected, strict=True):
        assert got.get("ratios") == pytest.approx(want.get("ratios"))
    other = json.loads(paths[1].read_text())
    other["dataset"] = "something else (1 x 1)"
    paths[1].write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="different datasets"):
        retrieval_peers.finalize_partial(paths, tmp_path)


def test_release_memory_reports_the_resident_set():
    big = np.ones((64, 2**20 // 8))  # 64 MB, freed below
    before = retrieval_peers.release_memory()
    del big
    after = retrieval_peers.release_memory("after freeing 64 MB")
    assert 0 < after < before


def test_ivfpq_peer_gets_a_finer_pq_at_large_d():
    assert peers.default_pq_subquantizers(2048) == 64 and peers.fine_pq_subquantizers(2048) == 256
    assert peers.fine_pq_subquantizers(1024) == 128
    assert peers.fine_pq_subquantizers(512) is None  # 64 of 8 dims is already the finer one
    assert peers.fine_pq_subquantizers(32) is None
    db = np.zeros((10, 2048), np.float32)
    assert peers.IvfPqRefine(db, 1, 256).name.endswith(", PQ256")
    with pytest.raises(ValueError, match="msub dividing d=2048"):
        peers.IvfPqRefine(db, 1, 300)
