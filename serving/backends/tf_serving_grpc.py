"""`TFServingGrpc`: a Matryoshka model served by TensorFlow Serving, over gRPC."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from mrl_keras.serving.backends import tf_serving_requests as requests_lib
from mrl_keras.serving.backends.backend import (
    ModelBackend,
    ModelStatus,
    SignatureSpec,
    check_model_spec,
)
from mrl_keras.serving.backends.errors import BackendError, error_from_code
from mrl_keras.serving.backends.retry import RetryPolicy

MAX_MESSAGE_BYTES = 2**31 - 1
# Keepalive pings only while calls are in flight: stock TF Serving rejects idle pings more
# frequent than every 5 minutes. Short reconnect backoff: a restarted server is found fast.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)

_channels: dict[str, grpc.Channel] = {}
_channels_lock = threading.Lock()


class ChannelState:
    """The connectivity of a channel, kept current by a subscription (gRPC calls `_update` on
    its own thread at every change). `failing` is True in TRANSIENT_FAILURE: the channel is
    waiting out its reconnect backoff (at most `grpc.max_reconnect_backoff_ms`), and a call
    now can only fail, so it is not retried."""

    def __init__(self, channel: grpc.Channel):
        self.state = grpc.ChannelConnectivity.IDLE
        channel.subscribe(self._update, try_to_connect=False)

    def _update(self, state: grpc.ChannelConnectivity) -> None:
        self.state = state

    @property
    def failing(self) -> bool:
        return self.state in (
            grpc.ChannelConnectivity.TRANSIENT_FAILURE,
            grpc.ChannelConnectivity.SHUTDOWN,
        )


_states: dict[int, ChannelState] = {}


def channel_state(channel: grpc.Channel) -> ChannelState:
    """The `ChannelState` of `channel` (one subscription per channel)."""
    with _channels_lock:
        state = _states.get(id(channel))
        if state is None:
            state = _states[id(channel)] = ChannelState(channel)
            state.channel = channel  # keeps the id from being reused while tracked
        return state


def shared_channel(address: str) -> grpc.Channel:
    """The process's one channel to `address` (keepalive, raised message limits)."""
    with _channels_lock:
        channel = _channels.get(address)
        if channel is None:
            channel = grpc.insecure_channel(address, options=list(CHANNEL_OPTIONS))
            _channels[address] = channel
        return channel


def close_shared_channels() -> None:
    """Closes every shared channel (e.g. at process shutdown or between tests)."""
    with _channels_lock:
        for channel in _channels.values():
            _states.pop(id(channel), None)
            channel.close()
        _channels.clear()


def _translate(e: grpc.RpcError) -> BackendError:
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    return error_from_code(code.name, details or "")


class TFServingGrpc(ModelBackend):
    """A Matryoshka model served by TensorFlow Serving (or `mrl model-server`), over gRPC.

    One channel per process and address (keepalive, message limits raised from gRPC's 4 MiB),
    an explicit deadline on every call, and retries on UNAVAILABLE only, with bounded
    exponential backoff inside the deadline, and only while the channel is connecting: on a
    channel in TRANSIENT_FAILURE (the server is down; gRPC reconnects by itself every 0.5 s at
    most) a call fails at once with UNAVAILABLE, so callers answer 503 in milliseconds and
    see the server again within that reconnect backoff of its return. INVALID_ARGUMENT,
    FAILED_PRECONDITION and NOT_FOUND fail at once. Every result carries the
    `model_spec.version` that served it.

    Args:
        address: str. `host:port` of the gRPC API (TF Serving: 8500).
        model_name: str. TF Serving's `MODEL_NAME`.
        version: int or None. Pin a version. Defaults to the latest.
        label: str or None. Pin a version label instead.
        timeout: float. Default deadline per call, in seconds.
        retry: `RetryPolicy` or None. Defaults to 6 retries, 50 ms doubling to 1 s.
        required_signatures: iterable of str. Checked at start-up with `embed_{m}`.
        check: bool. Read the signatures at construction (fails fast when the model is
            missing or lacks signatures). Defaults to True.
        channel: grpc.Channel or None. Inject a channel (defaults to the shared one).

    Example:

    ```python
    backend = mrl_keras.serving.TFServingGrpc("localhost:8500", "fashion_mnist")
    result = backend.embed(images, 16, timeout=0.5)
    result.embeddings, result.served_version
    ```
    """

    def __init__(
        self,
        address: str,
        model_name: str,
        version: int | None = None,
        label: str | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        required_signatures: Iterable[str] = (),
        check: bool = True,
        channel: grpc.Channel | None = None,
    ):
        super().__init__(required_signatures)
        check_model_spec(version, label, timeout)
        self.address = address
        self.model_name = model_name
        self.version = version
        self.label = label
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy()
        self._channel = channel or shared_channel(address)
        self._state = channel_state(self._channel)
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        if check:
            self.refresh()

    def _call(self, method, request, timeout: float | None):
        def attempt(left: float):
            try:
                return method(request, timeout=left, wait_for_ready=False)
            except grpc.RpcError as e:
                error = _translate(e)
            if error.code == "UNAVAILABLE" and self._state.failing:
                error.retryable = False  # waiting out a reconnect backoff: fail fast
            raise error

        return self.retry.call(attempt, self.timeout if timeout is None else timeout)

    def _load_signatures(self) -> tuple[int, dict[str, SignatureSpec]]:
        request = requests_lib.metadata_request(
            self.model_name, version=self.version, label=self.label
        )
        return requests_lib.parse_metadata_response(
            self._call(self._prediction.GetModelMetadata, request, None)
        )

    def _predict(self, signature, inputs, timeout):
        request = requests_lib.predict_request(
            self.model_name, signature, inputs, version=self.version, label=self.label
        )
        return requests_lib.parse_predict_response(
            self._call(self._prediction.Predict, request, timeout)
        )

    def status(self, *, timeout: float | None = None) -> ModelStatus:
        """Status of the pinned version (a label resolves through metadata) or of the newest
        AVAILABLE one; `versions` lists all that the server reports."""
        version = self.version
        if self.label is not None:
            version, _ = self._load_signatures()
        request = requests_lib.status_request(self.model_name, version=version)
        response = self._call(self._models.GetModelStatus, request, timeout)
        return requests_lib.parse_status_response(response, version)
