"""NumPy references shared by the retrieval tests (index store, rerank)."""

from __future__ import annotations

import numpy as np


def bfloat16_round(x: np.ndarray) -> np.ndarray:
    """Independent float32 -> bfloat16 -> float32 rounding (nearest even) for the tests."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    low = u & 0xFFFF
    high = u >> 16
    up = (low > 0x8000) | ((low == 0x8000) & ((high & 1) == 1))
    return ((high + up) << 16).astype(np.uint32).view(np.float32)


def normalized_prefix_scores(q: np.ndarray, z: np.ndarray, dim: int) -> np.ndarray:
    """Cosine scores `(n, count)` of the re-normalised prefixes `q[:, :dim]` and `z[:, :dim]`."""
    qn = q[:, :dim] / np.linalg.norm(q[:, :dim], axis=1, keepdims=True)
    zn = z[:, :dim] / np.linalg.norm(z[:, :dim], axis=1, keepdims=True)
    return qn @ zn.T


def numpy_funnel(q: np.ndarray, z: np.ndarray, rows: np.ndarray, stages) -> np.ndarray:
    """The rows a funnel keeps: each `(dim, size)` stage keeps the best `size` of the previous
    stage's rows by `normalized_prefix_scores` at `dim`."""
    for dim, size in stages:
        s = np.take_along_axis(normalized_prefix_scores(q, z, dim), rows, axis=1)
        keep = np.argsort(-s, axis=1)[:, :size]
        rows = np.take_along_axis(rows, keep, axis=1)
    return rows


def assert_funnel_matches_numpy(reranker, q, z, rows, stages) -> None:
    """`reranker.rerank` over all-valid candidates `rows` keeps the rows `numpy_funnel` keeps
    (as sets) and scores them at the last stage's dim as NumPy does on `z`."""
    out_rows, scores, _ = reranker.rerank(q, rows, np.ones(rows.shape, bool), stages)
    expected_rows = numpy_funnel(q, z, rows, stages)
    np.testing.assert_array_equal(np.sort(out_rows, axis=1), np.sort(expected_rows, axis=1))
    last = stages[-1][0]
    expected = np.take_along_axis(normalized_prefix_scores(q, z, last), out_rows, axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def race_corpora(n: int = 64, d: int = 16):
    """Two distinguishable corpora: `A` (model version 1, ids 0..n-1) and `B` (model version
    2, ids 1000..): a load whose manifest names one and whose arrays hold the other is mixed."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((n, d)).astype(np.float32)
    b = rng.standard_normal((n, d)).astype(np.float32) + 3.0
    return {1: (a, np.arange(n)), 2: (b, np.arange(1000, 1000 + n))}


def classify_load(index, corpora) -> str:
    """`"ok"` when the loaded index's manifest (model version) and its arrays (ids, store, a
    search) all come from one build, else `"mixed"`."""
    x, ids = corpora[index.model_version]
    same = np.array_equal(index.ids, ids) and np.array_equal(np.asarray(index.store), x)
    rows, _ = index.shortlist(
        x[:2, : index.shortlist_dim]
        / np.linalg.norm(x[:2, : index.shortlist_dim], axis=1, keepdims=True),
        1,
    )
    return "ok" if same and rows.shape == (2, 1) else "mixed"
