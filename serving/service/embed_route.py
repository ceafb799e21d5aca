"""`POST /v1/embed`: embeddings of model inputs at any prefix size (OpenAI-style `dimensions`).

Body `{"instances": [...], "dimensions": m, "timeout": s}` (TF-Serving-style row `instances`;
`dimensions` optional, default the model's `d`, any `1 <= m <= d`), answer
`{"embeddings": [[...]], "dimensions": m, "model_version": v}`: the prefix `z[:m]` of each
embedding, re-normalised to unit length. One backend call to the smallest exported
`embed_{m'}` with `m' >= m` (`ModelBackend.embed`), sliced and re-normalised when `m' != m`.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field

from mrl_keras.serving.service import schema

__all__ = ["EMBED_FIELDS", "EmbedRequest", "EmbedResponse", "register_embed_route", "run_embed"]

EMBED_FIELDS = ("instances", "dimensions", "timeout")


class EmbedRequest(BaseModel):
    instances: list[Any] = Field(..., description="Batch of model inputs (row format).")
    dimensions: int | None = Field(
        None, ge=1, description="Prefix size m, 1..d (default d): z[:m], re-normalised."
    )
    timeout: float | None = Field(None, gt=0, description="Deadline in seconds.")


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    dimensions: int
    model_version: int | None


def run_embed(service, body: dict[str, Any], deadline: float) -> dict[str, Any]:
    """The blocking work of `/v1/embed` (runs in the service's executor).

    Raises:
        ValueError / TypeError: bad `instances` or `dimensions` (HTTP 400).
        HTTPError: 504 when the deadline passed before the backend call.
    """
    from mrl_keras.serving.service.search_service import HTTPError

    if body.get("instances") is None:
        raise ValueError("Expected 'instances' (a batch of model inputs).")
    info = service.backend.info()
    d = int(info.embedding_dim)
    m = schema.optional_int(body, "dimensions")
    m = d if m is None else m
    if not 1 <= m <= d:
        raise ValueError(
            f"Expected 1 <= dimensions <= {d} (the model's embedding dim). Received: dimensions={m}"
        )
    array = schema.numeric_batch("instances", body["instances"], service.config.max_batch_size)
    inputs = schema.check_instances_shape(array, info.input_shape, info.input_dtype)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise HTTPError(504, "Deadline exceeded before the backend call.")
    result = service.backend.embed(inputs, m, timeout=remaining)
    return {
        "embeddings": result.embeddings.astype(float).tolist(),
        "dimensions": m,
        "model_version": result.served_version,
    }


def register_embed_route(app, handle, service, error_responses) -> None:
    """Adds `POST /v1/embed` to `app`; `handle(request, fn, fields)` is the app's request
    runner (body limits, field check, deadline, error mapping)."""

    def embed_fn(body, deadline):
        return run_embed(service, body, deadline)

    @app.post(
        "/v1/embed",
        response_model=EmbedResponse,
        responses=error_responses,
        openapi_extra=schema.request_body_schema(EmbedRequest),
    )
    async def embed(request: Request):
        """Embeddings of a batch of model inputs, re-normalised prefix of size `dimensions`."""
        return await handle(request, embed_fn, EMBED_FIELDS)
