"""The anisotropy guard: how far an embedding is from zero-centred, measured on one batch.

Nested prefixes train poorly from an anisotropic, non-negative embedding (for example a pooled
post-ReLU feature map): every example's embedding points into the same orthant, the mean pairwise
cosine sits near 0.8 at initialisation, and the channels that every nested head reads are pushed
out of the ReLU's range early in training (docs/training.md, "Why the embedding is not
post-ReLU"). `train` measures this at the start of every run and warns above
`ANISOTROPY_THRESHOLD`; `AnisotropyCheck` does the same for any user model in `model.fit`.
"""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np

ANISOTROPY_THRESHOLD = 0.5
DOCS = "docs/training.md#why-the-embedding-is-not-post-relu"


class AnisotropyWarning(UserWarning):
    """The embedding is anisotropic: nested prefixes are likely to train poorly."""


def mean_pairwise_cosine(embeddings: Any) -> float:
    """Mean cosine similarity over all pairs `i != j` of rows (0 for an isotropic embedding).

    Args:
        embeddings: (n, d) array with n >= 2.

    Returns:
        The mean off-diagonal cosine similarity; zero rows count as orthogonal to everything.

    Raises:
        ValueError: fewer than two rows or not a 2-D array.
    """
    z = np.asarray(embeddings, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(
            f"Expected a 2-D array of at least two embeddings. Received: shape={z.shape}"
        )
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    u = np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)
    s = u.sum(axis=0)
    n = z.shape[0]
    # sum_{i,j} u_i.u_j = |sum u|^2; remove the diagonal (|u_i|^2 = 1 for non-zero rows).
    off_diagonal = float(s @ s) - float(np.sum(u * u))
    return off_diagonal / (n * (n - 1))


def embedding_model(model: keras.Model) -> keras.Model:
    """The sub-model from `model`'s inputs to its `embedding` layer (else its output)."""
    try:
        z = model.get_layer("embedding").output
    except ValueError:
        return model
    return keras.Model(model.inputs, z)


def embedding_anisotropy(model: keras.Model, x: Any, training: bool = True) -> float:
    """Mean pairwise cosine of `model`'s embedding (its layer named `embedding`, else its
    output) on the batch `x`.

    Args:
        model: a Keras model.
        x: one batch of its inputs.
        training: bool. Run in training mode (BatchNorm on batch statistics), which is what the
            nested heads see during `fit`; the model's non-trainable state (BatchNorm moving
            statistics) is restored afterwards. Defaults to `True`.

    Returns:
        The mean pairwise cosine of the embeddings of `x`.
    """
    state = (
        [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables] if training else []
    )
    try:
        z = embedding_model(model)(x, training=training)
        z = keras.ops.convert_to_numpy(z)
    finally:
        for variable, value in zip(model.non_trainable_variables, state, strict=False):
            variable.assign(value)
    return mean_pairwise_cosine(np.reshape(z, (z.shape[0], -1)).astype(np.float32))


def check_anisotropy(
    model: keras.Model, x: Any, threshold: float = ANISOTROPY_THRESHOLD, label: str = "model"
) -> float:
    """Measures `embedding_anisotropy` and warns (`AnisotropyWarning`) above `threshold`.

    Returns:
        The measured mean pairwise cosine.
    """
    value = embedding_anisotropy(model, x)
    if value > threshold:
        warnings.warn(
            f"{label}: the embedding's mean pairwise cosine on one batch is {value:.2f} "
            f"(> {threshold:.2f}). Nested Matryoshka prefixes train poorly from anisotropic, "
            "non-negative embeddings (e.g. pooled post-ReLU features): end the backbone with a "
            "zero-centred linear projection (BatchNorm or Dense, no ReLU) and keep the learning-"
            f"rate warmup. See {DOCS}.",
            AnisotropyWarning,
            stacklevel=2,
        )
    return value


class AnisotropyCheck(keras.callbacks.Callback):
    """Runs `check_anisotropy` on a fixed batch when `fit` starts, for any Keras model.

    Args:
        x: one batch of model inputs (a few hundred examples is plenty).
        threshold: float. Warn above this mean pairwise cosine. Defaults to 0.5.

    Example:

    ```python
    from mrl_keras.training import AnisotropyCheck

    model.fit(x_train, y_train, callbacks=[AnisotropyCheck(x_train[:256])])
    ```
    """

    def __init__(self, x: Any, threshold: float = ANISOTROPY_THRESHOLD):
        super().__init__()
        self.x = x
        self.threshold = threshold
        self.value: float | None = None

    def on_train_begin(self, logs=None):
        self.value = check_anisotropy(self.model, self.x, self.threshold, self.model.name)
