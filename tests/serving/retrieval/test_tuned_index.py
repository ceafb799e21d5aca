"""serving/retrieval/tuned_index.py: tuned defaults published as a new index version, and the
retriever's use of them."""

import json
import os

import numpy as np
import pytest
from tuning_testing import clustered

from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever, build_index
from mrl_keras.serving.retrieval.manifest import IndexIntegrityError, read_manifest
from mrl_keras.serving.retrieval.tuned_index import publish_tuned, versioned_base

DEFAULTS = {"shortlist_size": 40, "leaves_to_search": 3, "rerank_dim": 32}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("tuned")
    path = build_index(
        base / "plain",
        clustered(500),
        shortlist_dim=8,
        scann_options={"num_leaves": 8, "num_leaves_to_search": 2},
    )
    return base, path


def test_publish_in_place_is_a_new_verified_version(built, tmp_path):
    _, path = built
    target = tmp_path / "copy"
    first = publish_tuned(path, DEFAULTS, {"target_recall": 0.9}, out_dir=target)
    old, new = read_manifest(path), read_manifest(first)
    assert new["search_defaults"] == DEFAULTS and new["tuning"] == {"target_recall": 0.9}
    assert new["tuned_from"] == old["index_version"] != new["index_version"]
    assert new["files"] == old["files"]
    AdaptiveIndex.load(first, verify=True)  # every checksum still holds
    again = publish_tuned(first, dict(DEFAULTS, rerank_dim=64))  # replaces it atomically
    assert again == first and read_manifest(again)["search_defaults"]["rerank_dim"] == 64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_versioned_layout_gets_the_next_version(tmp_path):
    base = tmp_path / "indexes" / "demo"
    v1 = build_index(
        base, clustered(300), shortlist_dim=8, scann_options={"num_leaves": 1}, versioned=True
    )
    assert v1 == base / "1" and versioned_base(v1) == base
    v2 = publish_tuned(v1, DEFAULTS)
    assert v2 == base / "2"
    new = read_manifest(v2)
    assert new["version"] == 2 and new["index_version"].startswith("2-")
    assert new["search_defaults"] == DEFAULTS and "search_defaults" not in read_manifest(v1)
    assert os.stat(v1 / "rerank.npy").st_ino == os.stat(v2 / "rerank.npy").st_ino  # linked
    assert not os.access(v2 / "manifest.json", os.W_OK) or os.geteuid() == 0  # read-only
    assert publish_tuned(base, DEFAULTS) == base / "3"  # a base path: its newest version
    assert AdaptiveIndex.load(base).index_version == read_manifest(base / "3")["index_version"]
    assert versioned_base(tmp_path / "plain") is None


def test_bad_defaults_and_non_index_are_rejected(built, tmp_path):
    _, path = built
    with pytest.raises(ValueError, match="keys among"):
        publish_tuned(path, {"K": 10})
    with pytest.raises(IndexIntegrityError, match="Not an index directory"):
        publish_tuned(tmp_path / "nothing-here", DEFAULTS)


def test_retriever_plans_with_the_tuned_defaults(built, tmp_path):
    _, path = built
    tuned = AdaptiveIndex.load(publish_tuned(path, DEFAULTS, out_dir=tmp_path / "t"))
    retriever = AdaptiveRetriever(tuned)
    plan = retriever.plan(10)
    assert (plan.shortlist_size, plan.leaves_to_search, plan.stages) == (40, 3, ((32, 10),))
    explicit = retriever.plan(10, shortlist_size=100, rerank_dim=64, leaves_to_search=8)
    assert (explicit.shortlist_size, explicit.leaves_to_search, explicit.stages) == (
        100,
        8,
        ((64, 10),),
    )
    assert retriever.plan(60).shortlist_size == 60  # at least k
    untuned = AdaptiveRetriever(AdaptiveIndex.load(path)).plan(10)
    assert (untuned.shortlist_size, untuned.leaves_to_search) == (200, None)


def test_tuned_funnel_default_and_its_fallback_for_a_larger_k(built, tmp_path):
    _, path = built
    funnel = [[16, 20], [64, 10]]
    tuned = AdaptiveIndex.load(
        publish_tuned(
            path,
            {"shortlist_size": 40, "leaves_to_search": 2, "funnel": funnel},
            out_dir=tmp_path / "f",
        )
    )
    retriever = AdaptiveRetriever(tuned)
    assert retriever.plan(10).stages == ((16, 20), (64, 10))
    assert retriever.plan(15).stages == ((64, 15),)  # the funnel keeps 10 < k: rerank at 64
    q = clustered(5, stream=9)
    a = retriever.search_embeddings(q, 10)
    b = retriever.search_embeddings(q, 10, shortlist_size=40, leaves_to_search=2, funnel=funnel)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert (
        json.loads((tuned.path / "manifest.json").read_text())["search_defaults"]["funnel"]
        == funnel
    )


def test_tuned_reorder_default_follows_a_larger_shortlist(built, tmp_path):
    _, path = built
    defaults = dict(DEFAULTS, shortlist_reorder=40)
    tuned = AdaptiveIndex.load(publish_tuned(path, defaults, out_dir=tmp_path / "t"))
    assert read_manifest(tuned.path)["search_defaults"]["shortlist_reorder"] == 40
    retriever = AdaptiveRetriever(tuned)
    assert retriever.plan(10).shortlist_reorder == 40
    assert retriever.plan(60).shortlist_reorder == 60  # at least the shortlist (k here)
    assert retriever.plan(10, shortlist_size=100).shortlist_reorder == 100
    assert retriever.plan(10, shortlist_reorder=300).shortlist_reorder == 300  # explicit wins
    with pytest.raises(ValueError, match="shortlist_size=40 <= shortlist_reorder"):
        retriever.plan(10, shortlist_reorder=20)  # an explicit count below the shortlist
    q = clustered(50, stream=2)
    np.testing.assert_array_equal(
        retriever.search_embeddings(q, 10).ids,
        AdaptiveRetriever(AdaptiveIndex.load(path))
        .search_embeddings(
            q, 10, shortlist_size=40, leaves_to_search=3, rerank_dim=32, shortlist_reorder=40
        )
        .ids,
    )
