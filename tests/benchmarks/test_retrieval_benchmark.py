"""Smoke test of benchmarks/retrieval.py at tiny scale (no timing assertions)."""

import json

import numpy as np
import pytest

from benchmarks import common, contenders, retrieval, retrieval_data, synthetic


def test_quick_run_writes_tables_and_plot(tmp_path, capsys):
    rc = retrieval.main(
        [
            "--quick",
            "--cache",
            str(tmp_path / "cache"),
            "--results-dir",
            str(tmp_path),
            "--tag",
            "smoke",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    for method in (
        "exact (NumPy BLAS)",
        "ScaNN single-shot",
        "FAISS HNSW",
        "AR (mrl_keras.serving",
        "AR prototype",
    ):
        assert method in out
    run = json.loads((tmp_path / "results" / "retrieval_smoke.json").read_text())
    assert {r["recall"] for r in run["rows"] if r["method"].startswith("exact")} == {1.0}
    assert all(0.0 <= r["recall"] <= 1.0 and r["qps"] > 0 for r in run["rows"])
    assert (tmp_path / "retrieval_pareto_smoke.png").stat().st_size > 1000
    assert "## Retrieval at scale" in (tmp_path / "RESULTS.md").read_text()


def test_generator_is_chunk_invariant_and_unit_norm():
    a, la = synthetic.generate(300, 32, 7, chunk=64)
    b, lb = synthetic.generate(300, 32, 7, chunk=64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    head = np.abs(a[:, :4]).mean()
    tail = np.abs(a[:, -4:]).mean()
    assert head > 2 * tail  # MRL-like spectrum: early coordinates carry more


def test_exact_topk_matches_argsort():
    rng = np.random.default_rng(0)
    db = rng.standard_normal((500, 16)).astype(np.float32)
    q = rng.standard_normal((7, 16)).astype(np.float32)
    got = contenders.exact_topk(db, q, k=10, chunk=128)
    want = np.argsort(-(q @ db.T), axis=1)[:, :10]
    np.testing.assert_array_equal(got, want)


def test_metrics():
    gt = np.array([[0, 1, 2, 3]])
    assert retrieval_data.recall_at_k(np.array([[3, 2, 9, 8]]), gt) == pytest.approx(0.5)
    labels = np.array([1, 0, 1, 1])
    found = np.array([[0, 1, 2, 3]])  # relevant at ranks 1, 3, 4
    ap = (1 / 1 + 2 / 3 + 3 / 4) / 3
    assert retrieval_data.map_at_k(found, labels, np.array([1])) == pytest.approx(ap)


def test_write_section_keeps_other_sections(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n## Theirs\n\nkeep me\n")
    common.write_section("Mine", "v1", path)
    common.write_section("Mine", "v2", path)
    text = path.read_text()
    assert "keep me" in text and "v2" in text and "v1" not in text
    assert text.count("## Mine") == 1


def test_whole_chunks_of_a_larger_database_are_the_smaller_database():
    small, small_labels = synthetic.generate(128, 8, 5, chunk=64)
    large, large_labels = synthetic.generate(300, 8, 5, chunk=64)
    np.testing.assert_array_equal(small, large[:128])
    np.testing.assert_array_equal(small_labels, large_labels[:128])


def test_prototype_stores_accept_a_bfloat16_serving_store():
    """`quantize_store` widens a bfloat16 (uint16 bits) store before re-quantising it."""
    from benchmarks.ar_prototypes import from_bfloat16_bits, quantize_store, to_bfloat16_bits

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 24)).astype(np.float32)
    bits = to_bfloat16_bits(x)
    widened = from_bfloat16_bits(bits)
    np.testing.assert_allclose(widened, x, rtol=2**-8)
    for kind in ("bfloat16", "int8"):
        codes, scales = quantize_store(bits, kind)
        want_codes, want_scales = quantize_store(widened, kind)
        np.testing.assert_array_equal(codes, want_codes)
        if scales is not None:
            np.testing.assert_array_equal(scales, want_scales)
    # the int8 codes reconstruct the values to within one quantisation step
    codes, scales = quantize_store(bits, "int8")
    assert np.abs(codes * scales - widened).max() <= scales.max() * 0.5 + 1e-6
