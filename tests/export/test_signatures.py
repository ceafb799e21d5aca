"""export/signatures.py: the signature functions against NumPy, on a stand-in feature model."""

import numpy as np
import tensorflow as tf

from mrl_keras.export.signatures import classify_fn, embed_fn


def _features(z):
    def features(inputs, training=False):
        return {"embedding": tf.constant(z), "head_input": tf.constant(z)}

    return features


class _Head:
    """prefix_logits(h, m) = h[:, :m] @ W[:m] (an MRL-E head)."""

    def __init__(self, w):
        self.w = tf.constant(w)

    def prefix_logits(self, h, m):
        return tf.matmul(h[:, :m], self.w[:m])


def test_embed_is_the_prefix_normalised_on_its_own():
    z = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    out = embed_fn(_features(z), 4, normalize=True)(None)["embedding"].numpy()
    np.testing.assert_allclose(
        out, z[:, :4] / np.linalg.norm(z[:, :4], axis=1, keepdims=True), rtol=1e-6
    )
    raw = embed_fn(_features(z), 4, normalize=False)(None)["embedding"].numpy()
    np.testing.assert_array_equal(raw, z[:, :4])


def test_classify_outputs():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(5, 8)).astype(np.float32)
    w = rng.normal(size=(8, 3)).astype(np.float32)
    out = {k: v.numpy() for k, v in classify_fn(_features(z), _Head(w), 4)(None).items()}
    logits = z[:, :4] @ w[:4]
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(out["probabilities"], p, rtol=1e-5)
    np.testing.assert_array_equal(out["classes"], logits.argmax(1))
    assert out["classes"].dtype == np.int64
    np.testing.assert_allclose(out["scores"], p.max(1), rtol=1e-5)
