"""Version lifecycle: a new version replaces the old one with zero failed requests, a corrupt
version leaves the serving one alone, and status reports the right version AVAILABLE.

With our dev server the test gets its own server and base path; against a real TF Serving
(MRL_TFSERVING_*) it writes versions 2 and 3 into MRL_TFSERVING_BASE_PATH and removes them
afterwards.
"""

from __future__ import annotations

import os
import shutil
import threading
import time

import numpy as np
import pytest
from serving_testing import copy_version, sample_inputs

from mrl_keras.serving import TFServingGrpc, TFServingRest

X = sample_inputs(4, seed=11)


@pytest.fixture
def lifecycle_target(serving_target, exported_base_path, start_model_server, tmp_path):
    if not serving_target.is_dev_server:
        yield (
            serving_target.grpc_address,
            serving_target.rest_url,
            serving_target.model_name,
            serving_target.base_path,
        )
        for version in ("3", "2"):
            shutil.rmtree(os.path.join(serving_target.base_path, version), ignore_errors=True)
        return
    base = str(tmp_path / "tiny")
    os.makedirs(base)
    copy_version(os.path.join(exported_base_path, "1"), base, 1)
    server = start_model_server(base)  # polls every 1 s, as TF Serving does
    yield server.grpc_address, server.rest_url, server.model_name, base, True


def _client_loop(backend, stop, log):
    while not stop.is_set():
        try:
            result = backend.embed(X, 8, timeout=5)
            log.append((result.served_version, result.embeddings))
        except Exception as e:  # recorded, asserted on below
            log.append(("error", e))
        time.sleep(0.01)


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_version_lifecycle(lifecycle_target, exported_v2_dir, tiny_model, tiny_model_v2):
    grpc_address, rest_url, name, base, dev_server = lifecycle_target
    backends = []
    if grpc_address:
        backends.append(TFServingGrpc(grpc_address, name, timeout=10))
    if rest_url:
        backends.append(TFServingRest(rest_url, name, timeout=10))
    logs = [[] for _ in backends]
    stop = threading.Event()
    threads = [
        threading.Thread(target=_client_loop, args=(b, stop, log), daemon=True)
        for b, log in zip(backends, logs, strict=True)
    ]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: all(len(log) >= 3 for log in logs), 20, "first responses")
        assert all(log[0][0] == 1 for log in logs)

        copy_version(exported_v2_dir, base, 2)
        _wait_for(lambda: all(log and log[-1][0] == 2 for log in logs), 30, "version 2 responses")
        time.sleep(0.5)

        # A corrupt version 3: the server tries it, fails, and keeps serving version 2.
        tmp = os.path.join(base, ".tmp-3")
        os.makedirs(tmp)
        with open(os.path.join(tmp, "saved_model.pb"), "wb") as f:
            f.write(b"this is not a SavedModel")
        os.rename(tmp, os.path.join(base, "3"))
        if dev_server:
            _wait_for(
                lambda: any(
                    v.version == 3 and v.state == "END" for v in backends[0].status().versions
                ),
                30,
                "version 3 to fail",
            )
        else:  # a real TF Serving retries a failed load (--max_num_load_retries) for minutes
            time.sleep(5)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)

    for backend, log in zip(backends, logs, strict=True):
        errors = [entry[1] for entry in log if entry[0] == "error"]
        assert not errors, f"{type(backend).__name__}: {len(errors)} failed requests: {errors[:3]}"
        versions = [entry[0] for entry in log]
        assert versions == sorted(versions), "responses must move from version 1 to 2, never back"
        assert versions[0] == 1 and versions[-1] == 2 and 3 not in versions
        for version, embeddings in log:
            reference = tiny_model if version == 1 else tiny_model_v2
            np.testing.assert_allclose(embeddings, reference.normalized_prefix(X, 8), atol=1e-5)

        status = backend.status()
        assert (status.version, status.state) == (2, "AVAILABLE")
        assert backend.info().version == 2  # re-read after responses came from version 2
        by_version = {v.version: v for v in status.versions}
        if dev_server:
            assert by_version[3].state == "END" and by_version[3].error_code != "OK"
            assert by_version[3].error_message
        elif 3 in by_version:
            assert by_version[3].state != "AVAILABLE"
        if 1 in by_version:
            assert by_version[1].state in ("UNLOADING", "END")
        backend.close()
