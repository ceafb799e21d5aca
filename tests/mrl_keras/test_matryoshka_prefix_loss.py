import keras
import numpy as np
import pytest

from mrl_keras import MatryoshkaContrastiveLoss, MatryoshkaPrefixLoss
from tests.testing import TestCase

DIMS = (4, 8, 16)
BATCH = 6
WIDTH = 20


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _rng(seed):
    return np.random.default_rng(seed)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _log_softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


@keras.saving.register_keras_serializable(package="mrl_keras_tests")
def triplet_margin(y_true, y_pred):
    """Triplet loss on squared distances of (anchor, positive, negative), margin 0.5."""
    del y_true
    anchor, positive, negative = y_pred[:, 0], y_pred[:, 1], y_pred[:, 2]
    d_pos = keras.ops.sum(keras.ops.square(anchor - positive), axis=-1)
    d_neg = keras.ops.sum(keras.ops.square(anchor - negative), axis=-1)
    return keras.ops.relu(d_pos - d_neg + 0.5)


def _numpy_triplet(y_pred):
    a, p, n = y_pred[:, 0], y_pred[:, 1], y_pred[:, 2]
    return np.maximum(((a - p) ** 2).sum(-1) - ((a - n) ** 2).sum(-1) + 0.5, 0.0)


@keras.saving.register_keras_serializable(package="mrl_keras_tests")
def info_nce(y_true, y_pred):
    """Symmetric in-batch InfoNCE at temperature 0.1 on a (batch, 2, m) pair of unit towers."""
    del y_true
    s = keras.ops.matmul(y_pred[:, 0], keras.ops.transpose(y_pred[:, 1])) / 0.1
    positives = keras.ops.diagonal(s)
    a_to_b = keras.ops.logsumexp(s, axis=1) - positives
    b_to_a = keras.ops.logsumexp(s, axis=0) - positives
    return 0.5 * (a_to_b + b_to_a)


def _numpy_info_nce(y_pred):
    s = y_pred[:, 0] @ y_pred[:, 1].T / 0.1
    idx = np.arange(len(s))
    return 0.5 * (-_log_softmax(s, 1)[idx, idx] - _log_softmax(s, 0)[idx, idx])


def _expected(numpy_loss, y_true, y_pred, dims, weights=None, normalize=False, targets=False):
    """Per-example `sum_m c_m * loss(y_true[:m]?, y_pred[:m])`, each prefix computed alone."""
    weights = np.ones(len(dims)) if weights is None else np.asarray(weights)
    total = 0.0
    for weight, m in zip(weights, dims, strict=True):
        pred = y_pred[..., :m].astype("float64")
        true = y_true
        if normalize:
            pred = _unit(pred)
        if targets:
            true = y_true[..., :m].astype("float64")
            if normalize:
                true = _unit(true)
        total = total + weight * numpy_loss(true, pred)
    return total


def _numpy_cosine(t, p):
    return -(_unit(t) * _unit(p)).sum(-1)


def _numpy_mse(t, p):
    return ((t - p) ** 2).mean(-1)


@pytest.mark.parametrize("weights", [None, [0.5, 0.0, 2.0]], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    "base_loss",
    ["cosine_similarity", keras.losses.CosineSimilarity(reduction="sum")],
    ids=["name", "instance"],
)
def test_cosine_distillation_matches_numpy(base_loss, weights):
    rng = _rng(0)
    student = rng.normal(size=(BATCH, WIDTH)).astype("float32")
    teacher = rng.normal(size=(BATCH, WIDTH)).astype("float32")
    loss = MatryoshkaPrefixLoss(
        base_loss, DIMS, nesting_weights=weights, truncate_targets=True, reduction="none"
    )
    expected = _expected(_numpy_cosine, teacher, student, DIMS, weights, targets=True)
    # The instance's own reduction ("sum") is unused: per-example values come back.
    np.testing.assert_allclose(_np(loss(teacher, student)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
def test_mean_squared_error_to_a_teacher(normalize):
    rng = _rng(1)
    student = rng.normal(size=(BATCH, WIDTH)).astype("float32")
    teacher = rng.normal(size=(BATCH, WIDTH)).astype("float32")
    loss = MatryoshkaPrefixLoss(
        keras.losses.MeanSquaredError(), DIMS, normalize=normalize, truncate_targets=True
    )
    expected = _expected(_numpy_mse, teacher, student, DIMS, None, normalize, targets=True)
    np.testing.assert_allclose(_np(loss(teacher, student)), expected.mean(), rtol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_triplet_function_matches_numpy(normalize):
    y_pred = _rng(2).normal(size=(BATCH, 3, WIDTH)).astype("float32")
    loss = MatryoshkaPrefixLoss(triplet_margin, DIMS, normalize=normalize, reduction="none")
    expected = _expected(lambda t, p: _numpy_triplet(p), None, y_pred, DIMS, None, normalize)
    np.testing.assert_allclose(_np(loss(None, y_pred)), expected, rtol=1e-5, atol=1e-6)
    # Normalisation is per prefix: it differs from normalising the whole vector once.
    if normalize:
        once = _expected(lambda t, p: _numpy_triplet(p), None, _unit(y_pred), DIMS)
        assert np.abs(once - expected).max() > 1e-3


def test_info_nce_with_normalisation_equals_the_contrastive_loss():
    y_pred = _rng(3).normal(size=(BATCH, 2, WIDTH)).astype("float32")
    weights = [1.0, 0.5, 2.0]
    wrapped = MatryoshkaPrefixLoss(info_nce, DIMS, nesting_weights=weights, normalize=True)
    expected = _expected(lambda t, p: _numpy_info_nce(p), None, y_pred, DIMS, weights, True)
    np.testing.assert_allclose(_np(wrapped(None, y_pred)), expected.mean(), rtol=1e-5)
    reference = MatryoshkaContrastiveLoss(DIMS, temperature=0.1, nesting_weights=weights)
    np.testing.assert_allclose(_np(wrapped(None, y_pred)), _np(reference(None, y_pred)), 1e-5)


def test_structures_sample_weight_and_reduction():
    rng = _rng(4)
    a = rng.normal(size=(BATCH, WIDTH)).astype("float32")
    b = rng.normal(size=(BATCH, WIDTH)).astype("float32")

    def pair_distance(y_true, y_pred):
        del y_true
        first, second = y_pred
        return keras.ops.sum(keras.ops.square(first - second), axis=-1)

    expected = _expected(lambda t, p: ((p[0] - p[1]) ** 2).sum(-1), None, np.stack([a, b]), DIMS)
    weights = rng.uniform(size=BATCH).astype("float32")
    loss = MatryoshkaPrefixLoss(pair_distance, DIMS, reduction="sum")
    value = loss(None, (a, b), sample_weight=weights)
    np.testing.assert_allclose(_np(value), (expected * weights).sum(), rtol=1e-5)


def test_symbolic_and_fit_reduce_the_loss():
    keras.utils.set_random_seed(0)
    rng = _rng(5)
    x = rng.normal(size=(256, 12)).astype("float32")
    teacher = (x @ rng.normal(size=(12, 16))).astype("float32")
    inputs = keras.Input((12,))
    model = keras.Model(inputs, keras.layers.Dense(16)(inputs))
    loss = MatryoshkaPrefixLoss("cosine_similarity", DIMS, truncate_targets=True)
    model.compile(keras.optimizers.Adam(0.05), loss=loss)
    history = model.fit(x, teacher, batch_size=64, epochs=4, verbose=0)
    losses = history.history["loss"]
    # -len(DIMS) is the minimum (cosine 1 at every prefix).
    assert losses[-1] < losses[0] - 0.5, losses
    assert losses[-1] > -len(DIMS) - 1e-4


class TestSerialization(TestCase):
    @pytest.mark.parametrize(
        "base_loss",
        ["cosine_similarity", keras.losses.MeanSquaredError(), triplet_margin],
        ids=["name", "instance", "registered_function"],
    )
    def test_get_config_round_trip(self, base_loss):
        loss = MatryoshkaPrefixLoss(
            base_loss, DIMS, [1, 1, 2], normalize=True, truncate_targets=True
        )
        revived = self.run_serialization_test(loss)
        assert revived.nesting_dims == DIMS and revived.nesting_weights == (1.0, 1.0, 2.0)
        assert revived.normalize is True and revived.truncate_targets is True
        assert type(revived.base_loss) is type(loss.base_loss)
        y_pred = _rng(6).normal(size=(BATCH, 3, WIDTH)).astype("float32")
        y_true = _rng(7).normal(size=(BATCH, 3, WIDTH)).astype("float32")
        np.testing.assert_allclose(_np(revived(y_true, y_pred)), _np(loss(y_true, y_pred)))

    def test_model_saving(self, tmp_path):
        inputs = keras.Input((5,))
        model = keras.Model(inputs, keras.layers.Dense(WIDTH)(inputs))
        model.compile("adam", loss=MatryoshkaPrefixLoss(info_nce, DIMS, normalize=True))
        data = _rng(8).normal(size=(3, 5)).astype("float32")
        restored = self.run_model_saving_test(model, data, tmp_path)
        assert isinstance(restored.loss, MatryoshkaPrefixLoss)
        assert restored.loss.base_loss is info_nce


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"base_loss": 3}, TypeError, r"Expected `base_loss` to be a keras.losses.Loss.*3"),
        ({"base_loss": "no_such_loss"}, ValueError, r"Received: base_loss='no_such_loss'"),
        ({"nesting_dims": (8, 4)}, ValueError, r"strictly increasing.*\(8, 4\)"),
        ({"nesting_weights": [1, 1]}, ValueError, r"one weight per nesting dim \(3\)"),
        ({"nesting_weights": [1, -1, 1]}, ValueError, r"non-negative"),
        ({"normalize": "yes"}, TypeError, r"Expected `normalize` to be a bool.*'yes'"),
        ({"truncate_targets": 1}, TypeError, r"truncate_targets=1"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"base_loss": "cosine_similarity", "nesting_dims": DIMS, **kwargs}
    with pytest.raises(error, match=match):
        MatryoshkaPrefixLoss(**arguments)


def test_bad_shapes():
    loss = MatryoshkaPrefixLoss("cosine_similarity", DIMS, truncate_targets=True)
    wide, narrow = np.zeros((BATCH, WIDTH), "float32"), np.zeros((BATCH, 12), "float32")
    with pytest.raises(ValueError, match=r"max\(nesting_dims\)=16.*y_pred.shape=\(6, 12\)"):
        loss(wide, narrow)
    with pytest.raises(ValueError, match=r"max\(nesting_dims\)=16.*y_true.shape=\(6, 12\)"):
        loss(narrow, wide)
    with pytest.raises(ValueError, match=r"y_pred.shape=\(6, 12\)"):
        MatryoshkaPrefixLoss(triplet_margin, DIMS)(None, (wide, narrow))
