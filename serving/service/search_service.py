"""The HTTP service: adaptive search and cascade classification in front of a model backend.

FastAPI app with `POST /v1/search`, `POST /v1/classify`, `GET /healthz`, `GET /readyz`,
`GET /metrics` (Prometheus text) and `POST /admin/reload`; JSON errors `{"error": ...}`.

The service serves a (model version, index version) pair (`serving_pair.py`): every backend
call goes to the model version the served index was built by. Over a versioned index base path
it watches for newer index versions (every `index_poll_s`, on SIGHUP and `/admin/reload`) and
switches to one only once the backend reports its model version AVAILABLE.
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

from mrl_keras.serving.backends.errors import BackendError
from mrl_keras.serving.retrieval import index_versions
from mrl_keras.serving.retrieval.index import AdaptiveIndex, check_model_version
from mrl_keras.serving.retrieval.manifest import ModelVersionMismatchError
from mrl_keras.serving.retrieval.retriever import AdaptiveRetriever
from mrl_keras.serving.service import schema as schema
from mrl_keras.serving.service.serving_pair import (
    PairNotReady,
    ServingPair,
    model_available,
    newest_pair,
    open_pair,
)

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
        index_poll_s: seconds between looks for a newer version in a versioned index base
            path (0: only on SIGHUP and /admin/reload).
        allowed_hosts: Host header names answered (others get 421); None or "*": any.
            Defaults to the loopback names; `mrl serve` adds its bind address.
        max_json_depth: deepest JSON nesting a request body may have (400 above).
        max_json_elements: most JSON elements a request body may hold (400 above).
        health_interval_s: seconds between background readiness probes (/readyz answers
            from the last one).
        verify_interval_s: seconds between background re-verifications of the served
            index's checksums (0: only on reload).
        freeze_gc: when the app starts serving, move every object alive then (the model
            client, the index, the libraries: with TensorFlow imported, millions) out of the
            cyclic garbage collector's reach (`gc.freeze()`), so that a full collection scans
            only what requests allocate. Without it a full collection in a process that has
            imported TensorFlow pauses every request ~0.35 s (measured by
            `benchmarks/chaos_failures.py`).
    """

    max_body_bytes: int = 32 << 20
    max_batch_size: int = 1024
    default_timeout: float = 10.0
    max_timeout: float = 60.0
    auth_token: str | None = None
    allow_version_mismatch: bool = False
    workers: int = 8
    status_timeout: float = 2.0
    index_poll_s: float = 2.0
    allowed_hosts: tuple[str, ...] | None = ("localhost", "127.0.0.1", "::1")
    max_json_depth: int = 64
    max_json_elements: int = 4 << 20
    health_interval_s: float = 0.25
    verify_interval_s: float = 3600.0
    freeze_gc: bool = True


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class SearchService:
    """The state behind the HTTP app: a backend, the current index and retriever, metrics.

    What it serves is a `ServingPair` (`self.pair`): the index and the backend pinned to the
    model version that index was built by. The pair can be swapped (`reload()`, the watcher)
    while requests run: a request keeps the pair it started with, so none is dropped.

    Args:
        backend: a `ModelBackend` (LocalModel, TFServingGrpc, TFServingRest); each pair pins it
            (`backend.pinned(version)`). `self.backend` is the current pair's pinned backend,
            `self.base_backend` this one.
        index_dir: a versioned index base path (the newest version whose model is AVAILABLE is
            served, newer ones are picked up) or an un-versioned index directory (re-read from
            the same path on reload).
        config: a `ServiceConfig`.

    Raises:
        ModelVersionMismatchError: the backend serves another model version than the index's
            (unless `config.allow_version_mismatch`); checked when the backend answers.
        IndexIntegrityError: the index is corrupted.
    """

    def __init__(
        self, backend: Any, index_dir: str | os.PathLike, config: ServiceConfig | None = None
    ):
        self.base_backend = backend
        self.index_dir = Path(index_dir)
        self.config = config or ServiceConfig()
        self.versioned = index_versions.is_versioned_base(self.index_dir)
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
        self.pair_switches = Counter(
            "mrl_serving_pair_switches",
            "Switches to a new (model version, index version) pair.",
            registry=self.registry,
        )
        self._reload_lock = threading.Lock()
        self._install(self._initial_pair())
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if self.versioned and self.config.index_poll_s > 0:
            self._watcher = threading.Thread(
                target=self._watch, name="mrl-index-watch", daemon=True
            )
            self._watcher.start()

    # -- index --------------------------------------------------------------------------
    def _served_version_or_none(self) -> int | None:
        try:
            return self.base_backend.info().version
        except BackendError as e:
            logger.warning("backend not reachable (%s); readiness will tell", e)
            return None

    def _open_checked(self, version: int | None = None) -> ServingPair:
        """A pair over `version` (or the legacy folder), refused when the backend answers that
        it cannot serve the index's model version (unreachable: readiness will tell)."""
        allow = self.config.allow_version_mismatch
        try:
            pair = open_pair(
                self.base_backend, self.index_dir, version=version, allow_version_mismatch=allow
            )
        except BackendError as e:  # LocalModel: no such version folder
            self._refuse(AdaptiveIndex.load(self.index_dir, version=version, verify=False), e)
        if pair.model_version is not None and not allow:
            ready, state = model_available(pair.backend, pair.model_version)
            if ready is None and (state in ("NOT_FOUND", "END") or state.startswith("serves")):
                self._refuse(pair.index, state)
        return pair

    def _refuse(self, index: AdaptiveIndex, why: Any) -> None:
        served = self._served_version_or_none()
        check_model_version(index.manifest, served)  # raises when the versions differ
        raise ModelVersionMismatchError(
            f"Index was built by model {index.model_name!r} version {index.model_version}, "
            f"which the backend cannot serve ({why})."
        )

    def _initial_pair(self) -> ServingPair:
        if not self.versioned:
            return self._open_checked()
        try:
            return newest_pair(
                self.base_backend,
                self.index_dir,
                allow_version_mismatch=self.config.allow_version_mismatch,
            )
        except PairNotReady as e:
            logger.warning("no index version has its model AVAILABLE (%s); serving the newest", e)
            return self._open_checked()

    def _install(self, pair: ServingPair) -> None:
        self.pair = pair  # one reference swap: requests read it once
        self.index_size.set(pair.index.count)

    @property
    def retriever(self) -> AdaptiveRetriever:
        return self.pair.retriever

    @property
    def index(self) -> AdaptiveIndex:
        return self.pair.index

    @property
    def backend(self) -> Any:
        """The current pair's backend (pinned to the served index's model version)."""
        return self.pair.backend

    @property
    def cascade(self):
        return self.pair.cascade

    def reload(self) -> dict[str, Any]:
        """Switches to a newer pair, or (un-versioned index) loads the directory again; the old
        pair keeps serving until then, and keeps serving if the new one is refused.

        Over a versioned base path: the newest index version above the served one whose model
        version the backend reports AVAILABLE; none newer is a no-op (`"switched": false`).

        Raises:
            ModelVersionMismatchError: newer index versions exist but none has its model
                version AVAILABLE (or the un-versioned index's model version is not served).
            IndexIntegrityError: the index is corrupted.
        """
        with self._reload_lock:
            previous = self.pair
            try:
                if self.versioned:
                    pair = self._newer_pair(previous)
                else:
                    pair = self._open_checked()
            except PairNotReady as e:
                self.reloads.labels("error").inc()
                raise ModelVersionMismatchError(f"No newer pair is ready: {e}") from e
            except Exception:
                self.reloads.labels("error").inc()
                raise
            self.reloads.labels("ok").inc()
            if pair is not None:
                self._install(pair)
                self.pair_switches.inc()
                logger.info("serving pair switched: %s -> %s", previous.describe(), pair.describe())
            current = self.pair
            return {
                "index_version": current.index.index_version,
                "previous_index_version": previous.index.index_version,
                "count": current.index.count,
                "model_version": current.model_version,
                "switched": pair is not None,
            }

    def _newer_pair(self, current: ServingPair) -> ServingPair | None:
        versions = index_versions.list_versions(self.index_dir)
        served = current.index.version
        if not versions or (served is not None and versions[-1] <= served):
            return None
        return newest_pair(
            self.base_backend,
            self.index_dir,
            newer_than=served,
            allow_version_mismatch=self.config.allow_version_mismatch,
        )

    def _watch(self) -> None:
        """Polls the base path; switches as soon as a newer pair is ready."""
        waiting_on = None
        while not self._stop.wait(self.config.index_poll_s):
            versions = index_versions.list_versions(self.index_dir)
            served = self.pair.index.version
            if not versions or (served is not None and versions[-1] <= served):
                continue
            try:
                self.reload()
                waiting_on = None
            except Exception as e:  # keep watching; log once per newest version
                if waiting_on != versions[-1]:
                    logger.info("index version %d not switched to yet: %s", versions[-1], e)
                    waiting_on = versions[-1]

    # -- blocking work (runs in the executor) --------------------------------------------
    def _model_inputs(self, instances: Any, backend: Any = None):
        info = (backend or self.backend).info()
        array = schema.numeric_batch("instances", instances, self.config.max_batch_size)
        return schema.check_instances_shape(array, info.input_shape, info.input_dtype)

    def run_search(self, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        pair = self.pair  # one pair for the whole request, whatever switches happen
        retriever = pair.retriever
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
            body.get("shortlist_reorder"),
        )
        if has_embeddings:
            queries = schema.numeric_batch(
                "embeddings", body["embeddings"], self.config.max_batch_size
            )
            result = retriever.search_embeddings(
                queries, plan=plan, model_version=retriever.index.model_version
            )
        else:
            inputs = self._model_inputs(body["instances"], pair.backend)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HTTPError(504, "Deadline exceeded before the backend call.")
            result = retriever.search(inputs, plan=plan, timeout=remaining, backend=pair.backend)
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
        pair = self.pair
        inputs = self._model_inputs(body["instances"], pair.backend)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HTTPError(504, "Deadline exceeded before the backend call.")
        result = pair.cascade.classify(inputs, timeout=remaining)
        return {"predictions": result.predictions(), "model_version": result.model_version}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        pair = self.pair
        index = pair.index
        details: dict[str, Any] = {
            "index_loaded": True,
            "index_version": index.index_version,
            "index_model_version": index.model_version,
            "index_count": index.count,  # the sharded front caps k at it
        }
        status = pair.backend.status()
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
        self._stop.set()
        for stop in getattr(self, "on_close", ()):  # the app's prober, verifier, reloader
            stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
