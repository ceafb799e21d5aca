"""Tests for serving/rerank.py: the batched prefix rerank kernel against NumPy."""

import numpy as np
import pytest
from retrieval_testing import (
    assert_funnel_matches_numpy,
    bfloat16_round,
    normalized_prefix_scores,
)

from mrl_keras.serving.retrieval.rerank import PrefixReranker, sort_rows_descending, top_along_rows


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1000, 64)).astype(np.float32)
    q = rng.standard_normal((20, 64)).astype(np.float32) * 3.0  # raw, unnormalised queries
    rows = np.stack([rng.choice(1000, 100, replace=False) for _ in range(20)])
    return z, q, rows


def _norms(z, dims):
    return np.stack([np.linalg.norm(z[:, :m], axis=1) for m in dims], axis=1).astype(np.float32)


@pytest.mark.parametrize("stored_dims", [(), (16, 64), (8, 16, 32, 48, 64)])
def test_single_stage_matches_numpy(data, stored_dims):
    z, q, rows = data
    reranker = PrefixReranker(z, _norms(z, stored_dims) if stored_dims else None, stored_dims)
    valid = np.ones(rows.shape, bool)
    out_rows, scores, out_valid = reranker.rerank(q, rows, valid, [(48, 100)])
    expected = np.take_along_axis(normalized_prefix_scores(q, z, 48), rows, axis=1)
    np.testing.assert_array_equal(out_rows, rows)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert out_valid.all()


def test_funnel_matches_numpy(data):
    z, q, rows = data
    stages = [(16, 50), (32, 20), (64, 5)]
    reranker = PrefixReranker(z, _norms(z, (16, 64)), (16, 64))  # 32 is not stored: accumulated
    assert_funnel_matches_numpy(reranker, q, z, rows, stages)


def test_float16_store(data):
    z, q, rows = data
    z16 = z.astype(np.float16)
    reranker = PrefixReranker(z16, _norms(z16.astype(np.float32), (64,)), (64,))
    _, scores, _ = reranker.rerank(q, rows, np.ones(rows.shape, bool), [(64, 100)])
    expected = np.take_along_axis(normalized_prefix_scores(q, z, 64), rows, axis=1)
    np.testing.assert_allclose(scores, expected, atol=2e-3)


def test_bfloat16_store_matches_numpy_on_rounded_vectors(data):
    z, q, rows = data
    zb = bfloat16_round(z)
    bits = (zb.view(np.uint32) >> 16).astype(np.uint16)
    stages = [(16, 50), (64, 10)]
    reranker = PrefixReranker(bits, _norms(zb, (16, 64)), (16, 64))
    assert_funnel_matches_numpy(reranker, q, zb, rows, stages)


def test_invalid_candidates_sink(data):
    z, q, rows = data
    valid = np.ones(rows.shape, bool)
    valid[:, :95] = False
    out_rows, scores, out_valid = PrefixReranker(z).rerank(q, rows, valid, [(64, 10)])
    assert out_valid.sum(axis=1).tolist() == [5] * len(q)
    assert np.isneginf(scores[~out_valid]).all()
    assert set(out_rows[0][out_valid[0]]) == set(rows[0, 95:])


def test_blocks_of_queries_agree(data, monkeypatch):
    z, q, rows = data
    whole = PrefixReranker(z).rerank(q, rows, np.ones(rows.shape, bool), [(64, 100)])[1]
    monkeypatch.setattr("mrl_keras.serving.retrieval.rerank._BLOCK_BYTES", 1)
    blocked = PrefixReranker(z).rerank(q, rows, np.ones(rows.shape, bool), [(64, 100)])[1]
    np.testing.assert_array_equal(whole, blocked)


def test_selection_helpers():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [3.0, 2.0, 1.0, 0.0]], np.float32)
    top = top_along_rows(scores, 2)
    assert [sorted(r) for r in top.tolist()] == [[1, 3], [0, 1]]
    assert top_along_rows(scores, 9).shape == (2, 4)
    assert sort_rows_descending(scores).tolist() == [[1, 3, 2, 0], [0, 1, 2, 3]]
