import keras
import numpy as np
import pytest

from mrl_keras import MatryoshkaAccuracy, MatryoshkaHead, MatryoshkaLoss, matryoshka_metrics
from tests.testing import TestCase

DIMS = (4, 8, 16)


def _np(x):
    return float(keras.ops.convert_to_numpy(x))


def _data(seed=0, batch=40, num_classes=5):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, len(DIMS), num_classes)).astype("float32")
    labels = rng.integers(0, num_classes, size=batch)
    return logits, labels


def test_matryoshka_metrics_names_and_order():
    metrics = matryoshka_metrics(DIMS)
    assert [m.name for m in metrics] == ["accuracy@4", "accuracy@8", "accuracy@16"]
    assert [m.dim for m in metrics] == list(DIMS)
    assert all(isinstance(m, MatryoshkaAccuracy) for m in metrics)


@pytest.mark.parametrize("label_format", ["sparse", "sparse_column", "one_hot"])
def test_accuracy_per_prefix_matches_numpy(label_format):
    logits, labels = _data()
    y_true = {
        "sparse": labels,
        "sparse_column": labels[:, None],
        "one_hot": np.eye(5, dtype="float32")[labels],
    }[label_format]
    metrics = matryoshka_metrics(DIMS)
    # Two batches, to check that the state accumulates.
    for sl in (slice(0, 25), slice(25, 40)):
        for metric in metrics:
            metric.update_state(y_true[sl], logits[sl])
    for i, metric in enumerate(metrics):
        expected = np.mean(logits[:, i].argmax(axis=-1) == labels)
        assert _np(metric.result()) == pytest.approx(expected)
        metric.reset_state()
        assert _np(metric.result()) == 0.0


def test_sample_weight():
    logits, labels = _data(1)
    sample_weight = np.random.default_rng(2).uniform(size=40).astype("float32")
    metric = MatryoshkaAccuracy(DIMS, 8)
    metric.update_state(labels, logits, sample_weight=sample_weight)
    correct = logits[:, 1].argmax(axis=-1) == labels
    expected = (correct * sample_weight).sum() / sample_weight.sum()
    assert _np(metric.result()) == pytest.approx(expected, rel=1e-5)


def test_names_appear_in_fit_and_evaluate_logs():
    rng = np.random.default_rng(3)
    inputs = keras.Input((16,))
    z = keras.layers.Dense(16, name="embedding")(inputs)
    model = keras.Model(inputs, MatryoshkaHead(3, DIMS, name="matryoshka_head")(z))
    model.compile("adam", loss=MatryoshkaLoss(), metrics=matryoshka_metrics(DIMS))
    x, y = rng.normal(size=(32, 16)).astype("float32"), rng.integers(0, 3, size=32)
    history = model.fit(x, y, validation_data=(x, y), epochs=1, batch_size=8, verbose=0)
    for m in DIMS:
        assert f"accuracy@{m}" in history.history
        assert f"val_accuracy@{m}" in history.history
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss"} | {f"accuracy@{m}" for m in DIMS}
    logits = keras.ops.convert_to_numpy(model(x))
    for i, m in enumerate(DIMS):
        assert logs[f"accuracy@{m}"] == pytest.approx(np.mean(logits[:, i].argmax(-1) == y))


class TestSerialization(TestCase):
    def test_get_config_round_trip(self):
        revived = self.run_serialization_test(MatryoshkaAccuracy(DIMS, 8, name="acc8"))
        assert (revived.nesting_dims, revived.dim, revived.name) == (DIMS, 8, "acc8")


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"one of nesting_dims=\(4, 8, 16\).*dim=12"):
        MatryoshkaAccuracy(DIMS, 12)
    with pytest.raises(ValueError, match=r"strictly increasing.*\(8, 4\)"):
        matryoshka_metrics((8, 4))
    with pytest.raises(TypeError, match=r"sequence of ints"):
        matryoshka_metrics(16)


def test_logits_middle_axis_mismatch():
    logits, labels = _data()
    metric = MatryoshkaAccuracy((4, 8), 4)
    with pytest.raises(ValueError, match=r"2 prefixes on axis -2.*\(40, 3, 5\)"):
        metric.update_state(labels, logits)


def test_logits_middle_axis_mismatch_in_fit():
    inputs = keras.Input((16,))
    model = keras.Model(inputs, MatryoshkaHead(3, DIMS)(inputs))
    model.compile("sgd", loss=MatryoshkaLoss(), metrics=matryoshka_metrics((4, 8)))
    with pytest.raises(ValueError, match=r"2 prefixes on axis -2.*\((None|4), 3, 3\)"):
        model.fit(np.zeros((4, 16), "float32"), np.zeros(4), verbose=0)
