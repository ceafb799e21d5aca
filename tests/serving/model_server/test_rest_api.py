"""serving/model_server/rest_api.py: TF Serving's REST routes (the server itself is exercised
by the conformance tests in tests/serving/backends)."""

from mrl_keras.serving.model_server.rest_api import PREDICTION_RE, STATUS_RE


def test_routes():
    assert PREDICTION_RE.fullmatch("/v1/models/m/versions/3:predict").groups() == (
        "m",
        "3",
        None,
        "predict",
    )
    assert PREDICTION_RE.fullmatch("/V1/MODELS/m/labels/stable:Predict").groups()[2] == "stable"
    assert STATUS_RE.fullmatch("/v1/models/m/versions/2/metadata").groups() == (
        "m",
        "2",
        None,
        "metadata",
    )
    assert STATUS_RE.fullmatch("/v1/models").groups()[0] is None
    assert PREDICTION_RE.fullmatch("/v1/models/m") is None


def _raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """One raw HTTP exchange (for headers a client library would refuse to send), read until
    the server closes or the announced body has arrived."""
    import json
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + b"\r\n\r\n" + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            data += chunk
            head_end = data.find(b"\r\n\r\n")
            if not chunk or head_end >= 0 and b"Content-Length: " in data[:head_end]:
                length = int(data[:head_end].split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if not chunk or len(data) - head_end - 4 >= length:
                    break
    return int(data.split(b" ", 2)[1]), json.loads(data[data.find(b"\r\n\r\n") + 4 :])


def test_bad_content_length_and_deep_json_are_400_in_tf_servings_shape(
    start_model_server, exported_base_path
):
    server = start_model_server(exported_base_path)
    path = b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    for value in (b"abc", b"-1", b"1e3"):
        status, payload = _raw_request(server.rest_port, path + b"Content-Length: " + value)
        assert status == 400 and "Invalid Content-Length" in payload["error"], payload
        assert set(payload) == {"error"}
    deep = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, payload = _raw_request(
        server.rest_port, path + b"Content-Length: " + str(len(deep)).encode(), deep
    )
    assert status == 400 and "limit of 64 levels" in payload["error"], payload
    ok = b'{"instances": [[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]]}'
    status, payload = _raw_request(
        server.rest_port, path + b"Content-Length: " + str(len(ok)).encode(), ok
    )
    assert status == 200 and len(payload["predictions"][0]) == 32  # still serving
