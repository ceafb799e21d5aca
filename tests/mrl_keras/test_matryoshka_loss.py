import keras
import numpy as np
import pytest

from mrl_keras import MatryoshkaHead, MatryoshkaLoss
from tests.testing import TestCase

BATCH, NUM_DIMS, NUM_CLASSES = 6, 4, 5


def _data(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(BATCH, NUM_DIMS, NUM_CLASSES)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=BATCH)
    return logits, labels


def _cross_entropy(logits, target):
    """Softmax cross-entropy of one prefix, written out: -sum_j t_j * log softmax(logits)_j."""
    logits = logits.astype("float64")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -(target * log_softmax).sum(axis=-1)


def _expected(logits, labels, weights=None, label_smoothing=0.0):
    target = np.eye(NUM_CLASSES)[labels]
    target = target * (1 - label_smoothing) + label_smoothing / NUM_CLASSES
    weights = np.ones(NUM_DIMS) if weights is None else np.asarray(weights)
    per_example = sum(weights[i] * _cross_entropy(logits[:, i], target) for i in range(NUM_DIMS))
    return per_example  # (batch,)


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("weights", [None, [1.0, 0.5, 0.0, 2.0]], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("label_format", ["sparse", "sparse_column", "one_hot"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_matches_hand_computed_weighted_cross_entropy(weights, label_format, label_smoothing):
    logits, labels = _data()
    y_true = {
        "sparse": labels,
        "sparse_column": labels[:, None],
        "one_hot": np.eye(NUM_CLASSES, dtype="float32")[labels],
    }[label_format]
    expected = _expected(logits, labels, weights, label_smoothing)

    loss = MatryoshkaLoss(nesting_weights=weights, label_smoothing=label_smoothing)
    np.testing.assert_allclose(_np(loss(y_true, logits)), expected.mean(), rtol=1e-5)

    per_example = MatryoshkaLoss(weights, label_smoothing=label_smoothing, reduction="none")
    np.testing.assert_allclose(_np(per_example(y_true, logits)), expected, rtol=1e-5)


def test_unweighted_is_the_plain_sum_over_prefixes():
    logits, labels = _data(1)
    per_prefix = [
        _np(keras.losses.sparse_categorical_crossentropy(labels, logits[:, i], from_logits=True))
        for i in range(NUM_DIMS)
    ]
    loss = MatryoshkaLoss(reduction="none")
    np.testing.assert_allclose(_np(loss(labels, logits)), np.sum(per_prefix, axis=0), rtol=1e-5)


def test_probabilities_and_sample_weight():
    logits, labels = _data(2)
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    expected = _expected(logits, labels)
    loss = MatryoshkaLoss(from_logits=False)
    np.testing.assert_allclose(_np(loss(labels, probs)), expected.mean(), rtol=1e-4)

    sample_weight = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 0.0], "float32")
    np.testing.assert_allclose(
        _np(MatryoshkaLoss()(labels, logits, sample_weight=sample_weight)),
        (expected * sample_weight).sum() / BATCH,  # sum_over_batch_size
        rtol=1e-5,
    )


def test_works_on_head_output_in_compile_and_fit():
    inputs = keras.Input((16,))
    z = keras.layers.Dense(16, name="embedding")(inputs)
    logits = MatryoshkaHead(3, (4, 8, 16), name="matryoshka_head")(z)
    model = keras.Model(inputs, logits)
    model.compile("adam", loss=MatryoshkaLoss())
    x = np.random.default_rng(3).normal(size=(32, 16)).astype("float32")
    history = model.fit(x, np.arange(32) % 3, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])


class TestSerialization(TestCase):
    def test_get_config_round_trip(self):
        loss = MatryoshkaLoss(
            nesting_weights=[1, 2, 3], from_logits=False, label_smoothing=0.2, reduction="sum"
        )
        revived = self.run_serialization_test(loss)
        assert revived.nesting_weights == (1.0, 2.0, 3.0)
        assert revived.from_logits is False and revived.label_smoothing == 0.2
        assert revived.reduction == "sum"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"nesting_weights": [1.0, -0.5]}, ValueError, r"non-negative.*\(1.0, -0.5\)"),
        ({"nesting_weights": [0.0, 0.0]}, ValueError, r"at least one positive"),
        ({"nesting_weights": 2.0}, TypeError, r"sequence of non-negative floats"),
        ({"label_smoothing": 1.0}, ValueError, r"\[0, 1\).*label_smoothing=1.0"),
        ({"label_smoothing": -0.1}, ValueError, r"label_smoothing=-0.1"),
        ({"label_smoothing": "0.1"}, TypeError, r"label_smoothing='0.1'"),
        ({"from_logits": 1}, TypeError, r"from_logits=1"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MatryoshkaLoss(**kwargs)


def test_weights_of_the_wrong_length_for_the_logits():
    logits, labels = _data()
    loss = MatryoshkaLoss(nesting_weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"3 prefixes on axis -2.*\(6, 4, 5\)"):
        loss(labels, logits)


def test_weights_of_the_wrong_length_in_fit():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, MatryoshkaHead(3, (4, 8))(inputs))
    model.compile("sgd", loss=MatryoshkaLoss(nesting_weights=[1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"3 prefixes on axis -2.*\((None|4), 2, 3\)"):
        model.fit(np.zeros((4, 8), "float32"), np.zeros(4), verbose=0)


def test_bad_shapes():
    logits, labels = _data()
    with pytest.raises(ValueError, match=r"\(batch, len\(nesting_dims\), num_classes\).*\(6, 5\)"):
        MatryoshkaLoss()(labels, logits[:, 0])
    with pytest.raises(
        ValueError, match=r"one-hot labels of shape \(6, 5\).*y_true.shape=\(6, 7\)"
    ):
        MatryoshkaLoss()(np.zeros((6, 7), "float32"), logits)
    with pytest.raises(ValueError, match=r"y_true.shape=\(6, 1, 1\)"):
        MatryoshkaLoss()(labels[:, None, None], logits)
