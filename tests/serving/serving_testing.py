"""Constants and helpers shared by the serving tests (the fixtures built from them are in
conftest.py): the tiny Matryoshka model, its export, sample inputs, the serving target and
version copies.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

import numpy as np

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


def wait_available(target: ServingTarget, timeout: float = 60.0) -> None:
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


def copy_version(src_version_dir: str, base_path: str, version: int) -> str:
    """Copies a version folder into a base path atomically (temporary name, then rename)."""
    tmp = os.path.join(base_path, f".tmp-{version}-{os.getpid()}")
    shutil.copytree(src_version_dir, tmp)
    dst = os.path.join(base_path, str(version))
    os.rename(tmp, dst)
    return dst


def assert_embeds_like(backend, reference, n: int = 4) -> None:
    """`backend` embeds `sample_inputs(n)` at full d as `reference` (a LocalModel) does, and
    reports the tiny model's embedding dim."""
    x = sample_inputs(n)
    np.testing.assert_allclose(
        backend.embed(x, EMBEDDING_DIM).embeddings,
        reference.embed(x, EMBEDDING_DIM).embeddings,
        rtol=1e-5,
        atol=1e-6,
    )
    assert backend.info().embedding_dim == EMBEDDING_DIM


CORPUS = 400


def build_tiny_index(
    backend, out, *, seed=5, model_version=1, count=CORPUS, id_prefix=None, versioned=False
):
    """An exact index over `count` embedded sample inputs, with string ids, built by `backend`.

    The ids are `{id_prefix}-{i}`, by default `item-{seed}-{i}`; `versioned` builds the next
    version of the index base path `out`.
    """
    from mrl_keras.serving import build_index

    x = sample_inputs(count, seed=seed)
    z = backend.embed(x, EMBEDDING_DIM).embeddings
    prefix = f"item-{seed}" if id_prefix is None else id_prefix
    ids = np.asarray([f"{prefix}-{i}" for i in range(count)])
    return build_index(
        out,
        z,
        ids,
        shortlist_dim=8,
        model_name=MODEL_NAME,
        model_version=model_version,
        scann_options={"num_leaves": 1, "reorder_num_neighbors": count},
        versioned=versioned,
    )
