import keras
import numpy as np
import pytest

from mrl_keras import MatryoshkaContrastiveLoss
from tests.testing import TestCase

DIMS = (4, 8, 16)
BATCH = 6


def _towers(seed=0, width=20):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, 2, width)).astype("float32")


def _log_softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _numpy_info_nce(y_pred, dims, temperature, weights=None, prefix_norm=True):
    """Symmetric InfoNCE per prefix over per-prefix-normalised embeddings, per example."""
    a, b = y_pred[:, 0].astype("float64"), y_pred[:, 1].astype("float64")
    if not prefix_norm:  # The wrong way: normalise the full vector, then truncate.
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
    weights = np.ones(len(dims)) if weights is None else weights
    total = np.zeros(len(a))
    for weight, m in zip(weights, dims, strict=True):
        a_m, b_m = a[:, :m], b[:, :m]
        if prefix_norm:
            a_m = a_m / np.linalg.norm(a_m, axis=1, keepdims=True)
            b_m = b_m / np.linalg.norm(b_m, axis=1, keepdims=True)
        s = a_m @ b_m.T / temperature
        idx = np.arange(len(a))
        a_to_b = -_log_softmax(s, axis=1)[idx, idx]
        b_to_a = -_log_softmax(s, axis=0)[idx, idx]
        total += weight * 0.5 * (a_to_b + b_to_a)
    return total


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("weights", [None, [0.5, 1.0, 2.0]], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("temperature", [0.07, 1.0])
def test_matches_numpy_info_nce(weights, temperature):
    y_pred = _towers()
    expected = _numpy_info_nce(y_pred, DIMS, temperature, weights)
    loss = MatryoshkaContrastiveLoss(DIMS, temperature=temperature, nesting_weights=weights)
    np.testing.assert_allclose(_np(loss(None, y_pred)), expected.mean(), rtol=1e-5)
    per_example = MatryoshkaContrastiveLoss(
        DIMS, temperature=temperature, nesting_weights=weights, reduction="none"
    )
    np.testing.assert_allclose(_np(per_example(None, y_pred)), expected, rtol=1e-5)
    # The pair form and an arbitrary y_true give the same value.
    pair = (y_pred[:, 0], y_pred[:, 1])
    np.testing.assert_allclose(_np(loss(np.zeros(BATCH), pair)), expected.mean(), rtol=1e-5)


def test_each_prefix_is_normalised_on_its_own():
    y_pred = _towers(1)
    value = _np(MatryoshkaContrastiveLoss(DIMS, temperature=0.1)(None, y_pred))
    wrong = _numpy_info_nce(y_pred, DIMS, 0.1, prefix_norm=False).mean()
    assert abs(value - wrong) > 1e-2


def test_symmetric_in_the_towers_and_scale_invariant():
    y_pred = _towers(2)
    loss = MatryoshkaContrastiveLoss(DIMS)
    swapped = y_pred[:, ::-1]
    np.testing.assert_allclose(_np(loss(None, y_pred)), _np(loss(None, swapped)), rtol=1e-5)
    np.testing.assert_allclose(_np(loss(None, y_pred)), _np(loss(None, 3 * y_pred)), rtol=1e-5)


def _top1_retrieval(model, inputs):
    """Fraction of `a_i` whose nearest `b` (cosine, per prefix) is `b_i`, for every prefix."""
    out = keras.ops.convert_to_numpy(model.predict(inputs, verbose=0))
    result = []
    for m in DIMS:
        a, b = out[:, 0, :m], out[:, 1, :m]
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        result.append(np.mean((a @ b.T).argmax(axis=1) == np.arange(len(a))))
    return np.array(result)


def test_fit_aligns_two_towers_at_every_prefix():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 12)).astype("float32")
    # Two views of the same points through different random maps, one tower each.
    view_a = x @ rng.normal(size=(12, 12)).astype("float32")
    view_b = x @ rng.normal(size=(12, 10)).astype("float32")
    inputs_a, inputs_b = keras.Input((12,)), keras.Input((10,))
    outputs = keras.ops.stack(
        [keras.layers.Dense(16)(inputs_a), keras.layers.Dense(16)(inputs_b)], axis=1
    )
    model = keras.Model([inputs_a, inputs_b], outputs)
    model.compile(keras.optimizers.Adam(0.02), loss=MatryoshkaContrastiveLoss(DIMS, 0.1))
    before = _top1_retrieval(model, [view_a, view_b])
    history = model.fit([view_a, view_b], None, batch_size=64, epochs=5, verbose=0)
    after = _top1_retrieval(model, [view_a, view_b])
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    # Chance is 1/512 ~ 0.002; typical after 5 epochs: ~0.4 at 4 dims, >0.9 at 16.
    assert np.all(before < 0.02), before
    assert np.all(after > 0.05), after
    assert after[-1] > 0.5, after


class TestSerialization(TestCase):
    def test_get_config_round_trip(self):
        loss = MatryoshkaContrastiveLoss(DIMS, temperature=0.2, nesting_weights=[1, 1, 2])
        revived = self.run_serialization_test(loss)
        assert revived.nesting_dims == DIMS
        assert revived.temperature == 0.2 and revived.nesting_weights == (1.0, 1.0, 2.0)

    def test_model_saving(self, tmp_path):
        inputs_a, inputs_b = keras.Input((5,)), keras.Input((7,))
        outputs = keras.ops.stack(
            [keras.layers.Dense(16)(inputs_a), keras.layers.Dense(16)(inputs_b)], axis=1
        )
        model = keras.Model([inputs_a, inputs_b], outputs)
        model.compile("adam", loss=MatryoshkaContrastiveLoss(DIMS, temperature=0.3))
        rng = np.random.default_rng(4)
        data = [
            rng.normal(size=(3, 5)).astype("float32"),
            rng.normal(size=(3, 7)).astype("float32"),
        ]
        restored = self.run_model_saving_test(model, data, tmp_path)
        assert isinstance(restored.loss, MatryoshkaContrastiveLoss)
        assert restored.loss.get_config() == model.loss.get_config()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"nesting_dims": (8, 4)}, ValueError, r"strictly increasing.*\(8, 4\)"),
        ({"nesting_dims": DIMS, "temperature": 0.0}, ValueError, r"temperature=0.0"),
        ({"nesting_dims": DIMS, "temperature": "hot"}, TypeError, r"temperature='hot'"),
        (
            {"nesting_dims": DIMS, "nesting_weights": [1, 1]},
            ValueError,
            r"one weight per nesting dim \(3\).*\(1.0, 1.0\)",
        ),
        ({"nesting_dims": DIMS, "nesting_weights": [1, -1, 1]}, ValueError, r"non-negative"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MatryoshkaContrastiveLoss(**kwargs)


def test_bad_shapes():
    loss = MatryoshkaContrastiveLoss(DIMS)
    with pytest.raises(ValueError, match=r"\(batch, 2, d\).*y_pred.shape=\(6, 3, 20\)"):
        loss(None, np.zeros((6, 3, 20), "float32"))
    with pytest.raises(ValueError, match=r"max\(nesting_dims\)=16.*width 12"):
        loss(None, np.zeros((6, 2, 12), "float32"))
    with pytest.raises(ValueError, match=r"same shape.*\(6, 16\) and \(6, 20\)"):
        loss(None, (np.zeros((6, 16), "float32"), np.zeros((6, 20), "float32")))


class _GatherItself(MatryoshkaContrastiveLoss):
    """The gather hook's path with a 'global batch' equal to the local one."""

    def _gather(self, x):
        return x


def test_the_gather_hook_path_matches_numpy():
    y_pred = _towers(5)
    weights = [0.5, 1.0, 2.0]
    expected = _numpy_info_nce(y_pred, DIMS, 0.2, weights)
    loss = _GatherItself(DIMS, temperature=0.2, nesting_weights=weights, reduction="none")
    np.testing.assert_allclose(_np(loss(None, y_pred)), expected, rtol=1e-5)
