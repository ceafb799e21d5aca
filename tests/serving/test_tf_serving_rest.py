"""serving/backends/tf_serving_rest.py: arguments and one round trip against the serving target
(the dev model server, or a real TF Serving; conftest.py)."""

import numpy as np
import pytest
from serving_testing import EMBEDDING_DIM, sample_inputs

from mrl_keras.serving import TFServingRest


@pytest.mark.parametrize(
    "url, kwargs, match",
    [
        ("127.0.0.1:8501", {}, "http:// or https://"),
        ("http://127.0.0.1:1", {"version": 1, "label": "stable"}, "at most one of version"),
        ("http://127.0.0.1:1", {"timeout": -1}, "timeout > 0"),
    ],
)
def test_bad_arguments(url, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TFServingRest(url, "m", check=False, **kwargs)


def test_embed_round_trip(serving_target, local_model):
    if serving_target.rest_url is None:
        pytest.skip("REST is not under test")
    backend = TFServingRest(serving_target.rest_url, serving_target.model_name)
    x = sample_inputs(4)
    got = backend.embed(x, EMBEDDING_DIM)
    np.testing.assert_allclose(
        got.embeddings, local_model.embed(x, EMBEDDING_DIM).embeddings, rtol=1e-5, atol=1e-6
    )
    assert backend.info().embedding_dim == EMBEDDING_DIM
