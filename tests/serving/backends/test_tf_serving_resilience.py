"""Client resilience against our dev server (it must be stopped, restarted and slowed down,
which a shared real TF Serving cannot be): a stopped server fails fast with `Unavailable`,
a restarted one is found again by the same client objects, a slow one gives
`DeadlineExceeded` at the deadline."""

from __future__ import annotations

import time

import pytest
from serving_testing import sample_inputs

from mrl_keras.serving import DeadlineExceeded, TFServingGrpc, TFServingRest, Unavailable

X = sample_inputs(3, seed=21)
SLACK_S = 1.0  # scheduling slack on a loaded 2-core CI machine


def _clients(server, timeout):
    return [
        TFServingGrpc(server.grpc_address, server.model_name, timeout=timeout),
        TFServingRest(server.rest_url, server.model_name, timeout=timeout),
    ]


def _eventually(call, attempts: int = 200):
    """`call()`, retried on Unavailable every 50 ms (bounded: 200 attempts)."""
    for _ in range(attempts - 1):
        try:
            return call()
        except Unavailable:
            time.sleep(0.05)
    return call()


def test_stopped_server_unavailable_within_deadline_then_same_clients_recover(
    start_model_server, exported_base_path
):
    server = start_model_server(exported_base_path)
    ports = {"port": server.grpc_port, "rest_api_port": server.rest_port}
    clients = _clients(server, timeout=5)
    for client in clients:
        assert client.embed(X, 8).served_version == 1

    server.stop()
    for client in clients:
        start = time.monotonic()
        with pytest.raises(Unavailable) as info:
            client.embed(X, 8, timeout=1.5)
        assert time.monotonic() - start < 1.5 + SLACK_S, type(client).__name__
        assert info.value.code == "UNAVAILABLE"
        with pytest.raises(Unavailable):
            client.status(timeout=1.0)

    start_model_server(exported_base_path, **ports)
    for client in clients:  # the same objects recover by themselves (gRPC: once its channel
        # reconnects, within its 0.5 s reconnect backoff; a call before that fails at once)
        assert _eventually(lambda c=client: c.embed(X, 8, timeout=10)).served_version == 1
        assert client.status().state == "AVAILABLE"
        client.close()


@pytest.mark.parametrize("timeout", [0.4, 1.0])
def test_slow_server_deadline_exceeded_at_the_deadline(
    start_model_server, exported_base_path, timeout
):
    server = start_model_server(exported_base_path, latency_s=3.0)
    for client in _clients(server, timeout=10):
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            client.embed(X, 8, timeout=timeout)
        elapsed = time.monotonic() - start
        assert timeout - 0.05 <= elapsed < timeout + SLACK_S, (type(client).__name__, elapsed)
        assert info.value.code == "DEADLINE_EXCEEDED"
        client.close()


def test_unreachable_address_fails_fast():
    # Port 1 on loopback: connection refused; the client must not hang or retry forever.
    client = TFServingGrpc("127.0.0.1:1", "tiny", timeout=1.0, check=False)
    start = time.monotonic()
    with pytest.raises(Unavailable):
        client.status()
    assert time.monotonic() - start < 1.0 + SLACK_S
    rest = TFServingRest("http://127.0.0.1:1", "tiny", timeout=1.0, check=False)
    start = time.monotonic()
    with pytest.raises(Unavailable):
        rest.status()
    assert time.monotonic() - start < 1.0 + SLACK_S


def test_an_answer_cut_short_is_unavailable_not_a_raw_transport_error():
    """A server that stops mid-answer (headers sent, body cut) is an outage: `Unavailable`,
    which the service answers as 503 (CI once saw a 500 from requests' ChunkedEncodingError)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    served = []

    def serve():
        deadline = time.monotonic() + 10  # bounded in count and time
        listener.settimeout(0.2)
        while len(served) < 8 and time.monotonic() < deadline and not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 693\r\n\r\n{"model_version_status"'
                )
            served.append(1)

    done = threading.Event()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    rest = TFServingRest(f"http://127.0.0.1:{port}", "tiny", timeout=1.0, check=False)
    start = time.monotonic()
    try:
        with pytest.raises(Unavailable, match="broke mid-answer") as info:
            rest.status()
        elapsed = time.monotonic() - start
    finally:
        done.set()
        rest.close()
        thread.join(timeout=5)
        listener.close()
    assert elapsed < 1.0 + SLACK_S
    assert info.value.code == "UNAVAILABLE" and served
