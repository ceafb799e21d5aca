"""Fixtures for the export tests: tiny Matryoshka models (Dense backbones on 6x6 images) and
SavedModels exported from them once per session."""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from mrl_keras.export.saved_model import export_saved_model  # noqa: E402

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


@pytest.fixture(scope="session")
def mrl_model():
    return make_model(efficient=False)


class _Exports:
    """Exports each tiny model once per session, on first use."""

    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.done = {}

    def get(self, efficient):
        if efficient not in self.done:
            model = make_model(efficient=efficient, seed=3 if efficient else 0)
            thresholds = median_thresholds(model, random_inputs(256, seed=7))
            base = self.tmp_path_factory.mktemp("exported") / "tiny_mrl"
            result = export_saved_model(
                model,
                base,
                extra_dims=(24,),
                cascade_thresholds=thresholds,
                bytes_signatures=True,
                class_names=[f"class_{i}" for i in range(NUM_CLASSES)],
            )
            self.done[efficient] = (model, result)
        return self.done[efficient]


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    return _Exports(tmp_path_factory)


@pytest.fixture(scope="session", params=[False, True], ids=["mrl", "mrl_e"])
def exported(request, exports):
    """(model, ExportedModel) for MRL and MRL-E, with extra dims, bytes signatures and
    median thresholds."""
    return exports.get(request.param)


@pytest.fixture(scope="session")
def exported_mrl(exports):
    """The MRL member of `exported`, for the tests that start other processes."""
    return exports.get(False)


@pytest.fixture(scope="session")
def loaded(exported):
    import tensorflow as tf

    return tf.saved_model.load(exported[1].path)
