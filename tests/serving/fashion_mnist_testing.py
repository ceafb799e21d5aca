"""A small MRL model trained on Fashion-MNIST once per test session (for retrieval tests).

An MLP (784 -> 256 -> z of d = 64) with a MatryoshkaHead over (8, 16, 32, 64), trained for
3 epochs on 10,000 training images: a few seconds on 2 cores.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

import numpy as np

from mrl_keras.serving.retrieval import corpus as _corpus

DIMS = (8, 16, 32, 64)


@functools.lru_cache(maxsize=1)
def data():
    """(x_train, y_train, x_test, y_test) float32 images in [0, 1] (n, 28, 28, 1), int labels."""
    x_train, y_train = _corpus.load_dataset_split("fashion_mnist", "train")
    x_test, y_test = _corpus.load_dataset_split("fashion_mnist", "test")
    return (
        _corpus.to_model_inputs(x_train, None),
        y_train,
        _corpus.to_model_inputs(x_test, None),
        y_test,
    )


@functools.lru_cache(maxsize=1)
def trained_model(n_train: int = 10_000, epochs: int = 3):
    import keras

    import mrl_keras

    x_train, y_train, _, _ = data()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1), name="inputs")
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(256, activation="relu")(h)
    z = keras.layers.Dense(DIMS[-1], name="embedding")(h)
    logits = mrl_keras.MatryoshkaHead(10, DIMS, name="matryoshka_head")(z)
    model = keras.Model(inputs, logits, name="fashion_mnist_mlp")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=mrl_keras.MatryoshkaLoss())
    model.fit(x_train[:n_train], y_train[:n_train], batch_size=128, epochs=epochs, verbose=0)
    return model


def embed(x: np.ndarray) -> np.ndarray:
    """Full embeddings z (n, 64), L2-normalised (as the exported embed_64 returns them)."""
    import keras

    model = trained_model()
    features = keras.Model(model.inputs, model.get_layer("embedding").output)
    z = np.asarray(features.predict(x, batch_size=1024, verbose=0), np.float32)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


@functools.lru_cache(maxsize=1)
def exported_base_path() -> str:
    """The trained model exported (version 1) with mrl_keras.export; a base path."""
    from mrl_keras.export import export_saved_model

    root = tempfile.mkdtemp(prefix="mrl-fm-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    base = os.path.join(root, "fashion_mnist")
    export_saved_model(
        trained_model(),
        base,
        1,
        model_name="fashion_mnist",
        cascade_thresholds=(0.9, 0.9, 0.9, 0.0),
    )
    return base
