"""serving/retrieval/shortlists.py: several shortlist dims sharing one store, searched and tuned."""

import itertools
import math
import statistics

import numpy as np
import pytest
from tuning_testing import clustered, numpy_recall, numpy_topk

from mrl_keras.retrieval_metrics import l2_normalize
from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever, build_index
from mrl_keras.serving.retrieval.manifest import read_manifest
from mrl_keras.serving.retrieval.shortlists import add_shortlists, shortlist_dims
from mrl_keras.serving.retrieval.tune import bytes_per_query, tune_index


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    db = clustered(2000)
    base = tmp_path_factory.mktemp("multi") / "idx"
    v1 = build_index(
        base,
        db,
        shortlist_dim=8,
        versioned=True,
        scann_options={"num_leaves": 12, "num_leaves_to_search": 2},
    )
    v2 = add_shortlists(v1, [16, 32], scann_options={"num_leaves": 12, "num_leaves_to_search": 2})
    return db, v1, v2


def test_added_shortlists_share_the_store_in_a_new_version(multi):
    _, v1, v2 = multi
    assert v2.name == "2" and sorted(read_manifest(v2)["shortlists"]) == ["16", "32"]
    index = AdaptiveIndex.load(v2)  # every checksum, the new searchers' included
    assert shortlist_dims(index) == (8, 16, 32)
    assert read_manifest(v2)["files"]["rerank.npy"] == read_manifest(v1)["files"]["rerank.npy"]
    assert shortlist_dims(AdaptiveIndex.load(v1)) == (8,)


def test_an_exact_added_shortlist_matches_numpy(tmp_path):
    db = clustered(600)
    path = build_index(tmp_path / "e", db, shortlist_dim=8, scann_options={"num_leaves": 1})
    out = add_shortlists(path, [24], scann_options={"num_leaves": 1, "reorder_num_neighbors": 600})
    retriever = AdaptiveRetriever(AdaptiveIndex.load(out))
    q = clustered(7, stream=4)
    res = retriever.search_embeddings(q, 10, shortlist_dim=24, shortlist_size=10, rerank_dim=24)
    expected = np.argsort(-(l2_normalize(q[:, :24]) @ l2_normalize(db[:, :24]).T), axis=1)[:, :10]
    np.testing.assert_array_equal(np.asarray(res.ids), expected)


def test_the_tuner_picks_the_cheapest_shortlist_dim_by_brute_force(multi):
    db, _, v2 = multi
    index = AdaptiveIndex.load(v2)
    q = clustered(200, stream=6)
    grid = {
        "shortlist_dims": [8, 16, 32],
        "shortlist_sizes": [20, 50, 100, 200],
        "rerank_dims": [64],
        "leaves": [1, 2, 4, 12],
        "funnel": False,
        "reorders": [None],  # the shortlist's built count only (reorders: test_tune.py)
    }
    result = tune_index(index, q, target_recall=0.93, cost="bytes", grid=grid)
    tq = q[result.tuning_rows]
    exact, retriever = numpy_topk(db, tq, 10), AdaptiveRetriever(index)
    z, best = statistics.NormalDist().inv_cdf(0.95), None
    for d_s, size, leaves in itertools.product(
        *(grid[key] for key in ("shortlist_dims", "shortlist_sizes", "leaves"))
    ):
        res = retriever.search_embeddings(
            tq, 10, shortlist_dim=d_s, shortlist_size=size, leaves_to_search=leaves, rerank_dim=64
        )
        r = numpy_recall(np.asarray(res.ids), exact)
        config = {
            "shortlist_dim": d_s,
            "shortlist_size": size,
            "leaves_to_search": leaves,
            "rerank_dim": 64,
        }
        if r.mean() - z * r.std(ddof=1) / math.sqrt(len(r)) >= 0.93:
            cost = bytes_per_query(index, config)
            best = (cost, config) if best is None or cost < best[0] else best
    assert best is not None and result.chosen.config == best[1]
    assert {p.config["shortlist_dim"] for p in result.points} == {8, 16, 32}
    assert result.search_defaults()["shortlist_dim"] == best[1]["shortlist_dim"]


@pytest.mark.parametrize(
    "dims, error, match",
    [
        ([8], ValueError, "exists already"),
        ([128], ValueError, r"within \[1, 64\]"),
        ([True], TypeError, "int shortlist dims"),
        ([], ValueError, "at least one"),
    ],
)
def test_bad_dims_are_rejected(multi, dims, error, match):
    with pytest.raises(error, match=match):
        add_shortlists(multi[1], dims)


def test_unknown_shortlist_dim_in_a_request_names_the_choices(multi):
    retriever = AdaptiveRetriever(AdaptiveIndex.load(multi[2]))
    with pytest.raises(ValueError, match=r"shortlists at \[8, 16, 32\]"):
        retriever.plan(10, shortlist_dim=12)
    assert retriever.plan(10, shortlist_dim=32, rerank_dim=64).shortlist_dim == 32
