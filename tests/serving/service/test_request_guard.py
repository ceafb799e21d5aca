"""Host names, Content-Type and the bounded body reader of the HTTP service."""

import pytest

from mrl_keras.serving.service.request_guard import (
    LOOPBACK_HOSTS,
    allowed_host_set,
    host_allowed,
    is_json_content_type,
)


@pytest.mark.parametrize(
    "header, allowed",
    [
        ("127.0.0.1", True),
        ("127.0.0.1:8080", True),
        ("LOCALHOST:80", True),
        ("[::1]:8080", True),
        ("::1", True),
        ("evil.example", False),
        ("localhost.evil.example", False),
        ("127.0.0.2", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_hosts(header, allowed):
    assert host_allowed(header, allowed_host_set(LOOPBACK_HOSTS)) is allowed


def test_allowed_host_set_normalises_and_wildcards():
    assert allowed_host_set(["Search.Internal", "[::1]"]) == {"search.internal", "::1"}
    assert allowed_host_set(["*"]) is None and allowed_host_set(None) is None
    assert host_allowed("anything", None)
    for bad in ["", " ", "a/b", "a b"]:
        with pytest.raises(ValueError):
            allowed_host_set([bad])


@pytest.mark.parametrize(
    "value, ok",
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("application/jsonx", False),
        (None, False),
        ("", False),
    ],
)
def test_json_content_type(value, ok):
    assert is_json_content_type(value) is ok
