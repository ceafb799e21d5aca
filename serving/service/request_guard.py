"""What the HTTP service checks before a request reaches a route: the Host header, the
Content-Type of POSTs, and the one bounded reader of every request body.

- Host: only the allowed names (default: the loopback names; `mrl serve` adds its bind
  address and `--allowed-hosts`) are answered; any other Host gets 421, which defeats DNS
  rebinding (a page on `evil.example` whose name now resolves to 127.0.0.1).
- Content-Type: every POST must say `application/json` (415 otherwise). A cross-site HTML
  form or a "simple" `fetch` can only send `text/plain`, form or multipart bodies, so this
  forces a CORS preflight, which the service never grants.
- Bodies: read with a byte limit (413), checked for nesting depth and element count before
  `json.loads` (`serving/backends/json_limits.py`; 400 naming the limit), and a client that
  goes away mid-body is `ClientGone` (answered 499, logged at info), never a 500.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request

from mrl_keras.serving.backends.json_limits import (
    JsonLimitError,
    JsonLimits,
    MalformedJson,
    parse_bounded_json,
)

__all__ = [
    "LOOPBACK_HOSTS",
    "BodyError",
    "ClientGone",
    "allowed_host_set",
    "host_allowed",
    "is_json_content_type",
    "read_json_body",
]

LOOPBACK_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


class ClientGone(Exception):
    """The client disconnected before its request body was read (HTTP 499, nginx's code)."""


class BodyError(Exception):
    """A request body the service refuses: `status` (400, 413) and a message naming why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def allowed_host_set(hosts: tuple[str, ...] | list[str] | None) -> frozenset[str] | None:
    """Normalised allowed Host names (lower case, IPv6 without brackets); `None` or a `*`
    entry: every host is allowed.

    Raises:
        ValueError: an empty or malformed entry.
    """
    if hosts is None:
        return None
    names = set()
    for host in hosts:
        if not isinstance(host, str) or not host.strip():
            raise ValueError(f"Expected host names. Received: {host!r} in allowed_hosts")
        name = host.strip().lower()
        if name == "*":
            return None
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        if "/" in name or " " in name:
            raise ValueError(f"Expected a host name or address. Received: {host!r}")
        names.add(name)
    return frozenset(names)


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8080
        return header[1 : header.find("]")] if "]" in header else header
    if header.count(":") == 1:  # name:port
        return header.split(":", 1)[0]
    return header  # a name, or a bare IPv6 address


def host_allowed(header: str | None, allowed: frozenset[str] | None) -> bool:
    """Whether a request's Host header names an allowed host (no Host: refused)."""
    if allowed is None:
        return True
    if not header:
        return False
    return _host_name(header) in allowed


def is_json_content_type(value: str | None) -> bool:
    """`application/json`, with or without parameters (`; charset=utf-8`)."""
    if not value:
        return False
    return value.split(";", 1)[0].strip().lower() == "application/json"


async def read_json_body(request: Request, max_bytes: int, limits: JsonLimits) -> Any:
    """The request's JSON document, read and parsed within the limits.

    Raises:
        BodyError: 413 over `max_bytes`; 400 empty, malformed, too deep or too many elements.
        ClientGone: the client disconnected mid-body.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BodyError(400, f"Invalid Content-Length header: {declared!r}")
        if int(declared) > max_bytes:
            raise BodyError(
                413, f"Request body of {declared} bytes exceeds the limit of {max_bytes} bytes."
            )
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise BodyError(413, f"Request body exceeds the limit of {max_bytes} bytes.")
            chunks.append(chunk)
    except ClientDisconnect as e:
        raise ClientGone(f"client disconnected after {size} bytes of the body") from e
    raw = b"".join(chunks)
    if not raw.strip():
        raise BodyError(400, "Expected a JSON body. Received: an empty body")
    try:
        return parse_bounded_json(raw, limits)
    except (JsonLimitError, MalformedJson) as e:
        raise BodyError(400, str(e)) from e
