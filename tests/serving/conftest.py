"""Shared fixtures of the serving tests (all session-scoped, so the retriever tests reuse them).

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

import dataclasses
import os
import shutil
import time

import numpy as np  # noqa: E402
import pytest  # noqa: E402

MODEL_NAME = "tiny"
INPUT_DIM = 10
EMBEDDING_DIM = 32
NESTING_DIMS = (8, 16, 32)
NUM_CLASSES = 5


@dataclasses.dataclass
class TinyModel:
    """A Keras Matryoshka classifier with NumPy references for its exported signatures."""

    model: object
    seed: int

    def embedding(self, x: np.ndarray) -> np.ndarray:
        import keras

        features = keras.Model(self.model.inputs, self.model.get_layer("embedding").output)
        return np.asarray(features([np.asarray(x, np.float32)], training=False), np.float32)

    def normalized_prefix(self, x: np.ndarray, m: int) -> np.ndarray:
        z = self.embedding(x)[:, :m].astype(np.float64)
        return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, len(NESTING_DIMS), NUM_CLASSES)."""
        return np.asarray(self.model(np.asarray(x, np.float32), training=False), np.float32)


def build_tiny_model(seed: int) -> TinyModel:
    import keras

    from mrl_keras import MatryoshkaHead

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((INPUT_DIM,), name="inputs")
    h = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    z = keras.layers.Dense(EMBEDDING_DIM, name="embedding")(h)
    logits = MatryoshkaHead(NUM_CLASSES, NESTING_DIMS, name="matryoshka_head")(z)
    return TinyModel(keras.Model(inputs, logits, name=f"tiny_{seed}"), seed)


def export_tiny(tiny: TinyModel, base_path: str, version: int) -> str:
    """Exports `tiny` as `base_path/<version>` with the project's exporter; returns the folder."""
    from mrl_keras.export import export_saved_model

    exported = export_saved_model(
        tiny.model, base_path, version, model_name=MODEL_NAME, cascade_thresholds=(0.3, 0.3, 0.0)
    )
    return exported.path


def sample_inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, INPUT_DIM)).astype(np.float32)


@dataclasses.dataclass
class ServingTarget:
    """Where the conformance tests send requests.

    Attributes:
        grpc_address: `host:port` or None (gRPC not under test).
        rest_url: `http://host:port` or None (REST not under test).
        model_name: the served model's name.
        base_path: the base path the server watches, or None when unknown.
        server: our `ModelServer` when the tests started it, else None (a real TF Serving).
    """

    grpc_address: str | None
    rest_url: str | None
    model_name: str
    base_path: str | None
    server: object | None = None

    @property
    def is_dev_server(self) -> bool:
        return self.server is not None


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


def _wait_available(target: ServingTarget, timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if target.rest_url:
                body = requests.get(
                    f"{target.rest_url}/v1/models/{target.model_name}", timeout=2
                ).json()
                states = [v["state"] for v in body.get("model_version_status", [])]
            else:
                from mrl_keras.serving import TFServingGrpc

                status = TFServingGrpc(target.grpc_address, target.model_name, check=False).status(
                    timeout=2
                )
                states = [status.state]
            if "AVAILABLE" in states:
                return
            last = states
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.25)
    raise TimeoutError(f"{target} did not report an AVAILABLE version in {timeout} s: {last}")


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
        _wait_available(target)
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


def copy_version(src_version_dir: str, base_path: str, version: int) -> str:
    """Copies a version folder into a base path atomically (temporary name, then rename)."""
    tmp = os.path.join(base_path, f".tmp-{version}-{os.getpid()}")
    shutil.copytree(src_version_dir, tmp)
    dst = os.path.join(base_path, str(version))
    os.rename(tmp, dst)
    return dst
