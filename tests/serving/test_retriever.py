"""Tests for serving/retriever.py: exactness, recall floor, funnel validation (embeddings only).

The Fashion-MNIST model-based mAP test lives in test_retriever_fashion_mnist.py.
"""

import numpy as np
import pytest
from mrl_keras.serving.index import AdaptiveIndex, build_index
from mrl_keras.serving.retriever import AdaptiveRetriever, SearchResult, parse_funnel


def _normalize(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _clustered(n, d, clusters, noise, seed):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d)).astype(np.float32)
    points = centers[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, d)).astype(
        np.float32
    )
    queries = centers[rng.integers(0, clusters, 200)] + noise * rng.standard_normal(
        (200, d)
    ).astype(np.float32)
    return _normalize(points), queries


def _exact_topk(q, z, dim, k):
    scores = _normalize(q[:, :dim]) @ _normalize(z[:, :dim]).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(scores, top, axis=1)


@pytest.fixture(scope="module")
def exact_index(tmp_path_factory):
    z, q = _clustered(3000, 64, 30, 0.6, seed=0)
    out = tmp_path_factory.mktemp("exact") / "idx"
    build_index(
        out, z, shortlist_dim=16, scann_options={"num_leaves": 1, "reorder_num_neighbors": 3000}
    )
    return AdaptiveIndex.load(out), z, q


@pytest.mark.parametrize("dim", [16, 32, 64])
def test_exact_config_is_numpy_topk(exact_index, dim):
    index, z, q = exact_index
    retriever = AdaptiveRetriever(index)
    result = retriever.search_embeddings(q, k=10, shortlist_size=index.count, rerank_dim=dim)
    top, scores = _exact_topk(q, z, dim, 10)
    np.testing.assert_array_equal(result.ids, top)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-5, atol=1e-6)
    assert isinstance(result, SearchResult) and result.index_version == index.index_version


def test_exact_adaptive_retrieval_is_numpy_shortlist_then_rerank(exact_index):
    index, z, q = exact_index
    result = AdaptiveRetriever(index).search_embeddings(q, k=10, shortlist_size=50, rerank_dim=64)
    shortlist, _ = _exact_topk(q, z, 16, 50)
    full = _normalize(q) @ _normalize(z).T
    rerank = np.take_along_axis(full, shortlist, axis=1)
    order = np.argsort(-rerank, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(result.ids, np.take_along_axis(shortlist, order, axis=1))


def test_exact_funnel_is_numpy_funnel(exact_index):
    index, z, q = exact_index
    funnel = [(32, 100), (48, 50), (64, 10)]
    result = AdaptiveRetriever(index).search_embeddings(q, k=10, shortlist_size=200, funnel=funnel)
    rows, _ = _exact_topk(q, z, 16, 200)
    for dim, size in funnel:
        s = np.take_along_axis(_normalize(q[:, :dim]) @ _normalize(z[:, :dim]).T, rows, axis=1)
        rows = np.take_along_axis(rows, np.argsort(-s, axis=1, kind="stable")[:, :size], axis=1)
    np.testing.assert_array_equal(result.ids, rows)


def test_queries_may_be_normalised_or_raw_and_prefix_wide(exact_index):
    index, z, q = exact_index
    retriever = AdaptiveRetriever(index)
    raw = retriever.search_embeddings(q * 5.0, k=5, rerank_dim=32)
    narrow = retriever.search_embeddings(_normalize(q)[:, :32], k=5, rerank_dim=32)
    np.testing.assert_array_equal(raw.ids, narrow.ids)


def test_default_settings_recall_on_clustered_corpus(tmp_path):
    z, q = _clustered(100_000, 256, 1000, 0.3, seed=1)
    build_index(tmp_path / "idx", z, shortlist_dim=256)
    index = AdaptiveIndex.load(tmp_path / "idx", verify=False)
    assert index.scann_options["num_leaves"] > 1  # the defaults use a tree at this size
    result = AdaptiveRetriever(index).search_embeddings(q, k=10)
    top, _ = _exact_topk(q, z, 256, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(result.ids, top, strict=False)])
    assert recall >= 0.95, recall


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"k": 0}, ValueError, "1 <= k <= 3000"),
        ({"k": 3001}, ValueError, "the corpus size"),
        ({"k": 2.5}, TypeError, "int k"),
        ({"shortlist_dim": 32}, ValueError, "Unknown shortlist_dim=32"),
        ({"rerank_dim": 128}, ValueError, "Unknown rerank_dim=128"),
        ({"rerank_dim": 8}, ValueError, "Unknown rerank_dim=8"),
        ({"shortlist_size": 5}, ValueError, "shortlist_size"),
        ({"funnel": [(32, 100)], "rerank_dim": 64}, ValueError, "not both"),
        ({"funnel": [(64, 50), (32, 20)]}, ValueError, "strictly increasing"),
        ({"funnel": [(16, 50)]}, ValueError, "strictly increasing"),
        ({"funnel": [(32, 50), (64, 60)]}, ValueError, "non-increasing"),
        ({"funnel": [(32, 50), (64, 5)]}, ValueError, "last funnel size >= k"),
        ({"funnel": [(32, 500)], "shortlist_size": 200}, ValueError, "<= shortlist_size"),
        ({"funnel": []}, ValueError, "non-empty"),
        ({"funnel": [(32,)]}, ValueError, r"\[dim, size\]"),
    ],
)
def test_bad_search_arguments(exact_index, kwargs, error, match):
    index, _, q = exact_index
    with pytest.raises(error, match=match):
        AdaptiveRetriever(index).search_embeddings(q, **kwargs)


@pytest.mark.parametrize(
    "queries, error, match",
    [
        (np.zeros((0, 64), np.float32), ValueError, "shape"),
        (np.zeros((3, 8), np.float32), ValueError, "columns"),
        (np.zeros((3, 128), np.float32), ValueError, "columns"),
        (np.full((3, 64), np.nan, np.float32), ValueError, "finite"),
        (np.array([["a"] * 64]), TypeError, "numeric"),
    ],
)
def test_bad_query_embeddings(exact_index, queries, error, match):
    index, _, _ = exact_index
    with pytest.raises(error, match=match):
        AdaptiveRetriever(index).search_embeddings(queries, k=3)


def test_funnel_parsing_forms():
    assert parse_funnel([[32, 100], {"dim": 64, "size": 10}]) == ((32, 100), (64, 10))
    with pytest.raises(ValueError, match="keys 'dim' and 'size'"):
        parse_funnel([{"dim": 32}])
    with pytest.raises(TypeError, match="int funnel size"):
        parse_funnel([[32, "10"]])


def test_search_needs_a_backend(exact_index):
    index, _, q = exact_index
    with pytest.raises(ValueError, match="no backend"):
        AdaptiveRetriever(index).search(q, k=3)
