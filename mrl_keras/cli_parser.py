"""The flag parser and exit convention of every `mrl` command (standard library only).

A usage error (unknown flag, bad value, missing required flag) prints one line,
`PROG: MESSAGE (see --help)`, to stderr and exits with status 2; `--help` exits 0. A command
that fails on valid flags prints `PROG: REASON` through `fail` and returns non-zero (2 for bad
input the parser could not see, 1 for errors while running), so scripts can tell the two apart.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["Parser", "CommandError", "fail"]

USAGE_EXIT = 2


class CommandError(Exception):
    """A reason a command stops, printed as one line with exit status `code`.

    Raise it for bad input the parser cannot see (e.g. two flags that exclude each other; the
    default status 2) or for a failure while running (status 1).

    Args:
        message: str. The one-line reason.
        code: int. The exit status. Defaults to `2`.
    """

    def __init__(self, message: str, code: int = USAGE_EXIT):
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose usage errors are one line and exit status 2.

    Example:

    ```python
    parser = Parser(prog="mrl export", description="...")
    parser.add_argument("--model", required=True)
    args = parser.parse_args(argv)  # `mrl export: the following arguments are required: --model (see --help)`
    ```
    """

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(USAGE_EXIT)


def fail(prog: str, error: object, code: int = USAGE_EXIT) -> int:
    """Prints `PROG: ERROR` on one line to stderr and returns `code`, for `return fail(...)`."""
    print(f"{prog}: {error}", file=sys.stderr)
    return code
