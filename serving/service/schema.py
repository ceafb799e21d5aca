"""Request parsing and the OpenAPI models of the HTTP service (private to `service.py`).

Bodies are parsed by hand rather than by pydantic so that every bad input gets a 400 whose
message names the field and what was expected; the pydantic models below only document the
API in the OpenAPI schema.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

SEARCH_FIELDS = (
    "instances",
    "embeddings",
    "k",
    "shortlist_dim",
    "shortlist_size",
    "rerank_dim",
    "funnel",
    "leaves_to_search",
    "timeout",
)
CLASSIFY_FIELDS = ("instances", "timeout")


class SearchRequest(BaseModel):
    """Exactly one of `instances` (model inputs) or `embeddings` (query embeddings)."""

    instances: list[Any] | None = Field(None, description="Batch of model inputs (row format).")
    embeddings: list[list[float]] | None = Field(
        None, description="Batch of query embeddings, at least as wide as the largest dim used."
    )
    k: int = Field(10, ge=1, description="Results per query (at most the corpus size).")
    shortlist_dim: int | None = Field(None, description="Must be the index's D_s.")
    shortlist_size: int | None = Field(
        None, description="ScaNN shortlist size K (default max(200, k))."
    )
    rerank_dim: int | None = Field(None, description="Rerank prefix, D_s..D_r (default D_r).")
    funnel: list[list[int]] | None = Field(
        None,
        description="[[dim, size], ...] stages instead of rerank_dim, e.g. [[32,100],[64,10]].",
    )
    leaves_to_search: int | None = Field(
        None,
        ge=1,
        description="ScaNN leaves searched per query, 1..num_leaves (only 1 on a single-leaf "
        "index); fewer is faster, more gives better recall. Default: the index's "
        "num_leaves_to_search.",
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
    instances: list[Any] = Field(..., description="Batch of model inputs (row format).")
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
