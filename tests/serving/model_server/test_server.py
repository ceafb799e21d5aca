"""The dev model server itself: `mrl model-server` flags and process, and the version
manager's policies (in-flight requests keep their version, labels, max batch size)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
from serving_testing import MODEL_NAME, copy_version, sample_inputs

from mrl_keras.serving import InvalidInput, NotFound, TFServingGrpc, TFServingRest
from mrl_keras.serving.cli.model_server import build_parser, main
from mrl_keras.serving.model_server.manager import VersionManager
from mrl_keras.serving.model_server.server import ModelServer

X = sample_inputs(2, seed=31)


def test_help_says_production_should_use_tensorflow_serving(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "PRODUCTION SHOULD USE tensorflow/serving" in out
    for flag in (
        "--model-base-path",
        "--model-name",
        "--port",
        "--rest-api-port",
        "--max-batch-size",
    ):
        assert flag in out


def test_flags_accept_tf_serving_spellings():
    args = build_parser().parse_args(
        ["--model_base_path", "/m", "--model_name", "x", "--rest_api_port", "9", "--port", "8"]
    )
    assert (args.model_base_path, args.model_name, args.rest_api_port, args.port) == (
        "/m",
        "x",
        9,
        8,
    )


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["--model-base-path", "/does/not/exist"], "is not a folder"),
        (["--model-base-path", ".", "--port", "70000"], "expected --port in 0..65535"),
        (["--model-base-path", ".", "--version-label", "stable"], "LABEL=VERSION"),
    ],
)
def test_bad_flags_exit_non_zero_with_one_line_reason(argv, reason, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert reason in err and err.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mrl_model_server_process_serves_and_stops_on_sigterm(exported_base_path):
    grpc_port, rest_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mrl_keras.cli",
            "model-server",
            "--model-base-path",
            exported_base_path,
            "--model-name",
            MODEL_NAME,
            "--port",
            str(grpc_port),
            "--rest-api-port",
            str(rest_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()  # printed once the model is AVAILABLE
        assert "serving 'tiny'" in line and f"127.0.0.1:{grpc_port}" in line, line
        status = requests.get(
            f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}", timeout=5
        ).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        backend = TFServingGrpc(f"127.0.0.1:{grpc_port}", MODEL_NAME)
        assert backend.embed(X, 8).embeddings.shape == (2, 8)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


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
