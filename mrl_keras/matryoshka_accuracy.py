"""`MatryoshkaAccuracy` and `matryoshka_metrics`: top-1 accuracy of each prefix's head."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mrl_keras.checks import check_logits, is_int, sparse_labels
from mrl_keras.nesting import validate_nesting_dims
from mrl_keras.types import NestingDims, Tensor


@keras.saving.register_keras_serializable(package="mrl_keras")
class MatryoshkaAccuracy(keras.metrics.Metric):
    """Top-1 accuracy of the logits of one prefix of a `MatryoshkaHead` output.

    Reads `y_pred[..., i, :]` with `i = nesting_dims.index(dim)` from logits of shape
    `(batch, len(nesting_dims), L)`, and compares its argmax with the labels. Its default name
    is `accuracy@{dim}`, the key under which it appears in `fit`/`evaluate` logs. Use
    `mrl_keras.matryoshka_metrics(nesting_dims)` to get one per prefix.

    Args:
        nesting_dims: sequence of int. The nesting dims of the head whose output is scored.
        dim: int. The prefix to score; one of `nesting_dims`.
        name: str or `None`. Defaults to `f"accuracy@{dim}"`.
        dtype: the dtype of the metric state. Defaults to `None` (`"float32"`).

    Call arguments (`update_state`):
        y_true: sparse integer labels of shape `(batch,)` or `(batch, 1)`, or one-hot
            labels of shape `(batch, L)`.
        y_pred: logits of shape `(batch, len(nesting_dims), L)`.
        sample_weight: optional per-example weights of shape `(batch,)`.

    Example:

    ```python
    metric = mrl_keras.MatryoshkaAccuracy(nesting_dims=(8, 16), dim=8)
    logits = keras.ops.array([[[2.0, 0.0], [0.0, 2.0]]])   # prefix 8 says 0, prefix 16 says 1
    metric.update_state(keras.ops.array([0]), logits)
    metric.result()   # 1.0
    ```
    """

    def __init__(
        self,
        nesting_dims: NestingDims,
        dim: int,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        nesting_dims = validate_nesting_dims(nesting_dims)
        if not is_int(dim) or int(dim) not in nesting_dims:
            raise ValueError(
                f"Expected `dim` to be one of nesting_dims={nesting_dims}. Received: dim={dim!r}"
            )
        dim = int(dim)
        super().__init__(name=name or f"accuracy@{dim}", dtype=dtype)
        self.nesting_dims = nesting_dims
        self.dim = dim
        self._index = nesting_dims.index(dim)
        self.total = self.add_weight(name="total", shape=(), initializer="zeros")
        self.count = self.add_weight(name="count", shape=(), initializer="zeros")

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        y_pred = ops.convert_to_tensor(y_pred)
        check_logits(y_pred, len(self.nesting_dims), "MatryoshkaAccuracy")
        labels = sparse_labels(y_true, y_pred, "MatryoshkaAccuracy")
        predicted = ops.cast(ops.argmax(y_pred[..., self._index, :], axis=-1), "int32")
        matches = ops.cast(ops.equal(predicted, labels), self.dtype)
        if sample_weight is None:
            weights = ops.ones_like(matches)
        else:
            weights = ops.cast(sample_weight, self.dtype)
            if len(weights.shape) == len(matches.shape) + 1:
                weights = ops.squeeze(weights, axis=-1)
            weights = ops.broadcast_to(weights, ops.shape(matches))
        self.total.assign_add(ops.sum(matches * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self) -> Tensor:
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self) -> None:
        self.total.assign(ops.zeros(self.total.shape, dtype=self.total.dtype))
        self.count.assign(ops.zeros(self.count.shape, dtype=self.count.dtype))

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "nesting_dims": list(self.nesting_dims),
            "dim": self.dim,
        }


def matryoshka_metrics(nesting_dims: NestingDims) -> list[MatryoshkaAccuracy]:
    """Returns one `MatryoshkaAccuracy` per nesting dim, named `accuracy@{m}`.

    Pass the list as `metrics=` to `model.compile` for a model whose output is a
    `MatryoshkaHead`'s logits; `fit` and `evaluate` then log `accuracy@8`, `accuracy@16`, ...
    (and `val_accuracy@8`, ... with validation data).

    Args:
        nesting_dims: sequence of int. The nesting dims of the head.

    Returns:
        A list of `MatryoshkaAccuracy`, in the order of `nesting_dims`.

    Raises:
        TypeError, ValueError: if `nesting_dims` is not a valid nesting set.

    Example:

    ```python
    dims = mrl_keras.nesting_dims(64)
    model.compile("adam", loss=mrl_keras.MatryoshkaLoss(),
                  metrics=mrl_keras.matryoshka_metrics(dims))
    history = model.fit(x, y)
    history.history["accuracy@8"]
    ```
    """
    dims = validate_nesting_dims(nesting_dims)
    return [MatryoshkaAccuracy(dims, m) for m in dims]
