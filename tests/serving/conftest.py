"""Shared fixtures of the serving tests (all session-scoped, so the retriever tests reuse them).

The constants, the tiny model and the helpers they are built from are in `serving_testing.py`
(import them from there, not from this conftest).

- `tiny_model`: a small deterministic Matryoshka classifier (input `(None, 10)` float32,
  embedding `d = 32`, nesting dims (8, 16, 32), 5 classes) as a `TinyModel` with NumPy
  references (`normalized_prefix(x, m)`, `head_probabilities(x, m)`).
- `tiny_model_v2`: the same architecture with other weights (the "next version").
- `exported_base_path`: a base path holding version 1 of `tiny_model`, written by
  `mrl_keras.export.export_saved_model`. Read-only: copy it before changing it.
- `tiny_export(model, base_path, version)`: function fixture that exports like above.
- `local_model`: `LocalModel` on `exported_base_path`.
- `serving_target`: where the conformance tests send requests, a `ServingTarget`. By default
  our dev model server (`mrl_keras.serving.ModelServer`) on 127.0.0.1 free ports, serving
  `exported_base_path` as model "tiny". Set `MRL_TFSERVING_GRPC=host:port` and/or
  `MRL_TFSERVING_REST=http://host:port` to run the same tests against a real TF Serving; then
  `MRL_TFSERVING_MODEL_NAME` (default "tiny") names the model and `MRL_TFSERVING_BASE_PATH`
  must be the base path that server watches (the fixture exports version 1 into it when empty
  and waits until it is AVAILABLE). See docs/serving_backends.md.
- `start_model_server(base_path, **options)`: starts extra dev servers for one test (stopped
  at teardown), for tests that stop, slow down or re-version a server.
"""

from __future__ import annotations

import os

import pytest
from serving_testing import (
    MODEL_NAME,
    ServingTarget,
    TinyModel,
    build_tiny_model,
    export_tiny,
    wait_available,
)


@pytest.fixture(scope="session")
def tiny_model() -> TinyModel:
    return build_tiny_model(seed=1)


@pytest.fixture(scope="session")
def tiny_model_v2() -> TinyModel:
    return build_tiny_model(seed=2)


@pytest.fixture(scope="session")
def tiny_export():
    return export_tiny


@pytest.fixture(scope="session")
def exported_base_path(tmp_path_factory, tiny_model) -> str:
    base = str(tmp_path_factory.mktemp("models") / MODEL_NAME)
    export_tiny(tiny_model, base, 1)
    return base


@pytest.fixture(scope="session")
def exported_v2_dir(tmp_path_factory, tiny_model_v2) -> str:
    """Version 2 (other weights), exported outside any watched base path, ready to copy in."""
    base = str(tmp_path_factory.mktemp("models_v2") / MODEL_NAME)
    return export_tiny(tiny_model_v2, base, 2)


@pytest.fixture(scope="session")
def local_model(exported_base_path):
    from mrl_keras.serving import LocalModel

    backend = LocalModel(exported_base_path, model_name=MODEL_NAME)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def serving_target(exported_base_path, tiny_model):
    grpc_address = os.environ.get("MRL_TFSERVING_GRPC") or None
    rest_url = os.environ.get("MRL_TFSERVING_REST") or None
    if grpc_address or rest_url:
        base = os.environ.get("MRL_TFSERVING_BASE_PATH") or None
        if base is None:
            pytest.fail(
                "MRL_TFSERVING_GRPC/REST are set but MRL_TFSERVING_BASE_PATH is not: set it to the "
                "base path the server watches (the tests export the tiny model into it)."
            )
        os.makedirs(base, exist_ok=True)
        if not any(n.isdigit() for n in os.listdir(base)):
            export_tiny(tiny_model, base, 1)
        target = ServingTarget(
            grpc_address,
            rest_url.rstrip("/") if rest_url else None,
            os.environ.get("MRL_TFSERVING_MODEL_NAME", MODEL_NAME),
            base,
        )
        wait_available(target)
        yield target
        return
    from mrl_keras.serving import ModelServer

    server = ModelServer(exported_base_path, MODEL_NAME, port=0, rest_api_port=0)
    server.start(wait_for_model_s=60)
    yield ServingTarget(
        server.grpc_address, server.rest_url, MODEL_NAME, exported_base_path, server
    )
    server.stop()


@pytest.fixture
def start_model_server():
    """Factory: `start_model_server(base_path, **ModelServer options) -> ModelServer`."""
    from mrl_keras.serving import ModelServer

    servers = []

    def start(base_path, wait_for_model_s=60.0, **options):
        options.setdefault("port", 0)
        options.setdefault("rest_api_port", 0)
        server = ModelServer(base_path, options.pop("model_name", MODEL_NAME), **options)
        servers.append(server)
        return server.start(wait_for_model_s=wait_for_model_s)

    yield start
    for server in servers:
        server.stop()
