"""The FastAPI app of the HTTP service (`create_app`): routes, authentication, request limits,
the mapping of errors to HTTP statuses and JSON bodies, and the Prometheus metrics endpoint.

`POST /v1/search`, `POST /v1/classify`, `POST /v1/embed`, `GET /healthz`, `GET /readyz`,
`GET /metrics` (Prometheus text) and `POST /admin/reload`; JSON errors `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import hmac
import logging
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from mrl_keras.serving.backends.errors import BackendError
from mrl_keras.serving.backends.json_limits import JsonLimits
from mrl_keras.serving.retrieval.index import IndexIntegrityError, ModelVersionMismatchError
from mrl_keras.serving.service import request_guard, schema
from mrl_keras.serving.service.embed_route import register_embed_route
from mrl_keras.serving.service.health import HealthProber
from mrl_keras.serving.service.integrity import IntegrityMonitor, fall_back_to_previous
from mrl_keras.serving.service.reload_worker import ReloadWorker
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
            health = getattr(service, "health", None)
            if health is not None and e.code == "UNAVAILABLE":
                health.report_unavailable(e.code)  # /readyz turns 503 with this answer
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


def _start_parts(service: SearchService) -> None:
    """The background parts of a served `service`: the readiness prober, the integrity
    monitor and the reload worker (stopped by `service.close()`)."""
    if getattr(service, "health", None) is not None:
        return
    config = service.config

    def count_error(e: BackendError) -> None:
        service.backend_errors.labels(e.code).inc()

    service.health = HealthProber(service.readiness, config.health_interval_s, count_error)
    service.integrity = IntegrityMonitor(
        lambda: service.pair,
        lambda pair, name: fall_back_to_previous(service, pair, name),
        config.verify_interval_s,
    )

    def reload_and_verify():
        before = service.pair
        result = _unchanged(service)  # an un-versioned directory nobody rebuilt: no load
        if result is None:
            result = service.reload()
        # Every reload re-verifies what is served (a pair just loaded was verified by its
        # load; under a storm of reloads the files are hashed once a second at most).
        bad = service.integrity.check(max_age_s=0.0 if service.pair is not before else 1.0)
        service.health.probe_once()  # /readyz shows the new pair as soon as this returns
        if bad is not None and service.integrity.failure(service.pair) is not None:
            raise IndexIntegrityError(f"the served index version fails verification ({bad})")
        return result

    service.reloader = ReloadWorker(reload_and_verify)
    service.on_close = [
        *getattr(service, "on_close", []),
        service.health.close,
        service.integrity.close,
        service.reloader.close,
    ]
    service.health.start()


def _unchanged(service: SearchService) -> dict | None:
    """The answer of a reload of an un-versioned index directory whose manifest is the
    served one (same build id and checksums): nothing to load. None otherwise."""
    from mrl_keras.serving.retrieval.manifest import read_manifest

    if service.versioned:
        return None
    pair = service.pair
    try:
        manifest = read_manifest(service.index_dir)
    except (OSError, ValueError):
        return None  # let the reload report it
    if manifest.get("manifest_sha256") != pair.index.manifest.get("manifest_sha256"):
        return None
    service.reloads.labels("ok").inc()
    return {
        "index_version": pair.index.index_version,
        "previous_index_version": pair.index.index_version,
        "count": pair.index.count,
        "model_version": pair.model_version,
        "switched": False,
    }


def _lifespan(service: SearchService):
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if service.config.freeze_gc:  # start-up's objects out of the full collections' scan
            gc.collect()
            gc.freeze()
        yield

    return lifespan


def create_app(service: SearchService) -> FastAPI:
    """The FastAPI app serving `service` (run it with uvicorn; see `mrl serve`)."""
    app = FastAPI(
        lifespan=_lifespan(service),
        title="mrl-keras adaptive retrieval and cascade classification",
        version="1",
        description="Matryoshka adaptive retrieval (ScaNN shortlist + prefix rerank/funnel) and "
        "cascade classification in front of a TF Serving or in-process model.",
        redirect_slashes=False,  # never a redirect built from the request's Host header
    )
    app.state.service = service
    config = service.config
    allowed_hosts = request_guard.allowed_host_set(config.allowed_hosts)
    json_limits = JsonLimits(config.max_json_depth, config.max_json_elements)
    _start_parts(service)
    error_responses = {
        code: {"model": schema.ErrorResponse} for code in (400, 401, 413, 415, 421, 503, 504)
    }

    def count(label: str, method: str, status: int, start: float) -> None:
        service.requests.labels(label, method, str(status)).inc()
        service.latency.labels(label).observe(time.perf_counter() - start)

    @app.middleware("http")
    async def _guard_and_measure(request: Request, call_next):
        start = time.perf_counter()
        path = request.url.path
        if not request_guard.host_allowed(request.headers.get("host"), allowed_hosts):
            count("host", request.method, 421, start)
            return _error(
                421,
                f"Host {request.headers.get('host', '')!r} is not served here (allowed: "
                f"{sorted(allowed_hosts or ())}; mrl serve --allowed-hosts adds names).",
            )
        if request.method == "POST" and not request_guard.is_json_content_type(
            request.headers.get("content-type")
        ):
            count("content-type", request.method, 415, start)
            return _error(
                415,
                "Expected Content-Type: application/json. Received: "
                f"{request.headers.get('content-type', 'none')!r}",
            )
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
        count(getattr(route, "path", "unmatched"), request.method, response.status_code, start)
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
            raw = await request_guard.read_json_body(request, config.max_body_bytes, json_limits)
            body = schema.check_fields(raw, fields)
            bad = service.integrity.failure(service.pair)
            if bad is not None:
                raise HTTPError(
                    503,
                    f"The served index version failed verification ({bad} does not match its "
                    "checksum); not answering from it.",
                )
            timeout = schema.timeout_of(body, config.default_timeout, config.max_timeout)
            answer = await _run(fn, body, timeout)
            if not service.health.snapshot()[0]:
                service.health.poke()  # the backend answered: let /readyz see it now
            return JSONResponse(answer)
        except request_guard.ClientGone as e:  # nobody to answer: counted as 499, no traceback
            logger.info("%s %s: %s", request.method, request.url.path, e)
            return Response(status_code=499)
        except request_guard.BodyError as e:
            return _error(e.status, e.message)
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
        """Readiness from the background prober's last answer (never waits on the backend):
        backend AVAILABLE, index loaded and verified, model versions consistent. States and
        versions only; error details go to the log and /metrics."""
        ready, details, age = service.health.snapshot()
        pair = service.pair
        details.update(  # what is served now (the probe may predate a switch)
            index_version=pair.index.index_version,
            index_model_version=pair.index.model_version,
            index_count=pair.index.count,
        )
        bad = service.integrity.failure(pair)
        if bad is not None:
            ready = False
            details["integrity"] = f"checksum mismatch: {bad}"
        details.pop("error", None)
        details["probe_age_s"] = round(age, 3)
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
        """Reloads the index (a newer version, or the directory again) on the reload worker;
        concurrent calls share one reload. Re-verifies the served version's checksums."""
        try:
            return await asyncio.wrap_future(service.reloader.submit())
        except ModelVersionMismatchError as e:
            return _error(
                409, f"Reload refused, still serving index {service.index.index_version}: {e}"
            )
        except (IndexIntegrityError, OSError, ValueError) as e:
            logger.error("reload failed: %s", e)
            return _error(
                500, f"Reload failed, still serving index {service.index.index_version}: {e}"
            )

    base_openapi = app.openapi

    def live_openapi():
        """The OpenAPI document with the served model's and index's real bounds."""
        doc = copy.deepcopy(base_openapi())
        info = getattr(service.backend, "_info", None)
        if info is None:
            try:
                info = service.backend.info()
            except BackendError:
                info = None
        bodies = schema.live_request_schemas(
            input_shape=None if info is None else info.input_shape,
            input_dtype="float32" if info is None else info.input_dtype,
            embedding_dim=None if info is None else info.embedding_dim,
            max_batch=config.max_batch_size,
            index=service.index,
        )
        for path, body in bodies.items():
            post = doc.get("paths", {}).get(path, {}).get("post")
            if post is not None:
                post["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                }
        return doc

    app.openapi = live_openapi
    return app
