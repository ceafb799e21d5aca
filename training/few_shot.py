"""Few-shot 1-NN on novel classes (the paper's long-tail / few-shot claim, section 5): the
database holds `k` images of each of classes no model saw in training, the queries are other
images of those classes (from unseen fonts, for CJK), and accuracy is the nearest neighbour's
label per prefix dimension."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mrl_keras.training import metrics as M


def first_shots(labels: np.ndarray, shots: int) -> np.ndarray:
    """Indices of the first `shots` examples of every class, in index order.

    Raises:
        ValueError: a class has fewer than `shots` examples.
    """
    labels = np.asarray(labels)
    if shots < 1:
        raise ValueError(f"Expected shots >= 1. Received: shots={shots}")
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(len(labels)) - starts
    counts = np.bincount(labels)
    present = counts[counts > 0]
    if present.min() < shots:
        raise ValueError(
            f"Expected at least {shots} examples of every class. Received: the smallest class "
            f"has {present.min()}."
        )
    return np.sort(order[rank < shots])


def few_shot_rows(
    models: dict[str, tuple[np.ndarray, np.ndarray, int | None]],
    y_support: np.ndarray,
    y_query: np.ndarray,
    dims: Sequence[int],
    shots: Sequence[int],
    chunk_size: int = 1024,
) -> list[dict[str, Any]]:
    """One row per (method, dim, shots).

    Args:
        models: `{method: (z_support, z_query, ff_width or None)}`: embeddings of the novel
            classes' support pool and queries. MRL-style models are scored at every dim of
            `dims` up to their width, FF models at their own width.
        y_support, y_query: novel-class labels.
        dims: the dims to score. shots: database images per class.

    Returns:
        Rows with `method`, `dim`, `shots`, `1nn_top1`.
    """
    rows: list[dict[str, Any]] = []
    for k in shots:
        keep = first_shots(y_support, k)
        for method, (z_support, z_query, ff_width) in models.items():
            widths = [ff_width] if ff_width else [m for m in dims if m <= z_support.shape[1]]
            for m in widths:
                idx, _ = M.knn(z_query[:, :m], z_support[keep, :m], 1, chunk_size=chunk_size)
                rows.append(
                    {
                        "method": method,
                        "dim": int(m),
                        "shots": int(k),
                        "1nn_top1": M.one_nn_accuracy(y_support[keep][idx], y_query),
                    }
                )
    return rows
