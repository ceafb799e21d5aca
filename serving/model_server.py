"""`mrl model-server`: a development server that speaks TensorFlow Serving's protocol.

For laptops, CI and tests, where the `tensorflow/serving` binary or Docker is not available.
It serves SavedModels exported by this project over gRPC (PredictionService.Predict,
PredictionService.GetModelMetadata, ModelService.GetModelStatus) and REST
(`/v1/models/{name}[/versions/{n}|/labels/{l}][:predict|/metadata]`), with TF Serving's
version lifecycle (1 s polling, availability-preserving loads) and its error codes and
messages. **Production should use `tensorflow/serving`**: this server runs models in Python,
has no request batching, and is tested only against this project's SavedModels.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from concurrent import futures

MAX_MESSAGE_BYTES = 2**31 - 1


class ModelServer:
    """A TF-Serving-compatible dev server for one model, in this process.

    Args:
        model_base_path: str. Folder holding integer version folders.
        model_name: str. The name clients use (TF Serving's `MODEL_NAME`).
        port: int. gRPC port; 0 picks a free one. None disables gRPC.
        rest_api_port: int. REST port; 0 picks a free one. None disables REST.
        host: str. Interface to bind. Defaults to loopback.
        poll_interval_s: float. Seconds between scans of the base path.
        num_versions: int. Serve the newest N versions.
        version_labels: dict of label -> version.
        max_batch_size: int or None. Reject larger requests (INVALID_ARGUMENT).
        latency_s: float. Injected delay per Predict (testing deadlines only).
        grpc_workers: int. gRPC worker threads.

    Example:

    ```python
    server = mrl_keras.serving.ModelServer("models/fashion_mnist", "fashion_mnist").start()
    backend = mrl_keras.serving.TFServingGrpc(server.grpc_address, "fashion_mnist")
    server.stop()
    ```
    """

    def __init__(
        self,
        model_base_path: str,
        model_name: str,
        *,
        port: int | None = 0,
        rest_api_port: int | None = 0,
        host: str = "127.0.0.1",
        poll_interval_s: float = 1.0,
        num_versions: int = 1,
        version_labels: dict[str, int] | None = None,
        max_batch_size: int | None = None,
        latency_s: float = 0.0,
        grpc_workers: int = 16,
    ):
        from mrl_keras.serving._model_server_manager import VersionManager

        if not model_name:
            raise ValueError("Expected a non-empty model_name. Received: model_name=''")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(
                f"Expected max_batch_size >= 1 or None. Received: max_batch_size={max_batch_size}"
            )
        if latency_s < 0:
            raise ValueError(f"Expected latency_s >= 0. Received: latency_s={latency_s}")
        self.host = host
        self.port = port
        self.rest_api_port = rest_api_port
        self.max_batch_size = max_batch_size
        self.latency_s = float(latency_s)
        self.grpc_workers = grpc_workers
        self.manager = VersionManager(
            model_base_path,
            model_name,
            poll_interval_s=poll_interval_s,
            num_versions=num_versions,
            version_labels=version_labels,
        )
        self._grpc_server = None
        self._rest_server = None
        self._rest_thread = None
        self.grpc_port: int | None = None
        self.rest_port: int | None = None

    @property
    def model_name(self) -> str:
        return self.manager.model_name

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    def start(self, wait_for_model_s: float | None = None) -> ModelServer:
        """Binds the ports, loads the model and starts polling; returns self.

        Args:
            wait_for_model_s: float or None. Block until a version is AVAILABLE (raises
                `TimeoutError` after this many seconds).
        """
        import grpc
        from mrl_keras.serving._model_server_grpc import add_servicers
        from mrl_keras.serving._model_server_rest import make_rest_server

        options = {"max_batch_size": self.max_batch_size, "latency_s": self.latency_s}
        if self.port is not None:
            self._grpc_server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=self.grpc_workers),
                options=[
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.so_reuseport", 1),
                ],
            )
            add_servicers(self._grpc_server, self.manager, **options)
            self.grpc_port = self._grpc_server.add_insecure_port(f"{self.host}:{self.port}")
            if not self.grpc_port:
                raise OSError(f"Cannot bind gRPC to {self.host}:{self.port}")
        if self.rest_api_port is not None:
            self._rest_server = make_rest_server(
                self.host, self.rest_api_port, self.manager, **options
            )
            self.rest_port = self._rest_server.server_address[1]
        self.manager.start()
        if self._grpc_server is not None:
            self._grpc_server.start()
        if self._rest_server is not None:
            self._rest_thread = threading.Thread(
                target=self._rest_server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="mrl-model-server-rest",
                daemon=True,
            )
            self._rest_thread.start()
        if wait_for_model_s is not None and not self.manager.wait_until_available(wait_for_model_s):
            self.stop()
            raise TimeoutError(
                f"No version of {self.model_name!r} became AVAILABLE under "
                f"{self.manager.base_path} within {wait_for_model_s} s."
            )
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stops serving: in-flight gRPC calls get `grace` seconds, keep-alive REST
        connections are dropped."""
        if self._grpc_server is not None:
            self._grpc_server.stop(grace).wait()
            self._grpc_server = None
        if self._rest_server is not None:
            self._rest_server.shutdown()
            self._rest_server.close_connections()
            self._rest_server.server_close()
            self._rest_server = None
        self.manager.stop()

    def wait(self) -> None:
        """Blocks until the gRPC server terminates (or forever for REST only)."""
        if self._grpc_server is not None:
            self._grpc_server.wait_for_termination()
        elif self._rest_thread is not None:
            self._rest_thread.join()

    def __enter__(self):
        if self._grpc_server is None and self._rest_server is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def _parse_labels(values: list[str]) -> dict[str, int]:
    labels = {}
    for item in values:
        label, sep, version = item.partition("=")
        if not sep or not label or not version.isdigit():
            raise ValueError(f"Expected --version-label LABEL=VERSION. Received: {item!r}")
        labels[label] = int(version)
    return labels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrl model-server",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Development model server speaking TensorFlow Serving's gRPC and REST protocol,\n"
            "for SavedModels exported by mrl-keras (laptops, CI, tests).\n\n"
            "PRODUCTION SHOULD USE tensorflow/serving:\n"
            "  docker run -p 8500:8500 -p 8501:8501 \\\n"
            "    -v $PWD/models/NAME:/models/NAME -e MODEL_NAME=NAME tensorflow/serving"
        ),
    )
    parser.add_argument(
        "--model-base-path",
        "--model_base_path",
        required=True,
        help="folder holding integer version folders (base/1/, base/2/, ...)",
    )
    parser.add_argument(
        "--model-name",
        "--model_name",
        default="default",
        help="name clients use (TF Serving's MODEL_NAME). Default: default",
    )
    parser.add_argument("--port", type=int, default=8500, help="gRPC port. Default: 8500")
    parser.add_argument(
        "--rest-api-port",
        "--rest_api_port",
        type=int,
        default=8501,
        help="REST port; 0 disables REST, as in TF Serving. Default: 8501",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind. Default: 127.0.0.1 (use 0.0.0.0 to expose)",
    )
    parser.add_argument(
        "--file-system-poll-wait-seconds",
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="seconds between scans of the base path. Default: 1",
    )
    parser.add_argument(
        "--num-versions",
        type=int,
        default=1,
        help="serve the newest N versions (TF Serving's latest{N}). Default: 1",
    )
    parser.add_argument(
        "--version-label",
        action="append",
        default=[],
        metavar="LABEL=VERSION",
        help="map a version label to a version (repeatable)",
    )
    parser.add_argument(
        "--max-batch-size",
        "--max_batch_size",
        type=int,
        default=None,
        help="reject requests with a larger batch (INVALID_ARGUMENT)",
    )
    parser.add_argument(
        "--inject-latency-ms",
        type=float,
        default=0.0,
        help="testing only: delay every Predict by this many milliseconds",
    )
    parser.add_argument("--grpc-workers", type=int, default=16, help="gRPC worker threads")
    parser.add_argument(
        "--wait-for-model-seconds",
        type=float,
        default=60.0,
        help="exit non-zero if no version is AVAILABLE by then. Default: 60",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `mrl model-server`."""
    args = build_parser().parse_args(argv)
    prog = "mrl model-server"
    if not os.path.isdir(args.model_base_path):
        print(
            f"{prog}: --model-base-path {args.model_base_path!r} is not a folder.", file=sys.stderr
        )
        return 2
    for flag, value in (("--port", args.port), ("--rest-api-port", args.rest_api_port)):
        if not 0 <= value <= 65535:
            print(f"{prog}: expected {flag} in 0..65535. Received: {value}", file=sys.stderr)
            return 2
    if args.port == 0 and args.rest_api_port == 0:
        print(f"{prog}: both --port and --rest-api-port are 0: nothing to serve.", file=sys.stderr)
        return 2
    try:
        labels = _parse_labels(args.version_label)
        server = ModelServer(
            args.model_base_path,
            args.model_name,
            port=args.port or None,
            rest_api_port=args.rest_api_port or None,
            host=args.host,
            poll_interval_s=args.file_system_poll_wait_seconds,
            num_versions=args.num_versions,
            version_labels=labels,
            max_batch_size=args.max_batch_size,
            latency_s=args.inject_latency_ms / 1000.0,
            grpc_workers=args.grpc_workers,
        )
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server.start(wait_for_model_s=args.wait_for_model_seconds)
    except (OSError, TimeoutError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    parts = []
    if server.grpc_port:
        parts.append(f"gRPC {server.grpc_address}")
    if server.rest_port:
        parts.append(f"REST {server.rest_url}")
    print(
        f"{prog}: serving {args.model_name!r} from {args.model_base_path} on "
        f"{', '.join(parts)} (development server; production: tensorflow/serving)",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
