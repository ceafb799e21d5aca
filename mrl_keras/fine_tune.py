"""Matryoshka fine-tuning of an existing Keras embedding model, and truncated embedders.

`embedding_model` cuts a model at its embedding, `matryoshka_fine_tune` turns it into a model
compiled with a Matryoshka objective (a `MatryoshkaHead` with `MatryoshkaLoss`, the contrastive
loss on paired towers, or any loss on every prefix) with all but its last layers frozen, and
`truncated_embedder` serves the re-normalised prefix `z[:m]` of any embedding model.
"""

from __future__ import annotations

from typing import Any

import keras

from mrl_keras.checks import is_int
from mrl_keras.matryoshka_accuracy import matryoshka_metrics
from mrl_keras.matryoshka_contrastive_loss import MatryoshkaContrastiveLoss
from mrl_keras.matryoshka_head import MatryoshkaHead
from mrl_keras.matryoshka_loss import MatryoshkaLoss
from mrl_keras.matryoshka_prefix_loss import MatryoshkaPrefixLoss
from mrl_keras.nesting import nesting_dims as default_nesting_dims
from mrl_keras.nesting import validate_nesting_dims
from mrl_keras.prefix_embedding import PrefixEmbedding
from mrl_keras.types import NestingDims, NestingWeights


def _model_inputs(model: keras.Model) -> Any:
    try:
        if isinstance(model, keras.Sequential):
            return model.inputs[0]
        return model.input
    except (AttributeError, ValueError) as e:
        raise ValueError(
            "Expected a functional or Sequential Keras model with defined inputs (built from "
            "keras.Input). Received: a model without defined inputs "
            f"({type(model).__name__} {model.name!r}). Build it on keras.Input first, e.g. "
            "keras.Model(inputs, model(inputs)) with inputs = keras.Input(shape)."
        ) from e


def embedding_model(model: keras.Model, embedding_layer: str | keras.layers.Layer | None = None):
    """Returns the part of `model` from its inputs to its embedding, sharing its weights.

    Args:
        model: a functional or Sequential `keras.Model` (a keras-hub backbone included).
        embedding_layer: str, `keras.layers.Layer` or `None`. The layer (or its name) whose
            output is the embedding, of shape `(batch, d)`; `None` takes the model's single
            output. Defaults to `None`.

    Returns:
        A `keras.Model` with the inputs of `model` and the embedding as its output.

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ValueError: if the model has no defined inputs, no such layer, several outputs, or an
            embedding that is not of rank 2.

    Example:

    ```python
    encoder = mrl_keras.embedding_model(classifier, embedding_layer="embedding")
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected `model` to be a keras.Model. Received: model={model!r} "
            f"of type {type(model).__name__}"
        )
    inputs = _model_inputs(model)
    if embedding_layer is None:
        outputs = model.outputs
        if len(outputs) != 1:
            raise ValueError(
                "Expected a model with one output, the embedding, when `embedding_layer` is "
                f"None. Received: a model with {len(outputs)} outputs; pass embedding_layer."
            )
        embedding = outputs[0]
    else:
        layer: Any = embedding_layer
        if isinstance(embedding_layer, str):
            try:
                layer = model.get_layer(embedding_layer)
            except ValueError as e:
                names = [layer.name for layer in model.layers]
                raise ValueError(
                    f"Expected `embedding_layer` to name a layer of model {model.name!r}. "
                    f"Received: embedding_layer={embedding_layer!r}; its layers are {names}"
                ) from e
        elif not isinstance(embedding_layer, keras.layers.Layer):
            raise TypeError(
                "Expected `embedding_layer` to be a layer name, a keras.layers.Layer or None. "
                f"Received: embedding_layer={embedding_layer!r}"
            )
        try:
            embedding = layer.output
        except (AttributeError, ValueError) as e:
            raise ValueError(
                f"Expected `embedding_layer` to be called once in the model. Received: layer "
                f"{layer.name!r}, whose output is not unique ({e})"
            ) from e
    if len(embedding.shape) != 2:
        raise ValueError(
            "Expected an embedding of shape (batch, d); pool a sequence output first (e.g. "
            "the [CLS] token or keras.layers.GlobalAveragePooling1D). "
            f"Received: an embedding of shape {tuple(embedding.shape)}"
        )
    return keras.Model(inputs, embedding, name=f"{model.name}_embedding")


def truncated_embedder(
    model: keras.Model,
    dim: int,
    embedding_layer: str | keras.layers.Layer | None = None,
    normalize: bool = True,
) -> keras.Model:
    """Returns a model that maps the inputs of `model` to its re-normalised prefix `z[:dim]`.

    The counterpart of sentence-transformers' `truncate_dim` for any Keras embedding model:
    `truncated_embedder(model, 64)(x)` equals `mrl_keras.truncate(embed(x), 64)`, each prefix
    L2-normalised on its own (section 3 of the paper). The result shares the weights of
    `model`, saves to `.keras` (the prefix is a `mrl_keras.PrefixEmbedding` layer) and is called
    like any model (`predict`, or directly as a callable).

    Args:
        model: a functional or Sequential `keras.Model`.
        dim: int. The prefix size, at most the embedding width `d`.
        embedding_layer: str, `keras.layers.Layer` or `None`. As for `embedding_model`.
            Defaults to `None` (the model's output).
        normalize: bool. Whether to L2-normalise the prefix. Defaults to `True`.

    Returns:
        A `keras.Model` with output shape `(batch, dim)`.

    Raises:
        TypeError, ValueError: as for `embedding_model`, and if `dim` is not an int in
            `[1, d]`.

    Example:

    ```python
    embed_64 = mrl_keras.truncated_embedder(encoder, 64)
    vectors = embed_64.predict(x)            # (n, 64), unit norm
    ```
    """
    encoder = embedding_model(model, embedding_layer)
    width = encoder.output.shape[-1]
    if is_int(dim) and width is not None and dim > width:
        raise ValueError(
            f"Expected `dim` to be at most the embedding width {width}. Received: dim={dim}"
        )
    outputs = PrefixEmbedding(dim, normalize=normalize, name=f"prefix_{dim}")(encoder.output)
    return keras.Model(encoder.input, outputs, name=f"{model.name}_{dim}")


def _freeze_all_but_last(encoder: keras.Model, trainable_layers: int | None) -> None:
    if trainable_layers is None:
        return
    if not is_int(trainable_layers) or trainable_layers < 0:
        raise ValueError(
            "Expected `trainable_layers` to be None or a non-negative int. "
            f"Received: trainable_layers={trainable_layers!r}"
        )
    with_weights = [layer for layer in encoder.layers if layer.weights]
    keep = len(with_weights) - trainable_layers
    for layer in with_weights[: max(keep, 0)]:
        layer.trainable = False


def _tower_inputs(inputs: Any, index: int) -> Any:
    def make(tensor: Any) -> Any:
        name = f"{tensor.name}_{index}" if getattr(tensor, "name", None) else None
        return keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)

    return keras.tree.map_structure(make, inputs)


def matryoshka_fine_tune(
    model: keras.Model,
    nesting_dims: NestingDims | None = None,
    *,
    embedding_layer: str | keras.layers.Layer | None = None,
    num_classes: int | None = None,
    objective: Any = None,
    towers: int | None = None,
    efficient: bool = False,
    nesting_weights: NestingWeights | None = None,
    temperature: float = 0.07,
    normalize: bool = True,
    trainable_layers: int | None = None,
    optimizer: Any = "adam",
) -> keras.Model:
    """Wraps an existing Keras embedding model for Matryoshka fine-tuning and compiles it.

    The embedding `z` (the output of `embedding_layer`, or the model's output) gets one of
    three Matryoshka objectives (Kusupati et al., "Matryoshka Representation Learning",
    NeurIPS 2022, sections 3 and 4):

    - classification (`num_classes` given): a `mrl_keras.MatryoshkaHead` on `z`, compiled with
      `mrl_keras.MatryoshkaLoss` and the per-prefix accuracies; fit on `(x, labels)`.
    - contrastive (`objective=None` or `"contrastive"` without `num_classes`): the encoder is
      applied to `towers=2` inputs (shared weights) and the embeddings are stacked to
      `(batch, 2, d)` for `mrl_keras.MatryoshkaContrastiveLoss` (in-batch negatives); fit on
      `([x_a, x_b], None)` with paired rows.
    - any other loss (`objective` is a Keras loss, a loss name or a function, as
      `mrl_keras.MatryoshkaPrefixLoss` takes): `z` (or, with `towers=k`, the `(batch, k, d)`
      stack of `k` inputs through the shared encoder, e.g. `k=3` for triplets) is scored with
      `MatryoshkaPrefixLoss(objective, nesting_dims, normalize=normalize)`. A Matryoshka loss
      instance (`MatryoshkaPrefixLoss(..., truncate_targets=True)`, a configured
      `MatryoshkaContrastiveLoss`) is used as it is.

    With `trainable_layers=N`, every layer of the encoder that has weights is frozen
    (`layer.trainable = False`) except the last `N` (in the order of `model.layers`); the head is
    always trained. The returned model shares its layers with `model`, so after `fit` the
    fine-tuned embeddings come from `model` itself, e.g. through `truncated_embedder`.

    Args:
        model: a functional or Sequential `keras.Model` that computes the embedding.
        nesting_dims: sequence of int or `None`. The prefix sizes; `None` uses
            `mrl_keras.nesting_dims(d)`. Defaults to `None`.
        embedding_layer: str, `keras.layers.Layer` or `None`. As for `embedding_model`.
            Defaults to `None`.
        num_classes: int or `None`. The number of classes for the classification objective.
            Defaults to `None`.
        objective: `None`, `"contrastive"`, a base loss for `MatryoshkaPrefixLoss`, or a
            Matryoshka loss instance to use unchanged.
            Defaults to `None` (classification with `num_classes`, else contrastive).
        towers: int or `None`. How many inputs go through the shared encoder and are stacked
            on axis 1. Defaults to `None`: 2 for contrastive, 1 otherwise.
        efficient: bool. MRL-E (a weight-tied head) for classification. Defaults to `False`.
        nesting_weights: sequence of float or `None`. The `c_m`. Defaults to `None` (all 1).
        temperature: float. The contrastive temperature. Defaults to `0.07`.
        normalize: bool. For `MatryoshkaPrefixLoss`: L2-normalise each prefix. Defaults to
            `True`.
        trainable_layers: int or `None`. How many of the encoder's last layers with weights
            stay trainable; `None` trains all. Defaults to `None`.
        optimizer: anything `keras.Model.compile` takes. Defaults to `"adam"`.

    Returns:
        A compiled `keras.Model`.

    Raises:
        TypeError, ValueError: on a bad model, embedding layer or argument.

    Example:

    ```python
    model = mrl_keras.matryoshka_fine_tune(
        encoder, (8, 16, 32, 64), num_classes=10, trainable_layers=2
    )
    model.fit(x, y, epochs=1)
    embed_16 = mrl_keras.truncated_embedder(encoder, 16)
    ```
    """
    encoder = embedding_model(model, embedding_layer)
    width = encoder.output.shape[-1]
    if nesting_dims is None:
        if width is None:
            raise ValueError(
                "Expected an embedding of known width when `nesting_dims` is None. "
                f"Received: an embedding of shape {tuple(encoder.output.shape)}"
            )
        dims = default_nesting_dims(width, smallest=min(8, width))
    else:
        dims = validate_nesting_dims(nesting_dims)
    if width is not None and dims[-1] > width:
        raise ValueError(
            f"Expected max(nesting_dims) to be at most the embedding width {width}. "
            f"Received: nesting_dims={dims}"
        )
    classification = num_classes is not None
    if classification and objective not in (None, "classification"):
        raise ValueError(
            "Expected either `num_classes` (classification) or `objective`, not both. "
            f"Received: num_classes={num_classes}, objective={objective!r}"
        )
    matryoshka_loss = isinstance(
        objective, MatryoshkaPrefixLoss | MatryoshkaContrastiveLoss | MatryoshkaLoss
    )
    contrastive = not classification and (
        objective in (None, "contrastive") or isinstance(objective, MatryoshkaContrastiveLoss)
    )
    if towers is None:
        towers = 2 if contrastive else 1
    if not is_int(towers) or towers < 1 or (contrastive and towers != 2):
        raise ValueError(
            "Expected `towers` to be a positive int (2 for the contrastive objective). "
            f"Received: towers={towers!r}"
        )
    _freeze_all_but_last(encoder, trainable_layers)

    if towers == 1:
        inputs, z = encoder.input, encoder.output
    else:
        inputs = [_tower_inputs(encoder.input, i) for i in range(towers)]
        z = keras.ops.stack([encoder(tower) for tower in inputs], axis=1)

    metrics = None
    if classification:
        assert num_classes is not None  # classification
        outputs = MatryoshkaHead(num_classes, dims, efficient=efficient, name="matryoshka_head")(z)
        loss = MatryoshkaLoss(nesting_weights=nesting_weights)
        metrics = matryoshka_metrics(dims)
    elif matryoshka_loss:
        outputs, loss = z, objective
    elif contrastive:
        outputs = z
        loss = MatryoshkaContrastiveLoss(dims, temperature, nesting_weights)
    else:
        outputs = z
        loss = MatryoshkaPrefixLoss(objective, dims, nesting_weights, normalize=normalize)
    fine_tuned = keras.Model(inputs, outputs, name=f"{model.name}_matryoshka")
    fine_tuned.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return fine_tuned
