"""mrl_keras/retrieval_metrics.py: the one mAP@k (AP@k = sum_{i<=k} P@i rel_i / min(k, R)), P@k
and the NumPy L2 normalisation."""

import numpy as np
import pytest

from mrl_keras.retrieval_metrics import (
    average_precision_at_k,
    l2_normalize,
    map_at_k,
    retrieval_metrics,
)


def test_l2_normalize_rows_and_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    out = l2_normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_ap_divides_by_min_k_and_r_not_by_the_hits():
    # relevant at ranks 1 and 3 of 4; R = 5 relevant items in the database
    rel = np.array([[1, 0, 1, 0]])
    ap = (1 / 1 + 2 / 3) / min(4, 5)
    assert average_precision_at_k(rel, np.array([5]), 4)[0] == pytest.approx(ap)
    # R = 2 < k: divided by R
    assert average_precision_at_k(rel, np.array([2]), 4)[0] == pytest.approx((1 + 2 / 3) / 2)
    # no relevant item in the database: 0
    assert average_precision_at_k(rel * 0, np.array([0]), 4)[0] == 0.0


def test_map_at_k_against_a_loop():
    rng = np.random.default_rng(0)
    db = rng.integers(0, 4, size=50)
    queries = rng.integers(0, 5, size=20)  # class 4 is absent from the database
    ranked = rng.integers(0, 4, size=(20, 10))
    expected = []
    for q, row in zip(queries, ranked, strict=True):
        r = int((db == q).sum())
        hits, total = 0, 0.0
        for i, label in enumerate(row[:10], start=1):
            if label == q:
                hits += 1
                total += hits / i
        expected.append(total / min(10, r) if r else 0.0)
    assert map_at_k(ranked, queries, db, k=10) == pytest.approx(np.mean(expected))
    out = retrieval_metrics(ranked, queries, db, ks=(5, 10))
    assert out["mAP@10"] == pytest.approx(np.mean(expected))
    assert out["P@5"] == pytest.approx(np.mean((ranked[:, :5] == queries[:, None]).sum(1) / 5))


def test_invalid_results_are_never_relevant():
    db = np.array([1, 1, 0])
    ranked = np.array([[1, 1]])
    valid = np.array([[True, False]])
    assert map_at_k(ranked, np.array([1]), db, k=2, valid=valid) == pytest.approx(1 / 2)


def test_too_few_ranked_results():
    with pytest.raises(ValueError, match="at least max\\(ks\\)=10"):
        retrieval_metrics(np.zeros((1, 5)), np.zeros(1), np.zeros(3), ks=(10,))
