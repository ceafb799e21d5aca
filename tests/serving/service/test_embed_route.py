"""`POST /v1/embed` (serving/service/embed_route.py): prefixes against NumPy, bad input -> 400."""

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serving_testing import EMBEDDING_DIM, build_tiny_index, sample_inputs

from mrl_keras.serving.service.app import create_app
from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

QUERIES = sample_inputs(5, seed=21)


@pytest.fixture(scope="module")
def client(local_model, tmp_path_factory):
    index_dir = build_tiny_index(local_model, tmp_path_factory.mktemp("embed") / "index")
    service = SearchService(local_model, index_dir, ServiceConfig(max_batch_size=16))
    with TestClient(create_app(service), base_url="http://127.0.0.1") as c:
        yield c
    service.close()


@pytest.mark.parametrize("m", [1, 5, 8, 12, EMBEDDING_DIM, None])
def test_embed_is_the_renormalised_prefix_of_the_full_embedding(client, local_model, m):
    body = {"instances": QUERIES.tolist()} | ({} if m is None else {"dimensions": m})
    response = client.post("/v1/embed", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    full = local_model.embed(QUERIES, EMBEDDING_DIM).embeddings.astype(np.float64)
    dim = EMBEDDING_DIM if m is None else m
    expected = full[:, :dim] / np.linalg.norm(full[:, :dim], axis=1, keepdims=True)
    np.testing.assert_allclose(out["embeddings"], expected, rtol=1e-4, atol=1e-5)
    assert out["dimensions"] == dim and out["model_version"] == 1


@pytest.mark.parametrize(
    "body, status, match",
    [
        ({"instances": QUERIES.tolist(), "dimensions": 0}, 400, "1 <= dimensions <= "),
        ({"instances": QUERIES.tolist(), "dimensions": EMBEDDING_DIM + 1}, 400, "dimensions"),
        ({"instances": QUERIES.tolist(), "dimensions": "8"}, 400, "integer dimensions"),
        ({"instances": QUERIES.tolist(), "dimensions": True}, 400, "integer dimensions"),
        ({"dimensions": 8}, 400, "Expected 'instances'"),
        ({"instances": [[1.0, 2.0]], "dimensions": 8}, 400, "shape"),
        ({"instances": QUERIES.tolist(), "dims": 8}, 400, "Unknown field"),
        ({"instances": QUERIES.tolist() * 4}, 413, "exceeds the limit"),
    ],
)
def test_bad_requests_get_clear_json_errors(client, body, status, match):
    response = client.post("/v1/embed", json=body)
    assert response.status_code == status, response.text
    assert match in response.json()["error"]
