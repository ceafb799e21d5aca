"""The demo's HTTP service stage: start `mrl serve` on a free loopback port with the
in-process local model backend, talk to it over HTTP (DESIGN.md, "The HTTP service"), and stop
it again.

The service runs as a child process (`python -m mrl_keras.cli serve ...`), exactly what a user
starts; the demo keeps its process id and stops only that process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any


class ServiceError(RuntimeError):
    """The HTTP service did not start, answered with an error, or could not be reached."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
    """`mrl serve --model MODEL --index INDEX` on `127.0.0.1:<free port>`, as a child process.

    Args:
        model: the SavedModel base path.
        index: the index directory.
        log_path: file receiving the service's stdout and stderr.
        port: the port; defaults to a free one.
        startup_timeout: seconds to wait for `GET /readyz` to answer 200.

    Use as a context manager: the service is stopped (SIGTERM, then SIGKILL) on exit.
    """

    def __init__(
        self,
        model: str,
        index: str,
        log_path: str,
        port: int | None = None,
        startup_timeout: float = 180.0,
    ):
        self.model, self.index, self.log_path = model, index, log_path
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self.url = f"http://{self.host}:{self.port}"
        self.startup_seconds: float | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "mrl_keras.cli", "serve",
            "--model", self.model, "--index", self.index,
            "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip

    def _log_tail(self, lines: int = 8) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                tail = f.read().strip().splitlines()[-lines:]
        except OSError:
            return ""
        return " | ".join(tail)

    def start(self) -> ServiceProcess:
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        t0 = time.time()
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = t0 + self.startup_timeout
        while time.time() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServiceError(
                    f"`mrl serve` exited with status {code} before it was ready "
                    f"(log {self.log_path}: {self._log_tail()})"
                )
            try:
                status, _, _ = request_json(self.url + "/readyz", timeout=2.0)
                if status == 200:
                    self.startup_seconds = time.time() - t0
                    return self
            except ServiceError:
                pass
            time.sleep(0.5)
        raise ServiceError(
            f"`mrl serve` was not ready within {self.startup_timeout:.0f}s "
            f"(log {self.log_path}: {self._log_tail()})"
        )

    def stop(self) -> int | None:
        """Stops the child process; returns its exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        return process.returncode

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
            raise ServiceError(
                f"{'POST' if payload is not None else 'GET'} {route} -> {status}: {body}"
            )
        return body, seconds
