"""The exported signatures against the Keras model and the NumPy cascade."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from export_testing import (
    DIMS,
    NUM_CLASSES,
    D,
    make_model,
    random_inputs,
    softmax,
)

import mrl_keras
from mrl_keras.cascade import cascade_predict
from mrl_keras.export import read_metadata
from mrl_keras.export import signatures as sigs
from mrl_keras.export.saved_model import export_saved_model


def _embedding(model, x):
    return keras.Model(model.inputs, model.get_layer("embedding").output).predict(x, verbose=0)


def _l2_normalize(v):
    return v / np.sqrt(np.maximum((v * v).sum(axis=-1, keepdims=True), 1e-12))


def test_signature_names(exported):
    _, result = exported
    expected = [f"embed_{m}" for m in (8, 16, 24, 32)]
    expected += [f"classify_{m}" for m in DIMS] + ["classify_cascade"]
    expected += [f"{name}_bytes" for name in expected]
    assert list(result.signatures) == expected
    assert result.version == 1 and os.path.basename(result.path) == "1"


@pytest.mark.parametrize("n", [1, 7])
def test_embed_matches_normalized_prefixes(exported, loaded, n):
    model, _ = exported
    x = random_inputs(n, seed=n)
    z = _embedding(model, x)
    for m in (8, 16, 24, 32):
        out = loaded.signatures[f"embed_{m}"](inputs=tf.constant(x))
        assert list(out) == ["embedding"]
        assert out["embedding"].dtype == tf.float32
        np.testing.assert_allclose(out["embedding"].numpy(), _l2_normalize(z[:, :m]), atol=1e-5)
    default = loaded.signatures["serving_default"](inputs=tf.constant(x))["embedding"]
    np.testing.assert_allclose(default.numpy(), _l2_normalize(z), atol=1e-5)


@pytest.mark.parametrize("n", [1, 9])
def test_classify_matches_head_logits(exported, loaded, n):
    model, _ = exported
    x = random_inputs(n, seed=10 + n)
    logits = model.predict(x, verbose=0)
    for i, m in enumerate(DIMS):
        out = loaded.signatures[f"classify_{m}"](inputs=tf.constant(x))
        np.testing.assert_allclose(out["logits"].numpy(), logits[:, i], atol=1e-5)
        np.testing.assert_allclose(out["probabilities"].numpy(), softmax(logits[:, i]), atol=1e-5)
        assert out["classes"].dtype == tf.int64
        np.testing.assert_array_equal(out["classes"].numpy(), logits[:, i].argmax(-1))
        np.testing.assert_allclose(out["scores"].numpy(), softmax(logits[:, i]).max(-1), atol=1e-5)


def test_cascade_matches_numpy(exported, loaded):
    model, result = exported
    thresholds = result.metadata["cascade"]["thresholds"]
    x = random_inputs(300, seed=21)
    expected = cascade_predict(softmax(model.predict(x, verbose=0)), thresholds, DIMS)
    out = loaded.signatures["classify_cascade"](inputs=tf.constant(x))
    assert out["dims_used"].dtype == tf.int32 and out["classes"].dtype == tf.int64
    np.testing.assert_array_equal(out["dims_used"].numpy(), expected.dims_used)
    np.testing.assert_array_equal(out["classes"].numpy(), expected.classes)
    np.testing.assert_allclose(out["scores"].numpy(), expected.scores, atol=1e-5)
    # Median thresholds: every prefix answers part of the batch.
    assert set(np.unique(expected.dims_used)) == set(DIMS)


@pytest.mark.parametrize("efficient", [False, True], ids=["mrl", "mrl_e"])
@pytest.mark.parametrize("value, expected_dim", [(0.0, DIMS[0]), (1.01, DIMS[-1])])
def test_cascade_extreme_thresholds(tmp_path, efficient, value, expected_dim):
    model = make_model(efficient=efficient)
    result = export_saved_model(
        model,
        tmp_path / "m",
        cascade_thresholds=[value] * len(DIMS),
        warmup=False,
        verify=False,
    )
    loaded = tf.saved_model.load(result.path)
    x = random_inputs(50, seed=5)
    out = loaded.signatures["classify_cascade"](inputs=tf.constant(x))
    assert np.all(out["dims_used"].numpy() == expected_dim)
    i = DIMS.index(expected_dim)
    logits = model.predict(x, verbose=0)[:, i]
    np.testing.assert_array_equal(out["classes"].numpy(), logits.argmax(-1))
    np.testing.assert_allclose(out["scores"].numpy(), softmax(logits).max(-1), atol=1e-5)


class _CountingHead(mrl_keras.MatryoshkaHead):
    """A real MatryoshkaHead that records how many rows each prefix's classifier sees."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows_seen = {}

    def prefix_logits(self, inputs, m):
        self.rows_seen[m] = int(inputs.shape[0])
        return super().prefix_logits(inputs, m)


def test_cascade_computes_larger_heads_only_for_unresolved_rows():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((D,))
    head = _CountingHead(
        NUM_CLASSES,
        DIMS,
        kernel_initializer=keras.initializers.RandomNormal(stddev=1.5),
        name="matryoshka_head",
    )
    model = keras.Model(inputs, head(inputs))
    features = keras.Model(inputs, {"embedding": inputs, "head_input": inputs})
    z = np.random.default_rng(0).normal(size=(200, D)).astype(np.float32)
    scores = softmax(model.predict(z, verbose=0)).max(-1)
    thresholds = [float(np.quantile(scores[:, 0], 0.3)), float(np.median(scores[:, 1])), 0.0]
    out = sigs.cascade_fn(features, head, DIMS, thresholds)(tf.constant(z))
    reach_16 = int((scores[:, 0] < thresholds[0]).sum())
    reach_32 = int(((scores[:, 0] < thresholds[0]) & (scores[:, 1] < thresholds[1])).sum())
    assert head.rows_seen == {8: 200, 16: reach_16, 32: reach_32}
    assert 0 < reach_32 < reach_16 < 200
    np.testing.assert_array_equal(np.bincount(out["dims_used"].numpy())[DIMS[-1]], reach_32)


def test_bytes_signatures_match(exported, loaded):
    _, result = exported
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 6, 6, 1), dtype=np.uint8)
    encoded = [tf.io.encode_png(p).numpy() for p in pixels[:2]]
    encoded.append(tf.io.encode_jpeg(pixels[2], quality=100).numpy())
    decoded = np.stack([tf.io.decode_image(e, channels=1).numpy() for e in encoded])
    x = decoded.astype(np.float32) / 255.0
    for name in ("embed_16", "classify_32", "classify_cascade"):
        direct = loaded.signatures[name](inputs=tf.constant(x))
        from_bytes = loaded.signatures[f"{name}_bytes"](image_bytes=tf.constant(encoded))
        for key in direct:
            np.testing.assert_allclose(from_bytes[key].numpy(), direct[key].numpy(), atol=1e-5)
    assert result.metadata["bytes_input"]["name"] == "image_bytes"


def test_metadata_written(exported):
    _, result = exported
    meta = read_metadata(result.path)
    assert meta["embedding_dim"] == D
    assert meta["nesting_dims"] == list(DIMS)
    assert meta["exported_dims"] == [8, 16, 24, 32]
    assert meta["num_classes"] == NUM_CLASSES
    assert meta["class_names"] == [f"class_{i}" for i in range(NUM_CLASSES)]
    assert meta["normalized"] is True
    assert meta["cascade"]["dims"] == list(DIMS)
    assert meta["input"] == {"name": "inputs", "shape": [None, 6, 6, 1], "dtype": "float32"}
    assert meta["signatures"] == list(result.signatures)
    assert meta["version"] == 1


def test_no_normalize_and_embedding_only_model(tmp_path):
    model = make_model(head=False)
    result = export_saved_model(
        model, tmp_path / "emb", normalize=False, nesting_dims=(4, 32), warmup=False
    )
    assert result.signatures == ("embed_4", "embed_32")
    assert result.metadata["cascade"] is None and result.metadata["num_classes"] is None
    loaded = tf.saved_model.load(result.path)
    x = random_inputs(4)
    out = loaded.signatures["embed_4"](inputs=tf.constant(x))["embedding"].numpy()
    np.testing.assert_allclose(out, model.predict(x, verbose=0)[:, :4], atol=1e-5)


def test_calibration_baked_into_cascade(mrl_model, tmp_path):
    x = random_inputs(400, seed=30)
    y = mrl_model.predict(x, verbose=0)[:, -1].argmax(-1)
    result = export_saved_model(
        mrl_model, tmp_path / "cal", calibration_data=(x, y), warmup=False, verify=False
    )
    calibration = result.calibration
    assert calibration.accuracy >= calibration.target_accuracy
    assert result.metadata["cascade"]["thresholds"] == list(calibration.thresholds)
    out = tf.saved_model.load(result.path).signatures["classify_cascade"](inputs=tf.constant(x))
    assert out["dims_used"].numpy().mean() == pytest.approx(calibration.expected_dim, abs=1e-6)
    assert (out["classes"].numpy() == y).mean() == pytest.approx(calibration.accuracy, abs=1e-6)


def test_next_free_version_and_overwrite(mrl_model, tmp_path):
    base = tmp_path / "versions"
    kwargs = dict(warmup=False, verify=False)
    assert export_saved_model(mrl_model, base, version=3, **kwargs).version == 3
    assert export_saved_model(mrl_model, base, **kwargs).version == 4
    with pytest.raises(ValueError, match="already exists"):
        export_saved_model(mrl_model, base, version=3, **kwargs)
    again = export_saved_model(
        mrl_model, base, version=3, overwrite=True, extra_dims=(12,), **kwargs
    )
    assert "embed_12" in read_metadata(again.path)["signatures"]
    assert sorted(os.listdir(base)) == ["3", "4"]


def _listing(path):
    return sorted(os.listdir(path)) if os.path.exists(path) else None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(embedding_layer="nope", head_layer="nope2", model="embedder"), "No embedding layer"),
        (dict(extra_dims=(64,)), "extra_dims"),
        (dict(extra_dims=(0,)), "extra_dims"),
        (dict(cascade_thresholds=(0.5, 0.5)), "one cascade threshold per nesting dim"),
        (dict(nesting_dims=(8, 64), model="embedder"), "do not fit"),
        (dict(cascade_thresholds=(0.5, 0.5, 0.0), model="embedder"), "need a model with"),
        (dict(class_names=["a"]), "class names"),
        (dict(bytes_signatures=True, model="flat"), "image input"),
    ],
)
def test_bad_input_writes_nothing(mrl_model, tmp_path, kwargs, match):
    kwargs = dict(kwargs)
    which = kwargs.pop("model", "mrl")
    if which == "embedder":
        model = make_model(head=False)
    elif which == "flat":
        inputs = keras.Input((10,))
        model = keras.Model(inputs, keras.layers.Dense(8, name="embedding")(inputs))
    else:
        model = mrl_model
    base = tmp_path / "bad"
    with pytest.raises(ValueError, match=match):
        export_saved_model(model, base, **kwargs)
    assert _listing(base) is None


def test_unwritable_base_path(mrl_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="not a directory"):
        export_saved_model(mrl_model, blocker / "models")


def test_failure_mid_export_leaves_nothing(mrl_model, tmp_path):
    base = tmp_path / "fails"
    os.makedirs(base)
    # Verification runs the warmup requests on the written SavedModel; a model whose input has
    # an unknown non-batch dim gets a 1-wide warmup request, which its Reshape((4,)) rejects.
    inputs = keras.Input((None,))
    z = keras.layers.Reshape((4,))(inputs)
    z = keras.layers.Dense(8, name="embedding")(z)
    model = keras.Model(inputs, z)
    with pytest.raises(tf.errors.InvalidArgumentError, match="reshape"):
        export_saved_model(model, base, nesting_dims=(8,))
    assert os.listdir(base) == []


def test_embedding_found_through_the_head_without_a_named_layer(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    z = keras.layers.Dense(D, name="projection")(keras.layers.Flatten()(inputs))
    head = mrl_keras.MatryoshkaHead(NUM_CLASSES, DIMS, efficient=True, name="clf")
    model = keras.Model(inputs, head(z))
    result = export_saved_model(model, tmp_path / "m", warmup=False, verify=False)
    assert "classify_cascade" in result.signatures and result.metadata["embedding_dim"] == D
    x = random_inputs(3)
    z_np = keras.Model(inputs, z).predict(x, verbose=0)
    out = tf.saved_model.load(result.path).signatures["embed_16"](inputs=tf.constant(x))
    np.testing.assert_allclose(out["embedding"].numpy(), _l2_normalize(z_np[:, :16]), atol=1e-5)
