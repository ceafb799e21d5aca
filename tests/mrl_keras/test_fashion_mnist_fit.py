"""A short real fit: a small CNN with a MatryoshkaHead on a Fashion-MNIST subset."""

import keras
import pytest

from mrl_keras import MatryoshkaHead, MatryoshkaLoss, matryoshka_metrics, nesting_dims

DIMS = nesting_dims(64)  # (8, 16, 32, 64)


def _model(efficient):
    inputs = keras.Input((28, 28, 1), name="inputs")
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    z = keras.layers.Dense(64, name="embedding")(x)
    logits = MatryoshkaHead(10, DIMS, efficient=efficient, name="matryoshka_head")(z)
    return keras.Model(inputs, logits)


@pytest.mark.parametrize("efficient", [False, True], ids=["mrl", "mrl_e"])
def test_fit_beats_chance_at_every_prefix(fashion_mnist, efficient):
    x_train, y_train, x_test, y_test = fashion_mnist
    keras.utils.set_random_seed(0)
    model = _model(efficient)
    model.compile(
        keras.optimizers.Adam(2e-3), loss=MatryoshkaLoss(), metrics=matryoshka_metrics(DIMS)
    )
    history = model.fit(
        x_train[:6000],
        y_train[:6000],
        validation_data=(x_test[:2000], y_test[:2000]),
        batch_size=128,
        epochs=2,
        verbose=0,
    )
    for m in DIMS:
        assert len(history.history[f"accuracy@{m}"]) == 2
        assert len(history.history[f"val_accuracy@{m}"]) == 2
        # Chance is 0.10; a 2-epoch CNN on 6k images reaches ~0.75-0.8 at every prefix.
        assert history.history[f"val_accuracy@{m}"][-1] > 0.6, (m, history.history)
    assert history.history["loss"][-1] < history.history["loss"][0]
