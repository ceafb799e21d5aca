"""Progress of a long loop: a tqdm bar on a terminal, periodic one-line updates in a log.

A tqdm bar redraws itself with carriage returns, which a log file (stderr not a terminal) keeps
as one ever-growing line. `progress` draws the bar only when the stream is a terminal; otherwise
it prints `DESC: i/n UNIT (p%), t s` at most every `interval` seconds, and once at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["progress"]


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(
    iterable: Iterable[Any],
    desc: str,
    unit: str = "it",
    total: int | None = None,
    interval: float = 30.0,
    stream: TextIO | None = None,
    leave: bool = True,
) -> Iterator[Any]:
    """Yields the items of `iterable`, showing how far the loop got on `stream`.

    Args:
        iterable: the loop's items.
        desc: str. What the loop does, e.g. `"embedding"`.
        unit: str. What one item is. Defaults to `"it"`.
        total: int or None. The number of items; `len(iterable)` when it has one.
        interval: float. Seconds between two lines when `stream` is not a terminal (the first
            line comes after the first item, the last one after the last item). Defaults to 30.
        stream: where to write. Defaults to `sys.stderr` at call time.
        leave: bool. Keep the terminal bar when the loop ends. Defaults to `True`.
    """
    if interval < 0:
        raise ValueError(f"Expected interval >= 0 seconds. Received: interval={interval}")
    stream = sys.stderr if stream is None else stream
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if _is_terminal(stream):
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            yield from tqdm(iterable, desc=desc, unit=unit, total=total, file=stream, leave=leave)
            return
    yield from _lines(iterable, desc, unit, total, interval, stream)


def _lines(iterable, desc, unit, total, interval, stream) -> Iterator[Any]:
    start = time.monotonic()
    last: float | None = None
    printed = -1
    done = 0

    def line() -> None:
        of = f"/{total}" if total is not None else ""
        share = f" ({100 * done / total:.0f}%)" if total else ""
        stream.write(f"{desc}: {done}{of} {unit}{share}, {time.monotonic() - start:.1f} s\n")
        stream.flush()

    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if last is None or now - last >= interval:
            line()
            last, printed = now, done
    if printed != done:
        line()
