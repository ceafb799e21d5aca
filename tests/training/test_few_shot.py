"""`mrl_keras.training.few_shot`: rows checked against NumPy 1-NN."""

import numpy as np
import pytest

from mrl_keras.training.few_shot import few_shot_rows, first_shots


def _numpy_1nn(queries, database, db_labels):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    d = database / np.linalg.norm(database, axis=1, keepdims=True)
    return db_labels[np.argmax(q @ d.T, axis=1)]


def test_first_shots_picks_the_first_k_of_each_class():
    y = np.array([2, 0, 1, 0, 2, 1, 0, 2, 1])
    np.testing.assert_array_equal(first_shots(y, 1), [0, 1, 2])
    np.testing.assert_array_equal(first_shots(y, 2), [0, 1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="at least 4 examples of every class"):
        first_shots(y, 4)


def test_few_shot_rows_match_numpy():
    rng = np.random.default_rng(0)
    classes, pool, queries, d = 6, 5, 4, 16
    centres = rng.normal(size=(classes, d))
    ys = np.repeat(np.arange(classes), pool)
    yq = np.repeat(np.arange(classes), queries)
    zs = centres[ys] + 0.8 * rng.normal(size=(len(ys), d))
    zq = centres[yq] + 0.8 * rng.normal(size=(len(yq), d))
    rows = few_shot_rows({"MRL": (zs, zq, None), "FF-8": (zs[:, :8], zq[:, :8], 8)}, ys, yq,
                         dims=(4, 8, 16), shots=(1, 3))  # fmt: skip
    got = {(r["method"], r["dim"], r["shots"]): r["1nn_top1"] for r in rows}
    assert set(got) == {(m, dim, k) for k in (1, 3) for m, dim in
                        [("MRL", 4), ("MRL", 8), ("MRL", 16), ("FF-8", 8)]}  # fmt: skip
    for (method, m, k), value in got.items():
        keep = first_shots(ys, k)
        pred = _numpy_1nn(zq[:, :m], zs[keep, :m], ys[keep])
        assert value == pytest.approx(np.mean(pred == yq)), (method, m, k)

