"""Version management for the dev model server: TF Serving's file-system source and its
availability-preserving policy, in Python.

The base path is polled every `poll_interval_s`. The newest `num_versions` integer folders are
aspired; a new version is loaded before an old one is unloaded, a version that fails to load
never takes down the one serving, and an unloaded version ends only once its in-flight
requests have returned (each request holds its servable, so it keeps its version).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from mrl_keras.serving.backends.backend import SignatureSpec, VersionStatus
from mrl_keras.serving.backends.errors import (
    BackendError,
    DeadlineExceeded,
    InvalidInput,
    NotFound,
    error_from_code,
)
from mrl_keras.serving.backends.local_model import LocalModel, check_inputs, read_signature_defs
from mrl_keras.serving.model_server.model_config import VersionPolicy, aspired_versions

logger = logging.getLogger("mrl_keras.serving.model_server.server")

MAX_WARMUP_RECORDS = 1000


@dataclasses.dataclass
class Servable:
    """One loaded version: the model, its SignatureDef protos, and its in-flight count."""

    version: int
    path: str
    model: LocalModel
    signature_defs: dict
    in_flight: int = 0


@dataclasses.dataclass
class _VersionState:
    state: str
    error_code: str = "OK"
    error_message: str = ""
    fingerprint: tuple = ()
    servable: Servable | None = None


def _fingerprint(path: str) -> tuple:
    """Changes when a version folder is rewritten (a failed version is retried then)."""
    stats = []
    for p in (path, os.path.join(path, "saved_model.pb"), os.path.join(path, "variables")):
        try:
            st = os.stat(p)
            stats.append((st.st_mtime_ns, st.st_size))
        except OSError:
            stats.append(None)
    return tuple(stats)


class VersionManager:
    """Loads, serves and unloads the versions of one model under a base path.

    Args:
        base_path: str. The folder holding integer version folders.
        model_name: str. The name requests must use.
        poll_interval_s: float. Seconds between scans of the base path (TF Serving: 1).
        num_versions: int. Serve the newest N versions (TF Serving's `latest{N}` policy).
        version_labels: mapping of label -> version (labels resolve to AVAILABLE versions).
        version_policy: a `model_config.VersionPolicy` (latest N, specific, all); overrides
            `num_versions` when given.
    """

    def __init__(
        self,
        base_path: str,
        model_name: str,
        *,
        poll_interval_s: float = 1.0,
        num_versions: int = 1,
        version_labels: Mapping[str, int] | None = None,
        version_policy: VersionPolicy | None = None,
    ):
        if num_versions < 1:
            raise ValueError(f"Expected num_versions >= 1. Received: num_versions={num_versions}")
        if poll_interval_s <= 0:
            raise ValueError(
                f"Expected poll_interval_s > 0. Received: poll_interval_s={poll_interval_s}"
            )
        self.base_path = os.fspath(base_path)
        self.model_name = model_name
        self.poll_interval_s = float(poll_interval_s)
        self.num_versions = int(num_versions)
        self.version_policy = version_policy or VersionPolicy("latest", self.num_versions)
        self.version_labels = dict(version_labels or {})
        self._states: dict[int, _VersionState] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_lock = threading.Lock()
        self.batcher: Any = None  # a batching.Batcher: Predicts run through its queue
        self.metrics: Any = None  # a monitoring.ServerMetrics: Predicts are counted

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self.poll_once()
        self._thread = threading.Thread(target=self._run, name="mrl-model-server-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._cond:
            for st in self._states.values():
                if st.servable is not None and st.state == "AVAILABLE":
                    st.state = "END"
                    st.servable = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.poll_once()
            except Exception:  # a scan must never kill the poll loop
                logger.exception("Polling %s failed", self.base_path)

    def _versions_on_disk(self) -> list[int]:
        try:
            names = os.listdir(self.base_path)
        except OSError:
            return []
        return sorted(
            int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(self.base_path, n))
        )

    def poll_once(self) -> None:
        """One scan: load aspired versions, then unload the others once one is AVAILABLE."""
        with self._poll_lock:
            aspired = aspired_versions(self.version_policy, self._versions_on_disk())
            for version in aspired:
                path = os.path.join(self.base_path, str(version))
                with self._cond:
                    st = self._states.get(version)
                    if st is not None and st.state in ("AVAILABLE", "LOADING", "UNLOADING"):
                        continue
                    fp = _fingerprint(path)
                    if st is not None and st.fingerprint == fp:
                        continue  # failed or ended before, unchanged on disk: leave it
                    self._states[version] = _VersionState(state="LOADING", fingerprint=fp)
                    self._cond.notify_all()
                self._load(version, path, fp)
            with self._cond:
                if not any(
                    self._states.get(v) and self._states[v].state == "AVAILABLE" for v in aspired
                ):
                    return
                retire = [
                    v
                    for v, st in self._states.items()
                    if v not in aspired and st.state == "AVAILABLE"
                ]
                for v in retire:
                    self._states[v].state = "UNLOADING"
                self._cond.notify_all()
            for v in retire:
                threading.Thread(target=self._unload, args=(v,), daemon=True).start()

    def _load(self, version: int, path: str, fingerprint: tuple) -> None:
        logger.info("Loading %s version %d from %s", self.model_name, version, path)
        try:
            model = LocalModel(path, model_name=self.model_name)
            servable = Servable(version, path, model, read_signature_defs(path))
            self._warmup(servable)
        except Exception as e:  # any failure leaves the serving version alone
            code, message = _status_of(e)
            logger.warning("Loading %s version %d failed: %s", self.model_name, version, message)
            with self._cond:
                self._states[version] = _VersionState(
                    state="END", error_code=code, error_message=message, fingerprint=fingerprint
                )
                self._cond.notify_all()
            return
        with self._cond:
            self._states[version] = _VersionState(
                state="AVAILABLE", fingerprint=fingerprint, servable=servable
            )
            self._cond.notify_all()
        logger.info("%s version %d is AVAILABLE", self.model_name, version)

    def _warmup(self, servable: Servable) -> None:
        """Replays `assets.extra/tf_serving_warmup_requests` (PredictionLog predict_log)."""
        path = os.path.join(servable.path, "assets.extra", "tf_serving_warmup_requests")
        if not os.path.isfile(path):
            return
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        from mrl_keras.serving.backends.tf_serving_requests import tensor_proto_to_ndarray

        for i, record in enumerate(tf.data.TFRecordDataset(path)):
            if i >= MAX_WARMUP_RECORDS:
                break
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if not log.HasField("predict_log"):
                continue
            request = log.predict_log.request
            inputs = {k: tensor_proto_to_ndarray(v) for k, v in request.inputs.items()}
            servable.model.run_signature(
                request.model_spec.signature_name or "serving_default", inputs
            )

    def _unload(self, version: int) -> None:
        with self._cond:
            st = self._states[version]
            while st.servable is not None and st.servable.in_flight > 0:
                self._cond.wait(timeout=1.0)
            if st.servable is not None:
                st.servable.model.close()
            st.servable = None
            st.state = "END"
            self._cond.notify_all()
        logger.info("%s version %d unloaded", self.model_name, version)

    # -- requests -----------------------------------------------------------------------
    def _resolve(self, model_name: str, version: int | None, label: str | None) -> Servable:
        if model_name != self.model_name and not label:
            raise NotFound(_not_found(model_name, version))
        if label:
            if label not in self.version_labels:
                raise InvalidInput(f"Unrecognized servable version label: {label}")
            version = self.version_labels[label]
        if version is None:
            available = [v for v, st in self._states.items() if st.state == "AVAILABLE"]
            if not available:
                raise NotFound(_not_found(model_name, None))
            version = max(available)
        st = self._states.get(version)
        if st is None or st.state != "AVAILABLE" or st.servable is None:
            raise NotFound(_not_found(model_name, version))
        return st.servable

    @contextlib.contextmanager
    def acquire(
        self, model_name: str, version: int | None = None, label: str | None = None
    ) -> Iterator[Servable]:
        """Holds a servable for one request (it will not end while held)."""
        with self._cond:
            servable = self._resolve(model_name, version, label)
            servable.in_flight += 1
        try:
            yield servable
        finally:
            with self._cond:
                servable.in_flight -= 1
                self._cond.notify_all()

    def predict(self, model_name: str, *args, **kwargs) -> tuple[dict[str, np.ndarray], int, str]:
        """`_predict` (below), counted in `metrics` when the server keeps metrics."""
        if self.metrics is None:
            return self._predict(model_name, *args, **kwargs)
        start, status = time.monotonic(), "OK"
        try:
            return self._predict(model_name, *args, **kwargs)
        except BackendError as e:
            status = e.code
            raise
        except Exception:
            status = "INTERNAL"
            raise
        finally:
            self.metrics.observe(model_name, status, time.monotonic() - start)

    def _predict(
        self,
        model_name: str,
        version: int | None,
        label: str | None,
        signature_name: str,
        decode: Callable[[SignatureSpec], dict[str, np.ndarray]],
        *,
        bad_signature: Callable[[str], BackendError],
        max_batch_size: int | None = None,
        latency_s: float = 0.0,
        time_left: Callable[[], float | None] = lambda: None,
    ) -> tuple[dict[str, np.ndarray], int, str]:
        """Runs one Predict on the version the request resolves to (held until it returns).

        Args:
            decode: turns the request's inputs into arrays once the signature is known (gRPC
                and REST parse differently; both check against the signature).
            bad_signature: the error for an unknown signature (REST and gRPC differ).
            max_batch_size: reject larger batches, as TF Serving's batching does.
            latency_s: injected delay before running (dev/testing only).
            time_left: seconds left before the caller's deadline, or None.

        Returns:
            (outputs, served version, signature name used).
        """
        signature_name = signature_name or "serving_default"
        with self.acquire(model_name, version, label) as servable:
            spec = servable.model.signatures().get(signature_name)
            if spec is None:
                raise bad_signature(signature_name)
            inputs = decode(spec)
            check_inputs(spec, inputs)
            if max_batch_size:
                sizes = {int(v.shape[0]) if v.ndim else 1 for v in inputs.values()}
                if max(sizes) > max_batch_size:
                    raise InvalidInput(
                        f"Task size {max(sizes)} is larger than maximum input batch size "
                        f"{max_batch_size}"
                    )
            if latency_s > 0:
                end = time.monotonic() + latency_s
                while (left := end - time.monotonic()) > 0:
                    budget = time_left()
                    if budget is not None and budget <= 0:
                        raise DeadlineExceeded("Deadline Exceeded")
                    time.sleep(min(left, 0.02))
            budget = time_left()
            if budget is not None and budget <= 0:
                raise DeadlineExceeded("Deadline Exceeded")
            if self.batcher is not None:
                outputs = self.batcher.run(servable.model, signature_name, inputs, time_left)
            else:
                outputs = servable.model.run_signature(signature_name, inputs)
            return outputs, servable.version, signature_name

    def signature_defs(
        self, model_name: str, version: int | None = None, label: str | None = None
    ) -> tuple[int, dict]:
        """(served version, SignatureDef protos) for GetModelMetadata."""
        with self.acquire(model_name, version, label) as servable:
            return servable.version, dict(servable.signature_defs)

    def status(self, model_name: str, version: int | None = None) -> list[VersionStatus]:
        """GetModelStatus: every known version, or one (TF Serving's NOT_FOUND messages)."""
        with self._cond:
            known = {} if model_name != self.model_name else dict(self._states)
            if version is not None:
                if version not in known:
                    raise NotFound(f"Could not find version {version} of model {model_name}")
                known = {version: known[version]}
            elif not known:
                raise NotFound(f"Could not find any versions of model {model_name}")
            return [
                VersionStatus(v, st.state, st.error_code, st.error_message)
                for v, st in sorted(known.items())
            ]

    def wait_until_available(self, timeout: float, version: int | None = None) -> bool:
        """Blocks until `version` (or any version) is AVAILABLE; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                ready = [v for v, st in self._states.items() if st.state == "AVAILABLE"]
                if (version is None and ready) or version in ready:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=min(left, 0.2))


def _not_found(model_name: str, version: int | None) -> str:
    if version is None:
        return f"Servable not found for request: Latest({model_name})"
    return f"Servable not found for request: Specific({model_name}, {version})"


def _status_of(e: Exception) -> tuple[str, str]:
    if isinstance(e, BackendError):
        return e.code, e.message
    error_code = getattr(e, "error_code", None)
    if error_code is not None:
        from tensorflow.core.protobuf import error_codes_pb2

        err = error_from_code(error_codes_pb2.Code.Name(error_code), getattr(e, "message", str(e)))
        return err.code, err.message
    if isinstance(e, FileNotFoundError):
        return "NOT_FOUND", str(e)
    return "UNKNOWN", f"{type(e).__name__}: {e}"
