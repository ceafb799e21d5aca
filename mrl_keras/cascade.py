"""Adaptive classification with a cascade of nested classifiers (section 4.2.1).

An example starts at the smallest prefix `m_1`; it stops at the first prefix `m_k` whose
maximum softmax probability reaches that prefix's threshold `t_k`, and otherwise moves on to the
next, larger prefix. The largest prefix answers every example that reaches it. The thresholds
are learnt on a holdout set: the smallest expected dimension at an accuracy target, or the best
accuracy within an expected-dimension budget.

NumPy only, so calibration runs anywhere (after `mrl train`, inside `mrl export`, in a notebook)
and `cascade_predict` is the reference the exported `classify_cascade` signature is tested
against.

Over 400 lines because calibration is one algorithm with its parts side by side: the problem
(per-prefix scores and correctness), the exact and coordinate-descent threshold searches, the
paired confidence bound that decides feasibility, and the out-of-fold check of the result.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from mrl_keras.nesting import validate_nesting_dims
from mrl_keras.types import NestingDims

NEVER_STOP = 1.01
"""A threshold above every probability: no example stops at a prefix with this threshold."""

DEFAULT_ACCURACY_DROP = 0.005
"""Default accuracy target: full-dimension accuracy minus half a point."""

DEFAULT_CONFIDENCE = 0.95
"""Default confidence of the accuracy target: the one-sided lower bound of the cascade's accuracy
(paired with the largest prefix on the same examples) must reach the target."""

DEFAULT_FOLDS = 5
"""Cross-validation folds of the out-of-fold check."""


class CascadePrediction(NamedTuple):
    """The answers of a cascade: one row per example.

    Attributes:
        classes: int64 array `(n,)`, the predicted class.
        scores: float32 array `(n,)`, the max softmax probability at the prefix that answered.
        dims_used: int32 array `(n,)`, the prefix size that answered.
    """

    classes: np.ndarray
    scores: np.ndarray
    dims_used: np.ndarray


@dataclasses.dataclass(frozen=True)
class CascadeCalibration:
    """Thresholds learnt by `calibrate_cascade` and how they did on the holdout set.

    Attributes:
        nesting_dims: tuple of int. The prefixes of the cascade, ascending.
        thresholds: tuple of float, one per prefix. An example stops at the first prefix whose
            max softmax probability is `>=` its threshold; the last one is `0.0` (the largest
            prefix answers every example that reaches it). A value above 1 means "never stop".
        expected_dim: float. Mean prefix size used per holdout example.
        accuracy: float. Cascade accuracy on the holdout set.
        full_dim_accuracy: float. Accuracy of the largest prefix alone on the holdout set.
        dim_fractions: tuple of float. Fraction of holdout examples answered at each prefix.
        target_accuracy: float or `None`. The accuracy floor searched under, if any.
        max_expected_dim: float or `None`. The expected-dimension budget, if any.
        num_examples: int. Size of the holdout set.
        search: str. `"exhaustive"` or `"coordinate_descent"`.
        confidence: float or `None`. The confidence of the accuracy target (`None`: the target
            holds on the holdout set itself, with no margin).
        accuracy_lower_bound: float or `None`. The one-sided lower confidence bound of the
            cascade's accuracy that had to reach the target: the holdout accuracy minus
            `z * sd(D) / sqrt(n)`, `D` the paired per-example difference to the largest prefix.
        cv_accuracy, cv_full_dim_accuracy, cv_expected_dim: float or `None`. Out-of-fold
            cascade accuracy, largest-prefix accuracy and expected dimension: the same
            calibration fitted on `cv_folds - 1` folds and applied to the remaining one, pooled;
            an honest estimate of what the thresholds do on examples they were not fitted on.
        cv_folds: int. Number of folds (0 when no out-of-fold check ran).
    """

    nesting_dims: tuple[int, ...]
    thresholds: tuple[float, ...]
    expected_dim: float
    accuracy: float
    full_dim_accuracy: float
    dim_fractions: tuple[float, ...]
    target_accuracy: float | None
    max_expected_dim: float | None
    num_examples: int
    search: str
    confidence: float | None = None
    accuracy_lower_bound: float | None = None
    cv_accuracy: float | None = None
    cv_full_dim_accuracy: float | None = None
    cv_expected_dim: float | None = None
    cv_folds: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Returns the calibration as a JSON-ready dict."""
        return dataclasses.asdict(self)


def _check_probabilities(probabilities: Any, num_dims: int) -> np.ndarray:
    probs = np.asarray(probabilities)
    if probs.ndim != 3 or probs.shape[1] != num_dims:
        raise ValueError(
            "Expected `probabilities` of shape (num_examples, len(nesting_dims), num_classes) = "
            f"(n, {num_dims}, L). Received: shape={probs.shape}"
        )
    if probs.shape[0] == 0 or probs.shape[2] == 0:
        raise ValueError(
            f"Expected at least one example and one class. Received: shape={probs.shape}"
        )
    if not np.issubdtype(probs.dtype, np.floating):
        raise TypeError(f"Expected floating `probabilities`. Received: dtype={probs.dtype}")
    if not np.all(np.isfinite(probs)):
        raise ValueError("Expected finite `probabilities`. Received values that are NaN or inf.")
    return probs


def _check_thresholds(thresholds: Any, num_dims: int) -> np.ndarray:
    values = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if values.size != num_dims:
        raise ValueError(
            f"Expected one threshold per nesting dim ({num_dims}). "
            f"Received {values.size} threshold(s): {tuple(values.tolist())}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"Expected finite thresholds. Received: {tuple(values.tolist())}")
    return values


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def cascade_predict(
    probabilities: Any,
    thresholds: Sequence[float] | np.ndarray,
    nesting_dims: NestingDims,
) -> CascadePrediction:
    """Runs the cascade on precomputed per-prefix probabilities.

    The reference implementation of the exported `classify_cascade` signature: example `i`
    stops at the first prefix `k` with `max(probabilities[i, k]) >= thresholds[k]`, or at the
    last prefix.

    Args:
        probabilities: float array `(n, len(nesting_dims), num_classes)`, the softmax of a
            `MatryoshkaHead`'s logits.
        thresholds: sequence of float, one per nesting dim. The last one is not consulted.
        nesting_dims: sequence of int, ascending.

    Returns:
        A `CascadePrediction(classes, scores, dims_used)`.

    Raises:
        ValueError: if the shapes or the number of thresholds do not match `nesting_dims`.

    Example:

    >>> probs = np.array([[[0.6, 0.4], [0.9, 0.1]], [[0.95, 0.05], [0.2, 0.8]]])
    >>> mrl_keras.cascade_predict(probs, [0.9, 0.0], [8, 16]).dims_used
    array([16,  8], dtype=int32)
    """
    dims = validate_nesting_dims(nesting_dims)
    probs = _check_probabilities(probabilities, len(dims))
    t = _check_thresholds(thresholds, len(dims))
    scores = probs.max(axis=-1)
    classes = probs.argmax(axis=-1)
    stop = scores >= t[None, :]
    stop[:, -1] = True
    stage = stop.argmax(axis=1)
    rows = np.arange(probs.shape[0])
    return CascadePrediction(
        classes=classes[rows, stage].astype(np.int64),
        scores=scores[rows, stage].astype(np.float32),
        dims_used=np.asarray(dims, dtype=np.int32)[stage],
    )


class _Problem:
    """The holdout set reduced to what the search needs: per-prefix scores, hits and flips.

    A flip is an example whose correctness at a prefix differs from the largest prefix's: the
    paired difference `D_i = correct_i(cascade) - correct_i(largest)` is -1, 0 or +1, and the
    number of flips is `sum D_i^2`, which with the number of hits gives the variance of `mean D`.
    """

    def __init__(self, scores: np.ndarray, correct: np.ndarray, dims: tuple[int, ...]):
        self.scores = scores  # (n, K) float64, max softmax per prefix
        self.correct = correct  # (n, K) float64, 1.0 where the prefix's argmax is right
        self.flips = np.abs(correct - correct[:, -1:])  # (n, K) 1.0 where it differs from K-1
        self.dims = np.asarray(dims, dtype=np.float64)
        self.n, self.k = scores.shape
        self.full_correct = float(correct[:, -1].sum())

    def stages(self, thresholds: np.ndarray) -> np.ndarray:
        stop = self.scores >= thresholds[None, :]
        stop[:, -1] = True
        return stop.argmax(axis=1)

    def evaluate(self, thresholds: np.ndarray) -> tuple[float, float, float]:
        """(accuracy, expected dim, flips per example) of a threshold vector."""
        stage = self.stages(thresholds)
        rows = np.arange(self.n)
        accuracy = float(self.correct[rows, stage].mean())
        expected_dim = float(self.dims[stage].mean())
        flips = float(self.flips[rows, stage].mean())
        return accuracy, expected_dim, flips

    def outcomes_from(
        self, thresholds: np.ndarray, stage: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(correct, dim, flip) of every example if it entered the cascade at `stage`."""
        out_c = self.correct[:, -1].copy()
        out_d = np.full(self.n, self.dims[-1])
        out_f = np.zeros(self.n)
        for j in range(self.k - 2, stage - 1, -1):
            stop = self.scores[:, j] >= thresholds[j]
            out_c = np.where(stop, self.correct[:, j], out_c)
            out_d = np.where(stop, self.dims[j], out_d)
            out_f = np.where(stop, self.flips[:, j], out_f)
        return out_c, out_d, out_f

    def reaching(self, thresholds: np.ndarray, stage: int) -> np.ndarray:
        """Mask of the examples that no prefix before `stage` answered."""
        alive = np.ones(self.n, dtype=bool)
        for j in range(stage):
            alive &= self.scores[:, j] < thresholds[j]
        return alive


class _Sweep:
    """Evaluates every candidate threshold of one prefix at once.

    For the examples reaching prefix `k`, each either stops there (scoring `correct[:, k]`, cost
    `dims[k]`) or passes on with a fixed downstream outcome. With candidates sorted, an example
    passes candidate `c` exactly when its bin (the number of candidates <= its score) is at most
    `c`, so per-bin sums and one cumsum price every candidate.
    """

    def __init__(self, problem: _Problem, stage: int, candidates: np.ndarray):
        self.candidates = candidates
        self.bins = np.searchsorted(candidates, problem.scores[:, stage], side="right")
        self.correct_here = problem.correct[:, stage]
        self.flips_here = problem.flips[:, stage]
        self.dim_here = problem.dims[stage]

    def run(
        self,
        alive: np.ndarray,
        after_correct: np.ndarray,
        after_dim: np.ndarray,
        after_flips: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Summed (correct, dims, flips) over `alive` examples for every candidate."""
        size = len(self.candidates) + 1
        bins = self.bins[alive]

        def passing(weights: np.ndarray | None) -> tuple[np.ndarray, float]:
            hist = np.bincount(bins, weights=weights, minlength=size)
            cum = np.cumsum(hist)
            return cum[:-1], float(cum[-1])

        pass_n, total_n = passing(None)
        pass_here, total_here = passing(self.correct_here[alive])
        flips_pass_here, flips_total_here = passing(self.flips_here[alive])
        pass_c, _ = passing(after_correct[alive])
        pass_d, _ = passing(after_dim[alive])
        pass_f, _ = passing(after_flips[alive])
        correct = pass_c + (total_here - pass_here)
        dims = pass_d + (total_n - pass_n) * self.dim_here
        flips = pass_f + (flips_total_here - flips_pass_here)
        return correct, dims, flips


class _Objective:
    """Orders (accuracy, expected_dim, flips) triples for one of the two search modes.

    In target mode with a `z` (the confidence quantile), a threshold vector is feasible when the
    lower confidence bound of its accuracy, `full + mean D - z * sd(D) / sqrt(n)` (the paired
    difference to the largest prefix on the same examples), reaches the target.
    """

    def __init__(
        self,
        target_accuracy: float | None,
        max_expected_dim: float | None,
        full_accuracy: float = 0.0,
        n: int = 1,
        z: float = 0.0,
    ):
        self.target_accuracy = target_accuracy
        self.max_expected_dim = max_expected_dim
        self.full_accuracy = full_accuracy
        self.n = n
        self.z = z

    def lower_bound(self, accuracy: Any, flips: Any) -> Any:
        diff = np.asarray(accuracy) - self.full_accuracy
        variance = np.maximum(np.asarray(flips) - diff * diff, 0.0)
        return accuracy - self.z * np.sqrt(variance / max(self.n - 1, 1))

    def keys(self, accuracy: Any, expected_dim: Any, flips: Any) -> np.ndarray:
        """Lexicographic keys, smaller is better: (infeasible, primary, secondary)."""
        if self.max_expected_dim is None:
            assert self.target_accuracy is not None  # target mode: set by calibrate_cascade
            infeasible = self.lower_bound(accuracy, flips) < self.target_accuracy - 1e-12
            return np.stack([infeasible, expected_dim, -np.asarray(accuracy)], axis=-1)
        infeasible = np.asarray(expected_dim) > self.max_expected_dim + 1e-9
        return np.stack([infeasible, -np.asarray(accuracy), expected_dim], axis=-1)

    def best(self, accuracy: np.ndarray, expected_dim: np.ndarray, flips: np.ndarray) -> int:
        keys = self.keys(accuracy, expected_dim, flips)
        return int(np.lexsort(keys.T[::-1])[0])


def _candidates(scores: np.ndarray, grid: np.ndarray, num_quantiles: int) -> np.ndarray:
    # Observed quantiles, each moved halfway down to the next lower observed score: the same
    # split of the holdout set, but a threshold no example sits exactly on, so a float32
    # re-computation of the scores (the exported graph) cannot flip an example across it.
    unique = np.unique(scores)
    observed = np.quantile(scores, np.linspace(0.0, 1.0, num_quantiles), method="lower")
    i = np.searchsorted(unique, observed)
    lower = unique[np.maximum(i - 1, 0)]
    midpoints = np.where(i > 0, (lower + observed) / 2.0, observed / 2.0)
    return np.unique(np.concatenate([grid, midpoints, [NEVER_STOP]]))


def _exhaustive(
    problem: _Problem, candidates: list[np.ndarray], objective: _Objective
) -> np.ndarray:
    last = problem.k - 2
    sweep = _Sweep(problem, last, candidates[last])
    after_c = problem.correct[:, -1]
    after_d = np.full(problem.n, problem.dims[-1])
    after_f = np.zeros(problem.n)
    best: list[Any] = [None, None]

    def search(
        j: int, alive: np.ndarray, base_c: float, base_d: float, base_f: float, head: tuple
    ) -> None:
        if j == last:
            correct, dims, flips = sweep.run(alive, after_c, after_d, after_f)
            accuracy = (base_c + correct) / problem.n
            expected = (base_d + dims) / problem.n
            flip_rate = (base_f + flips) / problem.n
            i = objective.best(accuracy, expected, flip_rate)
            key = tuple(objective.keys(accuracy[i], expected[i], flip_rate[i]))
            if best[0] is None or key < best[0]:
                best[0], best[1] = key, (*head, candidates[last][i])
            return
        scores = problem.scores[:, j]
        for t in candidates[j]:
            stop = alive & (scores >= t)
            search(
                j + 1,
                alive & ~stop,
                base_c + float(problem.correct[stop, j].sum()),
                base_d + float(stop.sum()) * problem.dims[j],
                base_f + float(problem.flips[stop, j].sum()),
                (*head, t),
            )

    search(0, np.ones(problem.n, dtype=bool), 0.0, 0.0, 0.0, ())
    return np.array([*best[1], 0.0])


def _coordinate_descent(
    problem: _Problem,
    candidates: list[np.ndarray],
    objective: _Objective,
    start: np.ndarray,
    max_passes: int = 50,
) -> np.ndarray:
    thresholds = start.copy()
    sweeps = [_Sweep(problem, j, candidates[j]) for j in range(problem.k - 1)]
    for _ in range(max_passes):
        changed = False
        for j, sweep in enumerate(sweeps):
            alive = problem.reaching(thresholds, j)
            before = ~alive
            c0, d0, f0 = problem.outcomes_from(thresholds, 0)
            base_c = float((c0 * before).sum())
            base_d = float((d0 * before).sum())
            base_f = float((f0 * before).sum())
            after_c, after_d, after_f = problem.outcomes_from(thresholds, j + 1)
            correct, dims, flips = sweep.run(alive, after_c, after_d, after_f)
            accuracy = (base_c + correct) / problem.n
            expected = (base_d + dims) / problem.n
            flip_rate = (base_f + flips) / problem.n
            current_keys = tuple(objective.keys(*problem.evaluate(thresholds)))
            i = objective.best(accuracy, expected, flip_rate)
            if tuple(objective.keys(accuracy[i], expected[i], flip_rate[i])) < current_keys:
                thresholds[j] = sweep.candidates[i]
                changed = True
        if not changed:
            break
    return thresholds


def calibrate_cascade(
    probabilities: Any,
    labels: Any,
    nesting_dims: NestingDims,
    target_accuracy: float | None = None,
    max_expected_dim: float | None = None,
    *,
    from_logits: bool = False,
    grid: Sequence[float] | None = None,
    num_quantiles: int = 64,
    max_evaluations: int = 1_000_000,
    confidence: float | None = DEFAULT_CONFIDENCE,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> CascadeCalibration:
    """Learns one max-softmax threshold per prefix on a holdout set (section 4.2.1).

    Two modes:
    - accuracy target (the default): the thresholds with the smallest expected dimension whose
      cascade accuracy on the holdout set is at least `target_accuracy` (default: the largest
      prefix's accuracy minus 0.005);
    - budget (`max_expected_dim` given): the thresholds with the best accuracy whose expected
      dimension is at most `max_expected_dim`.

    Candidate thresholds per prefix are the values of `grid`, `num_quantiles` quantiles of that
    prefix's observed max-probabilities, and "never stop". When all combinations number at most
    `max_evaluations` they are searched exhaustively (exact over the candidates); otherwise by
    coordinate descent from the best shared threshold and from "everything to the largest
    prefix", which finds a local optimum.

    Thresholds that *just* reach the target on the holdout set miss it on new data (the
    search picks the cheapest vector among many, so its holdout accuracy is optimistic). With a
    `confidence` (the default, 0.95), a vector is feasible only when the one-sided lower
    confidence bound of its accuracy reaches the target: `acc - z * sd(D) / sqrt(n)`, with `D`
    the per-example difference in correctness to the largest prefix (paired on the same
    examples, so only the examples where the cascade's answer flips correctness count). Sending
    every example to the largest prefix is always feasible. `folds` then re-runs the same
    calibration on `folds - 1` folds and scores it on the remaining fold (`cv_*` fields), so
    the result says how the thresholds do on examples they were not fitted on.

    Args:
        probabilities: float array `(n, len(nesting_dims), num_classes)`: the softmax of a
            `MatryoshkaHead`'s logits on the holdout set (or the logits, with `from_logits`).
        labels: int array `(n,)`, the true classes.
        nesting_dims: sequence of int, ascending, matching axis 1 of `probabilities`.
        target_accuracy: float in [0, 1] or `None`. The accuracy floor. Defaults to the largest
            prefix's holdout accuracy minus 0.005. Not allowed together with `max_expected_dim`.
        max_expected_dim: float or `None`. The expected-dimension budget; switches to
            "maximise accuracy". Must be at least the smallest nesting dim.
        from_logits: bool. Whether `probabilities` holds logits. Defaults to `False`.
        grid: sequence of float or `None`. Fixed candidate thresholds. Defaults to
            0.00, 0.05, ..., 1.00.
        num_quantiles: int. Observed-score quantiles added as candidates. Defaults to `64`.
        max_evaluations: int. Largest number of threshold vectors searched exhaustively.
            Defaults to `1_000_000`.
        confidence: float in (0.5, 1) or `None`. Confidence of the accuracy target (target
            mode only). Defaults to 0.95. `None` is the exact optimum on the holdout set.
        folds: int. Folds of the out-of-fold check (0 or 1: none). Defaults to 5.
        seed: int. Seeds the fold assignment. Defaults to 0.

    Returns:
        A `CascadeCalibration` with `thresholds`, `expected_dim` and `accuracy`.

    Raises:
        ValueError: on shapes that do not match, labels out of range, both or an impossible
            target, or a budget below the smallest nesting dim.

    Example:

    >>> cal = mrl_keras.calibrate_cascade(probs, y, (8, 16, 32, 64))
    >>> cal.thresholds, cal.expected_dim, cal.accuracy
    """
    dims = validate_nesting_dims(nesting_dims)
    probs = _check_probabilities(probabilities, len(dims)).astype(np.float64)
    if from_logits:
        probs = _softmax(probs)
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (probs.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"Expected integer `labels` of shape ({probs.shape[0]},). "
            f"Received: shape={y.shape}, dtype={y.dtype}"
        )
    if y.min() < 0 or y.max() >= probs.shape[2]:
        raise ValueError(
            f"Expected `labels` in [0, {probs.shape[2]}). Received: min={y.min()}, max={y.max()}"
        )
    if target_accuracy is not None and max_expected_dim is not None:
        raise ValueError(
            "Expected at most one of `target_accuracy` and `max_expected_dim`. Received: "
            f"target_accuracy={target_accuracy}, max_expected_dim={max_expected_dim}"
        )
    if num_quantiles < 2 or max_evaluations < 1:
        raise ValueError(
            "Expected num_quantiles >= 2 and max_evaluations >= 1. "
            f"Received: num_quantiles={num_quantiles}, max_evaluations={max_evaluations}"
        )

    if confidence is not None and (
        isinstance(confidence, bool)
        or not isinstance(confidence, (int, float))
        or not 0.5 <= confidence < 1.0
    ):
        raise ValueError(
            f"Expected confidence in [0.5, 1) or None. Received: confidence={confidence!r}"
        )
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 0:
        raise ValueError(f"Expected an int folds >= 0. Received: folds={folds!r}")

    scores = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == y[:, None]).astype(np.float64)
    problem = _Problem(scores, correct, dims)
    full_dim_accuracy = float(correct[:, -1].mean())
    relative = target_accuracy is None

    if max_expected_dim is None:
        if target_accuracy is None:
            target_accuracy = max(0.0, full_dim_accuracy - DEFAULT_ACCURACY_DROP)
        if not 0.0 <= target_accuracy <= 1.0 or math.isnan(target_accuracy):
            raise ValueError(f"Expected `target_accuracy` in [0, 1]. Received: {target_accuracy}")
        target_accuracy = float(target_accuracy)
    else:
        confidence = None
        max_expected_dim = float(max_expected_dim)
        if not max_expected_dim >= dims[0]:
            raise ValueError(
                "Expected `max_expected_dim` of at least the smallest nesting dim "
                f"({dims[0]}). Received: max_expected_dim={max_expected_dim}"
            )
    options = (grid, num_quantiles, max_evaluations)
    thresholds, search = _search(problem, target_accuracy, max_expected_dim, confidence, options)
    accuracy, expected_dim, flips = problem.evaluate(thresholds)
    if max_expected_dim is None and target_accuracy is not None and (
        accuracy < target_accuracy - 1e-12
    ):
        raise ValueError(
            f"No thresholds reach target_accuracy={target_accuracy:.4f} on this holdout set; "
            f"the best found is {accuracy:.4f} (largest prefix alone: "
            f"{full_dim_accuracy:.4f}). Lower the target."
        )
    lower_bound = None
    if confidence is not None:
        z = float(statistics.NormalDist().inv_cdf(confidence))
        bound = _Objective(target_accuracy, None, full_dim_accuracy, problem.n, z)
        lower_bound = float(bound.lower_bound(accuracy, flips))
    cv: tuple[float | None, float | None, float | None] = (None, None, None)
    folds = min(folds, problem.n)
    if folds >= 2 and len(dims) > 1:
        cv = _out_of_fold(
            scores, correct, dims, None if relative else target_accuracy, max_expected_dim,
            confidence, folds, seed, options,
        )  # fmt: skip
    else:
        folds = 0
    stage = np.searchsorted(np.asarray(dims), cascade_predict(probs, thresholds, dims).dims_used)
    fractions = np.bincount(stage, minlength=len(dims)) / problem.n
    return CascadeCalibration(
        nesting_dims=dims,
        thresholds=tuple(float(t) for t in thresholds),
        expected_dim=expected_dim,
        accuracy=accuracy,
        full_dim_accuracy=full_dim_accuracy,
        dim_fractions=tuple(float(f) for f in fractions),
        target_accuracy=target_accuracy,
        max_expected_dim=max_expected_dim,
        num_examples=problem.n,
        search=search,
        confidence=confidence,
        accuracy_lower_bound=lower_bound,
        cv_accuracy=cv[0],
        cv_full_dim_accuracy=cv[1],
        cv_expected_dim=cv[2],
        cv_folds=folds,
    )


def _search(
    problem: _Problem,
    target_accuracy: float | None,
    max_expected_dim: float | None,
    confidence: float | None,
    options: tuple[Sequence[float] | None, int, int],
) -> tuple[np.ndarray, str]:
    """The best thresholds over the candidates for one objective (the last one is 0)."""
    grid, num_quantiles, max_evaluations = options
    z = 0.0 if confidence is None else float(statistics.NormalDist().inv_cdf(confidence))
    full = problem.full_correct / problem.n
    objective = _Objective(target_accuracy, max_expected_dim, full, problem.n, z)
    k = problem.k
    if k == 1:
        return np.zeros(1), "exhaustive"
    grid_values = np.round(np.linspace(0.0, 1.0, 21) if grid is None else np.asarray(grid), 12)
    candidates = [
        _candidates(problem.scores[:, j], grid_values, num_quantiles) for j in range(k - 1)
    ]
    if math.prod(len(c) for c in candidates) <= max_evaluations:
        thresholds, search = _exhaustive(problem, candidates, objective), "exhaustive"
    else:
        shared = [np.array([*([t] * (k - 1)), 0.0]) for t in candidates[0]]
        shared_scores = [problem.evaluate(t) for t in shared]
        starts = [
            shared[objective.best(*map(np.array, zip(*shared_scores, strict=True)))],
            np.array([*([NEVER_STOP] * (k - 1)), 0.0]),
        ]
        results = [_coordinate_descent(problem, candidates, objective, s) for s in starts]
        evaluated = [problem.evaluate(t) for t in results]
        thresholds = results[objective.best(*map(np.array, zip(*evaluated, strict=True)))]
        search = "coordinate_descent"
    thresholds = np.asarray(thresholds, dtype=np.float64)
    thresholds[-1] = 0.0
    return thresholds, search


def _out_of_fold(
    scores: np.ndarray,
    correct: np.ndarray,
    dims: tuple[int, ...],
    target_accuracy: float | None,
    max_expected_dim: float | None,
    confidence: float | None,
    folds: int,
    seed: int,
    options: tuple[Sequence[float] | None, int, int],
) -> tuple[float, float, float]:
    """(accuracy, largest-prefix accuracy, expected dim) of the calibration fitted on the other
    folds and applied to each fold, pooled over the folds. `target_accuracy=None` is the
    default target (each fit's own largest-prefix accuracy minus the default drop)."""
    n = scores.shape[0]
    fold = np.random.default_rng(seed).permutation(n) % folds
    hit = np.zeros(n)
    used = np.zeros(n)
    for f in range(folds):
        fit, held = fold != f, fold == f
        sub = _Problem(scores[fit], correct[fit], dims)
        target = target_accuracy
        if max_expected_dim is None and target is None:
            target = max(0.0, sub.full_correct / sub.n - DEFAULT_ACCURACY_DROP)
        thresholds, _ = _search(sub, target, max_expected_dim, confidence, options)
        check = _Problem(scores[held], correct[held], dims)
        stage = check.stages(thresholds)
        hit[held] = check.correct[np.arange(check.n), stage]
        used[held] = check.dims[stage]
    return float(hit.mean()), float(correct[:, -1].mean()), float(used.mean())
