"""REST side of the dev model server: TF Serving's `/v1/models/...` routes, the HTTP server
and error bodies; the JSON tensor codec is `rest_json.py`."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mrl_keras.serving.backends.errors import (
    BackendError,
    Internal,
    InvalidInput,
    NotFound,
    Unimplemented,
)
from mrl_keras.serving.model_server.manager import VersionManager
from mrl_keras.serving.model_server.rest_json import (
    parse_predict_body,
    predict_response_json,
    tensors_from_doc,
)

# tensorflow_serving/model_servers/http_rest_api_util.cc
PREDICTION_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
STATUS_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:\/(metadata))?",
    re.IGNORECASE,
)
API_RE = re.compile(r"/v1/.*", re.IGNORECASE)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _RestServer

    def log_message(self, format, *args):  # quiet, like TF Serving
        pass

    def _reply(self, status: int, payload: dict[str, Any], close: bool = False) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        declared = (self.headers.get("Content-Length") or "0").strip()
        if not declared.isdigit():  # "abc", "-1": the body's end is unknown, so reply and close
            self.close_connection = True
            error = InvalidInput(f"Invalid Content-Length header: {declared[:40]!r}")
            self._reply(error.http_status, {"error": error.message}, close=True)
            return
        length = int(declared)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if method == "GET" and self.server.metrics_text and path == self.server.metrics_path:
            text = self.server.metrics_text().encode()  # Prometheus (--monitoring-config-file)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        try:
            status, payload = 200, self.server.dispatch(method, path, body)
        except BackendError as e:
            status, payload = e.http_status, {"error": e.message}
        except Exception as e:  # never let a request kill the connection without a reply
            err = Internal(f"{type(e).__name__}: {e}")
            status, payload = err.http_status, {"error": err.message}
        self._reply(status, payload)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")


class _RestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    metrics_path: str | None = None  # set by ModelServer with a monitoring config
    metrics_text: Callable[[], str] | None = None

    def __init__(self, address, manager: VersionManager, *, max_batch_size=None, latency_s=0.0):
        super().__init__(address, _Handler)
        self.manager = manager
        self.max_batch_size = max_batch_size
        self.latency_s = latency_s
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def handle_error(self, request, client_address):
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the client went away (e.g. its deadline passed): nothing to answer
        super().handle_error(request, client_address)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Drops every open keep-alive connection (a stopped server answers nothing)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def dispatch(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        if not API_RE.fullmatch(path):
            raise NotFound(f"Not Found: {path}")  # TF Serving registers /v1/ paths only
        malformed = InvalidInput(f"Malformed request: {method} {path}")
        if method == "POST":
            m = PREDICTION_RE.fullmatch(path)
            if not m:
                raise malformed
            name, version, label, verb = m.groups()
            if version and label:
                raise malformed
            if verb.lower() != "predict":
                raise Unimplemented(f"The dev model server implements :predict only, not :{verb}.")
            return self._predict(name, int(version) if version else None, label, body)
        if method == "GET":
            m = STATUS_RE.fullmatch(path)
            if not m:
                raise malformed
            name, version, label, sub = m.groups()
            if not name:
                raise InvalidInput("Missing model name in request.")
            version = int(version) if version else None
            if sub:
                return self._metadata(name, version, label)
            return self._status(name, version)
        raise malformed

    def _predict(self, name, version, label, body: bytes) -> dict[str, Any]:
        doc = parse_predict_body(body)
        fast = b"true" not in body and b"false" not in body  # else check every value
        fmt = {}

        def decode(spec):
            arrays, fmt["format"] = tensors_from_doc(doc, spec, fast)
            return arrays

        def bad_signature(sig):
            return InvalidInput(f'Serving signature name: "{sig}" not found in signature def')

        outputs, _, _ = self.manager.predict(
            name,
            version,
            label,
            doc.get("signature_name", ""),
            decode,
            bad_signature=bad_signature,
            max_batch_size=self.max_batch_size,
            latency_s=self.latency_s,
        )
        return predict_response_json(outputs, fmt["format"])

    def _status(self, name, version) -> dict[str, Any]:
        return {
            "model_version_status": [
                {
                    "version": str(v.version),
                    "state": v.state,
                    "status": {"error_code": v.error_code, "error_message": v.error_message},
                }
                for v in self.manager.status(name, version)
            ]
        }

    def _metadata(self, name, version, label) -> dict[str, Any]:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        served, defs = self.manager.signature_defs(name, version, label)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for k, v in defs.items():
            signature_map.signature_def[k].CopyFrom(v)
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(served)},
            "metadata": {
                "signature_def": json_format.MessageToDict(
                    signature_map,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )
            },
        }


def make_rest_server(host: str, port: int, manager: VersionManager, **options) -> _RestServer:
    return _RestServer((host, port), manager, **options)
