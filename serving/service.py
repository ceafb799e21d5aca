"""The HTTP service: adaptive search and cascade classification in front of a model backend.

FastAPI app with `POST /v1/search`, `POST /v1/classify`, `GET /healthz`, `GET /readyz`,
`GET /metrics` (Prometheus text) and `POST /admin/reload`; JSON errors `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from mrl_keras.serving import _service_schema as schema
from mrl_keras.serving.cascade_client import CascadeClassifier
from mrl_keras.serving.errors import BackendError
from mrl_keras.serving.index import (
    AdaptiveIndex,
    IndexIntegrityError,
    ModelVersionMismatchError,
    check_model_version,
)
from mrl_keras.serving.retriever import AdaptiveRetriever
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("mrl_keras.serving.service")

_OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
)
# Backend status codes that mean "the model is not there right now" -> 503.
_UNAVAILABLE_CODES = frozenset(
    {"UNAVAILABLE", "NOT_FOUND", "RESOURCE_EXHAUSTED", "CANCELLED", "ABORTED"}
)
_BAD_INPUT_CODES = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"})


@dataclasses.dataclass
class ServiceConfig:
    """Limits and policies of the HTTP service.

    Attributes:
        max_body_bytes: request bodies above this get 413.
        max_batch_size: batches (instances or embeddings) above this get 413.
        default_timeout: per-request deadline in seconds when a request names none.
        max_timeout: upper bound on a request's own `timeout`.
        auth_token: when set, every route but /healthz, /readyz and the docs needs
            `Authorization: Bearer <token>`.
        allow_version_mismatch: serve although the backend's model version differs from the
            index's.
        workers: threads running backend calls and searches.
        status_timeout: deadline of the backend status check of /readyz.
    """

    max_body_bytes: int = 32 << 20
    max_batch_size: int = 1024
    default_timeout: float = 10.0
    max_timeout: float = 60.0
    auth_token: str | None = None
    allow_version_mismatch: bool = False
    workers: int = 8
    status_timeout: float = 2.0


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class SearchService:
    """The state behind the HTTP app: a backend, the current index and retriever, metrics.

    The index can be swapped (`reload()`) while requests run: a request keeps the retriever it
    started with, so none is dropped.

    Args:
        backend: a `ModelBackend` (LocalModel, TFServingGrpc, TFServingRest).
        index_dir: the index directory (re-read from the same path on reload).
        config: a `ServiceConfig`.

    Raises:
        ModelVersionMismatchError: the backend serves another model version than the index's
            (unless `config.allow_version_mismatch`); checked when the backend answers.
        IndexIntegrityError: the index is corrupted.
    """

    def __init__(
        self, backend: Any, index_dir: str | os.PathLike, config: ServiceConfig | None = None
    ):
        self.backend = backend
        self.index_dir = Path(index_dir)
        self.config = config or ServiceConfig()
        self.cascade = CascadeClassifier(backend)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mrl_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mrl_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.backend_errors = Counter(
            "mrl_backend_errors",
            "Backend call failures by status code.",
            ["code"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "mrl_index_reloads", "Index reloads by result.", ["result"], registry=self.registry
        )
        self.index_size = Gauge(
            "mrl_index_size", "Number of items in the served index.", registry=self.registry
        )
        self.executor = ThreadPoolExecutor(
            max_workers=self.config.workers, thread_name_prefix="mrl-serve"
        )
        self._reload_lock = threading.Lock()
        served = self._served_version_or_none()
        index = AdaptiveIndex.load(
            self.index_dir,
            model_version=served,
            allow_version_mismatch=self.config.allow_version_mismatch,
        )
        self._install(index)

    # -- index --------------------------------------------------------------------------
    def _served_version_or_none(self) -> int | None:
        try:
            return self.backend.info().version
        except BackendError as e:
            logger.warning("backend not reachable at start-up (%s); readiness will tell", e)
            return None

    def _install(self, index: AdaptiveIndex) -> None:
        self.retriever = AdaptiveRetriever(
            index, allow_version_mismatch=self.config.allow_version_mismatch
        )
        self.index_size.set(index.count)

    @property
    def index(self) -> AdaptiveIndex:
        return self.retriever.index

    def reload(self) -> dict[str, Any]:
        """Loads the index directory again (verifying it) and swaps it in; the old keeps serving
        until then, and keeps serving if the new one is refused."""
        with self._reload_lock:
            try:
                served = self._served_version_or_none()
                index = AdaptiveIndex.load(
                    self.index_dir,
                    model_version=served,
                    allow_version_mismatch=self.config.allow_version_mismatch,
                )
            except Exception:
                self.reloads.labels("error").inc()
                raise
            previous = self.index.index_version
            self._install(index)
            self.reloads.labels("ok").inc()
            logger.info("index reloaded: %s -> %s", previous, index.index_version)
            return {
                "index_version": index.index_version,
                "previous_index_version": previous,
                "count": index.count,
                "model_version": index.model_version,
            }

    # -- blocking work (runs in the executor) --------------------------------------------
    def _model_inputs(self, instances: Any):
        info = self.backend.info()
        array = schema.numeric_batch("instances", instances, self.config.max_batch_size)
        return schema.check_instances_shape(array, info.input_shape, info.input_dtype)

    def run_search(self, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        retriever = self.retriever  # pinned for the whole request, whatever reloads happen
        has_instances, has_embeddings = (
            body.get("instances") is not None,
            body.get("embeddings") is not None,
        )
        if has_instances == has_embeddings:
            raise ValueError("Expected exactly one of 'instances' (model inputs) or 'embeddings'.")
        funnel = body.get("funnel")
        plan = retriever.plan(
            10 if body.get("k") is None else schema.optional_int(body, "k"),
            schema.optional_int(body, "shortlist_dim"),
            schema.optional_int(body, "shortlist_size"),
            schema.optional_int(body, "rerank_dim"),
            funnel,
            body.get("leaves_to_search"),  # the retriever checks type and range (400 on error)
        )
        args = dict(
            k=plan.k,
            shortlist_dim=plan.shortlist_dim,
            shortlist_size=plan.shortlist_size,
            leaves_to_search=plan.leaves_to_search,
        )
        if funnel is not None:
            args["funnel"] = funnel
        else:
            args["rerank_dim"] = plan.stages[-1][0] if plan.stages else plan.shortlist_dim
        if has_embeddings:
            queries = schema.numeric_batch(
                "embeddings", body["embeddings"], self.config.max_batch_size
            )
            result = retriever.search_embeddings(
                queries, **args, model_version=retriever.index.model_version
            )
        else:
            inputs = self._model_inputs(body["instances"])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HTTPError(504, "Deadline exceeded before the backend call.")
            embedded = self.backend.embed(inputs, plan.max_dim, timeout=remaining)
            check_model_version(
                retriever.index.manifest,
                embedded.served_version,
                allow_mismatch=self.config.allow_version_mismatch,
            )
            result = retriever.search_embeddings(
                embedded.embeddings, **args, model_version=embedded.served_version
            )
        hits = [
            {"ids": ids, "scores": scores}
            for ids, scores in zip(
                schema.json_ids(result.ids), schema.json_scores(result.scores), strict=True
            )
        ]
        return {
            "results": hits,
            "model_version": result.model_version,
            "index_version": result.index_version,
        }

    def run_classify(self, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        if body.get("instances") is None:
            raise ValueError("Expected 'instances' (a batch of model inputs).")
        inputs = self._model_inputs(body["instances"])
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HTTPError(504, "Deadline exceeded before the backend call.")
        result = self.cascade.classify(inputs, timeout=remaining)
        return {"predictions": result.predictions(), "model_version": result.model_version}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        index = self.index
        details: dict[str, Any] = {
            "index_loaded": True,
            "index_version": index.index_version,
            "index_model_version": index.model_version,
        }
        status = self.backend.status()
        details["backend_state"] = status.state
        details["model_version"] = status.version
        problems = []
        if status.state != "AVAILABLE":
            problems.append(f"backend state is {status.state}, not AVAILABLE")
        if (
            not self.config.allow_version_mismatch
            and index.model_version is not None
            and status.version != index.model_version
        ):
            problems.append(
                f"backend serves model version {status.version} but the index was built by version {index.model_version}"
            )
        details["versions_consistent"] = not any("version" in p for p in problems)
        if problems:
            details["error"] = "not ready: " + "; ".join(problems)
        return not problems, details

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


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
