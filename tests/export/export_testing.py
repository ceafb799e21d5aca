"""Tiny Matryoshka models (Dense backbones on 6x6 images) shared by the export tests.

A uniquely named module rather than `conftest`, which several test folders define.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mrl_keras  # noqa: E402

INPUT_SHAPE = (6, 6, 1)
D = 32
DIMS = (8, 16, 32)
NUM_CLASSES = 5


def make_model(efficient=False, head=True, seed=0, d=D, dims=DIMS):
    """A functional Matryoshka classifier: 6x6x1 -> Dense -> `embedding` (d) -> head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(24, activation="relu")(x)
    z = keras.layers.Dense(d, name="embedding")(x)
    if not head:
        return keras.Model(inputs, z, name="embedder")
    # Larger weights than the default init so softmax scores spread over (0, 1).
    logits = mrl_keras.MatryoshkaHead(
        NUM_CLASSES,
        dims,
        efficient=efficient,
        kernel_initializer=keras.initializers.RandomNormal(stddev=1.5),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.5),
        name="matryoshka_head",
    )(z)
    return keras.Model(inputs, logits, name="mrl_e" if efficient else "mrl")


def random_inputs(n, seed=1):
    return np.random.default_rng(seed).random((n, *INPUT_SHAPE), dtype=np.float32)


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def median_thresholds(model, x):
    """Per-prefix median max-probability: every stage of the cascade answers some examples."""
    scores = softmax(model.predict(x, verbose=0).astype(np.float64)).max(axis=-1)
    return [*np.median(scores, axis=0)[:-1].tolist(), 0.0]
