"""The flag parser and exit convention of every `mrl` command (standard library only).

A usage error (unknown flag, bad value, missing required flag) prints one line,
`PROG: MESSAGE (see --help)`, to stderr and exits with status 2; `--help` exits 0. A command
that fails on valid flags prints `PROG: REASON` through `fail` and returns non-zero (2 for bad
input the parser could not see, 1 for errors while running), so scripts can tell the two apart.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

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

    def add_alias(self, old: str, new: str) -> None:
        """Accepts `old` as a hidden, deprecated spelling of the flag `new`.

        The alias stores into the same destination with the same type, choices and number of
        values, is left out of `--help`, and prints one line on stderr when used
        (`PROG: OLD is renamed NEW; OLD goes away in the next release`). A required `new` is
        satisfied by either spelling.

        Args:
            old: str. The old flag, e.g. `"--dims"`.
            new: str. The flag already added under its new name, e.g. `"--nesting-dims"`.
        """
        target = self._option_string_actions.get(new)
        if target is None:
            raise ValueError(f"Expected {new!r} to be added before its alias {old!r}.")
        if target.required:
            self._required_via_alias = [*getattr(self, "_required_via_alias", []), target]
        options: dict[str, Any] = {"nargs": target.nargs, "choices": target.choices}
        if target.type is not None:
            options["type"] = target.type
        self.add_argument(
            old,
            action=_Alias,
            target=target,
            dest=target.dest,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
            **options,
        )

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        required = getattr(self, "_required_via_alias", [])
        for action in required:  # argparse would not count the alias as the flag given
            action.required = False
        try:
            namespace, extras = super().parse_known_args(args, namespace)
        finally:
            for action in required:
                action.required = True
        for action in required:
            if getattr(namespace, action.dest, None) is None:
                self.error(f"the following arguments are required: {action.option_strings[0]}")
        return namespace, extras


class _Alias(argparse.Action):
    """A hidden old spelling of another flag: says so on stderr, then acts as that flag."""

    def __init__(self, option_strings, dest, target: argparse.Action, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.target = target

    def __call__(self, parser, namespace, values, option_string=None):
        print(
            f"{parser.prog}: {option_string} is renamed {self.target.option_strings[0]}; "
            f"{option_string} goes away in the next release",
            file=sys.stderr,
        )
        self.target(parser, namespace, values, option_string)


def fail(prog: str, error: object, code: int = USAGE_EXIT) -> int:
    """Prints `PROG: ERROR` on one line to stderr and returns `code`, for `return fail(...)`."""
    print(f"{prog}: {error}", file=sys.stderr)
    return code
