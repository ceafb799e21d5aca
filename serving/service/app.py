"""The FastAPI app of the HTTP service (`create_app`): routes, authentication, request limits,
the mapping of errors to HTTP statuses and JSON bodies, and the Prometheus metrics endpoint.

`POST /v1/search`, `POST /v1/classify`, `POST /v1/embed`, `GET /healthz`, `GET /readyz`,
`GET /metrics` (Prometheus text) and `POST /admin/reload`; JSON errors `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from mrl_keras.serving.backends.errors import BackendError
from mrl_keras.serving.retrieval.index import IndexIntegrityError, ModelVersionMismatchError
from mrl_keras.serving.service import schema
from mrl_keras.serving.service.embed_route import register_embed_route
from mrl_keras.serving.service.search_service import HTTPError, SearchService

__all__ = ["create_app"]

logger = logging.getLogger("mrl_keras.serving.service")

_OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
)
# Backend status codes that mean "the model is not there right now" -> 503.
_UNAVAILABLE_CODES = frozenset(
    {"UNAVAILABLE", "NOT_FOUND", "RESOURCE_EXHAUSTED", "CANCELLED", "ABORTED"}
)
_BAD_INPUT_CODES = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _map_exception(service: SearchService, e: BaseException) -> JSONResponse:
    if isinstance(e, HTTPError):
        return _error(e.status, e.message)
    if isinstance(e, BackendError):
        service.backend_errors.labels(e.code).inc()
        if e.code == "DEADLINE_EXCEEDED":
            return _error(504, f"Backend deadline exceeded: {e.message}")
        if e.code in _UNAVAILABLE_CODES:
            return _error(503, f"Backend unavailable ({e.code}): {e.message}")
        if e.code in _BAD_INPUT_CODES:
            return _error(400, f"{e.code}: {e.message}")
        return _error(500, f"Backend error ({e.code}): {e.message}")
    if isinstance(e, ModelVersionMismatchError):
        return _error(503, str(e))
    if isinstance(e, schema.BatchTooLarge):
        return _error(413, str(e))
    if isinstance(e, (ValueError, TypeError)):
        return _error(400, str(e))
    logger.exception("internal error", exc_info=e)
    return _error(500, f"Internal error: {type(e).__name__}: {e}")


async def _read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(
            413, f"Request body of {declared} bytes exceeds the limit of {limit} bytes."
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"Request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise HTTPError(400, "Expected a JSON body. Received: an empty body")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HTTPError(400, f"Malformed JSON body: {e}") from e


def create_app(service: SearchService) -> FastAPI:
    """The FastAPI app serving `service` (run it with uvicorn; see `mrl serve`)."""
    app = FastAPI(
        title="mrl-keras adaptive retrieval and cascade classification",
        version="1",
        description="Matryoshka adaptive retrieval (ScaNN shortlist + prefix rerank/funnel) and "
        "cascade classification in front of a TF Serving or in-process model.",
    )
    app.state.service = service
    config = service.config
    error_responses = {code: {"model": schema.ErrorResponse} for code in (400, 401, 413, 503, 504)}

    @app.middleware("http")
    async def _guard_and_measure(request: Request, call_next):
        start = time.perf_counter()
        path = request.url.path
        if config.auth_token and path not in _OPEN_PATHS:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), config.auth_token.encode()
            ):
                response = _error(
                    401,
                    "Missing or invalid bearer token (send 'Authorization: Bearer <token>').",
                    {"WWW-Authenticate": "Bearer"},
                )
                service.requests.labels("auth", request.method, "401").inc()
                return response
        response = await call_next(request)
        route = request.scope.get("route")
        label = getattr(route, "path", "unmatched")
        service.requests.labels(label, request.method, str(response.status_code)).inc()
        service.latency.labels(label).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_exception(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return _error(404, f"Unknown route: {request.method} {request.url.path}. See /docs.")
        if exc.status_code == 405:
            return _error(405, f"Method {request.method} not allowed on {request.url.path}.")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_exception(request: Request, exc: RequestValidationError):
        return _error(400, f"Invalid request: {exc.errors()}")

    async def _run(fn, body, timeout: float):
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        future = loop.run_in_executor(service.executor, fn, body, deadline)
        try:
            return await asyncio.wait_for(future, timeout=timeout)
        except asyncio.TimeoutError:
            service.backend_errors.labels("DEADLINE_EXCEEDED").inc()
            raise HTTPError(504, f"Deadline of {timeout:g} s exceeded.") from None

    async def _handle(request: Request, fn, fields) -> JSONResponse:
        try:
            body = schema.check_fields(await _read_json(request, config.max_body_bytes), fields)
            timeout = schema.timeout_of(body, config.default_timeout, config.max_timeout)
            return JSONResponse(await _run(fn, body, timeout))
        except Exception as e:  # every failure becomes a JSON error with the right status
            return _map_exception(service, e)

    @app.post(
        "/v1/search",
        response_model=schema.SearchResponse,
        responses=error_responses,
        openapi_extra=schema.request_body_schema(schema.SearchRequest),
    )
    async def search(request: Request):
        """Adaptive (or funnel) search of a batch of model inputs or query embeddings."""
        return await _handle(request, service.run_search, schema.SEARCH_FIELDS)

    @app.post(
        "/v1/classify",
        response_model=schema.ClassifyResponse,
        responses=error_responses,
        openapi_extra=schema.request_body_schema(schema.ClassifyRequest),
    )
    async def classify(request: Request):
        """Cascade classification of a batch of model inputs."""
        return await _handle(request, service.run_classify, schema.CLASSIFY_FIELDS)

    register_embed_route(app, _handle, service, error_responses)  # POST /v1/embed

    @app.get("/healthz")
    async def healthz():
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": schema.ErrorResponse}})
    async def readyz():
        """Readiness: backend AVAILABLE, index loaded, model versions consistent."""
        loop = asyncio.get_running_loop()
        try:
            ready, details = await asyncio.wait_for(
                loop.run_in_executor(service.executor, service.readiness),
                timeout=config.status_timeout,
            )
        except asyncio.TimeoutError:
            return _error(
                503, f"not ready: backend status did not answer within {config.status_timeout:g} s"
            )
        except BackendError as e:
            service.backend_errors.labels(e.code).inc()
            return _error(503, f"not ready: backend unavailable ({e.code}): {e.message}")
        return JSONResponse(dict(details, ready=ready), status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics():
        """Prometheus metrics: request counts and latencies, backend errors, index reloads."""
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/admin/reload",
        responses={409: {"model": schema.ErrorResponse}, 500: {"model": schema.ErrorResponse}},
    )
    async def reload():
        """Reloads the index directory (e.g. after `mrl index build` replaced it)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(service.executor, service.reload)
        except ModelVersionMismatchError as e:
            return _error(
                409, f"Reload refused, still serving index {service.index.index_version}: {e}"
            )
        except (IndexIntegrityError, OSError, ValueError) as e:
            return _error(
                500, f"Reload failed, still serving index {service.index.index_version}: {e}"
            )

    return app
