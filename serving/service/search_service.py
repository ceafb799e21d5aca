"""The HTTP service: adaptive search and cascade classification in front of a model backend.

FastAPI app with `POST /v1/search`, `POST /v1/classify`, `GET /healthz`, `GET /readyz`,
`GET /metrics` (Prometheus text) and `POST /admin/reload`; JSON errors `{"error": ...}`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from mrl_keras.serving.backends.cascade_client import CascadeClassifier
from mrl_keras.serving.backends.errors import BackendError
from mrl_keras.serving.retrieval.index import (
    AdaptiveIndex,
)
from mrl_keras.serving.retrieval.retriever import AdaptiveRetriever
from mrl_keras.serving.service import schema as schema

logger = logging.getLogger("mrl_keras.serving.service")


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
        plan = retriever.plan(  # validated once, before the deadline check and the backend call
            10 if body.get("k") is None else schema.optional_int(body, "k"),
            schema.optional_int(body, "shortlist_dim"),
            schema.optional_int(body, "shortlist_size"),
            schema.optional_int(body, "rerank_dim"),
            body.get("funnel"),
            body.get("leaves_to_search"),  # the retriever checks type and range (400 on error)
        )
        if has_embeddings:
            queries = schema.numeric_batch(
                "embeddings", body["embeddings"], self.config.max_batch_size
            )
            result = retriever.search_embeddings(
                queries, plan=plan, model_version=retriever.index.model_version
            )
        else:
            inputs = self._model_inputs(body["instances"])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HTTPError(504, "Deadline exceeded before the backend call.")
            result = retriever.search(inputs, plan=plan, timeout=remaining, backend=self.backend)
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
            "index_count": index.count,  # the sharded front caps k at it
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
