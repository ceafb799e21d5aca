"""`mrl_keras.cascade`: the NumPy cascade and threshold calibration (section 4.2.1)."""

import itertools
import statistics

import numpy as np
import pytest

from mrl_keras.cascade import NEVER_STOP, calibrate_cascade, cascade_predict

DIMS = (8, 16, 32)


def _holdout(n=600, dims=DIMS, num_classes=6, seed=0):
    """Synthetic per-prefix probabilities: larger prefixes are more often right and surer."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    logits = rng.normal(size=(n, len(dims), num_classes))
    for k in range(len(dims)):
        logits[np.arange(n), k, y] += 0.9 * (k + 1) * rng.random(n) * 2
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True), y


def _loop_cascade(probs, thresholds, dims):
    out = []
    for p in probs:
        for k, m in enumerate(dims):
            if k == len(dims) - 1 or p[k].max() >= thresholds[k]:
                out.append((p[k].argmax(), p[k].max(), m))
                break
    return [np.array(c) for c in zip(*out, strict=True)]


def _evaluate(probs, y, thresholds, dims):
    pred = cascade_predict(probs, thresholds, dims)
    return (pred.classes == y).mean(), pred.dims_used.mean()


def test_cascade_predict_matches_a_loop():
    probs, _ = _holdout(200)
    thresholds = [0.5, 0.7, 0.0]
    pred = cascade_predict(probs, thresholds, DIMS)
    classes, scores, dims_used = _loop_cascade(probs, thresholds, DIMS)
    np.testing.assert_array_equal(pred.classes, classes)
    np.testing.assert_allclose(pred.scores, scores, rtol=1e-6)
    np.testing.assert_array_equal(pred.dims_used, dims_used)
    assert pred.classes.dtype == np.int64 and pred.dims_used.dtype == np.int32
    assert set(np.unique(pred.dims_used)) == set(DIMS)


def test_cascade_predict_extreme_thresholds():
    probs, _ = _holdout(50)
    assert np.all(cascade_predict(probs, [0, 0, 0], DIMS).dims_used == 8)
    above_one = cascade_predict(probs, [NEVER_STOP, 1.5, 2.0], DIMS)
    assert np.all(above_one.dims_used == 32)
    np.testing.assert_array_equal(above_one.classes, probs[:, -1].argmax(-1))


def test_calibration_meets_default_target():
    probs, y = _holdout()
    cal = calibrate_cascade(probs, y, DIMS)
    full = (probs[:, -1].argmax(-1) == y).mean()
    assert cal.full_dim_accuracy == pytest.approx(full)
    assert cal.target_accuracy == pytest.approx(full - 0.005)
    accuracy, expected_dim = _evaluate(probs, y, cal.thresholds, DIMS)
    assert accuracy == pytest.approx(cal.accuracy) and accuracy >= cal.target_accuracy
    assert expected_dim == pytest.approx(cal.expected_dim)
    assert cal.expected_dim < DIMS[-1]
    assert cal.thresholds[-1] == 0.0 and cal.search == "exhaustive"
    assert sum(cal.dim_fractions) == pytest.approx(1.0)


@pytest.mark.parametrize("target", [None, 0.7])
def test_calibration_beats_brute_force_on_a_coarse_grid(target):
    probs, y = _holdout(n=300, seed=3)
    grid = [*np.round(np.linspace(0, 1, 11), 10), NEVER_STOP]
    # confidence=None: the exact optimum on the holdout set, which brute force can check.
    cal = calibrate_cascade(probs, y, DIMS, target_accuracy=target, confidence=None)
    best = None
    for head in itertools.product(grid, repeat=len(DIMS) - 1):
        accuracy, expected_dim = _evaluate(probs, y, [*head, 0.0], DIMS)
        if accuracy >= cal.target_accuracy and (best is None or expected_dim < best):
            best = expected_dim
    assert best is not None
    assert cal.accuracy >= cal.target_accuracy
    assert cal.expected_dim <= best + 1e-12


def test_budget_mode_beats_brute_force_on_a_coarse_grid():
    probs, y = _holdout(n=300, seed=4)
    grid = [*np.round(np.linspace(0, 1, 11), 10), NEVER_STOP]
    cal = calibrate_cascade(probs, y, DIMS, max_expected_dim=14.0)
    assert cal.expected_dim <= 14.0
    best = max(
        _evaluate(probs, y, [*head, 0.0], DIMS)[0]
        for head in itertools.product(grid, repeat=2)
        if _evaluate(probs, y, [*head, 0.0], DIMS)[1] <= 14.0
    )
    assert cal.accuracy >= best - 1e-12


def test_coordinate_descent_for_long_cascades():
    dims = (8, 16, 32, 64, 128, 256)
    probs, y = _holdout(n=800, dims=dims, seed=5)
    cal = calibrate_cascade(probs, y, dims)
    assert cal.search == "coordinate_descent"
    accuracy, expected_dim = _evaluate(probs, y, cal.thresholds, dims)
    assert accuracy >= cal.target_accuracy
    assert expected_dim == pytest.approx(cal.expected_dim)
    assert cal.expected_dim < dims[-1]
    # Forcing the same problem through coordinate descent on a small cascade stays feasible.
    small = calibrate_cascade(*_holdout(), DIMS, max_evaluations=1)
    assert small.search == "coordinate_descent" and small.accuracy >= small.target_accuracy


def test_from_logits_and_single_prefix():
    probs, y = _holdout(100)
    a = calibrate_cascade(probs, y, DIMS)
    b = calibrate_cascade(np.log(probs), y, DIMS, from_logits=True)
    assert a.thresholds == pytest.approx(b.thresholds)
    single = calibrate_cascade(probs[:, -1:], y, (32,))
    assert single.thresholds == (0.0,) and single.expected_dim == 32.0
    assert set(a.to_dict()) >= {"thresholds", "expected_dim", "accuracy"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(nesting_dims=(8, 16)), "shape"),
        (dict(labels=np.zeros(5, dtype=int)), "labels"),
        (dict(labels=np.full(600, 6)), r"labels. in \[0, 6\)"),
        (dict(target_accuracy=0.9, max_expected_dim=16), "at most one"),
        (dict(target_accuracy=1.5), r"target_accuracy. in \[0, 1\]"),
        (dict(target_accuracy=1.0), "No thresholds reach"),
        (dict(max_expected_dim=4), "at least the smallest nesting dim"),
        (dict(confidence=1.0), r"confidence in \[0.5, 1\)"),
        (dict(confidence="high"), "confidence in"),
        (dict(folds=-1), "folds >= 0"),
        (dict(nesting_dims=(16, 8, 32)), "strictly increasing"),
    ],
)
def test_calibration_rejects_bad_input(kwargs, match):
    probs, y = _holdout()
    args = {"probabilities": probs, "labels": y, "nesting_dims": DIMS, **kwargs}
    with pytest.raises(ValueError, match=match):
        calibrate_cascade(**args)


def test_cascade_predict_rejects_wrong_threshold_count():
    probs, _ = _holdout(10)
    with pytest.raises(ValueError, match="one threshold per nesting dim"):
        cascade_predict(probs, [0.5, 0.5], DIMS)


def test_confidence_bound_is_the_paired_lower_bound():
    probs, y = _holdout(n=1500, seed=1)
    cal = calibrate_cascade(probs, y, DIMS, folds=0)
    pred = cascade_predict(probs, cal.thresholds, DIMS)
    d = (pred.classes == y).astype(float) - (probs[:, -1].argmax(-1) == y)
    z = statistics.NormalDist().inv_cdf(0.95)
    expected = (pred.classes == y).mean() - z * d.std(ddof=1) / np.sqrt(len(y))
    assert cal.confidence == 0.95 and cal.cv_folds == 0 and cal.cv_accuracy is None
    assert cal.accuracy_lower_bound == pytest.approx(expected)
    assert cal.accuracy_lower_bound >= cal.target_accuracy - 1e-12
    # The exact optimum on the holdout set is cheaper, and its own bound misses the target.
    exact = calibrate_cascade(probs, y, DIMS, confidence=None, folds=0)
    assert exact.expected_dim < cal.expected_dim and exact.accuracy_lower_bound is None


def test_confidence_meets_the_target_on_new_data_where_the_exact_optimum_does_not():
    test_probs, test_y = _holdout(n=40_000, seed=99)  # the same distribution, new examples
    full = (test_probs[:, -1].argmax(-1) == test_y).mean()
    misses = {None: 0, 0.95: 0}
    for seed in range(4):
        probs, y = _holdout(n=1500, seed=seed)
        for confidence in misses:
            cal = calibrate_cascade(probs, y, DIMS, confidence=confidence, folds=0)
            accuracy, _ = _evaluate(test_probs, test_y, cal.thresholds, DIMS)
            misses[confidence] += accuracy < full - 0.005
    assert misses[0.95] == 0
    assert misses[None] >= 2


def test_out_of_fold_check_matches_refitting_by_hand():
    probs, y = _holdout(n=900, seed=2)
    cal = calibrate_cascade(probs, y, DIMS, folds=3, seed=7)
    fold = np.random.default_rng(7).permutation(len(y)) % 3
    hits, dims_used = np.zeros(len(y)), np.zeros(len(y))
    for f in range(3):
        fit, held = fold != f, fold == f
        sub = calibrate_cascade(probs[fit], y[fit], DIMS, folds=0)
        pred = cascade_predict(probs[held], sub.thresholds, DIMS)
        hits[held], dims_used[held] = pred.classes == y[held], pred.dims_used
    assert cal.cv_folds == 3
    assert cal.cv_accuracy == pytest.approx(hits.mean())
    assert cal.cv_expected_dim == pytest.approx(dims_used.mean())
    assert cal.cv_full_dim_accuracy == pytest.approx(cal.full_dim_accuracy)
