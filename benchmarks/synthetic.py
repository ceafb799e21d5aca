"""Synthetic Matryoshka-like embeddings with class structure, generated in chunks.

The generator stands in for ResNet50 MRL embeddings of ImageNet-1K (1.3M x 2048, 1000 classes)
when no trained model of that size is at hand. Every vector is

    x = normalize(mu[y] + noise * eps * s),   mu[c] = g_c * s,   s_j = (1 + j / j0) ** -alpha

with `g_c, eps ~ N(0, I_d)` and `y` uniform over `classes`. The per-dimension scale `s` decays
with the coordinate index, so both the class signal and the within-class spread are concentrated
in the first coordinates: the prefix `x[:m]` is a coarse version of `x`, as in an MRL embedding
(with the defaults the 1-NN class precision grows from ~0.35 at m = 16 to ~0.85 at m = 2048).
Rows are produced in chunks of `chunk` rows, each chunk from its own seeded generator, so any
slice of the database can be regenerated on its own and the peak extra memory is one chunk.
"""

from __future__ import annotations

import numpy as np

from mrl_keras.retrieval_metrics import l2_normalize

DEFAULT_ALPHA = 1.2
DEFAULT_J0 = 8.0
DEFAULT_NOISE = 0.8
QUERY_STREAM = 1_000_003
CHUNK = 65536


def spectrum(d: int, alpha: float = DEFAULT_ALPHA, j0: float = DEFAULT_J0) -> np.ndarray:
    """Per-coordinate scale `s_j = (1 + j / j0) ** -alpha`, float32 of shape `(d,)`."""
    if d < 1:
        raise ValueError(f"Expected d >= 1. Received: d={d}")
    return ((1.0 + np.arange(d) / j0) ** -alpha).astype(np.float32)


def class_means(
    d: int, classes: int, seed: int = 0, alpha: float = DEFAULT_ALPHA, j0: float = DEFAULT_J0
) -> np.ndarray:
    """Class centres `mu`, float32 `(classes, d)`."""
    rng = np.random.default_rng([seed, 0])
    return rng.standard_normal((classes, d), dtype=np.float32) * spectrum(d, alpha, j0)


def generate(
    n: int,
    d: int,
    classes: int = 1000,
    *,
    seed: int = 0,
    stream: int = 1,
    out: np.ndarray | None = None,
    chunk: int = CHUNK,
    alpha: float = DEFAULT_ALPHA,
    j0: float = DEFAULT_J0,
    noise: float = DEFAULT_NOISE,
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generates `n` unit-norm vectors and their labels.

    Args:
        n: int. Number of vectors.
        d: int. Dimension.
        classes: int. Number of classes (labels are uniform over them).
        seed: int. Seed of the class centres and of every chunk.
        stream: int. Separates independent sets drawn around the same centres (database: 1,
            queries: `QUERY_STREAM`).
        out: optional array (e.g. a `np.memmap`) of shape `(n, d)` to fill in place.
        chunk: int. Rows generated at a time.
        alpha, j0, noise: float. Spectrum and within-class spread (see the module docstring).
        progress: optional callable `progress(rows_done)`.

    Returns:
        `(x, labels)`: `x` float32 `(n, d)` (or `out`), `labels` int32 `(n,)`.
    """
    if n < 1 or classes < 1:
        raise ValueError(f"Expected n >= 1 and classes >= 1. Received: n={n}, classes={classes}")
    mu = class_means(d, classes, seed, alpha, j0)
    s = spectrum(d, alpha, j0)
    x = np.empty((n, d), np.float32) if out is None else out
    if x.shape != (n, d):
        raise ValueError(f"Expected out of shape {(n, d)}. Received: shape={x.shape}")
    labels = np.empty(n, np.int32)
    for i, start in enumerate(range(0, n, chunk)):
        m = min(chunk, n - start)
        rng = np.random.default_rng([seed, stream, i])
        y = rng.integers(0, classes, m)
        block = rng.standard_normal((m, d), dtype=np.float32)
        block *= noise * s
        block += mu[y]
        x[start : start + m] = l2_normalize(block)
        labels[start : start + m] = y
        if progress is not None:
            progress(start + m)
    return x, labels
