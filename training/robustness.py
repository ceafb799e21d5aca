"""Robustness of every prefix to corrupted queries: head top-1 and 1-NN top-1 per dimension on
the test images under each corruption of `mrl_keras.training.corruptions`, against the clean
train database (the paper's section 5 claim: MRL is "as robust as the original
representations")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mrl_keras.training import metrics as M
from mrl_keras.training.corruptions import corrupt


def robustness_rows(
    models: dict[str, Any],
    x_test: np.ndarray,
    y_test: np.ndarray,
    y_train: np.ndarray,
    dims: Sequence[int],
    corruptions: Sequence[str],
    embed: Callable[[Any, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None]],
    seed: int = 0,
    chunk_size: int = 1024,
) -> list[dict[str, Any]]:
    """One row per (method, dim, corruption).

    Args:
        models: `{method: (embedder, z_train, ff_width or None)}`: an MRL-style model is scored
            at every dim of `dims` up to its width (prefixes of one embedding); an FF model
            (`ff_width` set) only at its own width.
        x_test, y_test: clean test images and labels. y_train: database labels.
        dims: the dims to score. corruptions: names for `corrupt` ("clean" allowed).
        embed: `(embedder, x, y) -> (z, head argmax per prefix or None)`.
        seed: seeds the corruptions. chunk_size: queries per 1-NN chunk.

    Returns:
        Rows with `method`, `dim`, `corruption`, `1nn_top1` and, where a head exists,
        `head_top1`.
    """
    rows: list[dict[str, Any]] = []
    for name in corruptions:
        x = corrupt(x_test, name, seed)
        for method, (embedder, z_train, ff_width) in models.items():
            z, pred = embed(embedder, x, y_test)
            widths = [ff_width] if ff_width else [m for m in dims if m <= z.shape[1]]
            for m in widths:
                idx, _ = M.knn(z[:, :m], z_train[:, :m], 1, chunk_size=chunk_size)
                row: dict[str, Any] = {
                    "method": method,
                    "dim": int(m),
                    "corruption": name,
                    "1nn_top1": M.one_nn_accuracy(y_train[idx], y_test),
                }
                head_dims = embedder.head_dims
                if pred is not None and (ff_width or m in head_dims):
                    k = 0 if ff_width else head_dims.index(m)
                    row["head_top1"] = float(np.mean(pred[:, k] == y_test))
                rows.append(row)
    return rows
