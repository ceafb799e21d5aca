"""The serving functions of an exported Matryoshka model, written in TensorFlow ops only.

Each function takes a batch of model inputs and returns a dict of named outputs (the signature's
output keys). They are traced by `keras.export.ExportArchive` with autograph off, so control flow
on tensor values is explicit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

Fn = Callable[[tf.Tensor], dict[str, tf.Tensor]]


def embed_fn(features: Any, m: int, normalize: bool) -> Fn:
    """`embed_{m}`: the prefix `z[:, :m]`, L2-normalised on its own unless `normalize=False`."""

    def embed(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        z = tf.cast(features(inputs, training=False)["embedding"], tf.float32)
        prefix = z[:, :m]
        if normalize:
            prefix = tf.math.l2_normalize(prefix, axis=-1)
        return {"embedding": prefix}

    return embed


def _prefix_logits(head: Any, h: tf.Tensor, m: int) -> tf.Tensor:
    return tf.cast(head.prefix_logits(h, m), tf.float32)


def classify_fn(features: Any, head: Any, m: int) -> Fn:
    """`classify_{m}`: logits, softmax probabilities, argmax classes and max-probability scores
    of the head on the prefix `m` alone."""

    def classify(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        h = features(inputs, training=False)["head_input"]
        logits = _prefix_logits(head, h, m)
        probabilities = tf.nn.softmax(logits, axis=-1)
        return {
            "logits": logits,
            "probabilities": probabilities,
            "classes": tf.argmax(logits, axis=-1, output_type=tf.int64),
            "scores": tf.reduce_max(probabilities, axis=-1),
        }

    return classify


def cascade_fn(features: Any, head: Any, dims: Sequence[int], thresholds: Sequence[float]) -> Fn:
    """`classify_cascade`: early-exit adaptive classification (section 4.2.1).

    Every example starts at the smallest prefix. Those whose max softmax probability reaches
    that prefix's threshold stop there; only the rows still unresolved are gathered and passed
    to the next prefix's head, so a batch where most examples are easy computes the larger heads
    for the few hard ones only. The largest prefix answers every example that reaches it. The
    per-stage answers are stitched back into input order.

    With an MRL-E head (`W(m) = W[:m]`) a stage does not recompute the prefix it has already
    seen: it adds `z[:, m_prev:m] @ W[m_prev:m]` to the unresolved rows' running product, so an
    example that stops at `m` costs one `m`-wide classifier in all (as in `MatryoshkaHead.call`).
    """
    dims = tuple(int(m) for m in dims)
    thresholds = tuple(float(t) for t in thresholds)
    efficient = bool(getattr(head, "efficient", False))

    def stage_logits(h: tf.Tensor, partial: tf.Tensor | None, start: int, m: int) -> tuple:
        if not efficient:
            return _prefix_logits(head, h, m), None
        h = tf.cast(h[:, start:m], head.compute_dtype)
        block = tf.matmul(h, tf.cast(head.kernel[start:m], head.compute_dtype))
        partial = block if partial is None else partial + block
        logits = partial
        if head.bias is not None:
            logits = logits + tf.cast(head.bias, head.compute_dtype)
        return tf.cast(logits, tf.float32), partial

    def cascade(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        h = features(inputs, training=False)["head_input"]
        rows = tf.range(tf.shape(h)[0], dtype=tf.int32)
        stage_rows, stage_classes, stage_scores, stage_dims = [], [], [], []
        partial, start = None, 0
        for k, m in enumerate(dims):
            logits, partial = stage_logits(h, partial, start, m)
            start = m
            probabilities = tf.nn.softmax(logits, axis=-1)
            scores = tf.reduce_max(probabilities, axis=-1)
            classes = tf.argmax(logits, axis=-1, output_type=tf.int64)
            if k == len(dims) - 1:
                done = tf.ones_like(scores, dtype=tf.bool)
            else:
                done = scores >= tf.constant(thresholds[k], tf.float32)
            done_rows = tf.boolean_mask(rows, done)
            stage_rows.append(done_rows)
            stage_classes.append(tf.boolean_mask(classes, done))
            stage_scores.append(tf.boolean_mask(scores, done))
            stage_dims.append(tf.fill(tf.shape(done_rows), tf.constant(m, tf.int32)))
            if k < len(dims) - 1:
                pending = tf.logical_not(done)
                rows = tf.boolean_mask(rows, pending)
                h = tf.boolean_mask(h, pending)
                if partial is not None:
                    partial = tf.boolean_mask(partial, pending)
        return {
            "classes": tf.dynamic_stitch(stage_rows, stage_classes),
            "scores": tf.dynamic_stitch(stage_rows, stage_scores),
            "dims_used": tf.dynamic_stitch(stage_rows, stage_dims),
        }

    return cascade


def decode_images_fn(
    fn: Fn, height: int, width: int, channels: int, dtype: tf.DType, scale: float, squeeze: bool
) -> Fn:
    """Wraps `fn` so it takes encoded JPEG/PNG/GIF/BMP strings (input `image_bytes`).

    Each string is decoded with `channels` channels, resized to `(height, width)` with bilinear
    interpolation (a no-op at the native size), multiplied by `scale`, and cast to the model's
    input dtype; `squeeze` drops the channel axis for models whose input is `(batch, H, W)`.
    """

    def decode_one(encoded: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (height, width))
        image = tf.ensure_shape(image, (height, width, channels))
        return image

    def from_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(
            decode_one,
            image_bytes,
            fn_output_signature=tf.TensorSpec((height, width, channels), tf.float32),
        )
        images = images * tf.constant(scale, tf.float32)
        if squeeze:
            images = images[..., 0]
        return fn(tf.cast(images, dtype))

    return from_bytes
