"""The HTTP service in front of the development model server over gRPC and REST: answers equal
the direct Python calls; a stopped backend gives 503 within the deadline and the service
recovers when it returns; a slow backend gives 504 at the deadline."""

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serving_testing import build_tiny_index, sample_inputs

from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever, TFServingGrpc, TFServingRest
from mrl_keras.serving.backends.cascade_client import CascadeClassifier
from mrl_keras.serving.service.app import create_app
from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

X = sample_inputs(3, seed=31)
SLACK_S = 1.0  # scheduling slack on a loaded 2-core machine
TRANSPORTS = {
    "grpc": lambda target, **kw: TFServingGrpc(target.grpc_address, target.model_name, **kw),
    "rest": lambda target, **kw: TFServingRest(target.rest_url, target.model_name, **kw),
}


@pytest.fixture(scope="module")
def index_dir(local_model, tmp_path_factory):
    return build_tiny_index(local_model, tmp_path_factory.mktemp("remote") / "index")


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_service_over_dev_server_equals_direct_calls(
    serving_target, index_dir, local_model, transport
):
    backend = TRANSPORTS[transport](serving_target, timeout=10)
    service = SearchService(backend, index_dir)
    with TestClient(create_app(service), base_url="http://127.0.0.1") as client:
        for options in ({"k": 5}, {"k": 5, "funnel": [[16, 50], [32, 5]]}):
            response = client.post("/v1/search", json={"instances": X.tolist(), **options})
            assert response.status_code == 200, response.text
            direct = AdaptiveRetriever(AdaptiveIndex.load(index_dir), backend).search(X, **options)
            local = AdaptiveRetriever(AdaptiveIndex.load(index_dir), local_model).search(
                X, **options
            )
            ids = [r["ids"] for r in response.json()["results"]]
            assert ids == direct.ids.tolist() == local.ids.tolist()
            np.testing.assert_allclose(
                [r["scores"] for r in response.json()["results"]], direct.scores, rtol=1e-5
            )
        response = client.post("/v1/classify", json={"instances": X.tolist()})
        assert response.status_code == 200, response.text
        assert (
            response.json()["predictions"] == CascadeClassifier(backend).classify(X).predictions()
        )
        assert client.get("/readyz").json()["ready"] is True
    service.close()
    backend.close()


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_backend_stopped_gives_503_within_deadline_then_recovers(
    start_model_server, exported_base_path, index_dir, transport
):
    server = start_model_server(exported_base_path)
    ports = {"port": server.grpc_port, "rest_api_port": server.rest_port}
    backend = TRANSPORTS[transport](server, timeout=5)
    service = SearchService(backend, index_dir, ServiceConfig(default_timeout=2.0))
    body = {"instances": X.tolist(), "k": 3}
    with TestClient(create_app(service), base_url="http://127.0.0.1") as client:
        assert client.post("/v1/search", json=body).status_code == 200
        server.stop()
        for route, payload in (("/v1/search", body), ("/v1/classify", {"instances": X.tolist()})):
            start = time.monotonic()
            response = client.post(route, json=payload)
            assert response.status_code == 503, response.text
            assert time.monotonic() - start < 2.0 + SLACK_S
            assert "unavailable" in response.json()["error"].lower()
        assert client.get("/readyz").status_code == 503
        assert "mrl_backend_errors_total" in client.get("/metrics").text
        start_model_server(exported_base_path, **ports)
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            status = client.post("/v1/search", json=dict(body, timeout=5)).status_code
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200
        assert client.post("/v1/classify", json={"instances": X.tolist()}).status_code == 200
        for _ in range(100):  # /readyz is the background probe's: ready by its next probe
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        assert client.get("/readyz").status_code == 200
    service.close()


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_slow_backend_gives_504_at_the_deadline(
    start_model_server, exported_base_path, index_dir, transport
):
    server = start_model_server(exported_base_path, latency_s=3.0)
    backend = TRANSPORTS[transport](server, timeout=10)
    service = SearchService(backend, index_dir)
    with TestClient(create_app(service), base_url="http://127.0.0.1") as client:
        start = time.monotonic()
        response = client.post("/v1/search", json={"instances": X.tolist(), "timeout": 0.5})
        elapsed = time.monotonic() - start
        assert response.status_code == 504, response.text
        assert "deadline" in response.json()["error"].lower()
        assert elapsed < 0.5 + SLACK_S
        assert (
            client.post("/v1/search", json={"embeddings": np.ones((1, 32)).tolist()}).status_code
            == 200
        )
    service.close()
