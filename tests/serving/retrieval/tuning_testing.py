"""A small clustered Matryoshka-like dataset and its index, shared by the tuner tests."""

from __future__ import annotations

import numpy as np

from mrl_keras.retrieval_metrics import l2_normalize


def clustered(n: int, d: int = 64, classes: int = 30, seed: int = 0, stream: int = 1):
    """Unit vectors around `classes` centres whose scale decays with the coordinate index."""
    scale = (1.0 + np.arange(d) / 4.0) ** -1.0
    centres = np.random.default_rng([seed, 0]).standard_normal((classes, d)) * scale
    rng = np.random.default_rng([seed, stream])
    y = rng.integers(0, classes, n)
    x = centres[y] + 0.7 * rng.standard_normal((n, d)) * scale
    return l2_normalize(x.astype(np.float32))


def numpy_topk(db: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows by cosine (rows of `db` are unit vectors)."""
    s = l2_normalize(queries) @ db.T
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def numpy_recall(found: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Per-query share of the exact top-k found (independent of the tuner's own function)."""
    return np.array(
        [
            len(set(f.tolist()) & set(e.tolist())) / exact.shape[1]
            for f, e in zip(found, exact, strict=True)
        ]
    )
