"""`MatryoshkaPrefixLoss`: any Keras loss applied to every prefix of an embedding, summed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from mrl_keras.nesting import (
    validate_nesting_dims,
    validate_nesting_weights,
    weighted_prefix_sum,
)
from mrl_keras.prefixes import l2_normalize
from mrl_keras.types import NestingDims, NestingWeights, Tensor


def _resolve_base_loss(base_loss: Any) -> Any:
    if isinstance(base_loss, str | dict):
        try:
            resolved = keras.losses.get(base_loss)
        except (ValueError, TypeError) as e:
            raise ValueError(
                "Expected `base_loss` to name a Keras loss such as 'cosine_similarity'. "
                f"Received: base_loss={base_loss!r}"
            ) from e
        return resolved
    if isinstance(base_loss, keras.losses.Loss) or callable(base_loss):
        return base_loss
    raise TypeError(
        "Expected `base_loss` to be a keras.losses.Loss, a loss function "
        "`fn(y_true, y_pred) -> per-example values` or the name of a Keras loss. "
        f"Received: base_loss={base_loss!r} of type {type(base_loss).__name__}"
    )


@keras.saving.register_keras_serializable(package="mrl_keras")
class MatryoshkaPrefixLoss(keras.losses.Loss):
    """Applies any Keras loss to every prefix `z[..., :m]` and sums with weights `c_m`.

    Matryoshka Representation Learning for an arbitrary objective (Kusupati et al.,
    "Matryoshka Representation Learning", NeurIPS 2022, section 3: "MRL can be adapted to any
    representation learning setup"), the counterpart of sentence-transformers'
    `MatryoshkaLoss(model, base_loss, matryoshka_dims, matryoshka_weights)`. For every `m` in
    `nesting_dims`, every tensor in `y_pred` is cut to its first `m` features (last axis),
    optionally L2-normalised on its own (section 3: normalisation is handled independently for
    each nesting dim), and scored with `base_loss`; the per-example value is
    `sum_m c_m * base_loss(y_true, y_pred[..., :m])`.

    `y_pred` may be one embedding `(batch, d)`, towers stacked on an inner axis such as the
    `(batch, 2, d)` pairs of `mrl_keras.MatryoshkaContrastiveLoss` or `(batch, 3, d)`
    (anchor, positive, negative) triplets, or a list/tuple/dict of such tensors: the prefix is
    always taken on the last axis of every tensor. With `truncate_targets=True`, `y_true` is
    an embedding too (e.g. a teacher's, for distillation with `"mean_squared_error"` or
    `"cosine_similarity"`) and gets the same prefix and normalisation.

    This is the embedding counterpart of `mrl_keras.MatryoshkaLoss`, which stays the
    classification case (cross-entropy over the logits of `mrl_keras.MatryoshkaHead`).

    `base_loss` is called unreduced (a `keras.losses.Loss` through its `call`, a function
    directly) and must return one value per example; this loss's `reduction` and
    `sample_weight` apply to the weighted sum, and the base loss's own `reduction` is unused.

    Args:
        base_loss: a `keras.losses.Loss` instance, a loss function
            `fn(y_true, y_pred) -> (batch,)` values, or the name of a Keras loss (resolved
            with `keras.losses.get`). To save and reload a model compiled with this loss, a
            function of your own must be registered with
            `keras.saving.register_keras_serializable`.
        nesting_dims: sequence of int. Strictly increasing prefix sizes, at most `d`.
        nesting_weights: sequence of float or `None`. Relative importance `c_m >= 0` of each
            prefix, one per nesting dim; `None` weighs every prefix 1. Defaults to `None`.
        normalize: bool. Whether to L2-normalise each prefix before `base_loss` sees it; use
            it when the base loss expects unit vectors (dot-product InfoNCE, triplet margins
            on unit vectors). Defaults to `False`.
        truncate_targets: bool. Whether `y_true` is an embedding to cut (and normalise) like
            `y_pred`. Defaults to `False` (labels are passed through unchanged).
        reduction: str. As for `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: str. Defaults to `"matryoshka_prefix_loss"`.
        dtype: the dtype of the computation. Defaults to `None` (`keras.config.floatx()`).

    Call arguments:
        y_true: labels for `base_loss`, or `None` for losses that ignore them (in-batch
            contrastive and triplet losses); an embedding of width at least `max(nesting_dims)`
            when `truncate_targets=True`.
        y_pred: tensor of shape `(..., d)`, or a list/tuple/dict of such tensors.
        sample_weight: optional per-example weights of shape `(batch,)`.

    Example:

    ```python
    dims = (8, 16, 32, 64)
    loss = mrl_keras.MatryoshkaPrefixLoss("cosine_similarity", dims, truncate_targets=True)
    student = keras.random.normal((4, 64))
    teacher = keras.random.normal((4, 64))
    value = loss(teacher, student)   # scalar: sum over m of -cos(teacher[:, :m], student[:, :m])
    ```
    """

    def __init__(
        self,
        base_loss: keras.losses.Loss | Callable[..., Tensor] | str,
        nesting_dims: NestingDims,
        nesting_weights: NestingWeights | None = None,
        normalize: bool = False,
        truncate_targets: bool = False,
        reduction: str | None = "sum_over_batch_size",
        name: str = "matryoshka_prefix_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.base_loss = _resolve_base_loss(base_loss)
        self.nesting_dims = validate_nesting_dims(nesting_dims)
        self.nesting_weights = validate_nesting_weights(
            nesting_weights, num_dims=len(self.nesting_dims)
        )
        for flag, value in (("normalize", normalize), ("truncate_targets", truncate_targets)):
            if not isinstance(value, bool):
                raise TypeError(f"Expected `{flag}` to be a bool. Received: {flag}={value!r}")
        self.normalize = normalize
        self.truncate_targets = truncate_targets

    def __call__(
        self, y_true: Tensor | None, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> Tensor:
        if y_true is None:
            # The base class converts y_true to a tensor; give it a placeholder of batch size.
            first = keras.tree.flatten(y_pred)[0]
            y_true = ops.zeros(ops.shape(first)[:1], dtype=self.dtype)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def _check_width(self, x: Tensor, what: str) -> None:
        shape = tuple(x.shape)
        if not shape:
            raise ValueError(
                f"MatryoshkaPrefixLoss expects {what} of shape (..., d). Received: a scalar"
            )
        width = shape[-1]
        if width is not None and width < self.nesting_dims[-1]:
            raise ValueError(
                f"Expected {what} of width at least max(nesting_dims)={self.nesting_dims[-1]} "
                f"on the last axis. Received: {what}.shape={shape} with "
                f"nesting_dims={self.nesting_dims}"
            )

    def _prefix(self, x: Tensor, m: int) -> Tensor:
        x = x[..., :m]
        return l2_normalize(x) if self.normalize else x

    def _base(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if isinstance(self.base_loss, keras.losses.Loss):
            return self.base_loss.call(y_true, y_pred)
        return self.base_loss(y_true, y_pred)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        keras.tree.map_structure(lambda x: self._check_width(x, "y_pred"), y_pred)
        if self.truncate_targets:
            keras.tree.map_structure(lambda x: self._check_width(x, "y_true"), y_true)

        def loss_at(m: int) -> Tensor:
            prefix_pred = keras.tree.map_structure(lambda x: self._prefix(x, m), y_pred)
            prefix_true = y_true
            if self.truncate_targets:
                prefix_true = keras.tree.map_structure(lambda x: self._prefix(x, m), y_true)
            value = ops.convert_to_tensor(self._base(prefix_true, prefix_pred))
            return ops.cast(value, self.dtype)

        return weighted_prefix_sum(self.nesting_dims, self.nesting_weights, loss_at)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "dtype": self.dtype,
                "base_loss": keras.saving.serialize_keras_object(self.base_loss),
                "nesting_dims": list(self.nesting_dims),
                "nesting_weights": (
                    None if self.nesting_weights is None else list(self.nesting_weights)
                ),
                "normalize": self.normalize,
                "truncate_targets": self.truncate_targets,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MatryoshkaPrefixLoss:
        config = dict(config)
        base_loss = config.pop("base_loss")
        if isinstance(base_loss, dict):
            base_loss = keras.saving.deserialize_keras_object(base_loss)
        return cls(base_loss=base_loss, **config)
