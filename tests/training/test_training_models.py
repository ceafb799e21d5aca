import keras
import numpy as np
import pytest

from mrl_keras.training.backbones import check_input_shape
from mrl_keras.training.models import build_model, set_trainable_layers


@pytest.mark.parametrize("mode", ["mrl", "mrl-e"])
def test_mrl_model_follows_the_interface(mode):
    model = build_model(
        "small_resnet", (16, 16, 1), 7, mode=mode, d=32, backbone_options={"width": 4}
    )
    assert model.get_layer("embedding").output.shape == (None, 32)
    head = model.get_layer("matryoshka_head")
    assert head.nesting_dims == (8, 16, 32) and head.efficient == (mode == "mrl-e")
    out = model(np.zeros((2, 16, 16, 1), np.float32))
    assert out.shape == (2, 3, 7)


@pytest.mark.parametrize(
    "backbone,shape,d", [("small_resnet", (16, 16, 1), 8), ("resnet50", (32, 32, 3), 8)]
)
def test_ff_embedding_is_exactly_m_wide(backbone, shape, d):
    model = build_model(backbone, shape, 5, mode="ff", ff_dim=d, backbone_options={"width": 4})
    assert model.get_layer("embedding").output.shape == (None, d)
    assert model.get_layer("matryoshka_head").nesting_dims == (d,)
    assert model(np.zeros((1, *shape), np.float32)).shape == (1, 1, 5)


def test_vit_dims_12_to_d():
    model = build_model(
        "vit",
        (16, 16, 1),
        4,
        mode="mrl",
        d=48,
        backbone_options={"depth": 1, "heads": 4, "patch_size": 4},
    )
    assert model.get_layer("matryoshka_head").nesting_dims == (12, 24, 48)
    assert model(np.zeros((2, 16, 16, 1), np.float32)).shape == (2, 3, 4)


def test_saved_model_loads_with_keras_alone(tmp_path):
    model = build_model(
        "vit",
        (8, 8, 1),
        3,
        mode="mrl",
        d=24,
        backbone_options={"depth": 1, "heads": 2, "patch_size": 4},
    )
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)


def test_trainable_layers_freezes_all_but_the_last():
    model = build_model("small_resnet", (16, 16, 1), 5, d=16, backbone_options={"width": 4})
    frozen = set_trainable_layers(model, 2)
    trainable = [layer.name for layer in model.layers if layer.weights and layer.trainable]
    assert frozen > 0
    assert trainable == ["expand_conv", "expand_bn", "matryoshka_head"]


def test_wrong_image_shape_errors():
    with pytest.raises(ValueError, match="at least 32x32.*--image-size"):
        build_model("resnet50", (28, 28, 1), 10)
    with pytest.raises(ValueError, match="divisible by the patch size 4"):
        build_model("vit", (30, 30, 1), 10)
    with pytest.raises(ValueError, match=r"\(height, width, channels\)"):
        check_input_shape("small_resnet", (28, 28), {})
    with pytest.raises(ValueError, match="Unknown backbone"):
        build_model("alexnet", (28, 28, 1), 10)
    with pytest.raises(ValueError, match="Unknown mode"):
        build_model("small_resnet", (28, 28, 1), 10, mode="slimmable")
