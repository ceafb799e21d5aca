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


def assert_fails_with_one_line(main, argv, code, match, capsys):
    """`main(argv)` exits with `code` and prints `match` on stderr, without a traceback."""
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert match in err
    assert "Traceback" not in err


def assert_help(main, argv, flag, capsys):
    """`main(argv)` (a --help) exits 0 and its help names `flag`."""
    capsys.readouterr()
    assert main(argv) == 0
    assert flag in capsys.readouterr().out
