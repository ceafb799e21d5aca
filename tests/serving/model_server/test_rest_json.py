"""serving/model_server/rest_json.py (pure functions): TF Serving's tensor parsing rules and
messages, `{"b64": ...}` strings, and both response formats."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_keras.serving import InvalidInput, SignatureSpec, TensorInfo
from mrl_keras.serving.model_server.rest_json import (
    json_to_array,
    parse_predict_body,
    predict_response_json,
    tensors_from_doc,
)

ONE = SignatureSpec("s", {"x": TensorInfo("float32", (-1, 2))}, {})
STRINGS = SignatureSpec("s", {"image_bytes": TensorInfo("string", (-1,))}, {})
TWO = SignatureSpec("s", {"a": TensorInfo("float32", (-1, 2)), "b": TensorInfo("int64", (-1,))}, {})


def test_row_and_columnar_formats():
    arrays, fmt = tensors_from_doc({"instances": [[1, 2], [3, 4]]}, ONE)
    assert fmt == "row" and arrays["x"].dtype == np.float32 and arrays["x"].shape == (2, 2)
    arrays, fmt = tensors_from_doc({"inputs": {"x": [[1.5, 2]], "extra": 1}}, ONE)
    assert fmt == "columnar" and arrays["x"].tolist() == [[1.5, 2.0]]
    arrays, _ = tensors_from_doc({"instances": [{"a": [1, 2], "b": 3}, {"a": [3, 4], "b": 5}]}, TWO)
    assert arrays["b"].dtype == np.int64 and arrays["b"].tolist() == [3, 5]


def test_b64_strings():
    arrays, _ = tensors_from_doc({"instances": [{"b64": "AP8="}, {"b64": "YQ=="}]}, STRINGS)
    assert arrays["image_bytes"].tolist() == [b"\x00\xff", b"a"]
    arrays, _ = tensors_from_doc({"inputs": [{"b64": "YQ=="}]}, STRINGS)
    assert arrays["image_bytes"].tolist() == [b"a"]
    with pytest.raises(InvalidInput, match="Unable to base64 decode"):
        json_to_array([{"b64": "not base64!"}], "string")
    with pytest.raises(InvalidInput, match="Type: Object is not of expected type: float"):
        json_to_array([{"b64": "YQ=="}], "float32")


@pytest.mark.parametrize(
    "doc, spec, message",
    [
        (
            {"instances": [[1, 2]], "inputs": [[1, 2]]},
            ONE,
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        ),
        ({"instances": []}, ONE, "No values in 'instances' array"),
        ({"instances": 3}, ONE, "Expecting 'instances' to be an list/array"),
        ({}, ONE, "Missing 'inputs' or 'instances' key"),
        ({"inputs": {"y": 1}}, ONE, "Missing named input: x in 'inputs' object."),
        (
            {"instances": [[1, 2], [1]]},
            ONE,
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 2 but got: 1",
        ),
        ({"instances": [[1, True]]}, ONE, "Type: True is not of expected type: float"),
        ({"instances": [[1, 2]]}, TWO, "instances is a plain list, but expecting list of objects"),
        ({"instances": [{"a": [1, 2]}]}, TWO, "keys must be equal to: a,b"),
        ({"inputs": [[1, 2]]}, TWO, "inputs is a plain value/list, but expecting an object"),
        (
            {"instances": [{"a": [1, 2], "b": 1.5}]},
            TWO,
            "Type: Number is not of expected type: int64",
        ),
    ],
)
def test_tf_serving_messages(doc, spec, message):
    with pytest.raises(InvalidInput) as info:
        tensors_from_doc(doc, spec)
    assert message in info.value.message


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"{", "JSON Parse error"),
        (b"[1]", "Is not object"),
        (b'{"signature_name": 3}', "'signature_name' key must be a string value."),
    ],
)
def test_body_errors(body, message):
    with pytest.raises(InvalidInput, match=message):
        parse_predict_body(body)


def test_response_formats():
    one = {"embedding": np.ones((2, 2), np.float32)}
    assert predict_response_json(one, "row") == {"predictions": [[1.0, 1.0], [1.0, 1.0]]}
    assert predict_response_json(one, "columnar") == {"outputs": [[1.0, 1.0], [1.0, 1.0]]}
    two = {"classes": np.array([1, 2]), "scores": np.array([0.5, 0.25], np.float32)}
    assert predict_response_json(two, "row")["predictions"][1] == {"classes": 2, "scores": 0.25}
    assert predict_response_json(two, "columnar")["outputs"]["classes"] == [1, 2]


@pytest.mark.parametrize("doc", [{"instances": [[1, 2.5], [3, 4]]}, {"inputs": [[1, 2], [3, 4]]}])
def test_fast_path_equals_checked_path(doc):
    fast, _ = tensors_from_doc(doc, ONE, fast=True)
    slow, _ = tensors_from_doc(doc, ONE, fast=False)
    assert fast["x"].dtype == slow["x"].dtype == np.float32
    np.testing.assert_array_equal(fast["x"], slow["x"])
