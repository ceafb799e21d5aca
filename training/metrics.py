"""Representation metrics: chunked exact cosine k-NN, 1-NN top-1, mAP@k and P@k with class
relevance, a softmax linear probe, and the SVD / random-feature baselines (section 4.2).

mAP@k, P@k and the NumPy `l2_normalize` live in `mrl_keras.retrieval_metrics` (the one
definition of the package, re-exported here). NumPy throughout, except the k-NN's top-k selection, which uses `tf.math.top_k` (multi-threaded,
ties to the lower index) on each chunk of the similarity matrix."""

from __future__ import annotations

import numpy as np

from mrl_keras.retrieval_metrics import l2_normalize, retrieval_metrics

__all__ = [
    "exact_search_flops",
    "knn",
    "l2_normalize",
    "linear_probe",
    "one_nn_accuracy",
    "random_feature_order",
    "retrieval_metrics",
    "svd_basis",
    "svd_project",
]


def knn(
    queries: np.ndarray, database: np.ndarray, k: int, chunk_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k nearest neighbours, `chunk_size` queries at a time.

    Both sides are L2-normalised here (so prefixes are re-normalised before the search). Ties
    go to the lower database index.

    Args:
        queries: (q, m) array.
        database: (n, m) array.
        k: neighbours per query (at most n).
        chunk_size: queries per chunk; memory is O(chunk_size * n).

    Returns:
        (indices (q, k) int64, similarities (q, k) float32), best first.
    """
    queries, database = l2_normalize(queries), l2_normalize(database)
    if queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"Expected queries and database of the same width. Received: {queries.shape[1]} "
            f"and {database.shape[1]}"
        )
    n = database.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"Expected 1 <= k <= {n} (the database size). Received: k={k}")
    import tensorflow as tf  # top_k is multi-threaded and keeps the lower index first on ties

    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    sims = np.empty((queries.shape[0], k), dtype=np.float32)
    for start in range(0, queries.shape[0], chunk_size):
        values, idx = tf.math.top_k(queries[start : start + chunk_size] @ database.T, k=k)
        indices[start : start + chunk_size] = idx.numpy()
        sims[start : start + chunk_size] = values.numpy()
    return indices, sims


def one_nn_accuracy(neighbor_labels: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of the nearest neighbour's label. `neighbor_labels`: (q, k>=1)."""
    return float(np.mean(neighbor_labels[:, 0] == labels))


def linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int | None = None,
    epochs: int = 10,
    batch_size: int = 512,
    learning_rate: float = 1e-2,
    l2: float = 1e-5,
    seed: int = 0,
) -> float:
    """Top-1 accuracy of a softmax linear classifier trained on frozen features.

    Features are standardised with the train mean and std; the classifier is trained with
    Adam on the cross-entropy (plus `l2` on the weights), mini-batches drawn by `seed`.

    Returns:
        Test top-1 accuracy.
    """
    x_train = np.asarray(x_train, np.float32)
    x_test = np.asarray(x_test, np.float32)
    num_classes = int(num_classes or max(y_train.max(), y_test.max()) + 1)
    mean = x_train.mean(0)
    std = x_train.std(0) + 1e-6
    xtr, xte = (x_train - mean) / std, (x_test - mean) / std
    n, m = xtr.shape
    rng = np.random.default_rng(seed)
    w = np.zeros((m, num_classes), np.float32)
    b = np.zeros((num_classes,), np.float32)
    state = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
    beta1, beta2, step = 0.9, 0.999, 0
    steps_total = epochs * ((n + batch_size - 1) // batch_size)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            logits = xtr[idx] @ w + b
            logits -= logits.max(1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(idx)), y_train[idx]] -= 1.0
            p /= len(idx)
            gw = xtr[idx].T @ p + l2 * w
            gb = p.sum(0)
            step += 1
            lr = learning_rate * 0.5 * (1 + np.cos(np.pi * (step - 1) / steps_total))
            for g, param, i in ((gw, w, 0), (gb, b, 2)):
                state[i] = beta1 * state[i] + (1 - beta1) * g
                state[i + 1] = beta2 * state[i + 1] + (1 - beta2) * g * g
                m_hat = state[i] / (1 - beta1**step)
                v_hat = state[i + 1] / (1 - beta2**step)
                param -= (lr * m_hat / (np.sqrt(v_hat) + 1e-8)).astype(np.float32)
    return float(np.mean(np.argmax(xte @ w + b, axis=1) == y_test))


def svd_basis(train_embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes of the train embeddings (the SVD baseline, fit on train).

    Returns:
        (mean (d,), components (d, d)) with columns sorted by decreasing singular value and
        each column's sign fixed (largest-magnitude entry positive), so the projection onto
        the first m columns is deterministic.
    """
    x = np.asarray(train_embeddings, np.float64)
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean)
    values, vectors = np.linalg.eigh(cov)
    vectors = vectors[:, np.argsort(values)[::-1]]
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    return mean.astype(np.float32), vectors.astype(np.float32)


def svd_project(
    embeddings: np.ndarray, mean: np.ndarray, components: np.ndarray, m: int
) -> np.ndarray:
    """Projection onto the first `m` principal axes."""
    return (np.asarray(embeddings, np.float32) - mean) @ components[:, :m]


def random_feature_order(d: int, seed: int = 0) -> np.ndarray:
    """A seeded permutation of the d features; the random-features baseline of width m keeps
    the first m of it (so widths nest)."""
    return np.random.default_rng(seed).permutation(d)


def exact_search_flops(m: int, database_size: int) -> int:
    """Multiply-adds of one exact search over the database at dimension m (`m * N`)."""
    return int(m) * int(database_size)
