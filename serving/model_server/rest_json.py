"""TF Serving's REST JSON tensor codec, for the dev model server: request bodies in the row
(`instances`) and columnar (`inputs`) formats, `{"b64": ...}` strings, dtype checks with TF
Serving's error messages, and the JSON of predict responses.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from mrl_keras.serving.backends.backend import SignatureSpec
from mrl_keras.serving.backends.errors import InvalidInput
from mrl_keras.serving.backends.json_limits import JsonLimits, parse_bounded_json
from mrl_keras.serving.backends.local_model import tf_type_name

__all__ = [
    "json_to_array",
    "json_to_array_or_none",
    "parse_predict_body",
    "predict_response_json",
    "tensors_from_doc",
]

_DEBUG_LIMIT = 100
# Request documents nest a few levels (instances of images: 5); 64 is TF Serving-like room.
JSON_LIMITS = JsonLimits(max_depth=64, max_elements=1 << 28)


def _debug(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= _DEBUG_LIMIT else text[:_DEBUG_LIMIT] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _dense_shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _type_ok(value: Any, dtype: str) -> bool:
    if dtype in ("float32", "float64", "float16", "bfloat16"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype == "bool":
        return isinstance(value, bool)
    if dtype.startswith(("int", "uint")):
        return isinstance(value, int) and not isinstance(value, bool)
    if dtype == "string":
        return isinstance(value, str)
    return False


def _fill(value: Any, level: int, shape: list[int], dtype: str, out: list) -> None:
    """TF Serving's FillTensorProto: checks levels, sizes and types, in its words."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise InvalidInput(
                f"JSON Value: {_debug(value)} found at incorrect level: {level + 1} in the JSON "
                f"DOM. Expected at level: {rank}"
            )
        if isinstance(value, dict):
            if dtype != "string" or not _is_b64(value):
                if dtype == "string":
                    raise InvalidInput(
                        f"JSON Value: {_debug(value)} not formatted correctly for base64 data"
                    )
                raise InvalidInput(_type_error(value, dtype))
            try:
                out.append(base64.b64decode(value["b64"], validate=True))
            except ValueError as e:
                raise InvalidInput("Unable to base64 decode") from e
            return
        if not _type_ok(value, dtype):
            raise InvalidInput(_type_error(value, dtype))
        out.append(value.encode() if dtype == "string" else value)
        return
    if level >= rank:
        raise InvalidInput(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise InvalidInput(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected "
            f"size: {shape[level]}"
        )
    for v in value:
        _fill(v, level + 1, shape, dtype, out)


def _type_error(value: Any, dtype: str) -> str:
    return (
        f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: "
        f"{tf_type_name(dtype)}"
    )


def json_to_array(value: Any, dtype: str, fast: bool = False) -> np.ndarray:
    """One JSON value -> array of `dtype`, with TF Serving's checks and messages.

    `fast=True` lets NumPy convert rectangular numeric data in one go; only safe when the
    document holds no JSON `true`/`false` (NumPy would turn them into numbers).
    """
    if fast and dtype != "string":
        try:
            fast = np.asarray(value)
        except ValueError:
            fast = None
        want = "b" if dtype == "bool" else ("iu" if dtype.startswith(("int", "uint")) else "iuf")
        if fast is not None and fast.dtype.kind in want:
            return fast.astype(dtype if dtype != "bfloat16" else "float32", copy=False)
    shape = _dense_shape(value)
    out: list = []
    _fill(value, 0, shape, dtype, out)
    if dtype == "string":
        array = np.empty(len(out), dtype=object)
        array[:] = out
        return array.reshape(shape)
    return np.asarray(out, dtype=dtype).reshape(shape)


def parse_predict_body(body: bytes) -> dict[str, Any]:
    """The request document; TF Serving's ParseJson and FillSignature errors."""
    if not body:
        raise InvalidInput("JSON Parse error: The document is empty")
    try:
        doc = parse_bounded_json(body, JSON_LIMITS)  # depth checked first: never a RecursionError
    except ValueError as e:  # JsonLimitError (too deep, too many elements) or malformed
        raise InvalidInput(f"JSON Parse error: {e}") from e
    if not isinstance(doc, dict):
        raise InvalidInput(f"JSON Value: {_debug(doc)} Is not object")
    if "signature_name" in doc and not isinstance(doc["signature_name"], str):
        raise InvalidInput(
            f"JSON Value: {_debug(doc)} not formatted correctly. 'signature_name' key must be "
            "a string value."
        )
    return doc


def tensors_from_doc(
    doc: dict[str, Any], spec: SignatureSpec, fast: bool = False
) -> tuple[dict[str, np.ndarray], str]:
    """(input arrays, "row" | "columnar") following TF Serving's FillPredictRequestFromJson.

    `fast`: see `json_to_array`.
    """
    inputs = {k: v.dtype for k, v in sorted(spec.inputs.items())}
    if "instances" in doc:
        if "inputs" in doc:
            raise InvalidInput(
                f"JSON Value: {_debug(doc)} Not formatted correctly expecting only one of "
                "'inputs' or 'instances' keys to exist "
            )
        rows = doc["instances"]
        if not isinstance(rows, list):
            raise InvalidInput(
                f"JSON Value: {_debug(doc)} Expecting 'instances' to be an list/array"
            )
        if not rows:
            raise InvalidInput(f"JSON Value: {_debug(doc)} No values in 'instances' array")
        return _from_instances(rows, inputs, fast), "row"
    if "inputs" in doc:
        value = doc["inputs"]
        if not isinstance(value, dict) or _is_b64(value):
            if len(inputs) > 1:
                raise InvalidInput(
                    "inputs is a plain value/list, but expecting an object as multiple input "
                    "tensors required as per tensorinfo_map"
                )
            name, dtype = next(iter(inputs.items()))
            return {name: json_to_array(value, dtype, fast)}, "columnar"
        arrays = {}
        for name, dtype in inputs.items():
            if name not in value:
                raise InvalidInput(f"Missing named input: {name} in 'inputs' object.")
            arrays[name] = json_to_array(value[name], dtype, fast)
        return arrays, "columnar"
    raise InvalidInput("Missing 'inputs' or 'instances' key")


def _from_instances(rows: list, inputs: dict[str, str], fast: bool) -> dict[str, np.ndarray]:
    def is_object(v):
        return isinstance(v, dict) and not _is_b64(v)

    if not isinstance(rows[0], dict) and len(inputs) > 1:
        raise InvalidInput(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    objects = is_object(rows[0])
    if not objects:
        name, dtype = next(iter(inputs.items()))
        if fast and dtype != "string":
            array = json_to_array_or_none(rows, dtype)
            if array is not None:
                return {name: array}
    columns: dict[str, list[np.ndarray]] = {k: [] for k in inputs}
    for i, row in enumerate(rows):
        if objects:
            if not is_object(row):
                raise InvalidInput(f"Expecting object but got list at item {i} of input list")
            for key, value in row.items():
                if key not in inputs:
                    raise InvalidInput(
                        f"Failed to process element: {i} key: {key} of 'instances' list. Error: "
                        f"INVALID_ARGUMENT: JSON object: does not have named input: {key}"
                    )
                _add_item(columns[key], value, inputs[key], i, f" key: {key}")
            if set(row) != set(inputs):
                raise InvalidInput(
                    f"Failed to process element: {i} of 'instances' list. JSON object: "
                    f"{_debug(row)} keys must be equal to: {','.join(inputs)}"
                )
        else:
            if is_object(row):
                raise InvalidInput(f"Expecting value/list but got object at item {i} of input list")
            name = next(iter(inputs))
            _add_item(columns[name], row, inputs[name], i, "")
    return {k: np.stack(v) for k, v in columns.items()}


def json_to_array_or_none(rows: list, dtype: str) -> np.ndarray | None:
    try:
        fast = np.asarray(rows)
    except ValueError:
        return None
    want = "b" if dtype == "bool" else ("iu" if dtype.startswith(("int", "uint")) else "iuf")
    if fast.dtype.kind in want:
        return fast.astype(dtype if dtype != "bfloat16" else "float32", copy=False)
    return None


def _add_item(column: list, value: Any, dtype: str, i: int, key_part: str) -> None:
    try:
        array = json_to_array(value, dtype)
    except InvalidInput as e:
        raise InvalidInput(
            f"Failed to process element: {i}{key_part} of 'instances' list. Error: "
            f"INVALID_ARGUMENT: {e.message}"
        ) from e
    if column:
        first = column[0]
        error = None
        if first.size != array.size:
            error = f"Expecting tensor size: {first.size} but got: {array.size}"
        elif first.shape != array.shape:
            error = (
                f"Expecting shape [{', '.join(map(str, first.shape))}] but got: "
                f"[{', '.join(map(str, array.shape))}]"
            )
        if error:
            raise InvalidInput(
                f"Failed to process element: {i}{key_part} of 'instances' list. Error: "
                f"INVALID_ARGUMENT: {error}"
            )
    column.append(array)


def _json_output(array: np.ndarray) -> Any:
    if array.dtype.kind in ("S", "O", "U"):
        return np.vectorize(
            lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v),
            otypes=[object],
        )(array).tolist()
    return array.tolist()


def predict_response_json(outputs: dict[str, np.ndarray], fmt: str) -> dict[str, Any]:
    """TF Serving's MakeJsonFromTensors: `predictions` (row) or `outputs` (columnar)."""
    names = sorted(outputs)
    if fmt == "columnar":
        if len(names) == 1:
            return {"outputs": _json_output(outputs[names[0]])}
        return {"outputs": {k: _json_output(outputs[k]) for k in names}}
    if len(names) == 1:
        return {"predictions": _json_output(outputs[names[0]])}
    columns = {k: _json_output(outputs[k]) for k in names}
    n = len(columns[names[0]])
    return {"predictions": [{k: columns[k][i] for k in names} for i in range(n)]}
