"""serving/model_server/server.py and manager.py: the version manager's policies (in-flight
requests keep their version, labels, max batch size) and `ModelServer`'s arguments."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import requests
from serving_testing import MODEL_NAME, copy_version, sample_inputs

from mrl_keras.serving import InvalidInput, NotFound, TFServingGrpc, TFServingRest
from mrl_keras.serving.model_server.manager import VersionManager
from mrl_keras.serving.model_server.server import ModelServer

X = sample_inputs(2, seed=31)


def test_in_flight_request_keeps_its_version(tmp_path, exported_base_path, exported_v2_dir):
    base = str(tmp_path / "m")
    os.makedirs(base)
    copy_version(os.path.join(exported_base_path, "1"), base, 1)
    manager = VersionManager(base, MODEL_NAME, poll_interval_s=60)  # polled by hand below
    manager.poll_once()
    with manager.acquire(MODEL_NAME) as held:
        assert held.version == 1
        copy_version(exported_v2_dir, base, 2)
        manager.poll_once()
        states = {v.version: v.state for v in manager.status(MODEL_NAME)}
        assert states == {1: "UNLOADING", 2: "AVAILABLE"}
        with manager.acquire(MODEL_NAME) as new:
            assert new.version == 2  # new requests go to the new version
        out = held.model.run_signature("embed_8", {"inputs": X})  # the held one still runs
        assert out["embedding"].shape == (2, 8)
        with pytest.raises(NotFound, match=r"Specific\(tiny, 1\)"):
            with manager.acquire(MODEL_NAME, version=1):
                pass
    deadline = time.monotonic() + 5
    while manager.status(MODEL_NAME, 1)[0].state != "END" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manager.status(MODEL_NAME, 1)[0].state == "END"
    manager.stop()


def test_corrupt_only_version_reports_error_and_not_found(tmp_path):
    base = tmp_path / "m"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"garbage")
    (base / "notaversion").mkdir()
    manager = VersionManager(str(base), MODEL_NAME, poll_interval_s=60)
    manager.poll_once()
    [status] = manager.status(MODEL_NAME)
    assert (status.version, status.state) == (1, "END") and status.error_code != "OK"
    with pytest.raises(NotFound, match=r"Servable not found for request: Latest\(tiny\)"):
        with manager.acquire(MODEL_NAME):
            pass


def test_labels_and_max_batch_size(start_model_server, exported_base_path):
    server = start_model_server(exported_base_path, version_labels={"stable": 1}, max_batch_size=4)
    grpc_backend = TFServingGrpc(server.grpc_address, MODEL_NAME, label="stable")
    rest_backend = TFServingRest(server.rest_url, MODEL_NAME, label="stable")
    for backend in (grpc_backend, rest_backend):
        assert backend.embed(X, 8).served_version == 1
        with pytest.raises(
            InvalidInput, match="Task size 5 is larger than maximum input batch size 4"
        ):
            backend.embed(sample_inputs(5), 8)
    with pytest.raises(InvalidInput, match="Unrecognized servable version label: canary"):
        TFServingGrpc(server.grpc_address, MODEL_NAME, label="canary")
    r = requests.post(
        f"{server.rest_url}/v1/models/{MODEL_NAME}/labels/stable:predict",
        json={"signature_name": "embed_8", "instances": X.tolist()},
        timeout=5,
    )
    assert r.status_code == 200
    np.testing.assert_allclose(
        np.asarray(r.json()["predictions"]), grpc_backend.embed(X, 8).embeddings, atol=1e-6
    )


def test_concurrent_requests(serving_target):
    if not serving_target.grpc_address:
        pytest.skip("gRPC not under test")
    backend = TFServingGrpc(serving_target.grpc_address, serving_target.model_name)
    errors = []

    def worker():
        try:
            for _ in range(10):
                backend.embed(X, 16)
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors


def test_model_server_validates_arguments(exported_base_path):
    with pytest.raises(ValueError, match="max_batch_size"):
        ModelServer(exported_base_path, MODEL_NAME, max_batch_size=0)
    with pytest.raises(ValueError, match="model_name"):
        ModelServer(exported_base_path, "")
