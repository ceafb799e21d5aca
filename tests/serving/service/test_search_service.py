"""End-to-end tests of the HTTP service through the local backend (in-process ASGI client)."""

import json
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serving_testing import (
    CORPUS,
    EMBEDDING_DIM,
    INPUT_DIM,
    MODEL_NAME,
    build_tiny_index,
    sample_inputs,
)

from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever, build_index
from mrl_keras.serving.backends.cascade_client import CascadeClassifier
from mrl_keras.serving.retrieval.index import ModelVersionMismatchError
from mrl_keras.serving.service.app import create_app
from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

EXACT = {"num_leaves": 1, "reorder_num_neighbors": CORPUS}


@pytest.fixture(scope="module")
def index_dir(local_model, tmp_path_factory):
    return build_tiny_index(local_model, tmp_path_factory.mktemp("svc") / "index")


@pytest.fixture(scope="module")
def client(local_model, index_dir):
    service = SearchService(
        local_model, index_dir, ServiceConfig(max_batch_size=64, max_body_bytes=200_000)
    )
    with TestClient(create_app(service), base_url="http://127.0.0.1") as c:
        yield c
    service.close()


@pytest.fixture(scope="module")
def direct(local_model, index_dir):
    return AdaptiveRetriever(AdaptiveIndex.load(index_dir), local_model)


QUERIES = sample_inputs(4, seed=11)


@pytest.mark.parametrize(
    "options",
    [
        {"k": 5},
        {"k": 3, "rerank_dim": 16},
        {"k": 4, "rerank_dim": 8},
        {"k": 5, "shortlist_size": 50, "funnel": [[16, 20], [32, 5]]},
    ],
)
def test_search_instances_equals_direct_call(client, direct, options):
    response = client.post("/v1/search", json={"instances": QUERIES.tolist(), **options})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = direct.search(QUERIES, **options)
    assert [r["ids"] for r in body["results"]] == expected.ids.tolist()
    np.testing.assert_allclose([r["scores"] for r in body["results"]], expected.scores, rtol=1e-6)
    assert body["model_version"] == 1 and body["index_version"] == expected.index_version


def test_search_embeddings_equals_direct_call(client, direct, local_model):
    z = local_model.embed(QUERIES, EMBEDDING_DIM).embeddings
    response = client.post("/v1/search", json={"embeddings": z.tolist(), "k": 7})
    assert response.status_code == 200, response.text
    expected = direct.search_embeddings(z, k=7)
    assert [r["ids"] for r in response.json()["results"]] == expected.ids.tolist()


def test_classify_equals_direct_call(client, local_model):
    response = client.post("/v1/classify", json={"instances": QUERIES.tolist()})
    assert response.status_code == 200, response.text
    expected = CascadeClassifier(local_model).classify(QUERIES)
    assert response.json()["predictions"] == expected.predictions()
    assert response.json()["model_version"] == 1
    assert set(response.json()["predictions"][0]) >= {"class", "score", "dims_used"}


def test_health_ready_metrics_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["versions_consistent"] is True
    client.post("/v1/search", json={"instances": QUERIES.tolist()})
    client.post("/v1/search", json={"instances": [[1.0]]})
    text = client.get("/metrics").text
    assert 'mrl_http_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 'status="400"' in text
    assert "mrl_http_request_duration_seconds_bucket" in text
    assert "mrl_backend_errors_total" in text or "mrl_backend_errors" in text
    schema = client.get("/openapi.json").json()
    assert {
        "/v1/search",
        "/v1/classify",
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/reload",
    } <= set(schema["paths"])
    assert "embeddings" in json.dumps(schema["paths"]["/v1/search"]["post"]["requestBody"])


VALID_SEARCH = {"instances": QUERIES[:2].tolist(), "k": 3}
VALID_CLASSIFY = {"instances": QUERIES[:2].tolist()}
ROW = [0.1] * INPUT_DIM


@pytest.mark.parametrize(
    "route, body, status, match",
    [
        ("/v1/search", {"instances": [[0.1] * 3]}, 400, "shape"),
        ("/v1/search", {"instances": [ROW, ROW[:5]]}, 400, "rectangular"),
        ("/v1/search", {"instances": [["a"] * INPUT_DIM]}, 400, "numbers"),
        ("/v1/search", {"instances": [[float("nan")] * INPUT_DIM]}, 400, "finite"),
        ("/v1/search", {"instances": [[float("inf")] * INPUT_DIM]}, 400, "finite"),
        ("/v1/search", {"instances": []}, 400, "non-empty"),
        ("/v1/search", {"instances": [ROW] * 65}, 413, "limit of 64"),
        ("/v1/search", {"instances": [ROW], "k": 0}, 400, "1 <= k"),
        ("/v1/search", {"instances": [ROW], "k": CORPUS + 1}, 400, "corpus size"),
        ("/v1/search", {"instances": [ROW], "k": "3"}, 400, "integer k"),
        ("/v1/search", {"instances": [ROW], "rerank_dim": 64}, 400, "Unknown rerank_dim"),
        ("/v1/search", {"instances": [ROW], "shortlist_dim": 16}, 400, "Unknown shortlist_dim"),
        ("/v1/search", {"instances": [ROW], "funnel": [[32, 5], [16, 5]]}, 400, "increasing"),
        ("/v1/search", {"instances": [ROW], "kk": 3}, 400, "Unknown field"),
        ("/v1/search", {"k": 3}, 400, "exactly one of"),
        ("/v1/search", {"instances": [ROW], "embeddings": [[0.0] * 32]}, 400, "exactly one of"),
        ("/v1/search", {"embeddings": [[0.1] * 5]}, 400, "columns"),
        ("/v1/search", {"embeddings": [[0.1] * 32], "timeout": -1}, 400, "timeout"),
        ("/v1/search", [1, 2], 400, "JSON object"),
        ("/v1/classify", {"instances": [[0.1] * 3]}, 400, "shape"),
        ("/v1/classify", {"instances": []}, 400, "non-empty"),
        ("/v1/classify", {"instances": [["x"] * INPUT_DIM]}, 400, "numbers"),
        ("/v1/classify", {"instances": [[float("nan")] * INPUT_DIM]}, 400, "finite"),
        ("/v1/classify", {}, 400, "instances"),
        ("/v1/classify", {"instances": [ROW] * 65}, 413, "limit"),
        ("/v1/classify", {"instances": [ROW], "k": 3}, 400, "Unknown field"),
    ],
)
def test_bad_input_is_a_json_4xx_then_next_request_succeeds(client, route, body, status, match):
    response = client.post(
        route,
        content=json.dumps(body, allow_nan=True),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert match in response.json()["error"]
    valid = VALID_SEARCH if route == "/v1/search" else VALID_CLASSIFY
    assert client.post(route, json=valid).status_code == 200


@pytest.mark.parametrize("route", ["/v1/search", "/v1/classify"])
def test_malformed_empty_and_oversize_bodies(client, route):
    valid = VALID_SEARCH if route == "/v1/search" else VALID_CLASSIFY
    for content, status, match in [
        (b'{"instances": [1, 2', 400, "Malformed JSON"),
        (b"", 400, "empty body"),
        (b"\xff\xfe", 400, "Malformed JSON"),
        (b"[" + b"0.5," * 60_000 + b"0.5]", 413, "exceeds the limit"),
    ]:
        response = client.post(route, content=content, headers={"content-type": "application/json"})
        assert response.status_code == status and match in response.json()["error"], response.text
        assert client.post(route, json=valid).status_code == 200


def test_unknown_route_and_method(client):
    response = client.get("/v1/nope")
    assert response.status_code == 404 and "Unknown route" in response.json()["error"]
    response = client.get("/v1/search")
    assert response.status_code == 405 and "error" in response.json()


def test_bearer_token(local_model, index_dir):
    service = SearchService(local_model, index_dir, ServiceConfig(auth_token="s3cret"))
    with TestClient(create_app(service), base_url="http://127.0.0.1") as c:
        assert c.get("/healthz").status_code == 200
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}]:
            response = c.post("/v1/search", json=VALID_SEARCH, headers=headers)
            assert response.status_code == 401 and "bearer token" in response.json()["error"]
            assert response.headers["www-authenticate"] == "Bearer"
        assert c.get("/metrics").status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert c.post("/v1/search", json=VALID_SEARCH, headers=ok).status_code == 200
        assert c.post("/v1/classify", json=VALID_CLASSIFY, headers=ok).status_code == 200
    service.close()


def test_version_mismatch_refused_then_allowed(local_model, tmp_path):
    out = build_tiny_index(local_model, tmp_path / "v2", model_version=2, count=50)
    with pytest.raises(ModelVersionMismatchError, match="version 2.*serves version 1"):
        SearchService(local_model, out)
    service = SearchService(local_model, out, ServiceConfig(allow_version_mismatch=True))
    with TestClient(create_app(service), base_url="http://127.0.0.1") as c:
        assert c.post("/v1/search", json=VALID_SEARCH).status_code == 200
        assert c.get("/readyz").status_code == 200
    service.close()


def test_reload_swaps_index_without_dropping_requests(local_model, tmp_path):
    out = build_tiny_index(local_model, tmp_path / "index", seed=1)
    service = SearchService(local_model, out)
    with TestClient(create_app(service), base_url="http://127.0.0.1") as c:
        first = c.post("/v1/search", json=VALID_SEARCH).json()
        assert first["results"][0]["ids"][0].startswith("item-1-")
        failures, stop = [], threading.Event()

        def hammer():
            while not stop.is_set():
                r = c.post("/v1/search", json=VALID_SEARCH)
                if r.status_code != 200:
                    failures.append(r.text)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            build_tiny_index(local_model, out, seed=2)
            response = c.post("/admin/reload", json={})
            assert response.status_code == 200, response.text
            assert response.json()["previous_index_version"] == first["index_version"]
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert failures == []
        second = c.post("/v1/search", json=VALID_SEARCH).json()
        assert second["index_version"] != first["index_version"]
        assert second["results"][0]["ids"][0].startswith("item-2-")
        # A corrupted directory is refused; the service keeps serving the previous index.
        data = bytearray((out / "rerank.npy").read_bytes())
        data[-1] ^= 0xFF
        (out / "rerank.npy").write_bytes(bytes(data))
        # The served files were edited in place: the reload re-verifies them, and with no
        # previous good version to fall back to, searches answer 503 naming the file.
        response = c.post("/admin/reload", json={})
        assert response.status_code == 500 and "still serving" in response.json()["error"]
        response = c.post("/v1/search", json=VALID_SEARCH)
        assert response.status_code == 503 and "rerank.npy" in response.json()["error"]
        assert "mrl_index_reloads_total" in c.get("/metrics").text
    service.close()


TREE_LEAVES = 16


@pytest.fixture(scope="module")
def tree_client(local_model, tmp_path_factory):
    """A service over 2000 random unit vectors in a 16-leaf ScaNN tree (embedding queries)."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2000, EMBEDDING_DIM)).astype(np.float32)
    out = build_index(
        tmp_path_factory.mktemp("svc_tree") / "index",
        z / np.linalg.norm(z, axis=1, keepdims=True),
        shortlist_dim=8,
        model_name=MODEL_NAME,
        model_version=1,
        scann_options={"num_leaves": TREE_LEAVES, "reorder_num_neighbors": 2000},
    )
    service = SearchService(local_model, out, ServiceConfig(max_batch_size=64))
    with TestClient(create_app(service), base_url="http://127.0.0.1") as c:
        yield c, AdaptiveRetriever(AdaptiveIndex.load(out))
    service.close()


TREE_QUERIES = np.random.default_rng(4).standard_normal((20, EMBEDDING_DIM)).astype(np.float32)


def test_search_leaves_to_search_equals_direct_call(tree_client):
    client, direct = tree_client
    ids = {}
    for leaves in (1, TREE_LEAVES):
        body = {"embeddings": TREE_QUERIES.tolist(), "k": 10, "leaves_to_search": leaves}
        response = client.post("/v1/search", json=body)
        assert response.status_code == 200, response.text
        ids[leaves] = [r["ids"] for r in response.json()["results"]]
        expected = direct.search_embeddings(TREE_QUERIES, k=10, leaves_to_search=leaves)
        assert ids[leaves] == expected.ids.tolist()
    assert ids[1] != ids[TREE_LEAVES]  # the knob reaches ScaNN through HTTP


@pytest.mark.parametrize(
    "value, match",
    [
        (
            0,
            "Expected 1 <= leaves_to_search <= 16 (the index's ScaNN leaves). Received: "
            "leaves_to_search=0",
        ),
        (-1, "Received: leaves_to_search=-1"),
        (TREE_LEAVES + 1, "<= 16 (the index's ScaNN leaves). Received: leaves_to_search=17"),
        (2.5, "int leaves_to_search: 1 <= leaves_to_search <= 16"),
        (True, "Received: leaves_to_search=True"),
        ("3", "Received: leaves_to_search='3'"),
    ],
)
def test_bad_leaves_to_search_is_400(tree_client, value, match):
    client, _ = tree_client
    body = {"embeddings": TREE_QUERIES[:2].tolist(), "leaves_to_search": value}
    response = client.post("/v1/search", json=body)
    assert response.status_code == 400, response.text
    assert match in response.json()["error"]


def test_search_shortlist_reorder_equals_direct_call(tree_client):
    client, direct = tree_client
    ids = {}
    for reorder in (20, 2000):
        body = {
            "embeddings": TREE_QUERIES.tolist(),
            "k": 20,
            "shortlist_size": 20,
            "rerank_dim": 8,
            "shortlist_reorder": reorder,
        }
        response = client.post("/v1/search", json=body)
        assert response.status_code == 200, response.text
        ids[reorder] = [r["ids"] for r in response.json()["results"]]
        expected = direct.search_embeddings(
            TREE_QUERIES, k=20, shortlist_size=20, rerank_dim=8, shortlist_reorder=reorder
        )
        assert ids[reorder] == expected.ids.tolist()
    # k = shortlist_size returns the whole shortlist, so the knob shows on ~every query (at
    # k = 10 the two agreed on 19 of 20 queries, and ScaNN's AH training is not bit-stable).
    differ = sum(set(a) != set(b) for a, b in zip(ids[20], ids[2000], strict=True))
    assert differ >= 5, differ  # the knob reaches ScaNN through HTTP


@pytest.mark.parametrize(
    "value, match",
    [
        (
            19,
            "Expected shortlist_size=20 <= shortlist_reorder <= 2000 (the corpus size). "
            "Received: shortlist_reorder=19",
        ),
        (2001, "Received: shortlist_reorder=2001"),
        (2.5, "shortlist_reorder"),
        ("30", "shortlist_reorder"),
    ],
)
def test_bad_shortlist_reorder_is_400(tree_client, value, match):
    client, _ = tree_client
    body = {"embeddings": TREE_QUERIES[:2].tolist(), "shortlist_size": 20}
    response = client.post("/v1/search", json={**body, "shortlist_reorder": value})
    assert response.status_code == 400, response.text
    assert match in response.json()["error"]
    schema = client.get("/openapi.json").json()
    assert "shortlist_reorder" in json.dumps(schema["paths"]["/v1/search"]["post"]["requestBody"])


def test_single_leaf_service_accepts_only_one_leaf(client):
    ok = client.post("/v1/search", json={**VALID_SEARCH, "leaves_to_search": 1})
    assert ok.status_code == 200, ok.text
    response = client.post("/v1/search", json={**VALID_SEARCH, "leaves_to_search": 2})
    assert response.status_code == 400
    assert "single ScaNN leaf" in response.json()["error"]
    assert "Received: leaves_to_search=2" in response.json()["error"]
    schema = client.get("/openapi.json").json()
    assert "leaves_to_search" in json.dumps(schema["paths"]["/v1/search"]["post"]["requestBody"])
