"""serving/backends/tf_serving_grpc.py: arguments, status-code translation, and one round trip
against the serving target (the dev model server, or a real TF Serving; conftest.py)."""

import grpc
import pytest
from serving_testing import assert_embeds_like

from mrl_keras.serving import TFServingGrpc, Unavailable
from mrl_keras.serving.backends.tf_serving_grpc import _translate


class _RpcError(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "connection refused"


def test_status_codes_become_backend_errors():
    error = _translate(_RpcError())
    assert isinstance(error, Unavailable) and error.message == "connection refused"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"version": 1, "label": "stable"}, "at most one of version and label"),
        ({"timeout": 0}, "timeout > 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TFServingGrpc("127.0.0.1:1", "m", check=False, **kwargs)


def test_embed_round_trip(serving_target, local_model):
    if serving_target.grpc_address is None:
        pytest.skip("gRPC is not under test")
    backend = TFServingGrpc(serving_target.grpc_address, serving_target.model_name)
    assert_embeds_like(backend, local_model)
