"""`MatryoshkaContrastiveLoss`: symmetric InfoNCE on every prefix of two paired embeddings."""

from __future__ import annotations

import math
import numbers
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


@keras.saving.register_keras_serializable(package="mrl_keras")
class MatryoshkaContrastiveLoss(keras.losses.Loss):
    """Weighted sum over prefixes of a symmetric in-batch InfoNCE loss for paired towers.

    MRL for contrastive learning (Kusupati et al., "Matryoshka Representation Learning",
    NeurIPS 2022, sections 3 and 4.1, appendix C): the loss is applied to the prefixes of both
    embeddings being contrasted, and the normalisation is handled independently for each
    nesting dim. For every `m` in `nesting_dims`, with `a_m = a[:, :m] / ||a[:, :m]||` and
    `b_m = b[:, :m] / ||b[:, :m]||`, the similarity matrix `S = a_m @ b_m^T / temperature` is
    scored with the in-batch softmax in both directions: row `i` of `S` must pick `b_i` and
    column `i` must pick `a_i`. The per-example value is
    `sum_m c_m * (CE(S[i, :], i) + CE(S[:, i], i)) / 2`.

    Layout of the two towers: `y_pred` has shape `(batch, 2, d)`, `y_pred[:, 0]` the
    embeddings `a` of one tower (e.g. images, or view 1) and `y_pred[:, 1]` the paired
    embeddings `b` (e.g. texts, or view 2); build it with `keras.ops.stack([a, b], axis=1)`.
    A pair `(a, b)` of `(batch, d)` tensors is accepted too when calling the loss directly.
    `y_true` is ignored (the positives are the pairs on the diagonal): pass `None` or anything.

    In-batch negatives: the negatives of an example are the other examples of the batch the
    loss sees. Under `tf.distribute.MirroredStrategy` (and other data-parallel strategies)
    each replica computes this loss on its own slice of the global batch, so the negatives are
    per replica: `N` replicas with a global batch `B` give `B/N - 1` negatives per example,
    not `B - 1`, and the loss differs from a single-device run on the same global batch. For
    negatives over the global batch (as in ALIGN), use the TensorFlow-side subclass
    `mrl_keras.training.CrossReplicaContrastiveLoss`, which all-gathers both towers across
    replicas (this class stays in `keras.ops`, for every backend).

    Args:
        nesting_dims: sequence of int. Strictly increasing prefix sizes, at most `d`.
        temperature: float > 0. Divides the cosine similarities. Defaults to `0.07`.
        nesting_weights: sequence of float or `None`. Relative importance `c_m >= 0` of each
            prefix, one per nesting dim; `None` weighs every prefix 1. Defaults to `None`.
        reduction: str. As for `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: str. Defaults to `"matryoshka_contrastive_loss"`.
        dtype: the dtype of the computation. Defaults to `None` (`keras.config.floatx()`).

    Call arguments:
        y_true: ignored.
        y_pred: tensor of shape `(batch, 2, d)`: both towers' embeddings, stacked on axis 1.
        sample_weight: optional per-example weights of shape `(batch,)`.

    Example:

    ```python
    dims = mrl_keras.nesting_dims(64)
    image_inputs, text_inputs = keras.Input((32,)), keras.Input((16,))
    a = keras.layers.Dense(64)(image_inputs)
    b = keras.layers.Dense(64)(text_inputs)
    model = keras.Model([image_inputs, text_inputs], keras.ops.stack([a, b], axis=1))
    model.compile("adam", loss=mrl_keras.MatryoshkaContrastiveLoss(dims))
    model.fit([images, texts], None, batch_size=256)
    ```
    """

    def __init__(
        self,
        nesting_dims: NestingDims,
        temperature: float = 0.07,
        nesting_weights: NestingWeights | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "matryoshka_contrastive_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.nesting_dims = validate_nesting_dims(nesting_dims)
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
            raise TypeError(
                f"Expected `temperature` to be a float. Received: temperature={temperature!r}"
            )
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(
                f"Expected a positive finite `temperature`. Received: temperature={temperature}"
            )
        self.temperature = float(temperature)
        self.nesting_weights = validate_nesting_weights(
            nesting_weights, num_dims=len(self.nesting_dims)
        )

    def __call__(
        self, y_true: Tensor | None, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> Tensor:
        if y_true is None:
            # The base class converts y_true to a tensor; give it a placeholder of batch size.
            first = y_pred[0] if isinstance(y_pred, list | tuple) else y_pred
            y_true = ops.zeros(ops.shape(first)[:1], dtype=self.dtype)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def _split_towers(self, y_pred: Any) -> tuple[Tensor, Tensor]:
        if isinstance(y_pred, list | tuple):
            if len(y_pred) != 2:
                raise ValueError(
                    "MatryoshkaContrastiveLoss expects two towers. "
                    f"Received: y_pred with {len(y_pred)} tensors"
                )
            a, b = y_pred
            if tuple(a.shape) != tuple(b.shape) or len(a.shape) != 2:
                raise ValueError(
                    "MatryoshkaContrastiveLoss expects two embeddings of the same shape "
                    f"(batch, d). Received: shapes {tuple(a.shape)} and {tuple(b.shape)}"
                )
        else:
            shape = tuple(y_pred.shape)
            if len(shape) != 3 or shape[1] != 2:
                raise ValueError(
                    "MatryoshkaContrastiveLoss expects y_pred of shape (batch, 2, d), the two "
                    "towers stacked with keras.ops.stack([a, b], axis=1). "
                    f"Received: y_pred.shape={shape}"
                )
            a, b = y_pred[:, 0, :], y_pred[:, 1, :]
        width = a.shape[-1]
        if width is not None and width < self.nesting_dims[-1]:
            raise ValueError(
                f"Expected embeddings of width at least max(nesting_dims)={self.nesting_dims[-1]}. "
                f"Received: width {width} with nesting_dims={self.nesting_dims}"
            )
        return a, b

    def _gather(self, x: Tensor) -> Tensor | None:
        """Returns `x` gathered over every replica on axis 0, or `None` to use the local batch.

        The hook for data-parallel training: a subclass that returns the global batch (e.g.
        `mrl_keras.training.CrossReplicaContrastiveLoss`, with `tf.distribute`'s
        `all_gather`) makes every local example's negatives the whole global batch. The core
        stays in `keras.ops` and uses the local batch.
        """
        del x
        return None

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        del y_true  # The positives are the pairs on the diagonal.
        a, b = self._split_towers(y_pred)
        # The global batch of both towers, gathered once at full width: every prefix is a slice.
        all_a, all_b = self._gather(a), self._gather(b)

        def loss_at(m: int) -> Tensor:
            a_m = l2_normalize(a[:, :m])
            b_m = l2_normalize(b[:, :m])
            if all_a is None or all_b is None:
                similarities = ops.matmul(a_m, ops.transpose(b_m)) / self.temperature
                positives = ops.diagonal(similarities)
                a_to_b = ops.logsumexp(similarities, axis=1) - positives
                b_to_a = ops.logsumexp(similarities, axis=0) - positives
            else:
                # Local rows against the global columns, in each direction.
                positives = ops.sum(a_m * b_m, axis=-1) / self.temperature
                all_a_m = l2_normalize(all_a[:, :m])
                all_b_m = l2_normalize(all_b[:, :m])
                a_to_b_logits = ops.matmul(a_m, ops.transpose(all_b_m)) / self.temperature
                b_to_a_logits = ops.matmul(b_m, ops.transpose(all_a_m)) / self.temperature
                a_to_b = ops.logsumexp(a_to_b_logits, axis=1) - positives
                b_to_a = ops.logsumexp(b_to_a_logits, axis=1) - positives
            return 0.5 * (a_to_b + b_to_a)

        return weighted_prefix_sum(self.nesting_dims, self.nesting_weights, loss_at)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "dtype": self.dtype,
                "nesting_dims": list(self.nesting_dims),
                "temperature": self.temperature,
                "nesting_weights": (
                    None if self.nesting_weights is None else list(self.nesting_weights)
                ),
            }
        )
        return config
