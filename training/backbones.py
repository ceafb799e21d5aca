"""Backbones: functions from an image input tensor to an unpooled feature tensor of width `d`,
built from stock Keras layers only (so saved models load with `keras.saving.load_model` alone).

- `resnet50`: `keras.applications.ResNet50` (`weights=None` or a weights file), d = 2048. Its
  pooled features are post-ReLU by construction (non-negative, anisotropic; see
  docs/training.md, "Why the embedding is not post-ReLU").
- `small_resnet`: a small residual CNN for 28x28 / 32x32 inputs; `d` is the width of its last
  1x1 convolution, followed by BatchNorm and *no* ReLU, so the pooled embedding is a
  zero-centred linear projection (mean pairwise cosine ~0 at initialisation instead of ~0.8).
- `vit`: a compact Vision Transformer (ViT-B/16 shape by default: d = 768, 12 layers, 12 heads,
  MLP 3072) with a convolutional position encoding (CPVT) instead of a learned position table,
  mean-pooled tokens. Nesting dims 12..768 as in the paper.
"""

from __future__ import annotations

from typing import Any

import keras

BACKBONES = ("small_resnet", "resnet50", "vit")
DEFAULT_DIMS = {"resnet50": 2048, "small_resnet": 512, "vit": 768}
SMALLEST_DIM = {"resnet50": 8, "small_resnet": 8, "vit": 12}
# Epochs of linear learning-rate warmup before the cosine decay, per backbone (measured on CJK;
# docs/training.md, "Learning-rate warmup").
DEFAULT_WARMUP_EPOCHS = {"resnet50": 1.0, "small_resnet": 1.0, "vit": 1.0}


def check_input_shape(backbone: str, input_shape: tuple[int, ...], options: dict[str, Any]) -> None:
    """Raises a clear `ValueError` when the images cannot go through the backbone."""
    if len(input_shape) != 3:
        raise ValueError(
            f"Expected images of shape (height, width, channels) for backbone {backbone!r}. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    h, w, c = input_shape
    if backbone == "resnet50" and (h < 32 or w < 32):
        raise ValueError(
            f"Backbone 'resnet50' needs images of at least 32x32. Received: input_shape="
            f"{tuple(input_shape)}. Pass --image-size 32 (or larger) or use --backbone small_resnet."
        )
    if backbone == "small_resnet" and (h < 8 or w < 8):
        raise ValueError(
            f"Backbone 'small_resnet' needs images of at least 8x8. Received: input_shape={tuple(input_shape)}"
        )
    if backbone == "vit":
        patch = options.get("patch_size") or default_patch_size(h)
        if h % patch or w % patch:
            raise ValueError(
                f"Backbone 'vit' needs image sides divisible by the patch size {patch}. Received: "
                f"input_shape={tuple(input_shape)}. Pass --image-size {max(patch, h // patch * patch)} "
                "or another --patch-size."
            )
    if c not in (1, 3):
        raise ValueError(
            f"Expected 1 or 3 image channels. Received: input_shape={tuple(input_shape)}"
        )


def default_patch_size(image_side: int) -> int:
    return 16 if image_side >= 128 else 4


def _residual_block(x, filters: int, stride: int, prefix: str):
    shortcut = x
    y = keras.layers.Conv2D(
        filters, 3, strides=stride, padding="same", use_bias=False, name=f"{prefix}_conv1"
    )(x)
    y = keras.layers.BatchNormalization(momentum=0.9, synchronized=True, name=f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv2")(y)
    y = keras.layers.BatchNormalization(momentum=0.9, synchronized=True, name=f"{prefix}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(
            filters, 1, strides=stride, use_bias=False, name=f"{prefix}_proj"
        )(shortcut)
        shortcut = keras.layers.BatchNormalization(
            momentum=0.9, synchronized=True, name=f"{prefix}_proj_bn"
        )(shortcut)
    y = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{prefix}_out")(y)


def small_resnet(inputs, d: int = 512, width: int = 32, blocks: int = 1, stem_stride: int = 1):
    """A small ResNet: stem, three stages (width, 2*width, 4*width; stride 2 between stages),
    then a 1x1 convolution to `d` channels with BatchNorm. Returns the feature map.

    There is deliberately no ReLU after `expand_bn`: a post-ReLU embedding is non-negative and
    far from zero-centred, which makes the nested prefixes train poorly (docs/training.md)."""
    x = keras.layers.Conv2D(
        width, 3, strides=stem_stride, padding="same", use_bias=False, name="stem_conv"
    )(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, synchronized=True, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        for b in range(blocks):
            stride = 2 if (stage > 0 and b == 0) else 1
            x = _residual_block(x, filters, stride, f"stage{stage + 1}_block{b + 1}")
    x = keras.layers.Conv2D(d, 1, use_bias=False, name="expand_conv")(x)
    return keras.layers.BatchNormalization(momentum=0.9, synchronized=True, name="expand_bn")(x)


def resnet50(inputs, weights: str | None = None):
    """`keras.applications.ResNet50` without its top; returns the 2048-channel feature map."""
    model = keras.applications.ResNet50(
        include_top=False, weights=weights, input_shape=tuple(inputs.shape[1:]), pooling=None
    )
    return model(inputs)


def vit(
    inputs,
    d: int = 768,
    depth: int = 12,
    heads: int = 12,
    mlp_ratio: int = 4,
    patch_size: int | None = None,
):
    """A compact ViT; returns the token sequence after the final LayerNorm."""
    if d % heads:
        raise ValueError(f"Expected vit d divisible by heads={heads}. Received: d={d}")
    patch = patch_size or default_patch_size(int(inputs.shape[1]))
    x = keras.layers.Conv2D(d, patch, strides=patch, name="patch_embed")(inputs)
    # Conditional position encoding: a depthwise 3x3 convolution over the patch grid.
    x = keras.layers.Add(name="pos_add")(
        [x, keras.layers.DepthwiseConv2D(3, padding="same", name="pos_conv")(x)]
    )
    grid = int(x.shape[1]) * int(x.shape[2])
    x = keras.layers.Reshape((grid, d), name="tokens")(x)
    for i in range(depth):
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        y = keras.layers.MultiHeadAttention(heads, d // heads, name=f"block{i}_attn")(y, y)
        x = keras.layers.Add(name=f"block{i}_add1")([x, y])
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        y = keras.layers.Dense(mlp_ratio * d, activation="gelu", name=f"block{i}_mlp1")(y)
        y = keras.layers.Dense(d, name=f"block{i}_mlp2")(y)
        x = keras.layers.Add(name=f"block{i}_add2")([x, y])
    return keras.layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)


def backbone_features(backbone: str, inputs, d: int | None = None, **options: Any):
    """Applies a backbone to `inputs` and returns its unpooled output and its width.

    Args:
        backbone: one of `BACKBONES`.
        inputs: a `keras.Input` of images.
        d: the embedding width (only `small_resnet` and `vit` are configurable).
        **options: backbone options (`width`, `blocks`, `stem_stride`, `depth`, `heads`,
            `patch_size`, `weights`).

    Returns:
        (features, d): a feature map (batch, h, w, d) or token sequence (batch, n, d).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}. Expected one of {BACKBONES}.")
    check_input_shape(backbone, tuple(inputs.shape[1:]), options)
    if backbone == "resnet50":
        if d not in (None, 2048):
            raise ValueError(f"Backbone 'resnet50' has d=2048. Received: d={d}")
        return resnet50(inputs, weights=options.get("weights")), 2048
    if backbone == "small_resnet":
        d = d or DEFAULT_DIMS["small_resnet"]
        return small_resnet(
            inputs,
            d,
            width=options.get("width") or 32,
            blocks=options.get("blocks") or 1,
            stem_stride=options.get("stem_stride") or 1,
        ), d
    d = d or DEFAULT_DIMS["vit"]
    return vit(
        inputs,
        d,
        depth=options.get("depth") or 12,
        heads=options.get("heads") or 12,
        patch_size=options.get("patch_size"),
    ), d
