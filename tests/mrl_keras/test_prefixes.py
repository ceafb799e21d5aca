import keras
import numpy as np
import pytest

from mrl_keras import normalize_prefixes, truncate


def _np_normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def test_truncate_normalizes_the_prefix_on_its_own():
    z = np.random.default_rng(0).normal(size=(5, 32)).astype("float32")
    out = keras.ops.convert_to_numpy(truncate(z, 8))
    np.testing.assert_allclose(out, _np_normalize(z[:, :8]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)
    # Not the prefix of the normalised full vector.
    assert not np.allclose(out, _np_normalize(z)[:, :8], atol=1e-3)


def test_truncate_without_normalize_and_higher_rank():
    z = np.random.default_rng(1).normal(size=(2, 3, 16)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(truncate(z, 4, normalize=False)), z[..., :4]
    )
    assert tuple(truncate(z, 4).shape) == (2, 3, 4)


def test_truncate_zero_vector_stays_finite():
    out = keras.ops.convert_to_numpy(truncate(np.zeros((2, 8), "float32"), 4))
    np.testing.assert_array_equal(out, 0.0)


def test_normalize_prefixes():
    z = np.random.default_rng(2).normal(size=(4, 16)).astype("float32")
    outs = normalize_prefixes(z, (4, 8, 16))
    assert [tuple(o.shape) for o in outs] == [(4, 4), (4, 8), (4, 16)]
    for out, m in zip(outs, (4, 8, 16), strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(out), _np_normalize(z[:, :m]), rtol=1e-5, atol=1e-6
        )


def test_symbolic_truncate():
    z = keras.Input((16,))
    assert tuple(truncate(z, 8).shape) == (None, 8)


@pytest.mark.parametrize(
    "m, error, match",
    [
        (0, ValueError, r"positive int.*m=0"),
        (17, ValueError, r"at most the embedding width 16.*m=17"),
        (4.0, TypeError, r"int.*m=4.0"),
    ],
)
def test_truncate_bad_input(m, error, match):
    with pytest.raises(error, match=match):
        truncate(np.ones((2, 16), "float32"), m)


def test_normalize_prefixes_bad_input():
    z = np.ones((2, 16), "float32")
    with pytest.raises(ValueError, match=r"at most the embedding width 16.*=32"):
        normalize_prefixes(z, (8, 32))
    with pytest.raises(ValueError, match=r"strictly increasing.*dims=\(8, 4\)"):
        normalize_prefixes(z, (8, 4))
