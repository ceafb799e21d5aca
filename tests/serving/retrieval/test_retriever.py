"""Tests for serving/retriever.py: exactness, recall floor, funnel validation (embeddings only).

The Fashion-MNIST model-based mAP test lives in test_retriever_fashion_mnist.py.
"""

import numpy as np
import pytest

from mrl_keras.serving.retrieval.index import AdaptiveIndex, build_index
from mrl_keras.serving.retrieval.retriever import AdaptiveRetriever, SearchResult


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


@pytest.mark.slow  # builds a 100,000 x 256 index with the default ScaNN settings
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


def test_search_needs_a_backend(exact_index):
    index, _, q = exact_index
    with pytest.raises(ValueError, match="no backend"):
        AdaptiveRetriever(index).search(q, k=3)


TREE_LEAVES = 32


@pytest.fixture(scope="module")
def tree_index(tmp_path_factory):
    """3000 random unit vectors (d=32, D_s=16) in a 32-leaf tree; every candidate is reordered
    exactly (reorder_num_neighbors = count), so only the leaves searched limit recall."""
    rng = np.random.default_rng(7)
    z = _normalize(rng.standard_normal((3000, 32)).astype(np.float32))
    q = rng.standard_normal((100, 32)).astype(np.float32)
    out = tmp_path_factory.mktemp("tree") / "idx"
    build_index(
        out,
        z,
        shortlist_dim=16,
        scann_options={"num_leaves": TREE_LEAVES, "reorder_num_neighbors": 3000},
    )
    index = AdaptiveIndex.load(out)
    assert index.scann_options["num_leaves"] == TREE_LEAVES
    return index, z, q


def _recall(found, truth):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)])


def test_all_leaves_is_numpy_exact(tree_index):
    index, z, q = tree_index
    retriever = AdaptiveRetriever(index)
    # The shortlist step alone: recall 1.0 against NumPy exact cosine at D_s.
    head = _normalize(q[:, :16])
    rows, _ = index.shortlist(head, 200, leaves_to_search=TREE_LEAVES)
    truth, _ = _exact_topk(q, z, 16, 200)
    assert _recall(rows, truth) == 1.0
    # End to end, no rerank: exactly NumPy's top-k at D_s.
    result = retriever.search_embeddings(
        q, k=10, shortlist_size=200, rerank_dim=16, leaves_to_search=TREE_LEAVES
    )
    top, scores = _exact_topk(q, z, 16, 10)
    np.testing.assert_array_equal(result.ids, top)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-5, atol=1e-6)
    # End to end with rerank at 32: NumPy's shortlist of 200 at 16, reranked at 32.
    result = retriever.search_embeddings(
        q, k=10, shortlist_size=200, rerank_dim=32, leaves_to_search=TREE_LEAVES
    )
    full = np.take_along_axis(_normalize(q) @ z.T, truth, axis=1)
    order = np.argsort(-full, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(result.ids, np.take_along_axis(truth, order, axis=1))


def test_recall_grows_with_leaves_to_search(tree_index):
    index, z, q = tree_index
    retriever = AdaptiveRetriever(index)
    truth, _ = _exact_topk(q, z, 16, 10)
    recalls = []
    for leaves in (1, 2, 4, 8, 16, TREE_LEAVES):
        result = retriever.search_embeddings(
            q, k=10, shortlist_size=50, rerank_dim=16, leaves_to_search=leaves
        )
        recalls.append(_recall(result.ids, truth))
    assert all(b >= a for a, b in zip(recalls, recalls[1:], strict=False)), recalls
    assert recalls[-1] == 1.0 and recalls[0] < 0.9, recalls  # the knob reaches ScaNN
    one = retriever.search_embeddings(q, k=10, leaves_to_search=1)
    every = retriever.search_embeddings(q, k=10, leaves_to_search=TREE_LEAVES)
    assert not np.array_equal(one.ids, every.ids)
    # None keeps the index's default num_leaves_to_search (10% of the leaves: 4).
    default = index.scann_options["num_leaves_to_search"]
    assert default == 4
    np.testing.assert_array_equal(
        retriever.search_embeddings(q, k=10).ids,
        retriever.search_embeddings(q, k=10, leaves_to_search=default).ids,
    )


def test_plan_records_leaves_to_search(tree_index, exact_index):
    tree = AdaptiveRetriever(tree_index[0])
    assert tree.plan(k=5).leaves_to_search is None
    assert tree.plan(k=5, leaves_to_search=3).leaves_to_search == 3
    assert tree.plan(k=5, leaves_to_search=np.int64(32)).leaves_to_search == 32
    single = AdaptiveRetriever(exact_index[0])
    assert single.plan(k=5, leaves_to_search=1).leaves_to_search == 1
    ids = single.search_embeddings(exact_index[2], k=5, leaves_to_search=1).ids
    np.testing.assert_array_equal(ids, single.search_embeddings(exact_index[2], k=5).ids)


@pytest.mark.parametrize(
    "value, error, match",
    [
        (
            0,
            ValueError,
            r"Expected 1 <= leaves_to_search <= 32 \(the index's ScaNN leaves\)\. "
            r"Received: leaves_to_search=0",
        ),
        (-1, ValueError, r"1 <= leaves_to_search <= 32 .*Received: leaves_to_search=-1"),
        (33, ValueError, r"1 <= leaves_to_search <= 32 .*Received: leaves_to_search=33"),
        (2.5, TypeError, r"int leaves_to_search: 1 <= leaves_to_search <= 32 .*=2\.5"),
        (True, TypeError, r"int leaves_to_search: .*Received: leaves_to_search=True"),
        ("3", TypeError, r"int leaves_to_search: .*Received: leaves_to_search='3'"),
    ],
)
def test_bad_leaves_to_search(tree_index, value, error, match):
    index, _, q = tree_index
    retriever = AdaptiveRetriever(index)
    with pytest.raises(error, match=match):
        retriever.search_embeddings(q, k=5, leaves_to_search=value)
    with pytest.raises(error, match=match):
        retriever.plan(k=5, leaves_to_search=value)


@pytest.mark.parametrize("value", [0, 2, 32])
def test_single_leaf_index_accepts_only_one_leaf(exact_index, value):
    index, _, q = exact_index
    with pytest.raises(ValueError, match=rf"single ScaNN leaf.*Received: leaves_to_search={value}"):
        AdaptiveRetriever(index).search_embeddings(q, k=5, leaves_to_search=value)


def test_shortlist_reorder_reaches_scann_and_all_of_it_is_numpy_exact(exact_index):
    """The index reorders every point by default (3000): exact at D_s. Re-scoring only the K
    kept (shortlist_reorder=K) leaves ScaNN's asymmetric-hashing order: lower recall, and the
    scores are still the exact D_s cosines of the rows returned (float32 reordering)."""
    index, z, q = exact_index
    retriever = AdaptiveRetriever(index)
    truth, _ = _exact_topk(q, z, 16, 10)
    recalls = {}
    for reorder in (10, 40, 3000):
        result = retriever.search_embeddings(
            q, k=10, shortlist_size=10, rerank_dim=16, shortlist_reorder=reorder
        )
        recalls[reorder] = _recall(result.ids, truth)
        exact = np.take_along_axis(_normalize(q[:, :16]) @ _normalize(z[:, :16]).T, result.ids, 1)
        np.testing.assert_allclose(result.scores, exact, rtol=1e-5, atol=1e-6)
    assert recalls[3000] == 1.0 and recalls[10] < recalls[40] <= recalls[3000], recalls
    default = retriever.search_embeddings(q, k=10, shortlist_size=10, rerank_dim=16)
    np.testing.assert_array_equal(
        default.ids,
        retriever.search_embeddings(
            q, k=10, shortlist_size=10, rerank_dim=16, shortlist_reorder=3000
        ).ids,
    )
    assert retriever.plan(k=5).shortlist_reorder is None
    assert (
        retriever.plan(k=5, shortlist_size=20, shortlist_reorder=np.int64(20)).shortlist_reorder
        == 20
    )


@pytest.mark.parametrize(
    "value, error, match",
    [
        (
            49,
            ValueError,
            r"Expected shortlist_size=50 <= shortlist_reorder <= 3000 \(the corpus size\)\. "
            r"Received: shortlist_reorder=49",
        ),
        (3001, ValueError, r"shortlist_size=50 <= shortlist_reorder <= 3000 .*=3001"),
        (0, ValueError, r"shortlist_size=50 <= shortlist_reorder .*=0"),
        (2.5, TypeError, r"shortlist_reorder"),
        (True, TypeError, r"shortlist_reorder"),
        ("60", TypeError, r"shortlist_reorder"),
    ],
)
def test_bad_shortlist_reorder(exact_index, value, error, match):
    index, _, q = exact_index
    retriever = AdaptiveRetriever(index)
    with pytest.raises(error, match=match):
        retriever.search_embeddings(q, k=5, shortlist_size=50, shortlist_reorder=value)
    with pytest.raises(error, match=match):
        retriever.plan(k=5, shortlist_size=50, shortlist_reorder=value)
