"""Request builders and response parsers (pure functions, no server)."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from mrl_keras.serving import TensorInfo, VersionStatus
from mrl_keras.serving.backends import tf_serving_requests as r


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool", "uint8"])
@pytest.mark.parametrize("as_content", [True, False])
def test_tensor_proto_round_trip(dtype, as_content):
    array = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    proto = r.ndarray_to_tensor_proto(array, as_content=as_content)
    assert [d.size for d in proto.tensor_shape.dim] == [3, 4]
    assert bool(proto.tensor_content) == as_content
    out = r.tensor_proto_to_ndarray(proto)
    assert out.dtype == array.dtype
    np.testing.assert_array_equal(out, array)


def test_typed_list_for_float_replies():
    proto = r.ndarray_to_tensor_proto(np.ones((2, 2), np.float32), as_content=False)
    assert list(proto.float_val) == [1.0] * 4 and proto.dtype == types_pb2.DT_FLOAT


def test_string_tensor():
    proto = r.ndarray_to_tensor_proto(np.array([b"a", b"bc"], dtype=object))
    assert proto.dtype == types_pb2.DT_STRING and list(proto.string_val) == [b"a", b"bc"]


def test_predict_request_and_model_spec():
    x = np.zeros((2, 10), np.float32)
    request = r.predict_request("m", "embed_8", {"inputs": x}, version=3)
    assert request.model_spec.name == "m" and request.model_spec.signature_name == "embed_8"
    assert request.model_spec.WhichOneof("version_choice") == "version"
    assert request.model_spec.version.value == 3
    labelled = r.predict_request("m", "embed_8", {"inputs": x}, label="stable")
    assert labelled.model_spec.version_label == "stable"
    latest = r.predict_request("m", "embed_8", {"inputs": x})
    assert latest.model_spec.WhichOneof("version_choice") is None
    with pytest.raises(ValueError, match="at most one of version and label"):
        r.model_spec("m", version=1, label="x")


def test_metadata_and_status_requests():
    request = r.metadata_request("m", version=2)
    assert (
        list(request.metadata_field) == ["signature_def"] and request.model_spec.version.value == 2
    )
    assert r.status_request("m").model_spec.name == "m"


def test_parse_metadata_response():
    from tensorflow.core.protobuf import meta_graph_pb2

    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    sig.inputs["inputs"].dtype = types_pb2.DT_FLOAT
    for size in (-1, 10):
        sig.inputs["inputs"].tensor_shape.dim.add(size=size)
    sig.outputs["embedding"].dtype = types_pb2.DT_FLOAT
    sig.outputs["embedding"].tensor_shape.unknown_rank = True
    smap = get_model_metadata_pb2.SignatureDefMap()
    smap.signature_def["embed_8"].CopyFrom(sig)
    smap.signature_def["__saved_model_init_op"].CopyFrom(meta_graph_pb2.SignatureDef())
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.version.value = 7
    response.metadata["signature_def"].Pack(smap)
    version, specs = r.parse_metadata_response(response)
    assert version == 7 and list(specs) == ["embed_8"]
    assert specs["embed_8"].inputs["inputs"] == TensorInfo("float32", (-1, 10))
    assert specs["embed_8"].outputs["embedding"] == TensorInfo("float32", None)


def test_rest_paths_and_bodies():
    assert r.rest_model_path("m") == "/v1/models/m"
    assert r.rest_model_path("m", version=2) == "/v1/models/m/versions/2"
    assert r.rest_model_path("m", label="stable") == "/v1/models/m/labels/stable"
    x = np.array([[1.0, 2.0]], np.float32)
    assert r.rest_predict_body("s", {"inputs": x}) == {
        "signature_name": "s",
        "inputs": [[1.0, 2.0]],
    }
    assert r.rest_predict_body("s", {"inputs": x}, row_format=True)["instances"] == [[1.0, 2.0]]
    two = r.rest_predict_body("s", {"a": x, "b": x}, row_format=True)
    assert two["instances"] == [{"a": [1.0, 2.0], "b": [1.0, 2.0]}]
    strings = r.rest_predict_body("s", {"image_bytes": np.array([b"\x00\xff"], dtype=object)})
    assert strings["inputs"] == [{"b64": "AP8="}]


def test_parse_rest_predict_response_both_formats():
    outputs = {"classes": TensorInfo("int64", (-1,)), "scores": TensorInfo("float32", (-1,))}
    columnar = r.parse_rest_predict_response(
        {"outputs": {"classes": [1, 2], "scores": [0.5, 0.25]}}, outputs
    )
    row = r.parse_rest_predict_response(
        {"predictions": [{"classes": 1, "scores": 0.5}, {"classes": 2, "scores": 0.25}]}, outputs
    )
    for parsed in (columnar, row):
        assert parsed["classes"].dtype == np.int64 and parsed["scores"].dtype == np.float32
        np.testing.assert_array_equal(parsed["classes"], [1, 2])
    single = r.parse_rest_predict_response(
        {"outputs": [[1.0]]}, {"embedding": TensorInfo("float32", (-1, 1))}
    )
    assert single["embedding"].shape == (1, 1)
    with pytest.raises(ValueError, match="'outputs' or 'predictions'"):
        r.parse_rest_predict_response({"error": "x"}, outputs)


def test_parse_rest_metadata_and_status():
    body = {
        "model_spec": {"name": "m", "signature_name": "", "version": "4"},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "embed_8": {
                        "inputs": {
                            "inputs": {
                                "dtype": "DT_FLOAT",
                                "tensor_shape": {
                                    "dim": [{"size": "-1", "name": ""}, {"size": "10", "name": ""}],
                                    "unknown_rank": False,
                                },
                                "name": "serving_embed_8_inputs:0",
                            }
                        },
                        "outputs": {
                            "embedding": {
                                "dtype": "DT_FLOAT",
                                "tensor_shape": {"dim": [], "unknown_rank": True},
                            }
                        },
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }
    version, specs = r.parse_rest_metadata(body)
    assert version == 4 and specs["embed_8"].inputs["inputs"] == TensorInfo("float32", (-1, 10))
    status = r.parse_rest_status(
        {
            "model_version_status": [
                {
                    "version": "2",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                },
                {
                    "version": "3",
                    "state": "END",
                    "status": {"error_code": "UNKNOWN", "error_message": "bad"},
                },
            ]
        }
    )
    assert (status.version, status.state) == (2, "AVAILABLE")
    assert status.versions[1] == VersionStatus(3, "END", "UNKNOWN", "bad")


def test_choose_status():
    versions = [VersionStatus(1, "END"), VersionStatus(2, "AVAILABLE"), VersionStatus(3, "LOADING")]
    assert r.choose_status(versions).version == 2
    assert r.choose_status(versions, version=3).state == "LOADING"
    assert r.choose_status([VersionStatus(5, "LOADING")]).state == "LOADING"
    assert r.choose_status([]).state == "UNKNOWN"
