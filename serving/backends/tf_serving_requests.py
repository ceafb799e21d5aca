"""Pure functions that build and parse TF Serving requests (gRPC protos and REST JSON).

No I/O here: the clients inject the transport, so the same code talks to the dev model server
and to a real `tensorflow/serving`. Every function is tested on its own.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

from mrl_keras.serving.backends.backend import ModelStatus, SignatureSpec, TensorInfo, VersionStatus

# DataType enum name <-> numpy dtype name.
DTYPE_BY_ENUM_NAME: dict[str, str] = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_BFLOAT16": "bfloat16",
    "DT_INT8": "int8",
    "DT_INT16": "int16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_UINT8": "uint8",
    "DT_UINT16": "uint16",
    "DT_UINT32": "uint32",
    "DT_UINT64": "uint64",
    "DT_BOOL": "bool",
    "DT_STRING": "string",
}
ENUM_NAME_BY_DTYPE: dict[str, str] = {v: k for k, v in DTYPE_BY_ENUM_NAME.items()}
ENUM_NAME_BY_DTYPE["object"] = "DT_STRING"
ENUM_NAME_BY_DTYPE["bytes"] = "DT_STRING"

# numpy dtype name -> the typed repeated field TF Serving replies with (Tensor::AsProtoField).
_TYPED_FIELD: dict[str, str] = {
    "float32": "float_val",
    "float64": "double_val",
    "int8": "int_val",
    "int16": "int_val",
    "int32": "int_val",
    "uint8": "int_val",
    "uint16": "int_val",
    "int64": "int64_val",
    "uint32": "uint32_val",
    "uint64": "uint64_val",
    "bool": "bool_val",
}

DEFAULT_SIGNATURE = "serving_default"
SIGNATURE_DEF_FIELD = "signature_def"


def dtype_name(array: np.ndarray) -> str:
    """numpy dtype name in the vocabulary above (`"string"` for bytes and str arrays)."""
    if array.dtype.kind in ("S", "U", "O"):
        return "string"
    return array.dtype.name


def enum_to_dtype(enum_value: int) -> str:
    """`types_pb2.DT_FLOAT` -> `"float32"`."""
    name = types_pb2.DataType.Name(enum_value)
    return DTYPE_BY_ENUM_NAME.get(name, name.lower().removeprefix("dt_"))


def dtype_to_enum(dtype: str) -> int:
    """`"float32"` -> `types_pb2.DT_FLOAT`."""
    return types_pb2.DataType.Value(ENUM_NAME_BY_DTYPE[dtype])


def _shape_proto(shape: tuple[int, ...]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in shape]
    )


def ndarray_to_tensor_proto(array: Any, *, as_content: bool = True) -> tensor_pb2.TensorProto:
    """Encodes an array as a TensorProto.

    Args:
        array: array-like (numeric, bool, or bytes/str for DT_STRING).
        as_content: bool. `True` packs numbers into `tensor_content` (compact, what clients
            send); `False` fills the typed list (`float_val`, ...), as TF Serving replies.
    """
    array = np.asarray(array)
    name = dtype_name(array)
    proto = tensor_pb2.TensorProto(
        dtype=dtype_to_enum(name), tensor_shape=_shape_proto(array.shape)
    )
    if name == "string":
        proto.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel()
        )
    elif as_content or name not in _TYPED_FIELD:
        proto.tensor_content = np.ascontiguousarray(
            array, dtype=array.dtype.newbyteorder("<")
        ).tobytes()
    else:
        getattr(proto, _TYPED_FIELD[name]).extend(array.ravel().tolist())
    return proto


def tensor_proto_to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decodes a TensorProto given as a typed list or as `tensor_content`."""
    import tensorflow as tf  # imported on use: `tf.make_ndarray` handles every encoding

    return tf.make_ndarray(proto)


def model_spec(
    model_name: str,
    *,
    version: int | None = None,
    label: str | None = None,
    signature_name: str | None = None,
) -> model_pb2.ModelSpec:
    """A ModelSpec pinned to a version, a label, or neither (latest)."""
    if version is not None and label is not None:
        raise ValueError(
            f"Expected at most one of version and label. Received: version={version}, "
            f"label={label!r}"
        )
    spec = model_pb2.ModelSpec(name=model_name)
    if version is not None:
        spec.version.value = int(version)
    if label is not None:
        spec.version_label = label
    if signature_name is not None:
        spec.signature_name = signature_name
    return spec


def predict_request(
    model_name: str,
    signature_name: str,
    inputs: Mapping[str, Any],
    *,
    version: int | None = None,
    label: str | None = None,
) -> predict_pb2.PredictRequest:
    """A PredictRequest with every input packed as `tensor_content`."""
    request = predict_pb2.PredictRequest(
        model_spec=model_spec(
            model_name, version=version, label=label, signature_name=signature_name
        )
    )
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(ndarray_to_tensor_proto(value))
    return request


def parse_predict_response(
    response: predict_pb2.PredictResponse,
) -> tuple[dict[str, np.ndarray], int]:
    """(outputs by alias, the version that served the request)."""
    outputs = {k: tensor_proto_to_ndarray(v) for k, v in response.outputs.items()}
    return outputs, int(response.model_spec.version.value)


def metadata_request(
    model_name: str, *, version: int | None = None, label: str | None = None
) -> get_model_metadata_pb2.GetModelMetadataRequest:
    return get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_spec(model_name, version=version, label=label),
        metadata_field=[SIGNATURE_DEF_FIELD],
    )


def status_request(
    model_name: str, *, version: int | None = None, label: str | None = None
) -> get_model_status_pb2.GetModelStatusRequest:
    return get_model_status_pb2.GetModelStatusRequest(
        model_spec=model_spec(model_name, version=version, label=label)
    )


def _tensor_info_from_proto(info: meta_graph_pb2.TensorInfo) -> TensorInfo:
    shape = None
    if not info.tensor_shape.unknown_rank:
        shape = tuple(int(d.size) for d in info.tensor_shape.dim)
    return TensorInfo(dtype=enum_to_dtype(info.dtype), shape=shape)


def signature_from_proto(name: str, signature: meta_graph_pb2.SignatureDef) -> SignatureSpec:
    return SignatureSpec(
        name=name,
        inputs={k: _tensor_info_from_proto(v) for k, v in signature.inputs.items()},
        outputs={k: _tensor_info_from_proto(v) for k, v in signature.outputs.items()},
    )


def signatures_from_signature_def_map(
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
) -> dict[str, SignatureSpec]:
    """Signature specs from a SignatureDef map, without TF's internal `__saved_model_init_op`."""
    return {
        k: signature_from_proto(k, v) for k, v in signature_defs.items() if not k.startswith("__")
    }


def parse_metadata_response(
    response: get_model_metadata_pb2.GetModelMetadataResponse,
) -> tuple[int, dict[str, SignatureSpec]]:
    """(version, signature specs) from a GetModelMetadataResponse."""
    from tensorflow_serving.apis import get_model_metadata_pb2 as pb

    signature_map = pb.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
    return (
        int(response.model_spec.version.value),
        signatures_from_signature_def_map(signature_map.signature_def),
    )


def choose_status(versions: list[VersionStatus], version: int | None = None) -> ModelStatus:
    """The status a client reports: the pinned version's, else the newest AVAILABLE one's,
    else the newest version's."""
    ordered = tuple(sorted(versions, key=lambda v: v.version))
    if not ordered:
        return ModelStatus(version=0, state="UNKNOWN", versions=())
    pick = None
    if version is not None:
        pick = next((v for v in ordered if v.version == version), None)
    if pick is None:
        available = [v for v in ordered if v.state == "AVAILABLE"]
        pick = available[-1] if available else ordered[-1]
    return ModelStatus(version=pick.version, state=pick.state, versions=ordered)


def parse_status_response(
    response: get_model_status_pb2.GetModelStatusResponse, version: int | None = None
) -> ModelStatus:
    from tensorflow_serving.apis import get_model_status_pb2 as pb

    versions = [
        VersionStatus(
            version=int(v.version),
            state=pb.ModelVersionStatus.State.Name(v.state),
            error_code=_error_code_name(v.status.error_code),
            error_message=v.status.error_message,
        )
        for v in response.model_version_status
    ]
    return choose_status(versions, version)


def _error_code_name(code: int) -> str:
    from tensorflow.core.protobuf import error_codes_pb2

    return error_codes_pb2.Code.Name(code)


# -- REST -------------------------------------------------------------------------------
def rest_model_path(
    model_name: str, *, version: int | None = None, label: str | None = None
) -> str:
    """`/v1/models/{name}[/versions/{n}|/labels/{label}]`."""
    if version is not None and label is not None:
        raise ValueError(
            f"Expected at most one of version and label. Received: version={version}, "
            f"label={label!r}"
        )
    path = f"/v1/models/{model_name}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{label}"
    return path


def _json_value(array: np.ndarray) -> Any:
    if dtype_name(array) == "string":
        flat = [
            {"b64": base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode()}
            for v in array.ravel()
        ]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def rest_predict_body(
    signature_name: str, inputs: Mapping[str, Any], *, row_format: bool = False
) -> dict[str, Any]:
    """A `:predict` body: columnar (`inputs`, default) or row (`instances`) format.

    Strings go as `{"b64": ...}`; a one-input signature is sent as a plain value/list.
    """
    arrays = {k: np.asarray(v) for k, v in inputs.items()}
    body: dict[str, Any] = {"signature_name": signature_name}
    if row_format:
        if len(arrays) == 1:
            body["instances"] = _json_value(next(iter(arrays.values())))
        else:
            n = len(next(iter(arrays.values())))
            body["instances"] = [
                {k: _json_value(v[i]) for k, v in arrays.items()} for i in range(n)
            ]
    elif len(arrays) == 1:
        body["inputs"] = _json_value(next(iter(arrays.values())))
    else:
        body["inputs"] = {k: _json_value(v) for k, v in arrays.items()}
    return body


def _decode_b64(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _to_array(value: Any, info: TensorInfo | None) -> np.ndarray:
    if info is not None and info.dtype == "string":
        return np.array(_decode_b64(value), dtype=object)
    dtype = np.dtype(info.dtype) if info is not None and info.dtype != "bfloat16" else None
    return np.asarray(value, dtype=dtype)


def parse_rest_predict_response(
    body: Mapping[str, Any], outputs: Mapping[str, TensorInfo]
) -> dict[str, np.ndarray]:
    """Output arrays from a `:predict` response in either format.

    Args:
        body: the decoded JSON (`{"outputs": ...}` or `{"predictions": [...]}`).
        outputs: the signature's outputs (names and dtypes).
    """
    names = sorted(outputs)
    if "outputs" in body:
        value = body["outputs"]
        if len(names) == 1 and not (isinstance(value, dict) and names[0] in value):
            return {names[0]: _to_array(value, outputs[names[0]])}
        return {k: _to_array(value[k], outputs.get(k)) for k in value}
    if "predictions" in body:
        rows = body["predictions"]
        if len(names) == 1:
            return {names[0]: _to_array(rows, outputs[names[0]])}
        return {k: _to_array([row[k] for row in rows], outputs.get(k)) for k in names}
    raise ValueError(
        f"Expected a TF Serving predict response with 'outputs' or 'predictions'. "
        f"Received keys: {sorted(body)}"
    )


def _tensor_info_from_json(info: Mapping[str, Any]) -> TensorInfo:
    shape_json = info.get("tensor_shape", {})
    shape = None
    if not shape_json.get("unknown_rank", False):
        shape = tuple(int(d.get("size", 0)) for d in shape_json.get("dim", []))
    return TensorInfo(dtype=DTYPE_BY_ENUM_NAME.get(info.get("dtype", ""), "unknown"), shape=shape)


def parse_rest_metadata(body: Mapping[str, Any]) -> tuple[int, dict[str, SignatureSpec]]:
    """(version, signature specs) from `GET /v1/models/{name}/metadata`."""
    version = int(body["model_spec"]["version"])
    defs = body["metadata"]["signature_def"]["signature_def"]
    return version, {
        name: SignatureSpec(
            name=name,
            inputs={k: _tensor_info_from_json(v) for k, v in d.get("inputs", {}).items()},
            outputs={k: _tensor_info_from_json(v) for k, v in d.get("outputs", {}).items()},
        )
        for name, d in defs.items()
        if not name.startswith("__")
    }


def parse_rest_status(body: Mapping[str, Any], version: int | None = None) -> ModelStatus:
    """`ModelStatus` from `GET /v1/models/{name}[/versions/{n}]`."""
    versions = [
        VersionStatus(
            version=int(v["version"]),
            state=v["state"],
            error_code=v.get("status", {}).get("error_code", "OK"),
            error_message=v.get("status", {}).get("error_message", ""),
        )
        for v in body.get("model_version_status", [])
    ]
    return choose_status(versions, version)
