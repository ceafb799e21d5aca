"""Error conformance: every error case of the TF Serving reference that applies, over REST and
gRPC, with the real server's status code and message; a valid request succeeds after each.

Runs against our dev server by default, unchanged against a real TF Serving when
MRL_TFSERVING_GRPC / MRL_TFSERVING_REST are set (see conftest.py).
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import requests
from serving_testing import INPUT_DIM, sample_inputs
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mrl_keras.serving.backends.tf_serving_requests import (
    metadata_request,
    ndarray_to_tensor_proto,
    predict_request,
    status_request,
)

X = sample_inputs(2)


@pytest.fixture(scope="module")
def rest(serving_target):
    if not serving_target.rest_url:
        pytest.skip("REST is not under test (MRL_TFSERVING_REST unset while gRPC is set)")
    with requests.Session() as session:
        yield serving_target, session


@pytest.fixture(scope="module")
def stubs(serving_target):
    if not serving_target.grpc_address:
        pytest.skip("gRPC is not under test (MRL_TFSERVING_GRPC unset while REST is set)")
    channel = grpc.insecure_channel(serving_target.grpc_address)
    yield (
        serving_target,
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()


def _assert_error_message(message, exact, parts):
    """The error `message` is non-empty, equals `exact` (unless None) and holds every part."""
    assert isinstance(message, str) and message
    if exact is not None:
        assert message == exact
    for part in parts:
        assert part in message


# -- REST ----------------------------------------------------------------------------------
def _rest_valid(target, session):
    r = session.post(
        f"{target.rest_url}/v1/models/{target.model_name}:predict",
        json={"signature_name": "embed_8", "instances": X.tolist()},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert np.asarray(r.json()["predictions"]).shape == (2, 8)


def _rest_cases(name):
    good = X.tolist()
    return [
        # (id, method, path, body, http status, exact message or None, substrings)
        (
            "unknown_model",
            "POST",
            "/v1/models/nope:predict",
            {"instances": good},
            404,
            "Servable not found for request: Latest(nope)",
            (),
        ),
        (
            "unknown_version",
            "POST",
            f"/v1/models/{name}/versions/99:predict",
            {"instances": good},
            404,
            f"Servable not found for request: Specific({name}, 99)",
            (),
        ),
        (
            "bad_signature",
            "POST",
            f"/v1/models/{name}:predict",
            {"signature_name": "x", "instances": good},
            400,
            'Serving signature name: "x" not found in signature def',
            (),
        ),
        (
            "missing_inputs",
            "POST",
            f"/v1/models/{name}:predict",
            {"signature_name": "embed_8"},
            400,
            "Missing 'inputs' or 'instances' key",
            (),
        ),
        (
            "missing_named_input",
            "POST",
            f"/v1/models/{name}:predict",
            {"signature_name": "embed_8", "inputs": {"x": good}},
            400,
            "Missing named input: inputs in 'inputs' object.",
            (),
        ),
        (
            "wrong_dtype",
            "POST",
            f"/v1/models/{name}:predict",
            {"signature_name": "embed_8", "instances": [["a"] * INPUT_DIM]},
            400,
            None,
            (
                "Failed to process element: 0 of 'instances' list.",
                "Type: String is not of expected type: float",
            ),
        ),
        (
            "ragged_shape",
            "POST",
            f"/v1/models/{name}:predict",
            {"signature_name": "embed_8", "instances": [[0.0] * INPUT_DIM, [0.0] * 7]},
            400,
            None,
            (
                "Failed to process element: 1 of 'instances' list.",
                f"Expecting tensor size: {INPUT_DIM} but got: 7",
            ),
        ),
        (
            "wrong_shape",
            "POST",
            f"/v1/models/{name}:predict",
            {"signature_name": "embed_8", "instances": [[0.0] * 7, [0.0] * 7]},
            400,
            None,
            (),
        ),
        (
            "both_keys",
            "POST",
            f"/v1/models/{name}:predict",
            {"signature_name": "embed_8", "instances": good, "inputs": good},
            400,
            None,
            (
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist",
            ),
        ),
        (
            "empty_instances",
            "POST",
            f"/v1/models/{name}:predict",
            {"signature_name": "embed_8", "instances": []},
            400,
            None,
            ("No values in 'instances' array",),
        ),
        (
            "unknown_route",
            "POST",
            "/v1/foo",
            {"instances": good},
            400,
            "Malformed request: POST /v1/foo",
            (),
        ),
        (
            "missing_model_name",
            "GET",
            "/v1/models",
            None,
            400,
            "Missing model name in request.",
            (),
        ),
        (
            "status_unknown_version",
            "GET",
            f"/v1/models/{name}/versions/99",
            None,
            404,
            f"Could not find version 99 of model {name}",
            (),
        ),
        (
            "status_unknown_model",
            "GET",
            "/v1/models/nope",
            None,
            404,
            "Could not find any versions of model nope",
            (),
        ),
        (
            "metadata_unknown_model",
            "GET",
            "/v1/models/nope/metadata",
            None,
            404,
            "Servable not found for request: Latest(nope)",
            (),
        ),
    ]


REST_CASE_IDS = [c[0] for c in _rest_cases("m")]


@pytest.mark.parametrize("case_id", REST_CASE_IDS)
def test_rest_error(rest, case_id):
    target, session = rest
    case = {c[0]: c for c in _rest_cases(target.model_name)}[case_id]
    _, method, path, body, status, exact, parts = case
    r = session.request(method, target.rest_url + path, json=body, timeout=10)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    _assert_error_message(r.json()["error"], exact, parts)
    _rest_valid(target, session)


def test_rest_routes_are_case_insensitive_and_accept_versions_and_columnar(rest):
    target, session = rest
    base = f"{target.rest_url}/V1/Models/{target.model_name}/versions/1"
    r = session.post(
        base + ":PREDICT", json={"signature_name": "embed_16", "inputs": X.tolist()}, timeout=10
    )
    assert r.status_code == 200, r.text
    assert np.asarray(r.json()["outputs"]).shape == (2, 16)
    r = session.post(
        f"{target.rest_url}/v1/models/{target.model_name}:predict",
        json={"signature_name": "classify_8", "instances": X.tolist()},
        timeout=10,
    )
    rows = r.json()["predictions"]
    assert len(rows) == 2 and set(rows[0]) == {"logits", "probabilities", "classes", "scores"}
    r = session.post(
        f"{target.rest_url}/v1/models/{target.model_name}:predict",
        json={"signature_name": "classify_8", "inputs": {"inputs": X.tolist()}},
        timeout=10,
    )
    outputs = r.json()["outputs"]
    assert np.asarray(outputs["probabilities"]).shape == (2, 5)


def test_rest_status_and_metadata_shapes(rest):
    target, session = rest
    status = session.get(f"{target.rest_url}/v1/models/{target.model_name}", timeout=10).json()
    entry = next(v for v in status["model_version_status"] if v["state"] == "AVAILABLE")
    assert isinstance(entry["version"], str)
    assert entry["status"]["error_code"] == "OK"
    meta = session.get(
        f"{target.rest_url}/v1/models/{target.model_name}/metadata", timeout=10
    ).json()
    assert meta["model_spec"]["name"] == target.model_name
    assert meta["model_spec"]["signature_name"] == ""
    assert meta["model_spec"]["version"] == entry["version"]
    defs = meta["metadata"]["signature_def"]["signature_def"]
    assert defs["embed_8"]["inputs"]["inputs"]["dtype"] == "DT_FLOAT"
    assert defs["embed_8"]["outputs"]["embedding"]["dtype"] == "DT_FLOAT"
    assert defs["embed_8"]["method_name"] == "tensorflow/serving/predict"


# -- gRPC ----------------------------------------------------------------------------------
def _grpc_valid(target, prediction):
    response = prediction.Predict(
        predict_request(target.model_name, "embed_8", {"inputs": X}), timeout=10
    )
    assert response.model_spec.version.value >= 1
    assert tuple(d.size for d in response.outputs["embedding"].tensor_shape.dim) == (2, 8)


def _predict_with(name, signature, inputs, version=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if signature is not None:
        request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(ndarray_to_tensor_proto(value))
    return request


def _grpc_cases(name):
    return [
        # (id, method, request, code, exact message or None, substrings)
        (
            "unknown_model",
            "Predict",
            _predict_with("nope", "embed_8", {"inputs": X}),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
            (),
        ),
        (
            "unknown_version",
            "Predict",
            _predict_with(name, "embed_8", {"inputs": X}, version=99),
            grpc.StatusCode.NOT_FOUND,
            f"Servable not found for request: Specific({name}, 99)",
            (),
        ),
        (
            "bad_signature",
            "Predict",
            _predict_with(name, "x", {"inputs": X}),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "x" not found.',
            (),
        ),
        (
            "missing_inputs",
            "Predict",
            _predict_with(name, "embed_8", {}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input size does not match signature: 0!=1 len({}) != len({inputs}). Sent extra: {}. "
            "Missing but required: {inputs}.",
            (),
        ),
        (
            "wrong_input_alias",
            "Predict",
            _predict_with(name, "embed_8", {"x": X}),
            grpc.StatusCode.INVALID_ARGUMENT,
            None,
            ("inputs", "not found in request"),
        ),
        (
            "wrong_dtype",
            "Predict",
            _predict_with(name, "embed_8", {"inputs": X.astype(np.float64)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            None,
            ("to be float but double is provided",),
        ),
        (
            "wrong_shape",
            "Predict",
            _predict_with(name, "embed_8", {"inputs": X[:, :7]}),
            grpc.StatusCode.INVALID_ARGUMENT,
            None,
            (),
        ),
        (
            "missing_model_spec",
            "Predict",
            predict_pb2.PredictRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Missing ModelSpec",
            (),
        ),
        (
            "metadata_without_field",
            "GetModelMetadata",
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=metadata_request(name).model_spec
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "GetModelMetadataRequest must specify at least one metadata_field",
            (),
        ),
        (
            "metadata_unknown_model",
            "GetModelMetadata",
            metadata_request("nope"),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
            (),
        ),
        (
            "status_unknown_model",
            "GetModelStatus",
            status_request("nope"),
            grpc.StatusCode.NOT_FOUND,
            "Could not find any versions of model nope",
            (),
        ),
        (
            "status_unknown_version",
            "GetModelStatus",
            status_request(name, version=99),
            grpc.StatusCode.NOT_FOUND,
            f"Could not find version 99 of model {name}",
            (),
        ),
        (
            "status_missing_model_spec",
            "GetModelStatus",
            get_model_status_pb2.GetModelStatusRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Missing ModelSpec",
            (),
        ),
    ]


GRPC_CASE_IDS = [c[0] for c in _grpc_cases("m")]


@pytest.mark.parametrize("case_id", GRPC_CASE_IDS)
def test_grpc_error(stubs, case_id):
    target, prediction, models = stubs
    case = {c[0]: c for c in _grpc_cases(target.model_name)}[case_id]
    _, method, request, code, exact, parts = case
    stub = models if method == "GetModelStatus" else prediction
    with pytest.raises(grpc.RpcError) as info:
        getattr(stub, method)(request, timeout=10)
    assert info.value.code() == code, info.value.details()
    _assert_error_message(info.value.details(), exact, parts)
    _grpc_valid(target, prediction)


def test_grpc_response_model_spec_and_typed_lists(stubs):
    target, prediction, _ = stubs
    request = _predict_with(target.model_name, None, {"inputs": X})  # serving_default
    response = prediction.Predict(request, timeout=10)
    assert response.model_spec.name == target.model_name
    assert response.model_spec.signature_name == "serving_default"
    assert response.model_spec.version.value >= 1
    # The server replies with typed lists (float_val), not tensor_content.
    assert len(response.outputs["embedding"].float_val) == 2 * 32
    # Typed-list requests are accepted as well as tensor_content.
    typed = _predict_with(target.model_name, "embed_8", {})
    typed.inputs["inputs"].CopyFrom(ndarray_to_tensor_proto(X, as_content=False))
    assert prediction.Predict(typed, timeout=10).outputs["embedding"].float_val
