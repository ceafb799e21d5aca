import keras
import numpy as np
import pytest

from mrl_keras import (
    MatryoshkaContrastiveLoss,
    MatryoshkaLoss,
    MatryoshkaPrefixLoss,
    embedding_model,
    matryoshka_fine_tune,
    truncated_embedder,
)

DIMS = (4, 8, 16)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _pretrained(width=16, name="pretrained"):
    """A small 'existing' model: two hidden layers, an embedding, and an old 3-class head."""
    inputs = keras.Input((12,), name="features")
    x = keras.layers.Dense(32, activation="relu", name="hidden_1")(inputs)
    x = keras.layers.Dense(32, activation="relu", name="hidden_2")(x)
    z = keras.layers.Dense(width, name="embedding")(x)
    outputs = keras.layers.Dense(3, name="old_head")(z)
    return keras.Model(inputs, outputs, name=name)


def _clusters(n=512, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(classes, 12))
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.normal(size=(n, 12))
    return x.astype("float32"), y.astype("int32")


def _weights(model, names):
    return {n: [np.array(w) for w in model.get_layer(n).get_weights()] for n in names}


def _assert_same(before, after, same=True):
    for name in before:
        equal = all(np.array_equal(a, b) for a, b in zip(before[name], after[name], strict=True))
        assert equal == same, name


def test_classification_reduces_the_loss_and_keeps_frozen_layers():
    keras.utils.set_random_seed(0)
    base = _pretrained()
    x, y = _clusters()
    model = matryoshka_fine_tune(
        base,
        DIMS,
        embedding_layer="embedding",
        num_classes=4,
        trainable_layers=1,
        optimizer=keras.optimizers.Adam(0.01),
    )
    assert isinstance(model.loss, MatryoshkaLoss)
    assert model.output.shape == (None, len(DIMS), 4)
    frozen = _weights(base, ["hidden_1", "hidden_2"])
    tuned = _weights(base, ["embedding"])
    history = model.fit(x, y, batch_size=64, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses
    assert history.history["accuracy@4"][-1] > 0.6
    _assert_same(frozen, _weights(base, ["hidden_1", "hidden_2"]))
    _assert_same(tuned, _weights(base, ["embedding"]), same=False)
    # The old head is not part of the fine-tuned model, and its weights are untouched.
    assert "old_head" not in [layer.name for layer in model.layers]


def test_contrastive_two_towers_share_the_encoder():
    keras.utils.set_random_seed(1)
    base = _pretrained()
    x, _ = _clusters(seed=1)
    rng = np.random.default_rng(1)
    view_a = x + 0.1 * rng.normal(size=x.shape).astype("float32")
    view_b = x + 0.1 * rng.normal(size=x.shape).astype("float32")
    model = matryoshka_fine_tune(
        base, DIMS, embedding_layer="embedding", optimizer=keras.optimizers.Adam(0.01)
    )
    assert isinstance(model.loss, MatryoshkaContrastiveLoss)
    assert model.output.shape == (None, 2, 16)
    history = model.fit([view_a, view_b], None, batch_size=64, epochs=3, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    # Both towers are the same encoder: identical inputs give identical embeddings.
    out = _np(model([x[:5], x[:5]]))
    np.testing.assert_allclose(out[:, 0], out[:, 1], rtol=1e-6)
    encoder = embedding_model(base, "embedding")
    np.testing.assert_allclose(out[:, 0], _np(encoder(x[:5])), rtol=1e-5, atol=1e-6)


def test_any_loss_objective_on_the_model_output():
    keras.utils.set_random_seed(2)
    encoder = embedding_model(_pretrained(), "embedding")  # a model whose output is z
    x, _ = _clusters(seed=2)
    teacher = np.tanh(x @ np.random.default_rng(2).normal(size=(12, 16))).astype("float32")
    default = matryoshka_fine_tune(encoder, objective="cosine_similarity")
    assert isinstance(default.loss, MatryoshkaPrefixLoss)
    assert default.loss.nesting_dims == (8, 16)  # nesting_dims(16) by default
    assert default.loss.normalize and not default.loss.truncate_targets
    # Distillation: the teacher's prefixes too, through a configured loss used as it is.
    loss = MatryoshkaPrefixLoss("cosine_similarity", DIMS, truncate_targets=True)
    model = matryoshka_fine_tune(encoder, objective=loss, optimizer=keras.optimizers.Adam(0.01))
    assert model.loss is loss
    history = model.fit(x, teacher, batch_size=64, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] - 0.2


def test_trainable_layers_zero_trains_only_the_head():
    base = _pretrained()
    x, y = _clusters(n=128)
    model = matryoshka_fine_tune(
        base, DIMS, embedding_layer="embedding", num_classes=4, trainable_layers=0
    )
    before = _weights(base, ["hidden_1", "hidden_2", "embedding"])
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    _assert_same(before, _weights(base, ["hidden_1", "hidden_2", "embedding"]))
    assert [w.name for w in model.trainable_weights] == [
        w.name for w in model.get_layer("matryoshka_head").trainable_weights
    ]


@pytest.mark.parametrize("dim", [4, 16])
def test_truncated_embedder_equals_numpy(dim, tmp_path):
    base = _pretrained()
    x, _ = _clusters(n=10)
    embed = truncated_embedder(base, dim, embedding_layer="embedding")
    z = _np(keras.Model(base.input, base.get_layer("embedding").output)(x))
    expected = z[:, :dim] / np.linalg.norm(z[:, :dim], axis=1, keepdims=True)
    np.testing.assert_allclose(_np(embed(x)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(embed.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    path = tmp_path / "embed.keras"
    embed.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(_np(restored(x)), expected, rtol=1e-5, atol=1e-6)
    raw = truncated_embedder(base, dim, embedding_layer="embedding", normalize=False)
    np.testing.assert_allclose(_np(raw(x)), z[:, :dim], rtol=1e-5, atol=1e-6)


def test_truncated_embedder_on_sequential_output():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, name="z")])
    x = np.random.default_rng(3).normal(size=(4, 5)).astype("float32")
    z = _np(model(x))
    out = _np(truncated_embedder(model, 2)(x))
    np.testing.assert_allclose(
        out, z[:, :2] / np.linalg.norm(z[:, :2], axis=1, keepdims=True), rtol=1e-5
    )


def test_bad_input():
    base = _pretrained()
    with pytest.raises(TypeError, match=r"Expected `model` to be a keras.Model"):
        embedding_model("model")
    with pytest.raises(ValueError, match=r"embedding_layer='nope'.*hidden_1"):
        embedding_model(base, "nope")
    with pytest.raises(ValueError, match=r"has no defined inputs|without defined inputs"):
        embedding_model(keras.Sequential([keras.layers.Dense(3)]))
    inputs = keras.Input((7, 12))
    sequence = keras.Model(inputs, keras.layers.Dense(16, name="tokens")(inputs))
    with pytest.raises(ValueError, match=r"shape \(batch, d\).*Received: .*\(None, 7, 16\)"):
        embedding_model(sequence)
    with pytest.raises(ValueError, match=r"at most the embedding width 16. Received: dim=32"):
        truncated_embedder(base, 32, "embedding")
    with pytest.raises(ValueError, match=r"at most the embedding width 16.*\(8, 32\)"):
        matryoshka_fine_tune(base, (8, 32), embedding_layer="embedding", num_classes=2)
    with pytest.raises(ValueError, match=r"not both.*num_classes=2"):
        matryoshka_fine_tune(
            base, DIMS, embedding_layer="embedding", num_classes=2, objective="cosine_similarity"
        )
    with pytest.raises(ValueError, match=r"towers=3"):
        matryoshka_fine_tune(base, DIMS, embedding_layer="embedding", towers=3)
    with pytest.raises(ValueError, match=r"trainable_layers=-1"):
        matryoshka_fine_tune(
            base, DIMS, embedding_layer="embedding", num_classes=2, trainable_layers=-1
        )
