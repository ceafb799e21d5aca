"""One service process over a whole sharded index (serving/service/sharded_local.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serving_testing import sample_inputs

sys.path.insert(0, str(Path(__file__).parents[1] / "retrieval"))
from sharding_testing import exact_top_k, write_embedding_shards  # noqa: E402

from mrl_keras.serving.retrieval.sharded import (  # noqa: E402
    ShardedIndex,
    ShardedRetriever,
    build_sharded_index,
)
from mrl_keras.serving.service.sharded_local import create_sharded_app  # noqa: E402

N, K = 1400, 10


@pytest.fixture(scope="module")
def client(tmp_path_factory, local_model):
    root = tmp_path_factory.mktemp("sharded_local")
    ids, x = write_embedding_shards(root / "emb", n=N, d=32, num_shards=14)
    build_sharded_index(root / "idx", root / "emb", shards=3, shortlist_dim=8, processes=1, versioned=True)
    retriever = ShardedRetriever(ShardedIndex.load(root / "idx", model_version=1), local_model)
    with TestClient(create_sharded_app(retriever, max_batch=8)) as c:
        yield c, ids, x
    retriever.close()


def test_instances_and_embeddings_give_the_exact_top_k(client, local_model):
    c, ids, x = client
    inputs = sample_inputs(4, seed=2)
    queries = local_model.embed(inputs, 32).embeddings
    ref_ids, ref_scores = exact_top_k(x, ids, queries, K)
    for body in ({"instances": inputs.tolist()}, {"embeddings": queries.tolist()}):
        r = c.post("/v1/search", json=dict(body, k=K, exact=True))
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["shards"] == 3
        assert [res["ids"] for res in out["results"]] == ref_ids.tolist()
        np.testing.assert_allclose([res["scores"] for res in out["results"]], ref_scores, atol=1e-5)
    assert c.post("/v1/search", json={"instances": inputs.tolist(), "k": K}).json()["model_version"] == 1
    ready = c.get("/readyz").json()
    assert ready["ready"] is True and ready["index_count"] == N


@pytest.mark.parametrize(
    "body, status, match",
    [
        ({"k": 3}, 400, "exactly one of instances or embeddings"),
        ({"embeddings": [[0.1] * 32], "k": 0}, 400, "1 <= k"),
        ({"embeddings": [[0.1] * 32], "exact": "yes"}, 400, "exact"),
        ({"embeddings": [[0.1] * 32], "colour": 1}, 400, "Unknown field"),
        ({"embeddings": [[0.1] * 31]}, 400, "columns"),
        ({"instances": [[0.1] * 9]}, 400, "shape"),
        ({"embeddings": [[0.1] * 32] * 9}, 413, "exceeds the limit"),
    ],
)
def test_bad_requests(client, body, status, match):
    c, *_ = client
    r = c.post("/v1/search", json=body)
    assert r.status_code == status and match in r.json()["error"]
    assert c.post("/v1/search", content=b"{nope").status_code == 400
