"""Retrieval quality with class relevance, in NumPy (no TensorFlow, no Keras): the one mAP@k
and P@k of the package, and the NumPy L2 normalisation of embedding rows.

A result is relevant when its database item has the query's class. With `rel_i` in {0, 1}
the relevance of the result at rank i, `P@i = (sum_{j<=i} rel_j) / i` and `R` the number of
database items of the query's class (section 4.2 of the paper, as in its code):

    AP@k = sum_{i<=k} P@i * rel_i / min(k, R)        (0 when R = 0)
    mAP@k = mean of AP@k over the queries
    P@k   = (sum_{i<=k} rel_i) / k

Dividing by `min(k, R)`, not by the number of relevant results found, means a query that finds
one relevant item at rank 1 and nothing else scores 1/min(k, R), not 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["average_precision_at_k", "l2_normalize", "map_at_k", "retrieval_metrics"]


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (all-zero rows stay zero).

    Args:
        x: array of shape `(..., m)`.
        eps: float. Lower bound on the norm. Defaults to `1e-12`.

    Returns:
        float32 array of the shape of `x`.
    """
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def average_precision_at_k(
    relevant: np.ndarray, relevant_total: np.ndarray, k: int
) -> np.ndarray:
    """AP@k of each query from the relevance of its ranked results (module docstring).

    Args:
        relevant: bool or 0/1 array `(q, K)`, K >= k: relevance of the result at each rank.
        relevant_total: array `(q,)`: `R`, the number of relevant database items of each query.
        k: int. The cut-off.

    Returns:
        float64 array `(q,)`.
    """
    rel = np.asarray(relevant, dtype=np.float64)[:, :k]
    precision_at_i = np.cumsum(rel, axis=1) / np.arange(1, rel.shape[1] + 1)
    denom = np.minimum(k, np.asarray(relevant_total, dtype=np.float64))
    return np.where(denom > 0, np.sum(precision_at_i * rel, axis=1) / np.maximum(denom, 1), 0.0)


def _relevance(neighbor_labels, labels, database_labels):
    neighbor_labels = np.asarray(neighbor_labels)
    labels = np.asarray(labels)
    classes, counts = np.unique(np.asarray(database_labels), return_counts=True)
    totals = dict(zip(classes.tolist(), counts.tolist(), strict=True))
    relevant_total = np.array([totals.get(c, 0) for c in labels.tolist()], dtype=np.float64)
    return neighbor_labels == labels[:, None], relevant_total


def map_at_k(
    neighbor_labels: np.ndarray,
    labels: np.ndarray,
    database_labels: np.ndarray,
    k: int = 10,
    valid: np.ndarray | None = None,
) -> float:
    """mAP@k with class relevance (module docstring).

    Args:
        neighbor_labels: `(q, K)` labels of the ranked results of each query, K >= k.
        labels: `(q,)` query labels.
        database_labels: `(n,)` labels of the whole database (for `R`).
        k: int. The cut-off. Defaults to `10`.
        valid: optional bool `(q, K)`: False marks a missing result (e.g. an id of -1), which
            is never relevant.

    Returns:
        mAP@k, a float in [0, 1].
    """
    rel, relevant_total = _relevance(neighbor_labels, labels, database_labels)
    if valid is not None:
        rel = rel & np.asarray(valid, dtype=bool)
    return float(np.mean(average_precision_at_k(rel, relevant_total, k)))


def retrieval_metrics(
    neighbor_labels: np.ndarray,
    labels: np.ndarray,
    database_labels: np.ndarray,
    ks: Sequence[int] = (10, 25, 50, 100),
) -> dict[str, float]:
    """mAP@k and P@k with class relevance for several cut-offs (module docstring).

    Args:
        neighbor_labels: `(q, K)` labels of the ranked results, K >= max(ks).
        labels: `(q,)` query labels.
        database_labels: `(n,)` labels of the whole database (for `R`).
        ks: cut-offs.

    Returns:
        dict `{"mAP@10": ..., "P@10": ..., ...}`.

    Raises:
        ValueError: fewer than max(ks) ranked results.
    """
    neighbor_labels = np.asarray(neighbor_labels)
    if neighbor_labels.shape[1] < max(ks):
        raise ValueError(
            f"Expected at least max(ks)={max(ks)} ranked results. Received: {neighbor_labels.shape[1]}"
        )
    rel, relevant_total = _relevance(neighbor_labels, labels, database_labels)
    hits = np.cumsum(rel, axis=1)
    out = {}
    for k in ks:
        out[f"mAP@{k}"] = float(np.mean(average_precision_at_k(rel, relevant_total, k)))
        out[f"P@{k}"] = float(np.mean(hits[:, k - 1] / k))
    return out
