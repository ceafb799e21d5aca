import keras
import numpy as np
import pytest

from mrl_keras import PrefixEmbedding
from tests.testing import TestCase


def _z(shape=(5, 12), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape", [(5, 12), (2, 3, 12)])
def test_matches_numpy(shape, normalize):
    z = _z(shape)
    out = keras.ops.convert_to_numpy(PrefixEmbedding(4, normalize=normalize)(z))
    expected = z[..., :4]
    if normalize:
        expected = expected / np.linalg.norm(expected, axis=-1, keepdims=True)
    assert out.shape == (*shape[:-1], 4)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_symbolic_shape():
    inputs = keras.Input((12,))
    assert PrefixEmbedding(8)(inputs).shape == (None, 8)
    assert PrefixEmbedding(8).compute_output_shape((None, 3, 12)) == (None, 3, 8)


class TestSerialization(TestCase):
    def test_get_config_round_trip(self):
        revived = self.run_serialization_test(PrefixEmbedding(8, normalize=False, name="p8"))
        assert revived.dim == 8 and revived.normalize is False

    def test_model_saving(self, tmp_path):
        inputs = keras.Input((6,))
        z = keras.layers.Dense(12)(inputs)
        model = keras.Model(inputs, PrefixEmbedding(4)(z))
        self.run_model_saving_test(model, _z((3, 6)), tmp_path)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dim": 0}, ValueError, r"Expected `dim` to be a positive int. Received: dim=0"),
        ({"dim": 4.0}, TypeError, r"Expected `dim` to be an int. Received: dim=4.0"),
        ({"dim": 4, "normalize": "no"}, TypeError, r"normalize='no'"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PrefixEmbedding(**kwargs)


def test_input_narrower_than_dim():
    with pytest.raises(
        ValueError, match=r"width at least dim=16. Received: input_shape=\(None, 12\)"
    ):
        PrefixEmbedding(16)(keras.Input((12,)))
