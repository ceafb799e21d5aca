"""Nesting sets: the prefix sizes `M` a Matryoshka representation is trained for (section 3)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from mrl_keras.checks import is_int
from mrl_keras.types import NestingDims, NestingWeights

_is_int = is_int  # the name other modules imported before it moved to `checks`


def nesting_dims(d: int, smallest: int = 8) -> tuple[int, ...]:
    """Returns the default nesting set for an embedding of width `d`.

    The paper's nesting set: halve `d` repeatedly (integer division) until the next size would
    fall below `smallest`, and return the sizes in ascending order. `d` itself is always the
    last element.

    Args:
        d: int. The embedding width, at least `smallest`.
        smallest: int. The smallest prefix size to keep. Defaults to `8`.

    Returns:
        A tuple of strictly increasing ints ending in `d`.

    Raises:
        TypeError: if `d` or `smallest` is not an int.
        ValueError: if `smallest < 1` or `d < smallest`.

    Example:

    >>> mrl_keras.nesting_dims(2048)
    (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
    >>> mrl_keras.nesting_dims(768, smallest=12)
    (12, 24, 48, 96, 192, 384, 768)
    """
    if not is_int(d):
        raise TypeError(f"Expected `d` to be an int. Received: d={d!r} of type {type(d).__name__}")
    if not is_int(smallest):
        raise TypeError(
            "Expected `smallest` to be an int. "
            f"Received: smallest={smallest!r} of type {type(smallest).__name__}"
        )
    if smallest < 1:
        raise ValueError(f"Expected `smallest` to be at least 1. Received: smallest={smallest}")
    if d < smallest:
        raise ValueError(
            "Expected the embedding width `d` to be at least `smallest`. "
            f"Received: d={d}, smallest={smallest}. Pass a smaller `smallest`."
        )
    dims = []
    m = int(d)
    while m >= smallest:
        dims.append(m)
        m //= 2
    return tuple(reversed(dims))


def validate_nesting_dims(dims: NestingDims, name: str = "nesting_dims") -> tuple[int, ...]:
    """Checks a nesting set and returns it as a tuple of Python ints.

    Args:
        dims: sequence of int. Must be non-empty, positive and strictly increasing.
        name: str. The argument name used in error messages. Defaults to `"nesting_dims"`.

    Returns:
        The nesting dims as a tuple of Python ints.

    Raises:
        TypeError: if `dims` is not a sequence or holds something other than ints.
        ValueError: if `dims` is empty, holds a non-positive value, or is not strictly
            increasing (which includes duplicates).

    Example:

    >>> mrl_keras.validate_nesting_dims([8, 16, 32])
    (8, 16, 32)
    """
    if is_int(dims):
        raise TypeError(
            f"Expected `{name}` to be a sequence of ints such as (8, 16, 32). "
            f"Received: {name}={dims!r}. For the default halving set use "
            f"mrl_keras.nesting_dims({dims})."
        )
    if isinstance(dims, str | bytes) or not hasattr(dims, "__iter__"):
        raise TypeError(
            f"Expected `{name}` to be a sequence of ints such as (8, 16, 32). "
            f"Received: {name}={dims!r} of type {type(dims).__name__}"
        )
    values = list(dims)
    shown = tuple(values)
    if not values:
        raise ValueError(f"Expected `{name}` to hold at least one dim. Received: {name}={shown}")
    bad = [v for v in values if not is_int(v)]
    if bad:
        raise TypeError(
            f"Expected `{name}` to hold only ints. Received: {name}={shown}, "
            f"with non-integer value(s) {bad}"
        )
    values = [int(v) for v in values]
    shown = tuple(values)
    if any(v < 1 for v in values):
        raise ValueError(f"Expected `{name}` to hold only positive ints. Received: {name}={shown}")
    for a, b in zip(values, values[1:], strict=False):
        if b <= a:
            kind = "a duplicate" if a == b else "a decrease"
            raise ValueError(
                f"Expected strictly increasing `{name}` without duplicates. "
                f"Received: {name}={shown} ({kind} at {a}, {b}). Sort them and drop repeats."
            )
    return shown


def validate_nesting_weights(
    weights: NestingWeights | None,
    num_dims: int | None = None,
    name: str = "nesting_weights",
) -> tuple[float, ...] | None:
    """Checks the relative importances `c_m` of equation 1 and returns them as floats.

    Args:
        weights: sequence of float, or `None` (meaning `c_m = 1` for every prefix).
            Each must be finite and non-negative, and at least one must be positive.
        num_dims: int or `None`. When given, the required number of weights
            (one per nesting dim).
        name: str. The argument name used in error messages. Defaults to `"nesting_weights"`.

    Returns:
        `None` if `weights` is `None`, else a tuple of Python floats.

    Raises:
        TypeError: if `weights` is not a sequence of numbers.
        ValueError: if the length differs from `num_dims`, or a weight is negative or not
            finite, or all weights are zero.
    """
    if weights is None:
        return None
    if isinstance(weights, str | bytes | numbers.Number) or not hasattr(weights, "__iter__"):
        raise TypeError(
            f"Expected `{name}` to be a sequence of non-negative floats (one per nesting dim) "
            f"or None. Received: {name}={weights!r}"
        )
    values = list(weights)
    shown = tuple(values)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Real)]
    if bad:
        raise TypeError(
            f"Expected `{name}` to hold only numbers. Received: {name}={shown}, "
            f"with non-numeric value(s) {bad}"
        )
    values = [float(v) for v in values]
    shown = tuple(values)
    if not values:
        raise ValueError(f"Expected `{name}` to hold at least one weight. Received: {name}=()")
    if num_dims is not None and len(values) != num_dims:
        raise ValueError(
            f"Expected `{name}` to hold one weight per nesting dim ({num_dims}). "
            f"Received: {name}={shown} of length {len(values)}"
        )
    if any(not math.isfinite(v) for v in values):
        raise ValueError(f"Expected finite `{name}`. Received: {name}={shown}")
    if any(v < 0 for v in values):
        raise ValueError(
            f"Expected non-negative `{name}` (c_m >= 0 in equation 1). Received: {name}={shown}"
        )
    if not any(v > 0 for v in values):
        raise ValueError(
            f"Expected at least one positive weight in `{name}`. Received: {name}={shown}"
        )
    return shown


def weighted_prefix_sum(
    nesting_dims: tuple[int, ...],
    nesting_weights: tuple[float, ...] | None,
    loss_at: Callable[[int], Any],
) -> Any:
    """The sum over the prefixes of equation 1: `sum_m c_m * loss_at(m)`.

    Prefixes whose weight `c_m` is 0 are skipped (`loss_at` is not called for them).

    Args:
        nesting_dims: the validated nesting dims `m`.
        nesting_weights: the validated weights `c_m`, or `None` for `c_m = 1`.
        loss_at: called with each `m`; returns the (per-example) loss of the `m`-prefix.

    Returns:
        The weighted sum, of whatever type `loss_at` returns.
    """
    weights = nesting_weights or (1.0,) * len(nesting_dims)
    total = None
    for m, weight in zip(nesting_dims, weights, strict=True):
        if weight == 0.0:
            continue
        value = loss_at(m) * weight
        total = value if total is None else total + value
    return total
