"""The three backends give the Keras model's numbers: `embed` at every exported dim equals the
normalised prefix, a non-exported dim is the re-normalised slice of the next larger signature,
and `classify` / `classify_cascade` agree with `LocalModel`. Remote backends run against
`serving_target` (our dev server, or a real TF Serving from the environment)."""

from __future__ import annotations

import numpy as np
import pytest
from serving_testing import EMBEDDING_DIM, NESTING_DIMS, NUM_CLASSES, sample_inputs

from mrl_keras.serving import (
    FailedPrecondition,
    InvalidInput,
    LocalModel,
    NotFound,
    TFServingGrpc,
    TFServingRest,
)

X = sample_inputs(6, seed=3)


@pytest.fixture(scope="module", params=["local", "grpc", "rest"])
def backend(request, local_model, serving_target):
    if request.param == "local":
        yield local_model
        return
    if request.param == "grpc":
        if not serving_target.grpc_address:
            pytest.skip("gRPC not under test")
        b = TFServingGrpc(serving_target.grpc_address, serving_target.model_name, timeout=10)
    else:
        if not serving_target.rest_url:
            pytest.skip("REST not under test")
        b = TFServingRest(serving_target.rest_url, serving_target.model_name, timeout=10)
    yield b
    b.close()


def test_info_from_signature_defs(backend):
    info = backend.info()
    assert info.embedding_dim == EMBEDDING_DIM
    assert info.exported_dims == NESTING_DIMS
    assert info.classify_dims == NESTING_DIMS
    assert info.num_classes == NUM_CLASSES
    assert info.has_cascade
    assert (info.input_name, info.input_shape, info.input_dtype) == (
        "inputs",
        (None, 10),
        "float32",
    )
    assert info.version >= 1


@pytest.mark.parametrize("dim", NESTING_DIMS)
def test_embed_at_exported_dims_equals_keras_normalised_prefix(backend, tiny_model, dim):
    result = backend.embed(X, dim)
    assert result.embeddings.dtype == np.float32
    assert result.embeddings.shape == (len(X), dim)
    assert result.source_dim == dim
    np.testing.assert_allclose(result.embeddings, tiny_model.normalized_prefix(X, dim), atol=1e-5)
    assert result.served_version == backend.status().version


@pytest.mark.parametrize("dim, source", [(24, 32), (12, 16), (5, 8)])
def test_embed_at_non_exported_dim_is_renormalised_slice(
    backend, tiny_model, local_model, dim, source
):
    result = backend.embed(X, dim)
    assert result.source_dim == source
    larger = local_model.embed(X, source).embeddings[:, :dim]
    expected = larger / np.linalg.norm(larger, axis=1, keepdims=True)
    np.testing.assert_allclose(result.embeddings, expected, atol=1e-5)
    np.testing.assert_allclose(result.embeddings, tiny_model.normalized_prefix(X, dim), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("dim", NESTING_DIMS)
def test_classify_matches_keras_head(backend, tiny_model, dim):
    result = backend.classify(X, dim)
    logits = tiny_model.logits(X)[:, NESTING_DIMS.index(dim)]
    np.testing.assert_allclose(result.logits, logits, atol=1e-4)
    assert result.classes.dtype == np.int64
    np.testing.assert_array_equal(result.classes, logits.argmax(axis=1))
    np.testing.assert_allclose(result.scores, result.probabilities.max(axis=1), atol=1e-6)


def test_classify_cascade_agrees_with_local_model(backend, local_model):
    x = sample_inputs(64, seed=5)
    result, expected = backend.classify_cascade(x), local_model.classify_cascade(x)
    np.testing.assert_array_equal(result.classes, expected.classes)
    np.testing.assert_array_equal(result.dims_used, expected.dims_used)
    np.testing.assert_allclose(result.scores, expected.scores, atol=1e-6)
    assert result.dims_used.dtype == np.int32 and result.classes.dtype == np.int64
    assert len(set(expected.dims_used.tolist())) > 1  # the thresholds make some stop early


def test_status_available(backend):
    status = backend.status()
    assert status.state == "AVAILABLE" and status.available
    assert status.version == backend.info().version


def test_client_side_validation(backend):
    with pytest.raises(InvalidInput, match="1 <= dim <= 32"):
        backend.embed(X, 33)
    with pytest.raises(InvalidInput, match="exported classification prefixes"):
        backend.classify(X, 24)


def test_server_errors_reach_the_caller(backend):
    with pytest.raises(InvalidInput) as info:
        backend.embed(X[:, :7], 8)
    assert info.value.code == "INVALID_ARGUMENT" and info.value.message


def test_startup_check_names_missing_signatures(serving_target, exported_base_path):
    with pytest.raises(FailedPrecondition, match="classify_999"):
        LocalModel(exported_base_path, required_signatures=["classify_999"])
    if serving_target.grpc_address:
        with pytest.raises(FailedPrecondition, match="classify_999"):
            TFServingGrpc(
                serving_target.grpc_address,
                serving_target.model_name,
                required_signatures=["classify_999"],
            )
        with pytest.raises(NotFound, match=r"Servable not found for request: Latest\(nope\)"):
            TFServingGrpc(serving_target.grpc_address, "nope")
    if serving_target.rest_url:
        with pytest.raises(FailedPrecondition, match="classify_999"):
            TFServingRest(
                serving_target.rest_url,
                serving_target.model_name,
                required_signatures=["classify_999"],
            )
        with pytest.raises(NotFound, match=r"Servable not found for request: Latest\(nope\)"):
            TFServingRest(serving_target.rest_url, "nope")


def test_pinned_version_is_served(serving_target, local_model):
    clients = []
    if serving_target.grpc_address:
        clients.append(
            lambda **kw: TFServingGrpc(serving_target.grpc_address, serving_target.model_name, **kw)
        )
    if serving_target.rest_url:
        clients.append(
            lambda **kw: TFServingRest(serving_target.rest_url, serving_target.model_name, **kw)
        )
    for make in clients:
        version = make().status().version
        pinned = make(version=version)
        assert pinned.embed(X, 8).served_version == version
        assert pinned.status().version == version
        with pytest.raises(NotFound, match=rf"Specific\({serving_target.model_name}, 99\)"):
            make(version=99)


def test_large_batch_over_4mib_via_grpc(serving_target, local_model):
    if not serving_target.grpc_address:
        pytest.skip("gRPC not under test")
    backend = TFServingGrpc(serving_target.grpc_address, serving_target.model_name, timeout=60)
    x = sample_inputs(150_000, seed=9)  # 6 MB of request, 19 MB of embed_32 response
    assert x.nbytes > 4 * 2**20
    result = backend.embed(x, 32)
    assert result.embeddings.shape == (len(x), 32)
    np.testing.assert_allclose(
        result.embeddings[-100:], local_model.embed(x[-100:], 32).embeddings, atol=1e-5
    )
