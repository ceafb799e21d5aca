"""The HTTP app against hostile callers and failures: the bounded body reader (depth, element
and size limits, a client gone mid-body), Content-Type and Host checks, no slash redirects,
/readyz from cached state without addresses, a stopped gRPC backend, a bit flip in a served
file, a storm of reloads, and an OpenAPI schema whose valid requests are answered 200."""

import logging
import os
import socket
import stat
import threading
import time

import pytest
from fastapi.testclient import TestClient
from http_testing import LiveServer
from serving_testing import CORPUS, INPUT_DIM, build_tiny_index, sample_inputs

from mrl_keras.serving import TFServingGrpc, build_index
from mrl_keras.serving.service.app import create_app
from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

LOOPBACK = "http://127.0.0.1"
QUERIES = sample_inputs(2, seed=7).tolist()
VALID = {"instances": QUERIES, "k": 3}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def index_dir(local_model, tmp_path_factory):
    return build_tiny_index(local_model, tmp_path_factory.mktemp("app") / "index")


@pytest.fixture(scope="module")
def service(local_model, index_dir):
    svc = SearchService(
        local_model,
        index_dir,
        ServiceConfig(max_batch_size=64, max_json_elements=50_000, verify_interval_s=0),
    )
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service), base_url=LOOPBACK) as c:
        yield c


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


@pytest.mark.parametrize(
    "route, content, match",
    [
        ("/v1/search", deep(100_000), "max_depth"),
        ("/v1/search", b'{"embeddings": ' + deep(100_000) + b"}", "max_depth"),
        ("/v1/search", b'{"instances": [' + deep(65) + b"]}", "limit of 64 levels"),
        ("/v1/classify", deep(100_000), "max_depth"),
        ("/v1/embed", b'{"instances": ' + deep(100_000) + b"}", "max_depth"),
        ("/v1/search", b'{"embeddings": [' + b"0," * 60_000 + b"0]}", "max_elements"),
        ("/v1/search", b'{"instances": "[[[[', "unterminated string"),
        ("/v1/search", b'{"instances": [[1]]]]}', "unbalanced"),
    ],
)
def test_hostile_bodies_are_400_naming_the_limit(client, route, content, match):
    response = client.post(route, content=content, headers=JSON)
    assert response.status_code == 400, response.text
    assert match in response.json()["error"]
    assert client.post("/v1/search", json=VALID).status_code == 200


def test_brackets_inside_strings_do_not_count(client):
    body = b'{"instances": [[0.1]], "k": "' + b"[" * 100 + b'"}'
    response = client.post("/v1/search", content=body, headers=JSON)
    assert response.status_code == 400 and "integer k" in response.json()["error"]


def test_body_size_limit_is_413(local_model, index_dir):
    service = SearchService(local_model, index_dir, ServiceConfig(max_body_bytes=1000))
    with TestClient(create_app(service), base_url=LOOPBACK) as c:
        response = c.post("/v1/search", content=b"[" + b"0," * 1000 + b"0]", headers=JSON)
        assert response.status_code == 413 and "1000 bytes" in response.json()["error"]
    service.close()


@pytest.mark.parametrize("route", ["/v1/search", "/v1/classify", "/v1/embed", "/admin/reload"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_posts_need_json_content_type(client, route, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    response = client.post(route, content=b'{"instances": [[0.1]]}', headers=headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["error"]
    charset = {"content-type": "application/json; charset=utf-8"}
    assert client.post("/v1/search", json=VALID, headers=charset).status_code == 200


@pytest.mark.parametrize(
    "host, status",
    [
        ("evil.example", 421),
        ("evil.example:8080", 421),
        ("127.0.0.1.evil.example", 421),
        ("127.0.0.1:8080", 200),
        ("localhost:80", 200),
        ("[::1]:8080", 200),
    ],
)
def test_only_allowed_hosts_are_answered(client, host, status):
    response = client.post("/v1/search", json=VALID, headers={"host": host})
    assert response.status_code == status, response.text
    if status == 421:
        assert "not served here" in response.json()["error"]
        assert client.get("/readyz", headers={"host": host}).status_code == 421


def test_allowed_hosts_setting(local_model, index_dir):
    config = ServiceConfig(allowed_hosts=("search.internal",), verify_interval_s=0)
    service = SearchService(local_model, index_dir, config)
    with TestClient(create_app(service), base_url="http://search.internal") as c:
        assert c.post("/v1/search", json=VALID).status_code == 200
        assert c.post("/v1/search", json=VALID, headers={"host": "127.0.0.1"}).status_code == 421
    service.close()
    bad = SearchService(local_model, index_dir, ServiceConfig(allowed_hosts=("a b",)))
    with pytest.raises(ValueError, match="host name"):
        create_app(bad)
    bad.close()


def test_no_redirect_built_from_host(client):
    response = client.post(
        "/admin/reload/", json={}, headers={"host": "127.0.0.1"}, follow_redirects=False
    )
    assert response.status_code == 404 and "location" not in response.headers
    assert client.get("/readyz/", follow_redirects=False).status_code == 404


def test_readyz_is_cached_state_without_addresses_or_errors(
    start_model_server, exported_base_path, index_dir, caplog
):
    server = start_model_server(exported_base_path)
    backend = TFServingGrpc(server.grpc_address, server.model_name, timeout=5)
    service = SearchService(backend, index_dir, ServiceConfig(health_interval_s=0.05))
    port = str(server.grpc_port)
    with TestClient(create_app(service), base_url=LOOPBACK) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["backend_state"] == "AVAILABLE"
        assert "probe_age_s" in ready.json()
        probes = service.health.probes
        server.stop()
        with caplog.at_level(logging.WARNING, logger="mrl_keras.serving.service"):
            for _ in range(200):  # the prober notices within a few intervals (bounded wait)
                if c.get("/readyz").status_code == 503:
                    break
                time.sleep(0.05)
            response = c.get("/readyz")
        assert response.status_code == 503
        text = response.text
        assert "127.0.0.1" not in text and port not in text and "error" not in response.json()
        assert response.json()["backend_state"] == "UNAVAILABLE"
        assert service.health.probes > probes  # answered from the background probe
        assert port in caplog.text  # the details went to the log
        # A search with the backend down is 503 (fail fast: the channel is in TRANSIENT_FAILURE).
        search = c.post("/v1/search", json=VALID)
        assert search.status_code == 503, search.text
        assert 'code="UNAVAILABLE"' in c.get("/metrics").text
    service.close()
    backend.close()


def test_client_disconnect_mid_body_is_499_not_500(service, caplog):
    live = LiveServer(create_app(service))
    host, port = live.url.removeprefix("http://").split(":")
    try:
        with caplog.at_level(logging.INFO, logger="mrl_keras.serving.service"):
            for _ in range(3):
                with socket.create_connection((host, int(port)), timeout=5) as s:
                    s.sendall(
                        b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                        b'{"instances": [[0.1, 0.2'
                    )
            metrics = ""
            for _ in range(200):  # bounded: until the server saw the three disconnects
                import requests

                metrics = requests.get(f"{live.url}/metrics", timeout=5).text
                if 'route="/v1/search",status="499"} 3.0' in metrics:
                    break
                time.sleep(0.05)
        assert 'route="/v1/search",status="499"} 3.0' in metrics
        assert 'status="500"' not in metrics
        assert "client disconnected" in caplog.text
        assert "Traceback" not in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        live.stop()


def test_reload_storm_is_coalesced_on_one_worker(local_model, tmp_path):
    index = build_tiny_index(local_model, tmp_path / "index", count=100)
    service = SearchService(local_model, index, ServiceConfig(verify_interval_s=0))
    first_build = service.index.manifest["build_id"]
    loads, active, most = [], [0], [0]
    lock = threading.Lock()
    reload = service.reload

    def counted_reload():  # the real reload, made slow enough that the calls overlap
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            loads.append(threading.current_thread().name)
        try:
            time.sleep(0.3)
            return reload()
        finally:
            with lock:
                active[0] -= 1

    service.reload = counted_reload
    with TestClient(create_app(service), base_url=LOOPBACK) as c:
        build_tiny_index(local_model, index, count=100, seed=6)  # a rebuild to pick up
        statuses = []

        def call():
            statuses.append(c.post("/admin/reload", json={}).status_code)

        threads = [threading.Thread(target=call) for _ in range(16)]
        for t in threads:
            t.start()
        search = c.post("/v1/search", json=VALID)  # searches go on meanwhile
        for t in threads:
            t.join(30)
        assert search.status_code == 200
    assert statuses == [200] * 16
    # One load for the whole storm: the calls during it shared it, later ones found the
    # directory unchanged; never two at a time, never on the search pool.
    assert most[0] == 1 and len(loads) == 1 and service.reloader.runs < 16, loads
    assert loads[0].startswith("mrl-reload")
    assert service.index.manifest["build_id"] != first_build
    service.close()


def _flip_bit(path):
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) - 3)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x40]))


def test_bit_flip_in_served_file_turns_readyz_503_and_stops_searches(local_model, tmp_path):
    index = build_tiny_index(local_model, tmp_path / "index", count=100)
    service = SearchService(local_model, index, ServiceConfig(verify_interval_s=0.05))
    with TestClient(create_app(service), base_url=LOOPBACK) as c:
        assert c.post("/v1/search", json=VALID).status_code == 200
        _flip_bit(index / "rerank.npy")
        for _ in range(200):  # the background verifier runs every 0.05 s (bounded wait)
            if c.get("/readyz").status_code == 503:
                break
            time.sleep(0.05)
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "rerank.npy" in ready.json()["integrity"]
        response = c.post("/v1/search", json=VALID)
        assert response.status_code == 503 and "rerank.npy" in response.json()["error"]
    service.close()


def test_bit_flip_falls_back_to_the_previous_good_version(local_model, tmp_path):
    import numpy as np

    base = tmp_path / "indexes"
    z = local_model.embed(np.asarray(sample_inputs(50, seed=3)), 32).embeddings
    for version in (1, 2):
        ids = np.asarray([f"v{version}-{i}" for i in range(50)])
        build_index(
            base, z, ids, shortlist_dim=8, model_name="tiny", model_version=1,
            scann_options={"num_leaves": 1, "reorder_num_neighbors": 50}, versioned=True,
        )  # fmt: skip
    service = SearchService(local_model, base, ServiceConfig(index_poll_s=0, verify_interval_s=0))
    with TestClient(create_app(service), base_url=LOOPBACK) as c:
        assert c.post("/v1/search", json=VALID).json()["results"][0]["ids"][0].startswith("v2-")
        _flip_bit(base / "2" / "ids.npy")
        # Re-verified on reload: version 2 fails, version 1 verifies and is served instead.
        assert c.post("/admin/reload", json={}).status_code == 200
        body = c.post("/v1/search", json=VALID).json()
        assert body["results"][0]["ids"][0].startswith("v1-"), body
        assert c.get("/readyz").status_code == 200
        assert c.get("/readyz").json()["index_version"].startswith("1-")
    service.close()


def _sample(schema):
    """The smallest instance of a JSON schema (the subset the service publishes)."""
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return _sample(schema["anyOf"][0])
    kind = schema.get("type")
    if kind == "integer":
        return schema.get("minimum", 1)
    if kind == "number":
        return 30.0 if "exclusiveMinimum" in schema else 0.25  # a timeout: a generous one
    if kind == "array":
        if "prefixItems" in schema:
            return [_sample(s) for s in schema["prefixItems"]]
        return [_sample(schema["items"]) for _ in range(max(1, schema.get("minItems", 1)))]
    raise AssertionError(f"unexpected schema {schema}")


def test_openapi_request_schemas_describe_what_is_answered(client):
    doc = client.get("/openapi.json").json()
    search = doc["paths"]["/v1/search"]["post"]["requestBody"]["content"]["application/json"]
    search = search["schema"]
    assert search["additionalProperties"] is False
    assert {"required": ["instances"]} in search["oneOf"]  # so {} is outside the schema
    props = search["properties"]
    assert props["instances"]["minItems"] == 1 and props["instances"]["maxItems"] == 64
    assert (
        props["instances"]["items"]["minItems"]
        == INPUT_DIM
        == props["instances"]["items"]["maxItems"]
    )
    assert props["k"] == {**props["k"], "type": "integer", "minimum": 1, "maximum": CORPUS}
    assert props["embeddings"]["items"]["items"]["type"] == "number"
    assert props["funnel"]["items"]["minItems"] == props["funnel"]["items"]["maxItems"] == 2
    # Requests the schema allows are answered 2xx: one per property, on both query kinds.
    for query in ("instances", "embeddings"):
        base = {query: _sample(props[query])}
        assert client.post("/v1/search", json=base).status_code == 200
        for name, prop in props.items():
            if name in ("instances", "embeddings"):
                continue
            body = dict(base, **{name: _sample(prop)})
            response = client.post("/v1/search", json=body)
            assert response.status_code == 200, (body, response.text)
    for path in ("/v1/classify", "/v1/embed"):
        body_schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        props = body_schema["schema"]["properties"]
        body = {name: _sample(p) for name, p in props.items()}
        assert client.post(path, json=body).status_code == 200, path
        assert client.post(path, json={}).status_code == 400  # outside the schema: required


@pytest.mark.parametrize("freeze", [True, False])
def test_start_up_freezes_the_garbage_collector(local_model, index_dir, freeze):
    import gc

    gc.unfreeze()
    svc = SearchService(
        local_model, index_dir, ServiceConfig(verify_interval_s=0, freeze_gc=freeze)
    )
    try:
        app = create_app(svc)
        assert gc.get_freeze_count() == 0  # creating the app freezes nothing
        with TestClient(app, base_url=LOOPBACK) as c:  # start-up (lifespan) runs
            assert c.get("/healthz").status_code == 200
            frozen = gc.get_freeze_count()
        if freeze:
            assert frozen > 10_000  # the libraries, the model client, the index
        else:
            assert frozen == 0
    finally:
        svc.close()
        gc.unfreeze()
