"""training/backbones.py: shapes, the zero-centred small_resnet embedding, and input checks."""

import keras
import numpy as np
import pytest

from mrl_keras.training import backbones
from mrl_keras.training.anisotropy import mean_pairwise_cosine


def _pooled_model(backbone, input_shape, d=None, **options):
    inputs = keras.Input(input_shape)
    features, width = backbones.backbone_features(backbone, inputs, d, **options)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    return keras.Model(inputs, pooled), width


def test_small_resnet_width_and_layers():
    model, width = _pooled_model("small_resnet", (28, 28, 1), d=64, width=8, stem_stride=2)
    assert width == 64 and model.output_shape == (None, 64)
    names = [layer.name for layer in model.layers]
    # The recipe: the embedding ends at expand_bn (no ReLU after it).
    assert names.index("expand_bn") == len(names) - 2
    assert not any(name.startswith("expand_relu") for name in names)


def test_small_resnet_embedding_is_zero_centred_at_initialisation():
    keras.utils.set_random_seed(3)
    model, _ = _pooled_model("small_resnet", (28, 28, 1), d=64, width=8, stem_stride=2)
    x = np.random.default_rng(3).random((64, 28, 28, 1)).astype("float32")
    z = np.asarray(model(x, training=True))
    assert (z < 0).mean() > 0.2  # not a non-negative, post-ReLU embedding
    assert abs(mean_pairwise_cosine(z)) < 0.3
    # An independent check of mean_pairwise_cosine on the same embeddings.
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    cos = u @ u.T
    n = len(u)
    assert mean_pairwise_cosine(z) == pytest.approx(
        (cos.sum() - np.trace(cos)) / (n * (n - 1)), abs=1e-5
    )


def test_vit_token_width_and_patch_size():
    model_in = keras.Input((16, 16, 1))
    tokens, width = backbones.backbone_features("vit", model_in, 24, depth=1, heads=4, patch_size=4)
    assert width == 24 and tuple(tokens.shape) == (None, 16, 24)
    assert backbones.default_patch_size(224) == 16 and backbones.default_patch_size(32) == 4


def test_warmup_default_is_set_for_every_backbone():
    assert set(backbones.DEFAULT_WARMUP_EPOCHS) == set(backbones.BACKBONES)
    assert all(v > 0 for v in backbones.DEFAULT_WARMUP_EPOCHS.values())


@pytest.mark.parametrize(
    "backbone, shape, d, options, match",
    [
        ("nope", (28, 28, 1), None, {}, "Unknown backbone 'nope'"),
        ("resnet50", (28, 28, 3), None, {}, "at least 32x32"),
        ("resnet50", (32, 32, 3), 512, {}, "has d=2048. Received: d=512"),
        ("small_resnet", (4, 4, 1), 16, {}, "at least 8x8"),
        ("small_resnet", (28, 28, 2), 16, {}, "1 or 3 image channels"),
        ("vit", (30, 30, 1), 24, {"heads": 4}, "divisible by the patch size 4"),
        ("vit", (16, 16, 1), 25, {"heads": 4, "depth": 1}, "d divisible by heads=4"),
    ],
)
def test_bad_backbone_arguments_name_the_problem(backbone, shape, d, options, match):
    with pytest.raises(ValueError, match=match):
        backbones.backbone_features(backbone, keras.Input(shape), d, **options)
