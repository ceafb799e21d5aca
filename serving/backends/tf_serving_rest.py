"""`TFServingRest`: a Matryoshka model served by TensorFlow Serving, over its REST API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from typing import Any

import requests

from mrl_keras.serving.backends import tf_serving_requests as requests_lib
from mrl_keras.serving.backends.backend import (
    ModelBackend,
    ModelStatus,
    SignatureSpec,
    check_model_spec,
)
from mrl_keras.serving.backends.errors import (
    DeadlineExceeded,
    Internal,
    NotFound,
    Unavailable,
    error_from_http,
)
from mrl_keras.serving.backends.retry import RetryPolicy


def _refused(e: BaseException) -> bool:
    """Whether a requests ConnectionError is a refused (or never established) connection."""
    from urllib3.exceptions import NewConnectionError

    seen, stack = set(), [e]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, (ConnectionRefusedError, NewConnectionError)):
            return True
        stack.extend([cur.__cause__, cur.__context__, getattr(cur, "reason", None)])
        stack.extend(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))
    return False


class TFServingRest(ModelBackend):
    """A Matryoshka model served by TensorFlow Serving (or `mrl model-server`), over REST.

    A pooled `requests.Session`, an explicit timeout on every call, and the gRPC client's
    retry rules (UNAVAILABLE only: HTTP 503 and dropped connections; a refused connection,
    nothing listening, fails at once). Requests use the
    columnar format (`{"signature_name", "inputs"}`).

    TF Serving's REST predict response carries no model version, so an unpinned client
    resolves the newest AVAILABLE version (`GET /v1/models/{name}`, re-read at most every
    `version_refresh_s`) and sends each predict to `/versions/{n}`: `served_version` is then
    exact. If that version has just been unloaded, it re-resolves once and retries.

    Args:
        url: str. `http://host:port` of the REST API (TF Serving: 8501).
        model_name: str. TF Serving's `MODEL_NAME`.
        version: int or None. Pin a version. Defaults to the latest.
        label: str or None. Pin a version label instead.
        timeout: float. Default deadline per call, in seconds.
        retry: `RetryPolicy` or None.
        required_signatures: iterable of str. Checked at start-up with `embed_{m}`.
        check: bool. Read the signatures at construction. Defaults to True.
        session: requests.Session or None. Inject a session (defaults to a pooled one).
        pool_maxsize: int. Connections kept per host.
        version_refresh_s: float. How long an unpinned client trusts the resolved version.

    Example:

    ```python
    backend = mrl_keras.serving.TFServingRest("http://localhost:8501", "fashion_mnist")
    backend.embed(images, 24).embeddings.shape  # (n, 24)
    ```
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        version: int | None = None,
        label: str | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        required_signatures: Iterable[str] = (),
        check: bool = True,
        session: requests.Session | None = None,
        pool_maxsize: int = 32,
        version_refresh_s: float = 1.0,
    ):
        super().__init__(required_signatures)
        check_model_spec(version, label, timeout)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Expected an http:// or https:// url. Received: url={url!r}")
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.version = version
        self.label = label
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy()
        self.version_refresh_s = float(version_refresh_s)
        if session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0
            )
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self._session = session
        self._resolved: tuple[int, float] | None = None  # (version, monotonic time)
        self._resolve_lock = threading.Lock()
        if check:
            self.refresh()

    # -- transport ----------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, timeout: float | None = None):
        data = None if body is None else json.dumps(body)

        def attempt(left: float):
            try:
                response = self._session.request(
                    method,
                    self.url + path,
                    data=data,
                    headers={"Content-Type": "application/json"} if data is not None else None,
                    timeout=(left, left),
                )
            except requests.Timeout as e:
                if isinstance(e, requests.ConnectTimeout):
                    raise Unavailable(f"Cannot connect to {self.url}: {e}") from None
                raise DeadlineExceeded(f"Deadline of {left:.3g} s exceeded: {e}") from None
            except requests.ConnectionError as e:
                error = Unavailable(f"Cannot reach {self.url}: {e}")
                if _refused(e):  # nothing listens there: retrying inside the deadline cannot help
                    error.retryable = False
                raise error from None
            except (
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ) as e:
                # The server went away (stopped, restarted) in the middle of its answer: the same
                # outage as a refused connection, seen later. Every call here is a read (predict,
                # status, metadata), so a retry inside the deadline is safe.
                raise Unavailable(f"The connection to {self.url} broke mid-answer: {e}") from None
            try:
                payload = response.json()
            except ValueError:
                payload = {"error": response.text}
            if response.status_code != 200:
                message = (
                    payload.get("error", response.text)
                    if isinstance(payload, dict)
                    else response.text
                )
                raise error_from_http(response.status_code, message)
            if not isinstance(payload, dict):
                raise Internal(
                    f"Expected a JSON object from {self.url}{path}. Received: {response.text[:200]}"
                )
            return payload

        return self.retry.call(attempt, self.timeout if timeout is None else timeout)

    def _model_path(self, version: int | None = None) -> str:
        if version is not None:
            return requests_lib.rest_model_path(self.model_name, version=version)
        return requests_lib.rest_model_path(self.model_name, version=self.version, label=self.label)

    # -- primitives ---------------------------------------------------------------------
    def _load_signatures(self) -> tuple[int, dict[str, SignatureSpec]]:
        return requests_lib.parse_rest_metadata(
            self._request("GET", self._model_path() + "/metadata")
        )

    def _target_version(self, timeout: float | None, force: bool = False) -> int:
        if self.version is not None:
            return self.version
        with self._resolve_lock:
            now = time.monotonic()
            if not force and self._resolved and now - self._resolved[1] < self.version_refresh_s:
                return self._resolved[0]
            if self.label is not None:
                body = self._request("GET", self._model_path() + "/metadata", timeout=timeout)
                version = int(body["model_spec"]["version"])
            else:
                status = self.status(timeout=timeout)
                if status.state != "AVAILABLE":
                    raise NotFound(f"Servable not found for request: Latest({self.model_name})")
                version = status.version
            self._resolved = (version, now)
            return version

    def _predict(self, signature, inputs, timeout):
        body = requests_lib.rest_predict_body(signature, inputs)
        outputs_spec = self.signatures()[signature].outputs
        version = self._target_version(timeout)
        path = self._model_path(version) + ":predict"
        try:
            payload = self._request("POST", path, body, timeout)
        except NotFound:
            if self.version is not None:
                raise
            version = self._target_version(timeout, force=True)
            payload = self._request("POST", self._model_path(version) + ":predict", body, timeout)
        return requests_lib.parse_rest_predict_response(payload, outputs_spec), version

    def status(self, *, timeout: float | None = None) -> ModelStatus:
        """Status of the pinned version or of the newest AVAILABLE one (`GET /v1/models/...`)."""
        path = requests_lib.rest_model_path(self.model_name, version=self.version)
        body = self._request("GET", path, timeout=timeout)
        return requests_lib.parse_rest_status(body, self.version)

    def close(self) -> None:
        self._session.close()
