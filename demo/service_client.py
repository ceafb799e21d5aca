"""The demo's HTTP service stage: start the HTTP service (the app `mrl serve` runs) on a free
loopback port with the in-process local model backend, talk to it over HTTP only (DESIGN.md,
"The HTTP service"), and stop it again."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any


class ServiceError(RuntimeError):
    """The HTTP service did not start, answered with an error, or could not be reached."""


def request_json(url: str, payload: Any = None, timeout: float = 60.0) -> tuple[int, Any, float]:
    """GET (no payload) or POST JSON; returns (status, decoded body or text, seconds)."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json"} if data is not None else {},
    )
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise ServiceError(f"cannot reach {url}: {e}") from e
    seconds = time.perf_counter() - t0
    text = body.decode(errors="replace")
    try:
        return status, json.loads(text), seconds
    except json.JSONDecodeError:
        return status, text, seconds


class ServiceProcess:
    """The HTTP service (`mrl_keras.serving.service`, what `mrl serve` runs) on
    `127.0.0.1:<free port>`, served by uvicorn in a thread of this process, in front of the
    in-process local model backend the demo already holds.

    Args:
        backend: a `ModelBackend` (the demo's `LocalModel`).
        index: the index directory.
        startup_timeout: seconds to wait for the server to listen and `GET /readyz` to be 200.

    Use as a context manager: the server is shut down and its thread joined on exit.
    """

    def __init__(self, backend: Any, index: str, startup_timeout: float = 60.0):
        self.backend, self.index = backend, index
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.url = ""
        self.startup_timeout = startup_timeout
        self.startup_seconds: float | None = None
        self._server = None
        self._service = None
        self._thread: threading.Thread | None = None

    def start(self) -> ServiceProcess:
        import uvicorn

        from mrl_keras.serving.service.app import create_app
        from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

        t0 = time.time()
        self._service = SearchService(self.backend, self.index, ServiceConfig())
        app = create_app(self._service)
        # Port 0: the kernel picks a free port when uvicorn binds; read it back below.
        config = uvicorn.Config(app, host=self.host, port=0, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="mrl-demo-serve", daemon=True)
        self._thread.start()
        deadline = t0 + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise ServiceError("the HTTP service stopped before it was listening")
            if time.time() > deadline:
                raise ServiceError(
                    f"the HTTP service did not listen within {self.startup_timeout}s"
                )
            time.sleep(0.05)
        sockets = [s for server in self._server.servers for s in server.sockets]
        self.port = int(sockets[0].getsockname()[1])
        self.url = f"http://{self.host}:{self.port}"
        while time.time() < deadline:
            status, body, _ = request_json(self.url + "/readyz", timeout=5.0)
            if status == 200:
                self.startup_seconds = time.time() - t0
                return self
            time.sleep(0.2)
        raise ServiceError(f"GET /readyz did not answer 200 within {self.startup_timeout}s: {body}")

    def stop(self) -> None:
        """Shuts the server down and waits for its thread."""
        server, thread, service = self._server, self._thread, self._service
        self._server = self._thread = self._service = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=30)
            if thread.is_alive():
                raise ServiceError("the HTTP service did not shut down within 30s")
        if service is not None:
            service.close()

    def __enter__(self) -> ServiceProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def call(self, route: str, payload: Any = None, timeout: float = 120.0) -> tuple[Any, float]:
        """Calls a route; raises `ServiceError` unless the answer is 200."""
        status, body, seconds = request_json(self.url + route, payload, timeout=timeout)
        if status != 200:
            method = "POST" if payload is not None else "GET"
            raise ServiceError(f"{method} {route} -> {status}: {body}")
        return body, seconds
