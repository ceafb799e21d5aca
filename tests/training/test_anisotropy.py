"""`mrl_keras.training.anisotropy`: the guard against anisotropic, post-ReLU embeddings."""

import warnings

import keras
import numpy as np
import pytest

import mrl_keras
from mrl_keras.training.anisotropy import (
    AnisotropyCheck,
    AnisotropyWarning,
    check_anisotropy,
    embedding_anisotropy,
    mean_pairwise_cosine,
)
from mrl_keras.training.models import build_model


def _numpy_mean_pairwise_cosine(z):
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    sims = u @ u.T
    n = len(z)
    return (sims.sum() - np.trace(sims)) / (n * (n - 1))


def test_mean_pairwise_cosine_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 12))
    assert mean_pairwise_cosine(z) == pytest.approx(_numpy_mean_pairwise_cosine(z))
    shifted = np.abs(z) + 3.0
    assert mean_pairwise_cosine(shifted) == pytest.approx(_numpy_mean_pairwise_cosine(shifted))
    assert mean_pairwise_cosine(shifted) > 0.9 > 0.2 > abs(mean_pairwise_cosine(z))
    with pytest.raises(ValueError, match="at least two embeddings"):
        mean_pairwise_cosine(z[:1])


def _model(relu: bool):
    """relu: a pooled-ReLU-like embedding (non-negative, a shared mean direction); else a
    BatchNorm'd linear projection."""
    inputs = keras.Input((6,), name="inputs")
    if relu:  # inputs far from zero, no centring before the ReLU
        x = keras.layers.ReLU()(keras.layers.Dense(32, name="proj")(inputs))
    else:
        x = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(32, name="proj")(inputs))
    z = keras.layers.Identity(name="embedding")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(z))


def test_guard_warns_on_post_relu_and_restores_batchnorm_state():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).normal(size=(128, 6)).astype("float32") + 2.0
    post_relu, linear = _model(True), _model(False)
    with pytest.warns(AnisotropyWarning, match="mean pairwise cosine.*docs/training.md"):
        value = check_anisotropy(post_relu, x)
    assert value > 0.5
    before = [keras.ops.convert_to_numpy(v).copy() for v in linear.non_trainable_variables]
    assert len(before) == 2  # BatchNorm's moving mean and variance
    with warnings.catch_warnings():
        warnings.simplefilter("error", AnisotropyWarning)
        assert abs(check_anisotropy(linear, x)) < 0.1
    for v, b in zip(linear.non_trainable_variables, before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), b)
    # In inference mode (moving statistics of a fresh BatchNorm) nothing is centred.
    assert embedding_anisotropy(linear, x, training=False) > 0.5


def test_small_resnet_embedding_is_zero_centred_and_the_callback_runs():
    keras.utils.set_random_seed(0)
    model = build_model("small_resnet", (16, 16, 1), 5, mode="mrl", d=32,
                        backbone_options={"width": 4, "stem_stride": 2})  # fmt: skip
    assert "expand_relu" not in [layer.name for layer in model.layers]
    x = np.random.default_rng(0).random((64, 16, 16, 1)).astype("float32")
    callback = AnisotropyCheck(x)
    model.compile("adam", loss=mrl_keras.MatryoshkaLoss())
    y = np.arange(64, dtype="int32") % 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", AnisotropyWarning)
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert callback.value is not None and abs(callback.value) < 0.2
