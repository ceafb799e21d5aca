"""Smoke test of benchmarks/rerank_gather.py (no timing assertions)."""

from benchmarks import rerank_gather


def test_tiny_run_keeps_the_same_rows_with_and_without_the_kernel():
    rows = rerank_gather.measure(500, 16, queries=20, candidates=30)
    assert {(r["store"], r["D_r"]) for r in rows} == {
        (s, m) for s in ("float32", "bfloat16", "int8") for m in (8, 16)
    }
    assert all(r["same_rows"] and r["kernel_ns_per_row"] > 0 for r in rows)
