"""serving/service/serving_pair.py and the service's pair switching over a versioned index
base path (LocalModel; the loopback rollovers over gRPC and REST are in benchmarks/chaos.py,
run by tests/benchmarks/test_chaos.py)."""

import os
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serving_testing import EMBEDDING_DIM, MODEL_NAME, build_tiny_index, copy_version, sample_inputs

from mrl_keras.serving import LocalModel, build_index
from mrl_keras.serving.retrieval.manifest import ModelVersionMismatchError
from mrl_keras.serving.service.app import create_app
from mrl_keras.serving.service.search_service import SearchService, ServiceConfig
from mrl_keras.serving.service.serving_pair import PairNotReady, newest_pair

COUNT = 60
QUERIES = sample_inputs(3, seed=4)


def _index_version(backend, base, model_version):
    """Builds the next index version of `base` from `backend` pinned to `model_version`; ids
    name the model version, so a response shows which pair answered it."""
    return build_tiny_index(
        backend.pinned(model_version),
        base,
        seed=9,
        model_version=model_version,
        count=COUNT,
        id_prefix=f"m{model_version}",
        versioned=True,
    )


@pytest.fixture
def first_pair(tmp_path, exported_base_path, exported_v2_dir):
    """`(base, v2_dir, backend, indexes, first)`: a model base path holding version 1, the
    exported version 2 (not copied there), a LocalModel over the base path, and an index base
    path whose first version, `first`, that model built."""
    base = tmp_path / "models" / MODEL_NAME
    base.mkdir(parents=True)
    copy_version(os.path.join(exported_base_path, "1"), str(base), 1)
    backend = LocalModel(str(base), model_name=MODEL_NAME)
    indexes = tmp_path / "indexes" / MODEL_NAME
    first = _index_version(backend, indexes, 1)
    return base, exported_v2_dir, backend, indexes, first


def test_service_switches_pairs_only_when_the_model_version_is_there(first_pair):
    base, v2_dir, backend, indexes, first = first_pair
    service = SearchService(backend, indexes, ServiceConfig(index_poll_s=0))
    try:
        assert (service.pair.model_version, service.index.version) == (1, 1)
        assert service.reload()["switched"] is False  # nothing newer: a no-op
        # Version 2 of the index needs model version 2, which the base path lacks yet.
        copy_version(v2_dir, str(base), 2)
        v2_backend = LocalModel(str(base), 2, model_name=MODEL_NAME)
        _index_version(v2_backend, indexes, 2)
        os.rename(base / "2", base / ".hidden-2")
        with pytest.raises(ModelVersionMismatchError, match="model version 2"):
            service.reload()
        with pytest.raises(PairNotReady, match="needs model version 2"):
            newest_pair(backend, indexes, newer_than=1)
        with TestClient(create_app(service), base_url="http://127.0.0.1") as c:
            r = c.post("/admin/reload", json={})
            assert r.status_code == 409 and "still serving" in r.json()["error"]
            body = c.post("/v1/search", json={"instances": QUERIES.tolist(), "k": 2}).json()
            assert body["model_version"] == 1 and body["index_version"].startswith("1-")
            assert all(hit["ids"][0].startswith("m1-") for hit in body["results"])
            held = service.pair  # a request that started before the switch
            os.rename(base / ".hidden-2", base / "2")
            r = c.post("/admin/reload", json={})
            assert r.status_code == 200 and r.json()["switched"] is True
            assert r.json()["previous_index_version"] == held.index_version
            body = c.post("/v1/search", json={"instances": QUERIES.tolist(), "k": 2}).json()
            assert body["model_version"] == 2 and body["index_version"].startswith("2-")
            assert all(hit["ids"][0].startswith("m2-") for hit in body["results"])
            ready = c.get("/readyz").json()
            assert (ready["model_version"], ready["index_model_version"]) == (2, 2)
        # The pair held across the switch still answers with model 1 and index 1, and its
        # embeddings are model 1's (the base backend loaded version 1 only).
        old = held.retriever.search(QUERIES, k=2, backend=held.backend)
        assert old.model_version == 1 and old.ids[0][0].startswith("m1-")
        assert held.index.path == first and service.base_backend.version == 1
        assert service.backend.version == 2
        np.testing.assert_allclose(
            service.backend.embed(QUERIES, 8).embeddings,
            v2_backend.embed(QUERIES, 8).embeddings,
            rtol=1e-5,
        )
    finally:
        service.close()


def test_watcher_switches_without_a_reload_call(first_pair):
    base, v2_dir, backend, indexes, _ = first_pair
    service = SearchService(backend, indexes, ServiceConfig(index_poll_s=0.05))
    try:
        copy_version(v2_dir, str(base), 2)
        _index_version(backend, indexes, 2)
        deadline = time.monotonic() + 30
        while service.pair.model_version != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (service.pair.model_version, service.index.version) == (2, 2)
    finally:
        service.close()


def test_startup_serves_the_newest_ready_pair(first_pair):
    _, _, backend, indexes, _ = first_pair
    # An index version for a model version the base path does not have: not served.
    z = np.random.default_rng(0).standard_normal((COUNT, EMBEDDING_DIM)).astype(np.float32)
    build_index(indexes, z, shortlist_dim=8, model_version=5, versioned=True)
    service = SearchService(backend, indexes, ServiceConfig(index_poll_s=0))
    try:
        assert (service.pair.model_version, service.index.version) == (1, 1)
    finally:
        service.close()


def test_pinned_backends(local_model):
    assert local_model.pinned(1) is local_model
    with pytest.raises(ValueError, match="version >= 1"):
        local_model.pinned(0)
    from mrl_keras.serving.backends.errors import NotFound

    with pytest.raises(NotFound, match="versions"):
        local_model.pinned(9)


def test_remote_backends_pin_over_one_transport(serving_target):
    from mrl_keras.serving import TFServingGrpc, TFServingRest
    from mrl_keras.serving.backends.errors import NotFound

    for backend in (
        TFServingGrpc(serving_target.grpc_address, serving_target.model_name, check=False),
        TFServingRest(serving_target.rest_url, serving_target.model_name, check=False),
    ):
        pinned = backend.pinned(1)
        assert pinned is not backend and pinned.version == 1 and backend.version is None
        assert pinned.embed(QUERIES, 8).served_version == 1
        assert pinned.status().version == 1 and pinned.status().state == "AVAILABLE"
        with pytest.raises(NotFound):
            backend.pinned(42).embed(QUERIES, 8)
        pinned.close()  # leaves the shared transport open
        assert backend.embed(QUERIES, 8).served_version == 1
        assert pinned.pinned(1) is pinned
