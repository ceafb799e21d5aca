"""The bounded JSON parser: depth and element limits checked on the bytes without recursion,
strings (with brackets and escapes) ignored, valid documents equal to json.loads."""

import json

import pytest

from mrl_keras.serving.backends.json_limits import (
    JsonLimitError,
    JsonLimits,
    MalformedJson,
    check_json_shape,
    parse_bounded_json,
)


@pytest.mark.parametrize(
    "doc",
    [
        {"instances": [[0.5, -1e3], [2, 3]], "k": 3},
        {"s": 'a "quoted" [[{ string \\ with \\" escapes ]]}', "n": None, "t": [True, False]},
        [[[[[]]]]],
        "plain",
        12.5,
        {"unicode": "\u00e9\u4e2d", "nested": {"a": {"b": {"c": [1, 2, 3]}}}},
    ],
)
def test_valid_documents_equal_json_loads(doc):
    raw = json.dumps(doc).encode()
    assert parse_bounded_json(raw) == json.loads(raw)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deep_nesting_is_a_limit_error_not_a_recursion_error(depth):
    for raw in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        with pytest.raises(JsonLimitError, match="limit of 64 levels"):
            parse_bounded_json(raw)
    with pytest.raises(JsonLimitError, match="max_depth"):  # unclosed, too
        parse_bounded_json(b"[" * depth)


def test_depth_boundary_and_custom_limits():
    limits = JsonLimits(max_depth=3, max_elements=6)  # elements: commas + 2 per container
    assert parse_bounded_json(b"[[[1]]]", limits) == [[[1]]]
    with pytest.raises(JsonLimitError, match="limit of 3 levels"):
        parse_bounded_json(b"[[[[1]]]]", limits)
    assert parse_bounded_json(b"[1,2,3,4,5]", limits) == [1, 2, 3, 4, 5]
    with pytest.raises(JsonLimitError, match="limit of 6 elements"):
        parse_bounded_json(b"[1,2,3,4,5,6]", limits)
    assert parse_bounded_json(b'["[[[[[[", "]]]],,,,"]', limits) == ["[[[[[[", "]]]],,,,"]


@pytest.mark.parametrize(
    "raw, match",
    [
        (b'{"a": "unterminated', "unterminated string"),
        (b"[1]]", "unbalanced"),
        (b"]", "unbalanced"),
        (b"[1, 2", "unbalanced"),
        (b"\xff\xfe", "Malformed JSON"),
        (b"{'a': 1}", "Malformed JSON"),
    ],
)
def test_malformed_documents(raw, match):
    with pytest.raises(MalformedJson, match=match):
        parse_bounded_json(raw)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, None])
def test_limits_are_checked(bad):
    with pytest.raises(ValueError, match="max_depth"):
        JsonLimits(max_depth=bad)
    with pytest.raises(ValueError, match="max_elements"):
        JsonLimits(max_elements=bad)


def test_check_json_shape_alone():
    check_json_shape(b'{"embeddings": [[0.1, 0.2]]}', JsonLimits())
    with pytest.raises(JsonLimitError):
        check_json_shape(b"[" * 65 + b"]" * 65, JsonLimits())
