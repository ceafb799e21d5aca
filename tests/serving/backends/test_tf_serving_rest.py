"""serving/backends/tf_serving_rest.py: arguments and one round trip against the serving target
(the dev model server, or a real TF Serving; conftest.py)."""

import pytest
from serving_testing import assert_embeds_like

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
    assert_embeds_like(backend, local_model)
