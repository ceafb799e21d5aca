import numpy as np
import pytest

from mrl_keras.training import metrics as M


def brute_force_knn(q, db, k):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    dn = db / np.linalg.norm(db, axis=1, keepdims=True)
    out = []
    for row in qn:
        s = dn @ row
        out.append(sorted(range(len(db)), key=lambda i: (-s[i], i))[:k])
    return np.array(out)


def test_knn_matches_brute_force_in_chunks():
    rng = np.random.default_rng(0)
    q, db = rng.normal(size=(37, 6)), rng.normal(size=(50, 6))
    idx, sims = M.knn(q, db, 7, chunk_size=8)
    np.testing.assert_array_equal(idx, brute_force_knn(q, db, 7))
    assert np.all(np.diff(sims, axis=1) <= 1e-7)
    full, _ = M.knn(q, db, 50, chunk_size=100)
    np.testing.assert_array_equal(full, brute_force_knn(q, db, 50))


def test_one_nn_hand_made():
    db = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels_db = np.array([0, 1, 2])
    q = np.array([[0.9, 0.1], [0.1, 0.9], [10.0, 9.0], [5.0, 0.0]])
    idx, _ = M.knn(q, db, 1)
    assert idx[:, 0].tolist() == [0, 1, 2, 0]
    # cosine ignores the norm: [10, 9] is nearest to [1, 1]
    assert M.one_nn_accuracy(labels_db[idx], np.array([0, 1, 2, 1])) == 0.75


def test_map_and_precision_hand_made():
    ranked = np.array([[1, 0, 1, 1], [0, 0, 0, 0]])
    labels = np.array([1, 2])
    db_labels = np.array([1, 1, 0, 0, 0, 2])  # class 1: R=2, class 2: R=1
    out = M.retrieval_metrics(ranked, labels, db_labels, ks=(1, 3, 4))
    # query 0: rel 1,0,1,1  P@i: 1, 1/2, 2/3, 3/4;  AP@3 = (1 + 2/3) / min(3, 2)
    ap3 = (1 + 2 / 3) / 2
    ap4 = (1 + 2 / 3 + 3 / 4) / 2
    assert out["P@1"] == pytest.approx((1 + 0) / 2)
    assert out["P@3"] == pytest.approx((2 / 3 + 0) / 2)
    assert out["mAP@1"] == pytest.approx((1 + 0) / 2)
    assert out["mAP@3"] == pytest.approx((ap3 + 0) / 2)
    assert out["mAP@4"] == pytest.approx((ap4 + 0) / 2)
    with pytest.raises(ValueError, match="at least max"):
        M.retrieval_metrics(ranked, labels, db_labels, ks=(10,))


def test_linear_probe_learns_separable_classes_deterministically():
    rng = np.random.default_rng(1)
    centers = rng.normal(scale=4, size=(5, 8))
    y_tr, y_te = rng.integers(0, 5, 400), rng.integers(0, 5, 200)
    x_tr = centers[y_tr] + rng.normal(size=(400, 8))
    x_te = centers[y_te] + rng.normal(size=(200, 8))
    a = M.linear_probe(x_tr, y_tr, x_te, y_te, 5, epochs=20, seed=0)
    b = M.linear_probe(x_tr, y_tr, x_te, y_te, 5, epochs=20, seed=0)
    assert a == b
    assert a > 0.95
    # a probe on noise stays near chance
    assert (
        M.linear_probe(
            rng.normal(size=(400, 8)), y_tr, rng.normal(size=(200, 8)), y_te, 5, epochs=5
        )
        < 0.4
    )


def test_svd_basis_matches_numpy_svd():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 6)) @ np.diag([5, 4, 3, 2, 1, 0.5])
    mean, comps = M.svd_basis(x)
    _, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    for i in range(6):
        assert abs(abs(comps[:, i] @ vt[i]) - 1) < 1e-4
    proj = M.svd_project(x, mean, comps, 2)
    np.testing.assert_allclose(np.var(proj, axis=0) * len(x), s[:2] ** 2, rtol=1e-3)
    again = M.svd_project(x, *M.svd_basis(x), 2)
    np.testing.assert_array_equal(proj, again)


def test_random_features_reproducible_from_seed():
    a, b = M.random_feature_order(64, seed=5), M.random_feature_order(64, seed=5)
    np.testing.assert_array_equal(a, b)
    assert sorted(a.tolist()) == list(range(64))
    assert not np.array_equal(a, M.random_feature_order(64, seed=6))


def test_flops():
    assert M.exact_search_flops(16, 1000) == 16_000
