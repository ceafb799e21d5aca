"""`MatryoshkaLoss`: equation 1 of the paper, the weighted sum of per-prefix cross-entropies."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from mrl_keras.checks import check_logits, target_distribution
from mrl_keras.nesting import validate_nesting_weights
from mrl_keras.types import Tensor


@keras.saving.register_keras_serializable(package="mrl_keras")
class MatryoshkaLoss(keras.losses.Loss):
    """Weighted sum of the softmax cross-entropies of every prefix's logits.

    Equation 1 of Kusupati et al., "Matryoshka Representation Learning" (NeurIPS 2022):
    `loss(x, y) = sum_m c_m * CE(W(m) z[:m] + b(m), y)`, with `c_m = 1` by default. Use it on the
    output of `mrl_keras.MatryoshkaHead`, logits of shape `(batch, len(nesting_dims), L)`.

    `call` returns one value per example; the base class applies `sample_weight` and the
    `reduction` (the mean over the batch by default, as in equation 1).

    Args:
        nesting_weights: sequence of float or `None`. The relative importance `c_m >= 0` of
            each prefix, one per nesting dim, in the order of the head's nesting dims.
            `None` weighs every prefix 1. Defaults to `None`.
        from_logits: bool. Whether `y_pred` holds logits (`True`) or probabilities.
            Defaults to `True`.
        label_smoothing: float in `[0, 1)`. Mixes the targets with the uniform distribution:
            `y * (1 - label_smoothing) + label_smoothing / L`. Defaults to `0.0`.
        reduction: str. As for `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: str. Defaults to `"matryoshka_loss"`.
        dtype: the dtype of the computation. Defaults to `None` (`keras.config.floatx()`).

    Call arguments:
        y_true: sparse integer labels of shape `(batch,)` or `(batch, 1)`, or one-hot
            labels of shape `(batch, L)`.
        y_pred: logits (or probabilities) of shape `(batch, len(nesting_dims), L)`.
        sample_weight: optional per-example weights of shape `(batch,)`.

    Example:

    ```python
    dims = mrl_keras.nesting_dims(64)
    loss = mrl_keras.MatryoshkaLoss(nesting_weights=[1.0, 1.0, 1.0, 2.0])
    logits = mrl_keras.MatryoshkaHead(10, dims)(keras.random.normal((4, 64)))
    value = loss(keras.ops.array([0, 1, 2, 3]), logits)   # scalar
    ```
    """

    def __init__(
        self,
        nesting_weights: Sequence[float] | None = None,
        from_logits: bool = True,
        label_smoothing: float = 0.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "matryoshka_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(from_logits, bool):
            raise TypeError(
                f"Expected `from_logits` to be a bool. Received: from_logits={from_logits!r}"
            )
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
            raise TypeError(
                "Expected `label_smoothing` to be a float. "
                f"Received: label_smoothing={label_smoothing!r}"
            )
        if not (math.isfinite(label_smoothing) and 0.0 <= label_smoothing < 1.0):
            raise ValueError(
                f"Expected `label_smoothing` in [0, 1). Received: label_smoothing={label_smoothing}"
            )
        self.nesting_weights = validate_nesting_weights(nesting_weights)
        self.from_logits = from_logits
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        num_dims = None if self.nesting_weights is None else len(self.nesting_weights)
        check_logits(y_pred, num_dims, "MatryoshkaLoss")
        targets = target_distribution(y_true, y_pred, "MatryoshkaLoss")
        if self.label_smoothing:
            num_classes = y_pred.shape[-1]
            targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        if self.from_logits:
            log_probs = ops.log_softmax(y_pred, axis=-1)
        else:
            epsilon = keras.config.epsilon()
            probs = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
            log_probs = ops.log(ops.clip(probs, epsilon, 1.0 - epsilon))
        # (..., num_dims): the cross-entropy of every prefix.
        per_prefix = -ops.sum(ops.expand_dims(targets, axis=-2) * log_probs, axis=-1)
        if self.nesting_weights is None:
            return ops.sum(per_prefix, axis=-1)
        weights = ops.convert_to_tensor(self.nesting_weights, dtype=per_prefix.dtype)
        return ops.sum(per_prefix * weights, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "dtype": self.dtype,
                "nesting_weights": (
                    None if self.nesting_weights is None else list(self.nesting_weights)
                ),
                "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing,
            }
        )
        return config
