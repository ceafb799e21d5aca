"""`ModelServer`: a development server that speaks TensorFlow Serving's protocol.

For laptops, CI and tests, where the `tensorflow/serving` binary or Docker is not available.
`mrl model-server` (`serving/cli/model_server.py`) runs it. It serves SavedModels exported by this project over gRPC (PredictionService.Predict,
PredictionService.GetModelMetadata, ModelService.GetModelStatus) and REST
(`/v1/models/{name}[/versions/{n}|/labels/{l}][:predict|/metadata]`), with TF Serving's
version lifecycle (1 s polling, availability-preserving loads) and its error codes and
messages. **Production should use `tensorflow/serving`**: this server runs models in Python,
batches only when given TF Serving's batching parameters (`batching.py`), and is tested only
against this project's SavedModels.
"""

from __future__ import annotations

import threading
from concurrent import futures
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mrl_keras.serving.model_server.server_files import BatchingParameters, MonitoringConfig

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
        version_policy: a `model_config.VersionPolicy` (latest N, specific, all), e.g. from a
            TF Serving model config file; overrides `num_versions`.
        max_batch_size: int or None. Reject larger requests (INVALID_ARGUMENT).
        latency_s: float. Injected delay per Predict (testing deadlines only).
        grpc_workers: int. gRPC worker threads.
        batching: `server_files.BatchingParameters` or None. Server-side batching that splits
            and queues (`batching.Batcher`); None runs each request as it comes.
        monitoring: `server_files.MonitoringConfig` or None. With `enable`, Prometheus
            metrics on the REST port at its `path`.

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
        version_policy=None,
        max_batch_size: int | None = None,
        latency_s: float = 0.0,
        grpc_workers: int = 16,
        batching: BatchingParameters | None = None,
        monitoring: MonitoringConfig | None = None,
    ):
        from mrl_keras.serving.model_server.manager import VersionManager

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
            version_policy=version_policy,
        )
        if monitoring is not None and monitoring.enable and rest_api_port is None:
            raise ValueError(
                "Prometheus metrics are served on the REST port, which is disabled: "
                "give a REST port or leave the monitoring config out."
            )
        if batching is not None:
            from mrl_keras.serving.model_server.batching import Batcher

            self.manager.batcher = Batcher(batching)
        self.monitoring = monitoring if monitoring is not None and monitoring.enable else None
        if self.monitoring is not None:
            from mrl_keras.serving.model_server.monitoring import ServerMetrics

            self.manager.metrics = ServerMetrics()
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

        from mrl_keras.serving.model_server.grpc_api import add_servicers
        from mrl_keras.serving.model_server.rest_api import make_rest_server

        options = {"max_batch_size": self.max_batch_size, "latency_s": self.latency_s}
        # REST first: a socketserver gives its port back at once if gRPC then cannot bind
        if self.rest_api_port is not None:
            try:
                self._rest_server = make_rest_server(
                    self.host, self.rest_api_port, self.manager, **options
                )
            except OSError as e:
                raise OSError(
                    f"Cannot bind REST to {self.host}:{self.rest_api_port}: "
                    f"{e.strerror or e}. Choose another with --rest-api-port."
                ) from e
            self.rest_port = self._rest_server.server_address[1]
            if self.monitoring is not None:
                metrics, batcher = self.manager.metrics, self.manager.batcher
                self._rest_server.metrics_path = self.monitoring.path
                self._rest_server.metrics_text = lambda: metrics.render(batcher)
        if self.port is not None:
            self._grpc_server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=self.grpc_workers),
                options=[
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    # 0: a port another server holds is an error, not silently shared
                    ("grpc.so_reuseport", 0),
                ],
            )
            add_servicers(self._grpc_server, self.manager, **options)
            try:
                self.grpc_port = self._grpc_server.add_insecure_port(f"{self.host}:{self.port}")
            except RuntimeError:  # grpcio >= 1.52 raises where older ones returned 0
                self.grpc_port = 0
            if not self.grpc_port:
                self._grpc_server = None
                if self._rest_server is not None:
                    self._rest_server.server_close()
                    self._rest_server = None
                raise OSError(
                    f"Cannot bind gRPC to {self.host}:{self.port}: the port is in use (or the "
                    "address is not local). Choose another with --port."
                )
        if self.manager.batcher is not None:
            self.manager.batcher.start()
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
        if self.manager.batcher is not None:
            self.manager.batcher.stop()

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
