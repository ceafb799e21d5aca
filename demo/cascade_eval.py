"""Adaptive classification (MRL-AC, paper section 4.2.1, Figure 6): accuracy vs expected dim.

Thresholds are learnt on the holdout set with `mrl_keras.cascade.calibrate_cascade` under a
range of expected-dimension budgets, then applied to the test set with `cascade_predict` (the
NumPy reference of the exported `classify_cascade`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mrl_keras.cascade import calibrate_cascade, cascade_predict


def cascade_on(
    probabilities: np.ndarray, labels: np.ndarray, thresholds: Sequence[float], dims: Sequence[int]
) -> dict[str, float]:
    """Accuracy and expected dim of a cascade with `thresholds` on `(n, len(dims), L)` probs."""
    prediction = cascade_predict(probabilities, thresholds, tuple(dims))
    return {
        "accuracy": float(np.mean(prediction.classes == labels)),
        "expected_dim": float(np.mean(prediction.dims_used)),
    }


def cascade_curve(
    holdout_probabilities: np.ndarray,
    holdout_labels: np.ndarray,
    test_probabilities: np.ndarray,
    test_labels: np.ndarray,
    dims: Sequence[int],
    num_budgets: int = 10,
) -> dict[str, Any]:
    """The MRL-AC curve and the fixed-prefix points of Figure 6.

    Args:
        holdout_probabilities, test_probabilities: `(n, len(dims), L)` softmax of the head.
        holdout_labels, test_labels: `(n,)` int labels.
        dims: the nesting dims.
        num_budgets: expected-dimension budgets, geometric between the smallest dim and `d`.

    Returns:
        dict with `curve` (one row per budget: `budget`, holdout `expected_dim`/`accuracy`,
        `test_expected_dim`, `test_accuracy`, `thresholds`) and `fixed` (test top-1 of every
        prefix's own head).
    """
    dims = tuple(int(m) for m in dims)
    y_hold = np.asarray(holdout_labels).astype(np.int64)
    y_test = np.asarray(test_labels).astype(np.int64)
    budgets = sorted({round(float(b), 2) for b in np.geomspace(dims[0], dims[-1], num_budgets)})
    curve = []
    for budget in budgets:
        cal = calibrate_cascade(holdout_probabilities, y_hold, dims, max_expected_dim=budget)
        test = cascade_on(test_probabilities, y_test, cal.thresholds, dims)
        curve.append(
            {
                "budget": budget,
                "expected_dim": round(cal.expected_dim, 3),
                "accuracy": cal.accuracy,
                "test_expected_dim": round(test["expected_dim"], 3),
                "test_accuracy": test["accuracy"],
                "thresholds": [round(float(t), 6) for t in cal.thresholds],
            }
        )
    fixed = [
        {"dim": m, "accuracy": float(np.mean(test_probabilities[:, i].argmax(-1) == y_test))}
        for i, m in enumerate(dims)
    ]
    return {"curve": curve, "fixed": fixed}
