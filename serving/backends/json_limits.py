"""A bounded JSON parser for request bodies from untrusted callers.

`parse_bounded_json(raw, limits)` checks nesting depth and element count on the raw bytes
before `json.loads` sees them, without recursion in Python: string literals are dropped
(`bytes.split` on quotes, or one regular expression when escapes are present) and every byte
but brackets is deleted (`bytes.translate`), all at C speed; the depth is then the running sum
of opening minus closing brackets (NumPy `cumsum`) and the element count is bounded by commas
plus twice the containers. So a 100,000-deep
`[[[[...` is a clear `JsonLimitError` naming the limit, never a `RecursionError`, and
`json.loads` only ever parses documents at most `max_depth` deep.

Shared by the HTTP service (`serving/service/app.py`) and the dev model server's REST API
(`serving/model_server/rest_json.py`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import numpy as np

__all__ = [
    "JsonLimitError",
    "JsonLimits",
    "MalformedJson",
    "check_json_shape",
    "parse_bounded_json",
]

# A JSON string literal (escapes included), unrolled so the engine never backtracks.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


@dataclasses.dataclass(frozen=True)
class JsonLimits:
    """Bounds on one JSON document.

    Attributes:
        max_depth: deepest nesting of arrays and objects (`[[1]]` is depth 2).
        max_elements: most array elements and object members in all (containers count too).
    """

    max_depth: int = 64
    max_elements: int = 4 << 20

    def __post_init__(self):
        for name in ("max_depth", "max_elements"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected {name} to be an int >= 1. Received: {value!r}")


class JsonLimitError(ValueError):
    """The document exceeds a `JsonLimits` bound (the message names the limit)."""


class MalformedJson(ValueError):
    """The bytes are not one valid UTF-8 JSON document."""


def check_json_shape(raw: bytes, limits: JsonLimits) -> None:
    """Raises `JsonLimitError` when `raw` nests deeper than `limits.max_depth` or holds more
    than `limits.max_elements` elements; `MalformedJson` for an unterminated string or
    unbalanced brackets. Linear in `len(raw)`, no recursion."""
    if b"\\" in raw:  # escapes present: a regular expression finds the string literals
        stripped = _STRING.sub(b'""', raw)
        if b'"' in stripped.replace(b'""', b""):
            raise MalformedJson("Malformed JSON body: an unterminated string")
    else:  # no escapes: every other quote-separated segment is outside the strings
        parts = raw.split(b'"')
        if len(parts) % 2 == 0:
            raise MalformedJson("Malformed JSON body: an unterminated string")
        stripped = b"".join(parts[0::2])
    brackets = stripped.translate(None, _NOT_BRACKETS)
    containers = brackets.count(b"[") + brackets.count(b"{")
    if containers > limits.max_depth:  # else the depth cannot exceed the limit
        codes = np.frombuffer(brackets, dtype=np.uint8)
        steps = ((codes == ord("[")) | (codes == ord("{"))).astype(np.int32) * 2 - 1
        depth = np.cumsum(steps, dtype=np.int32)
        deepest = int(depth.max())
        if deepest > limits.max_depth:
            raise JsonLimitError(
                f"JSON body nests deeper than the limit of {limits.max_depth} levels "
                f"(max_depth). Received: at least {deepest} levels"
            )
    if containers != len(brackets) - containers:
        raise MalformedJson("Malformed JSON body: unbalanced brackets")
    # Elements: one per comma, plus each container and its first element (an upper bound).
    elements = stripped.count(b",") + 2 * containers
    if elements > limits.max_elements:
        raise JsonLimitError(
            f"JSON body holds more than the limit of {limits.max_elements} elements "
            f"(max_elements). Received: about {elements}"
        )


def parse_bounded_json(raw: bytes, limits: JsonLimits | None = None) -> Any:
    """`json.loads(raw)` after `check_json_shape` (see the module docstring).

    Raises:
        JsonLimitError: too deep or too many elements (the message names the limit).
        MalformedJson: not valid UTF-8 JSON.
    """
    limits = limits or JsonLimits()
    check_json_shape(raw, limits)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedJson(f"Malformed JSON body: {e}") from e
    except RecursionError as e:  # unreachable below the depth limit; never a 500
        raise JsonLimitError(f"JSON body nests too deeply: {e}") from e
