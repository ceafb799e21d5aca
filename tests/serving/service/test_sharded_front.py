import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from http_testing import LiveServer

sys.path.insert(0, str(Path(__file__).parents[1] / "retrieval"))
from sharding_testing import exact_top_k, write_embedding_shards  # noqa: E402

from mrl_keras.serving.retrieval.sharded import build_sharded_index  # noqa: E402
from mrl_keras.serving.service.app import create_app  # noqa: E402
from mrl_keras.serving.service.search_service import SearchService, ServiceConfig  # noqa: E402
from mrl_keras.serving.service.sharded_front import (  # noqa: E402
    FrontConfig,
    ShardedFront,
    create_front_app,
)

N, K = 1400, 10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("front")
    ids, x = write_embedding_shards(root / "emb", n=N, d=32, num_shards=14)
    return root, ids, x


@pytest.fixture
def cluster(corpus, local_model):
    """cluster(shards) -> (front url, shard servers); everything stopped at teardown."""
    root, _, _ = corpus
    started = []

    def start(shards):
        out = root / f"s{shards}"
        if not out.exists():
            build_sharded_index(out, root / "emb", shards=shards, shortlist_dim=8, processes=1)
        servers = []
        for i in range(shards):
            service = SearchService(local_model, str(out / f"shard-{i:05d}"), ServiceConfig())
            servers.append(LiveServer(create_app(service)))
        front = ShardedFront([s.url for s in servers], FrontConfig(timeout=5.0))
        front_server = LiveServer(create_front_app(front))
        started.extend([front_server, *servers])
        return front_server.url, servers

    yield start
    for server in started:
        server.stop()


def _query(url, queries, **extra):
    body = {"embeddings": queries.tolist(), "k": K, "shortlist_size": N, **extra}
    return requests.post(f"{url}/v1/search", json=body, timeout=30)


@pytest.mark.parametrize("shards", [1, 3, 7])
def test_front_equals_unsharded_exactly_over_http(corpus, cluster, shards):
    _, ids, x = corpus
    url, _ = cluster(shards)
    queries = np.random.default_rng(3).normal(size=(5, 32)).astype(np.float32)
    r = _query(url, queries)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["partial"] is False and body["missing_shards"] == [] and body["shards"] == shards
    ref_ids, ref_scores = exact_top_k(x, ids, queries, K)
    assert [res["ids"] for res in body["results"]] == ref_ids.tolist()
    np.testing.assert_allclose([res["scores"] for res in body["results"]], ref_scores, atol=1e-5)


def test_shortlist_reorder_of_the_whole_corpus_is_capped_at_each_shard(corpus, cluster):
    """Each shard holds fewer than N points: uncapped, N would be a 400 from every shard."""
    _, ids, x = corpus
    url, _ = cluster(3)
    queries = np.random.default_rng(5).normal(size=(4, 32)).astype(np.float32)
    r = _query(url, queries, shortlist_reorder=N)
    assert r.status_code == 200, r.text
    ref_ids, _ = exact_top_k(x, ids, queries, K)
    assert [res["ids"] for res in r.json()["results"]] == ref_ids.tolist()
    bad = _query(url, queries, shortlist_size=50, shortlist_reorder=49)
    assert bad.status_code == 400 and "shortlist_reorder" in bad.json()["error"]


def test_stopped_shard_gives_503_naming_it_and_allow_partial_flags(corpus, cluster):
    _, ids, x = corpus
    url, servers = cluster(3)
    queries = np.random.default_rng(4).normal(size=(2, 32)).astype(np.float32)
    assert _query(url, queries).status_code == 200  # every shard's size is known now
    servers[1].stop()
    r = _query(url, queries, timeout=3)
    assert r.status_code == 503
    assert f"shard 1 ({servers[1].url}) unavailable" in r.json()["error"]
    r = _query(url, queries, timeout=3, allow_partial=True)
    assert r.status_code == 200
    body = r.json()
    assert body["partial"] is True and [m["shard"] for m in body["missing_shards"]] == [1]
    # the partial answer is the exact top-k of the two shards that answered
    shard1 = np.load(Path(corpus[0]) / "s3" / "shard-00001" / "ids.npy")
    keep = ~np.isin(ids, shard1)
    ref_ids, _ = exact_top_k(x[keep], ids[keep], queries, K)
    assert [res["ids"] for res in body["results"]] == ref_ids.tolist()


@pytest.mark.parametrize(
    "body, status, match",
    [
        ({"embeddings": [[0.0] * 32], "k": 0}, 400, "k >= 1"),
        ({"embeddings": [[0.0] * 32], "allow_partial": "yes"}, 400, "allow_partial"),
        ({"embeddings": [[0.0] * 32], "timeout": -1}, 400, "timeout"),
        ({"embeddings": [[1.0] * 31]}, 400, "shard 0"),  # the shard's own message, passed through
    ],
)
def test_bad_requests_are_400(cluster, body, status, match):
    url, _ = cluster(1)
    r = requests.post(f"{url}/v1/search", json=body, timeout=30)
    assert r.status_code == status and match in r.json()["error"]
    assert requests.post(f"{url}/v1/search", data=b"{not json", timeout=30).status_code == 400
    assert requests.get(f"{url}/v1/nothing", timeout=30).status_code == 404


@pytest.mark.parametrize(
    "urls, match",
    [([], "at least one"), (["ftp://x"], "http://"), (["http://a", "http://a/"], "distinct")],
)
def test_front_rejects_bad_shard_lists(urls, match):
    with pytest.raises(ValueError, match=match):
        ShardedFront(urls)
