"""mrl_keras/cli_parser.py: one-line usage errors with exit status 2."""

import pytest

from mrl_keras.cli_parser import CommandError, Parser, fail


def test_usage_error_is_one_line_exit_2(capsys):
    parser = Parser(prog="mrl thing")
    parser.add_argument("--n", type=int, required=True)
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--n", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == "mrl thing: argument --n: invalid int value: 'x' (see --help)\n"


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as e:
        Parser(prog="mrl thing").parse_args(["--help"])
    assert e.value.code == 0
    assert "usage: mrl thing" in capsys.readouterr().out


def test_fail_and_command_error(capsys):
    assert fail("mrl thing", ValueError("bad value")) == 2
    assert fail("mrl thing", "broke", code=1) == 1
    assert capsys.readouterr().err == "mrl thing: bad value\nmrl thing: broke\n"
    assert CommandError("x").code == 2 and CommandError("x", code=1).code == 1
