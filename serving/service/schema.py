"""Request parsing and the OpenAPI models of the HTTP service (private to `service.py`).

Bodies are read by the bounded reader (`request_guard.py`) and checked by hand rather than by
pydantic, so that every bad input gets a 400 whose message names the field and what was
expected; the pydantic models below describe the accepted shapes in the OpenAPI schema, and
`live_request_schemas` fills in the served model's and index's bounds (instance shape, batch
limit, k, dims) so that a client generator or a schema-driven fuzzer gets a schema whose
valid requests are answered 2xx (cross-field rules such as `shortlist_size >= k` are in the
descriptions).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SEARCH_FIELDS = (
    "instances",
    "embeddings",
    "k",
    "shortlist_dim",
    "shortlist_size",
    "rerank_dim",
    "funnel",
    "leaves_to_search",
    "shortlist_reorder",
    "timeout",
)
CLASSIFY_FIELDS = ("instances", "timeout")


NestedNumbers = list[float] | list[list[float]] | list[list[list[float]]]


class SearchRequest(BaseModel):
    """Exactly one of `instances` (model inputs) or `embeddings` (query embeddings).

    The OpenAPI schema the service publishes is this model with the served model's and
    index's real bounds filled in (`live_request_schemas`): the instance shape, the batch
    limit, `k <= corpus size`, the index's dims.
    """

    model_config = ConfigDict(extra="forbid")

    instances: list[NestedNumbers] | None = Field(
        None, min_length=1, description="Batch of model inputs (row format, the model's shape)."
    )
    embeddings: list[list[float]] | None = Field(
        None,
        min_length=1,
        description="Batch of query embeddings, each at least as wide as the largest dim used.",
    )
    k: int = Field(10, ge=1, description="Results per query (at most the corpus size).")
    shortlist_dim: int | None = Field(None, description="Must be the index's D_s.")
    shortlist_size: int | None = Field(
        None,
        ge=1,
        description="ScaNN shortlist size K, k..corpus size (default max(200, k)).",
    )
    rerank_dim: int | None = Field(None, description="Rerank prefix, D_s..D_r (default D_r).")
    funnel: list[Annotated[list[int], Field(min_length=2, max_length=2)]] | None = Field(
        None,
        min_length=1,
        description="[[dim, size], ...] stages instead of rerank_dim, e.g. [[32,100],[64,10]]: "
        "dims strictly increasing within (D_s, D_r], sizes non-increasing, the last >= k.",
    )
    leaves_to_search: int | None = Field(
        None,
        ge=1,
        description="ScaNN leaves searched per query, 1..num_leaves (only 1 on a single-leaf "
        "index); fewer is faster, more gives better recall. Default: the index's "
        "num_leaves_to_search.",
    )
    shortlist_reorder: int | None = Field(
        None,
        ge=1,
        description="Candidates ScaNN re-scores exactly at D_s before keeping the shortlist, "
        "shortlist_size..corpus size; fewer is faster, more gives better recall. Default: the "
        "index's tuned value, else max(shortlist_size, its reorder_num_neighbors).",
    )
    timeout: float | None = Field(
        None, gt=0, description="Deadline in seconds (server default otherwise)."
    )


class SearchHits(BaseModel):
    ids: list[int | str | None]
    scores: list[float | None]


class SearchResponse(BaseModel):
    results: list[SearchHits]
    model_version: int | None
    index_version: str


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[NestedNumbers] = Field(
        ..., min_length=1, description="Batch of model inputs (row format, the model's shape)."
    )
    timeout: float | None = Field(None, gt=0, description="Deadline in seconds.")


class Prediction(BaseModel):
    class_: int = Field(..., alias="class")
    score: float
    dims_used: int
    label: str | None = None


class ClassifyResponse(BaseModel):
    predictions: list[Prediction]
    model_version: int | None


class ErrorResponse(BaseModel):
    error: str


def request_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON body parsed by hand."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def instances_schema(
    input_shape: tuple[int | None, ...] | None, input_dtype: str, max_batch: int
) -> dict[str, Any]:
    """JSON schema of a batch of model inputs: nested arrays of numbers, one level per input
    dimension after the batch, fixed sizes where the model fixes them."""
    leaf: dict[str, Any] = {"type": "number", "minimum": -1e6, "maximum": 1e6}
    if input_dtype.startswith(("int", "uint")):
        leaf = {
            "type": "integer",
            "minimum": 0 if input_dtype.startswith("u") else -(2**31),
            "maximum": 2**31 - 1,
        }
    if input_shape is None:  # rank unknown: 1 to 3 levels of numbers per instance
        inner: dict[str, Any] = {
            "anyOf": [
                {"type": "array", "minItems": 1, "items": leaf},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "array", "minItems": 1, "items": leaf},
                },
            ]
        }
    else:
        inner = leaf
        for dim in reversed(tuple(input_shape)[1:]):
            level: dict[str, Any] = {"type": "array", "items": inner}
            if dim in (None, -1):
                level["minItems"] = 1
            else:
                level["minItems"] = level["maxItems"] = int(dim)
            inner = level
    return {"type": "array", "minItems": 1, "maxItems": int(max_batch), "items": inner}


def _integer(minimum: int, maximum: int | None = None, description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", "minimum": int(minimum)}
    if maximum is not None:
        out["maximum"] = int(maximum)
    if description:
        out["description"] = description
    return out


_TIMEOUT = {"type": "number", "exclusiveMinimum": 0, "maximum": 1e9}


def live_request_schemas(
    *,
    input_shape: tuple[int | None, ...] | None,
    input_dtype: str,
    embedding_dim: int | None,
    max_batch: int,
    index: Any,
) -> dict[str, dict[str, Any]]:
    """The request body schemas of `/v1/search`, `/v1/classify` and `/v1/embed` with the served
    model's and index's bounds (see the module docstring). Every property is non-null and
    no other property is allowed."""
    instances = instances_schema(input_shape, input_dtype, max_batch)
    count, d_s, d_r = int(index.count), int(index.shortlist_dim), int(index.rerank_dim)
    width = int(index.embedding_dim)
    leaves = int(index.scann_options.get("num_leaves", 1) or 1)
    described = SearchRequest.model_json_schema()["properties"]

    def doc(name: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(body, description=described[name].get("description", ""))

    search = {
        "title": "SearchRequest",
        "type": "object",
        "additionalProperties": False,
        "oneOf": [{"required": ["instances"]}, {"required": ["embeddings"]}],
        "not": {"required": ["rerank_dim", "funnel"]},
        "properties": {
            "instances": doc("instances", instances),
            "embeddings": doc(
                "embeddings",
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": int(max_batch),
                    "items": {
                        "type": "array",
                        "minItems": width,
                        "maxItems": width,
                        "items": {"type": "number", "minimum": -1e30, "maximum": 1e30},
                    },
                },
            ),
            "k": doc("k", _integer(1, count)),
            "shortlist_dim": doc("shortlist_dim", {"type": "integer", "enum": [d_s]}),
            # Cross-field rules (k <= shortlist_size, funnel sizes >= k) are beyond JSON schema:
            # the schema pins these sizes (and the reorder count, >= the shortlist size) to the
            # corpus size, the one value valid for every k.
            "shortlist_size": doc("shortlist_size", _integer(count, count)),
            "rerank_dim": doc("rerank_dim", _integer(d_s, d_r)),
            "funnel": doc(
                "funnel",
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": {
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 2,
                        "prefixItems": [_integer(d_s + 1, d_r), _integer(count, count)],
                        "items": {"type": "integer"},
                    },
                },
            ),
            "leaves_to_search": doc("leaves_to_search", _integer(1, leaves)),
            "shortlist_reorder": doc("shortlist_reorder", _integer(count, count)),
            "timeout": doc("timeout", _TIMEOUT),
        },
    }
    classify = {
        "title": "ClassifyRequest",
        "type": "object",
        "additionalProperties": False,
        "required": ["instances"],
        "properties": {"instances": instances, "timeout": _TIMEOUT},
    }
    embed = {
        "title": "EmbedRequest",
        "type": "object",
        "additionalProperties": False,
        "required": ["instances"],
        "properties": {
            "instances": instances,
            "dimensions": _integer(1, embedding_dim, "Prefix size m, 1..d (default d)."),
            "timeout": _TIMEOUT,
        },
    }
    return {"/v1/search": search, "/v1/classify": classify, "/v1/embed": embed}


def check_fields(body: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError(f"Expected a JSON object body. Received: {type(body).__name__}")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValueError(f"Unknown field(s) {unknown}. Expected fields among {list(allowed)}.")
    return body


def optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected an integer {name}. Received: {value!r}")
    return value


def timeout_of(body: dict[str, Any], default: float, maximum: float) -> float:
    value = body.get("timeout")
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"Expected timeout as a number of seconds > 0. Received: {value!r}")
    return min(float(value), maximum)


def numeric_batch(name: str, value: Any, max_batch: int) -> np.ndarray:
    """A rectangular, finite, non-empty numeric batch from JSON lists; ValueError/TypeError else."""
    if not isinstance(value, list):
        raise TypeError(
            f"Expected {name} as a JSON list (a batch). Received: {type(value).__name__}"
        )
    if len(value) == 0:
        raise ValueError(f"Expected a non-empty batch of {name}. Received: an empty list")
    if len(value) > max_batch:
        raise BatchTooLarge(
            f"Batch of {len(value)} {name} exceeds the limit of {max_batch} per request."
        )
    try:
        array = np.asarray(value)
    except ValueError as e:
        raise ValueError(
            f"Expected {name} as a rectangular array (all rows the same shape). Received ragged rows."
        ) from e
    if array.dtype.kind not in "iuf":
        raise TypeError(
            f"Expected numbers in {name}. Received JSON values of type {array.dtype.kind!r} ({array.dtype})."
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"Expected finite numbers in {name}. Received NaN or Infinity.")
    return array


class BatchTooLarge(ValueError):
    """A request's batch exceeds the service's limit (HTTP 413)."""


def check_instances_shape(
    array: np.ndarray, input_shape: tuple[int, ...] | None, input_dtype: str
) -> np.ndarray:
    if input_shape is not None:
        expected = tuple(input_shape)
        ok = array.ndim == len(expected) and all(
            e in (-1, None) or e == a for e, a in zip(expected[1:], array.shape[1:], strict=True)
        )
        if not ok:
            shown = tuple("n" if e in (-1, None) else e for e in expected)
            raise ValueError(
                f"Expected instances of shape {shown} (the model's input). Received: shape {array.shape}"
            )
    try:
        return array.astype(np.dtype(input_dtype))
    except TypeError as e:
        raise TypeError(
            f"Expected instances convertible to {input_dtype}. Received: {array.dtype}"
        ) from e


def json_scores(scores: np.ndarray) -> list[list[float | None]]:
    return [[float(s) if math.isfinite(s) else None for s in row] for row in scores.tolist()]


def json_ids(ids: np.ndarray) -> list[list[Any]]:
    return ids.tolist()
