"""training/robustness.py: one row per (method, dim, corruption), 1-NN and head top-1 checked
against NumPy."""

import numpy as np
import pytest

from mrl_keras.training.corruptions import corrupt
from mrl_keras.training.robustness import robustness_rows


class LinearEmbedder:
    """A fixed linear map standing in for a trained network: the embeddings are the test's data."""

    def __init__(self, weights, head_dims):
        self.weights = weights
        self.head_dims = list(head_dims)


def _embed(embedder, x, y):
    z = x.reshape(len(x), -1) @ embedder.weights
    # "head" prediction per prefix: argmax of the first 3 coordinates of each prefix
    pred = np.stack([np.argmax(z[:, :3] * m, axis=1) for m in embedder.head_dims], axis=1)
    return z, pred


def _numpy_1nn(z_q, z_db, y_db):
    q = z_q / np.linalg.norm(z_q, axis=1, keepdims=True)
    db = z_db / np.linalg.norm(z_db, axis=1, keepdims=True)
    return y_db[np.argmax(q @ db.T, axis=1)]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x_train = rng.random((60, 8, 8, 1)).astype("float32")
    y_train = rng.integers(0, 3, 60)
    x_test = rng.random((20, 8, 8, 1)).astype("float32")
    y_test = rng.integers(0, 3, 20)
    weights = rng.standard_normal((64, 16)).astype("float32")
    return x_train, y_train, x_test, y_test, weights


def test_rows_match_numpy_for_every_corruption(data):
    x_train, y_train, x_test, y_test, weights = data
    mrl = LinearEmbedder(weights, head_dims=(4, 8, 16))
    ff = LinearEmbedder(weights[:, :8], head_dims=(8,))
    z_train = x_train.reshape(60, -1) @ weights
    models = {"MRL": (mrl, z_train, None), "FF-8": (ff, z_train[:, :8], 8)}
    rows = robustness_rows(
        models,
        x_test,
        y_test,
        y_train,
        dims=(4, 8, 16),
        corruptions=("clean", "noise"),
        embed=_embed,
        seed=5,
    )
    assert [(r["method"], r["dim"], r["corruption"]) for r in rows] == [
        (m, d, c)
        for c in ("clean", "noise")
        for m, d in (("MRL", 4), ("MRL", 8), ("MRL", 16), ("FF-8", 8))
    ]
    for row in rows:
        x = corrupt(x_test, row["corruption"], 5)
        embedder = mrl if row["method"] == "MRL" else ff
        z, pred = _embed(embedder, x, y_test)
        m = row["dim"]
        db = z_train if row["method"] == "MRL" else z_train[:, :8]
        expected = np.mean(_numpy_1nn(z[:, :m], db[:, :m], y_train) == y_test)
        assert row["1nn_top1"] == pytest.approx(expected)
        k = embedder.head_dims.index(m)
        assert row["head_top1"] == pytest.approx(np.mean(pred[:, k] == y_test))
    # The corruption is seeded and changes the queries, so the clean and noisy rows differ somewhere.
    assert not np.array_equal(corrupt(x_test, "noise", 5), x_test)


def test_unknown_corruption_is_refused(data):
    x_train, y_train, x_test, y_test, weights = data
    mrl = LinearEmbedder(weights, head_dims=(16,))
    with pytest.raises(ValueError, match="nope"):
        robustness_rows(
            {"MRL": (mrl, x_train.reshape(60, -1) @ weights, None)},
            x_test,
            y_test,
            y_train,
            dims=(16,),
            corruptions=("nope",),
            embed=_embed,
        )
