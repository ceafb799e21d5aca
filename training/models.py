"""Model assembly following docs/INTERFACES.md: `inputs` -> backbone -> `embedding` (z, width d)
-> `MatryoshkaHead` named `matryoshka_head` -> logits (batch, len(nesting_dims), num_classes)."""

from __future__ import annotations

from typing import Any

import keras

import mrl_keras
from mrl_keras.training.backbones import backbone_features

MODES = ("mrl", "mrl-e", "ff")


def _pool(features, name: str):
    if len(features.shape) == 4:
        return keras.layers.GlobalAveragePooling2D(name=name)(features)
    return keras.layers.GlobalAveragePooling1D(name=name)(features)


def build_model(
    backbone: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    nesting_dims: tuple[int, ...] | None = None,
    mode: str = "mrl",
    d: int | None = None,
    ff_dim: int | None = None,
    backbone_options: dict[str, Any] | None = None,
    name: str | None = None,
) -> keras.Model:
    """Builds an MRL, MRL-E or fixed-feature classifier.

    Args:
        backbone: one of `mrl_keras.training.backbones.BACKBONES`.
        input_shape: image shape (h, w, c).
        num_classes: int.
        nesting_dims: the head's nesting dims (`mrl`, `mrl-e`); defaults to halving d to 8
            (12 for the ViT).
        mode: `"mrl"`, `"mrl-e"` (weight-tied head) or `"ff"` (one fixed-feature model of width
            `ff_dim`, with a `MatryoshkaHead(num_classes, (ff_dim,))`).
        d: embedding width for configurable backbones.
        ff_dim: the embedding width of an `ff` model. For `small_resnet` and `vit` the backbone
            is built with `d = ff_dim`; for `resnet50` (fixed 2048) the embedding is the first
            `ff_dim` pooled features, as the paper's fixed-feature baselines.
        backbone_options: extra backbone options.
        name: model name.

    Returns:
        An uncompiled `keras.Model`.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}. Expected one of {MODES}.")
    options = dict(backbone_options or {})
    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    if mode == "ff":
        if not isinstance(ff_dim, int) or ff_dim < 1:
            raise ValueError(f"Expected a positive int ff_dim for mode 'ff'. Received: {ff_dim!r}")
        configurable = backbone != "resnet50"
        features, width = backbone_features(
            backbone, inputs, ff_dim if configurable else None, **options
        )
        if width == ff_dim:
            z = _pool(features, "embedding")
        else:
            if ff_dim > width:
                raise ValueError(f"Expected ff_dim <= {width} for {backbone}. Received: {ff_dim}")
            pooled = _pool(features, "features")
            x = keras.layers.Reshape((width, 1), name="features_column")(pooled)
            x = keras.layers.Cropping1D((0, width - ff_dim), name="prefix")(x)
            z = keras.layers.Reshape((ff_dim,), name="embedding")(x)
        dims: tuple[int, ...] = (ff_dim,)
    else:
        features, width = backbone_features(backbone, inputs, d, **options)
        z = _pool(features, "embedding")
        smallest = 12 if backbone == "vit" else 8
        dims = tuple(nesting_dims) if nesting_dims else mrl_keras.nesting_dims(width, smallest)
        if dims[-1] > width:
            raise ValueError(
                f"Expected nesting dims <= the embedding width {width}. Received: {dims}"
            )
    head = mrl_keras.MatryoshkaHead(
        num_classes, dims, efficient=(mode == "mrl-e"), name="matryoshka_head", dtype="float32"
    )
    logits = head(z)
    return keras.Model(inputs, logits, name=name or f"{backbone}_{mode.replace('-', '_')}")


def set_trainable_layers(model: keras.Model, trainable_layers: int | None) -> int:
    """Freezes all but the last `trainable_layers` weight-bearing backbone layers.

    The embedding and the head always stay trainable (paper section 5.1: fine-tuning a
    pretrained backbone into MRL). `None` or a negative value leaves everything trainable.

    Returns:
        The number of frozen layers.
    """
    if trainable_layers is None or trainable_layers < 0:
        return 0
    leaves = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if not list(layer._flatten_layers(include_self=False, recursive=False))
        and layer.weights
        and layer.name != "matryoshka_head"
    ]
    frozen = leaves[: max(0, len(leaves) - trainable_layers)]
    for layer in frozen:
        layer.trainable = False
    return len(frozen)
