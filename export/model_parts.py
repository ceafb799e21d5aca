"""Finding the embedding and the `MatryoshkaHead` inside a functional Keras model."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

import mrl_keras


@dataclasses.dataclass(frozen=True)
class Parts:
    """The pieces of a Matryoshka model the signatures need: symbolic tensors of the model's
    input, the embedding `z` and the head's input (often `z` itself), and the head or `None`."""

    inputs: Any
    embedding: Any
    head: Any
    head_input: Any


def _layer_output(model: keras.Model, layer: Any) -> Any:
    try:
        return layer.output
    except (AttributeError, ValueError) as e:
        raise ValueError(
            f"Cannot read the output of layer {layer.name!r} of model {model.name!r}: export "
            "needs a functional keras.Model in which it is called exactly once."
        ) from e


def find_parts(model: Any, embedding_layer: str | None, head_layer: str | None) -> Parts:
    """Finds the embedding and the head of a Matryoshka model (`docs/INTERFACES.md`).

    The head is the layer named `head_layer`, else the only `MatryoshkaHead`. The embedding is
    the output of the layer named `embedding_layer`, else the head's input.

    Args:
        model: a functional `keras.Model` with one input.
        embedding_layer: str or `None`. Name of the layer whose output is `z`.
        head_layer: str or `None`. Name of the `MatryoshkaHead`.

    Returns:
        A `Parts`.

    Raises:
        TypeError: if `model` is not a `keras.Model` or `head_layer` is not a MatryoshkaHead.
        ValueError: if there is no embedding to find, several heads, several inputs, or an
            embedding that is not `(batch, d)`.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model. Received: model of type {type(model).__name__}")
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"Expected a built functional keras.Model with symbolic inputs. Received: model "
            f"{model.name!r} without them (subclassed models cannot be exported)."
        )
    if len(model.inputs) != 1:
        raise ValueError(
            f"Expected a model with exactly one input. Received: {len(model.inputs)} inputs."
        )
    by_name = {layer.name: layer for layer in model.layers}
    head = by_name.get(head_layer) if head_layer else None
    if head is None:
        heads = [layer for layer in model.layers if isinstance(layer, mrl_keras.MatryoshkaHead)]
        if len(heads) > 1:
            raise ValueError(
                f"Found {len(heads)} MatryoshkaHead layers {[h.name for h in heads]} and none "
                f"named {head_layer!r}. Pass head_layer= (--head-layer) to pick one."
            )
        head = heads[0] if heads else None
    if head is not None and not isinstance(head, mrl_keras.MatryoshkaHead):
        raise TypeError(
            f"Expected layer {head.name!r} to be a mrl_keras.MatryoshkaHead. "
            f"Received: {type(head).__name__}"
        )
    head_input = None
    if head is not None:
        try:
            head_input = head.input
        except (AttributeError, ValueError) as e:
            raise ValueError(
                f"Cannot read the input of head {head.name!r}: export needs a functional model "
                "in which the head is called exactly once."
            ) from e
    if embedding_layer and embedding_layer in by_name:
        embedding = _layer_output(model, by_name[embedding_layer])
    elif head_input is not None:
        embedding = head_input
    else:
        raise ValueError(
            f"No embedding layer found in model {model.name!r}: expected a layer named "
            f"{embedding_layer!r} or a MatryoshkaHead whose input is the embedding. Name the "
            "embedding layer 'embedding' or pass embedding_layer= (--embedding-layer)."
        )
    if len(embedding.shape) != 2 or embedding.shape[-1] is None:
        raise ValueError(
            f"Expected the embedding to have shape (batch, d) with d known. "
            f"Received: shape={tuple(embedding.shape)}"
        )
    return Parts(model.inputs[0], embedding, head, head_input)


def head_probabilities(
    model: keras.Model,
    x: Any,
    batch_size: int = 256,
    embedding_layer: str = "embedding",
    head_layer: str = "matryoshka_head",
) -> Any:
    """Runs a Matryoshka classifier on `x` and returns the softmax of every prefix's logits.

    Args:
        model: the functional Matryoshka classifier.
        x: array of model inputs.
        batch_size: int. Defaults to `256`.
        embedding_layer, head_layer: str. Layer names, as in `export_saved_model`.

    Returns:
        float32 array `(n, len(nesting_dims), num_classes)`.
    """
    parts = find_parts(model, embedding_layer, head_layer)
    if parts.head is None:
        raise ValueError("Expected a model with a MatryoshkaHead to compute probabilities.")
    # Calling the head on concrete batches leaves the model's graph untouched (a symbolic call
    # would add a node to the head layer).
    features = keras.Model(parts.inputs, parts.head_input)
    h = features.predict(np.asarray(x), batch_size=batch_size, verbose=0)
    logits = np.concatenate(
        [
            keras.ops.convert_to_numpy(parts.head(h[i : i + batch_size]))
            for i in range(0, len(h), batch_size)
        ]
    ).astype(np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
