import keras
import numpy as np
import pytest

from mrl_keras import MatryoshkaHead, MatryoshkaLoss, matryoshka_metrics
from tests.testing import TestCase

DIMS = (8, 16, 32, 64)
NUM_CLASSES = 10
WIDTH = 70  # Wider than max(DIMS): the head reads the prefix.


def _head(efficient, use_bias=True, **kwargs):
    return MatryoshkaHead(
        NUM_CLASSES,
        DIMS,
        efficient=efficient,
        use_bias=use_bias,
        bias_initializer="random_normal",  # Non-zero, so the test sees the biases.
        **kwargs,
    )


def _gradient(fn, x):
    """d fn(x) / dx with the active backend's autodiff (the core itself is backend-agnostic)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(x)
        with tf.GradientTape() as tape:
            y = fn(x)
        return tape.gradient(y, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        fn(x).backward()
        return x.grad.numpy()
    pytest.skip(f"no autodiff for the {backend} backend")


def _numpy_weights(head, m):
    """`W(m)`, `b(m)` read from the layer's variables (not through the layer's own helpers)."""
    i = DIMS.index(m)
    if head.efficient:
        kernel = keras.ops.convert_to_numpy(head.kernel)[:m]
        bias = keras.ops.convert_to_numpy(head.bias) if head.use_bias else 0.0
    else:
        kernel = keras.ops.convert_to_numpy(head.kernels[i])
        bias = keras.ops.convert_to_numpy(head.biases[i]) if head.use_bias else 0.0
    return kernel, bias


def _numpy_logits(head, z):
    out = []
    for m in DIMS:
        kernel, bias = _numpy_weights(head, m)
        out.append(z[:, :m].astype("float64") @ kernel.astype("float64") + bias)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("efficient", [False, True], ids=["mrl", "mrl_e"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])
class TestMatryoshkaHead(TestCase):
    def test_logits_match_numpy(self, efficient, use_bias):
        z = np.random.default_rng(0).normal(size=(5, WIDTH)).astype("float32")
        head = _head(efficient, use_bias)
        logits = keras.ops.convert_to_numpy(head(z))
        assert logits.shape == (5, len(DIMS), NUM_CLASSES)
        np.testing.assert_allclose(logits, _numpy_logits(head, z), rtol=1e-4, atol=1e-4)
        for i, m in enumerate(DIMS):
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(head.prefix_logits(z, m)), logits[:, i], atol=1e-5
            )

    def test_parameter_count(self, efficient, use_bias):
        head = _head(efficient, use_bias)
        head.build((None, WIDTH))
        n, d = len(DIMS), max(DIMS)
        if efficient:
            expected = d * NUM_CLASSES + (NUM_CLASSES if use_bias else 0)
            assert [tuple(w.shape) for w in head.weights][0] == (d, NUM_CLASSES)
        else:
            expected = sum(DIMS) * NUM_CLASSES + (n * NUM_CLASSES if use_bias else 0)
            kernels = [tuple(w.shape) for w in head.weights if "kernel" in w.path]
            assert kernels == [(m, NUM_CLASSES) for m in DIMS]
        assert head.count_params() == expected

    def test_symbolic_call_and_output_shape(self, efficient, use_bias):
        head = _head(efficient, use_bias)
        outputs = head(keras.Input((WIDTH,)))
        assert tuple(outputs.shape) == (None, len(DIMS), NUM_CLASSES)
        assert head.compute_output_shape((None, 3, WIDTH)) == (None, 3, len(DIMS), NUM_CLASSES)

    def test_serialization(self, efficient, use_bias):
        head = _head(efficient, use_bias, kernel_regularizer="l2", name="matryoshka_head")
        revived = self.run_serialization_test(head)
        assert revived.nesting_dims == DIMS
        assert revived.efficient is efficient and revived.use_bias is use_bias

    def test_model_saving(self, efficient, use_bias, tmp_path):
        inputs = keras.Input((12,))
        z = keras.layers.Dense(WIDTH, name="embedding")(inputs)
        outputs = _head(efficient, use_bias, name="matryoshka_head")(z)
        model = keras.Model(inputs, outputs)
        model.compile(
            "adam",
            loss=MatryoshkaLoss(nesting_weights=[1, 1, 1, 2]),
            metrics=matryoshka_metrics(DIMS),
        )
        x = np.random.default_rng(1).normal(size=(6, 12)).astype("float32")
        y = np.arange(6) % NUM_CLASSES
        restored = self.run_model_saving_test(model, x, tmp_path)
        assert isinstance(restored.get_layer("matryoshka_head"), MatryoshkaHead)
        assert restored.loss.get_config() == model.loss.get_config()
        # The compiled loss and per-prefix metrics come back too.
        expected = model.evaluate(x, y, verbose=0, return_dict=True)
        actual = restored.evaluate(x, y, verbose=0, return_dict=True)
        assert set(actual) == {"loss"} | {f"accuracy@{m}" for m in DIMS}
        for key, value in expected.items():
            assert actual[key] == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize("efficient", [False, True], ids=["mrl", "mrl_e"])
def test_gradients_reach_every_dim_and_every_head_reaches_the_first_dims(efficient):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(16, WIDTH)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=16)
    head = _head(efficient)
    head.build(z.shape)

    def grad_of(weights):
        loss = MatryoshkaLoss(nesting_weights=weights)
        grad = _gradient(lambda z: loss(labels, head(z)), z)
        return np.abs(grad).sum(axis=0)  # Per embedding dim.

    grad = grad_of(None)
    assert np.all(grad[: max(DIMS)] > 0), "every dim of the largest prefix gets gradient"
    assert np.all(grad[max(DIMS) :] == 0), "dims beyond max(nesting_dims) are not read"
    for i, m in enumerate(DIMS):
        only_head_i = [1.0 if j == i else 0.0 for j in range(len(DIMS))]
        grad = grad_of(only_head_i)
        assert np.all(grad[:8] > 0), f"head {m} sends gradient to the first 8 dims"
        assert np.all(grad[:m] > 0)
        assert np.all(grad[m:] == 0), f"head {m} reads only z[:, :{m}]"


@pytest.mark.parametrize("efficient", [False, True], ids=["mrl", "mrl_e"])
def test_mixed_precision(efficient):
    z = np.random.default_rng(3).normal(size=(4, WIDTH)).astype("float32")
    head = _head(efficient, dtype="mixed_float16")
    logits = head(z)
    assert keras.backend.standardize_dtype(logits.dtype) == "float16"
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in head.weights)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(logits).astype("float32"),
        _numpy_logits(head, z),
        atol=0.05,
        rtol=0.02,
    )


def test_default_name_follows_the_convention():
    assert MatryoshkaHead(3, (8,)).name.startswith("matryoshka_head")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_classes": 0, "nesting_dims": DIMS}, ValueError, r"at least 1.*num_classes=0"),
        ({"num_classes": 2.5, "nesting_dims": DIMS}, TypeError, r"int.*num_classes=2.5"),
        ({"num_classes": 3, "nesting_dims": (16, 8)}, ValueError, r"strictly increasing"),
        ({"num_classes": 3, "nesting_dims": (8, 8)}, ValueError, r"duplicate"),
        ({"num_classes": 3, "nesting_dims": (0, 8)}, ValueError, r"positive.*\(0, 8\)"),
        ({"num_classes": 3, "nesting_dims": (8, 12.0)}, TypeError, r"only ints"),
        ({"num_classes": 3, "nesting_dims": 64}, TypeError, r"sequence of ints"),
        ({"num_classes": 3, "nesting_dims": DIMS, "efficient": "yes"}, TypeError, r"efficient"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MatryoshkaHead(**kwargs)


@pytest.mark.parametrize("efficient", [False, True], ids=["mrl", "mrl_e"])
def test_nesting_dim_larger_than_the_input(efficient):
    head = MatryoshkaHead(3, (8, 16, 128), efficient=efficient)
    with pytest.raises(ValueError, match=r"at least max\(nesting_dims\)=128.*\(None, 64\)"):
        head(keras.Input((64,)))
    head = MatryoshkaHead(3, (8, 16, 128), efficient=efficient)
    with pytest.raises(ValueError, match=r"at least max\(nesting_dims\)=128.*\(2, 64\)"):
        head(np.zeros((2, 64), "float32"))
    with pytest.raises(ValueError, match=r"last axis.*defined"):
        MatryoshkaHead(3, (8,), efficient=efficient).build((None, None))


def test_prefix_weights_bad_input():
    head = _head(False)
    head.build((None, WIDTH))
    with pytest.raises(ValueError, match=r"one of nesting_dims=\(8, 16, 32, 64\).*m=24"):
        head.prefix_weights(24)
    head = _head(True)
    head.build((None, WIDTH))
    assert tuple(head.prefix_weights(24)[0].shape) == (24, NUM_CLASSES)
    with pytest.raises(ValueError, match=r"1 <= m <= 64.*m=65"):
        head.prefix_weights(65)


@pytest.mark.parametrize("efficient", [False, True], ids=["mrl", "mrl_e"])
def test_mrl_e_reads_each_dim_once(efficient):
    """MRL-E multiplies each block of dims once (then sums), MRL each prefix in full."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("inspects the traced TensorFlow graph")
    import tensorflow as tf

    head = _head(efficient)
    head.build((None, WIDTH))
    graph = (
        tf.function(head.call).get_concrete_function(tf.TensorSpec((None, WIDTH), tf.float32)).graph
    )
    matmuls = [op for op in graph.get_operations() if op.type in ("MatMul", "BatchMatMulV2")]
    inner_dims = sorted(int(op.inputs[1].shape[0]) for op in matmuls)
    if efficient:
        assert inner_dims == [8, 8, 16, 32]  # the blocks [0:8], [8:16], [16:32], [32:64]
        assert sum(inner_dims) == max(DIMS)
    else:
        assert inner_dims == list(DIMS)
