"""Helpers the `mrl` serving-command tests share."""

import json
import socket


def json_lines(text):
    """Each stdout line of a command, parsed as JSON."""
    return [json.loads(line) for line in text.strip().splitlines()]


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
