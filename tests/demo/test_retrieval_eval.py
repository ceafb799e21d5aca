"""demo/retrieval_eval.py: mAP@10 of ranked rows (`-1`: none) and the exact single-shot search."""

import numpy as np
import pytest

from mrl_keras.demo.retrieval_eval import exact_search, map_at_10
from mrl_keras.retrieval_metrics import map_at_k


def test_map_at_10_of_rows_with_missing_results():
    y_db = np.array([0, 0, 1, 1, 1])
    ids = np.array([[2, 3, -1, 0, 1, 4, -1, -1, -1, -1]])  # query of class 1
    expected = (1 / 1 + 2 / 2 + 3 / 6) / min(10, 3)  # relevant at ranks 1, 2 and 6; R = 3
    assert map_at_10(ids, y_db, np.array([1])) == pytest.approx(expected)
    assert map_at_10(ids, y_db, np.array([1])) == pytest.approx(
        map_at_k(y_db[np.clip(ids, 0, None)], np.array([1]), y_db, k=10, valid=ids >= 0)
    )


def test_exact_search_is_numpy_cosine_top_k():
    rng = np.random.default_rng(0)
    db, q = rng.normal(size=(200, 16)), rng.normal(size=(9, 16))
    got = exact_search(q, db, k=5, chunk=4)
    dbn = db / np.linalg.norm(db, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_array_equal(got, np.argsort(-(qn @ dbn.T), axis=1)[:, :5])
