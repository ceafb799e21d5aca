"""Checks shared by the modules of the package (public within it, not exported by
`mrl_keras`): `is_int`, and the shape checks of the Matryoshka losses and metrics.

They run on static shapes while a function is traced, so a bad shape raises a ValueError naming
the received shape instead of an error from deep inside the backend.
"""

from __future__ import annotations

import numbers
from typing import Any

from mrl_keras.types import Tensor


def is_int(value: Any) -> bool:
    """Whether `value` is an integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _shape(x: Tensor) -> tuple[Any, ...]:
    return tuple(x.shape)


def check_logits(y_pred: Tensor, num_dims: int | None, owner: str) -> None:
    """Checks that `y_pred` is `(batch, num_dims, num_classes)` logits."""
    shape = _shape(y_pred)
    if len(shape) < 3:
        raise ValueError(
            f"{owner} expects y_pred of shape (batch, len(nesting_dims), num_classes), "
            f"the output of MatryoshkaHead. Received: y_pred.shape={shape}"
        )
    if num_dims is not None and shape[-2] is not None and shape[-2] != num_dims:
        raise ValueError(
            f"{owner} expects y_pred with {num_dims} prefixes on axis -2 (one per nesting dim). "
            f"Received: y_pred.shape={shape}. Check that the nesting dims of the loss/metric "
            "match those of the MatryoshkaHead."
        )


def sparse_labels(y_true: Tensor, y_pred: Tensor, owner: str) -> Tensor:
    """Returns int32 class ids of shape `y_pred.shape[:-2]` from sparse or one-hot labels.

    Sparse labels have shape `(batch,)` or `(batch, 1)`; one-hot (or soft) labels have shape
    `(batch, num_classes)`, and are reduced to their argmax.
    """
    from keras import ops  # imported here: `is_int` users need no Keras

    labels, one_hot = _split_labels(y_true, y_pred, owner)
    if one_hot:
        return ops.cast(ops.argmax(labels, axis=-1), "int32")
    return labels


def target_distribution(y_true: Tensor, y_pred: Tensor, owner: str) -> Tensor:
    """Returns float targets of shape `y_pred.shape[:-2] + (num_classes,)`."""
    from keras import ops

    labels, one_hot = _split_labels(y_true, y_pred, owner)
    if one_hot:
        return ops.cast(labels, y_pred.dtype)
    return ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)


def _split_labels(y_true: Tensor, y_pred: Tensor, owner: str) -> tuple[Tensor, bool]:
    from keras import ops

    y_true = ops.convert_to_tensor(y_true)
    label_shape, pred_shape = _shape(y_true), _shape(y_pred)
    batch_rank = len(pred_shape) - 2
    num_classes = pred_shape[-1]
    if num_classes is None:
        raise ValueError(
            f"{owner} expects y_pred with a defined number of classes on the last axis. "
            f"Received: y_pred.shape={pred_shape}"
        )
    expected = (
        f"sparse labels of shape {pred_shape[:-2]} or {(*pred_shape[:-2], 1)}, "
        f"or one-hot labels of shape {(*pred_shape[:-2], num_classes)}"
    )
    if len(label_shape) == batch_rank:
        return ops.cast(y_true, "int32"), False
    if len(label_shape) == batch_rank + 1:
        if label_shape[-1] == 1 and num_classes != 1:
            return ops.cast(ops.squeeze(y_true, axis=-1), "int32"), False
        if label_shape[-1] in (num_classes, None):
            return y_true, True
    raise ValueError(
        f"{owner} expects {expected} for y_pred.shape={pred_shape}. "
        f"Received: y_true.shape={label_shape}"
    )
