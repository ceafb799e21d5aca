"""serving/backends/tf_serving_grpc.py: arguments, status-code translation, and one round trip
against the serving target (the dev model server, or a real TF Serving; conftest.py)."""

import grpc
import numpy as np
import pytest
from serving_testing import EMBEDDING_DIM, sample_inputs

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
    x = sample_inputs(4)
    got = backend.embed(x, EMBEDDING_DIM)
    np.testing.assert_allclose(
        got.embeddings, local_model.embed(x, EMBEDDING_DIM).embeddings, rtol=1e-5, atol=1e-6
    )
    assert backend.info().embedding_dim == EMBEDDING_DIM
