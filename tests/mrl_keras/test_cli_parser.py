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


def _alias_parser() -> Parser:
    parser = Parser(prog="mrl thing")
    parser.add_argument("--nesting-dims", dest="dims", type=int, nargs=2)
    parser.add_alias("--dims", "--nesting-dims")
    parser.add_argument("--model-base-path", dest="base_path", required=True)
    parser.add_alias("--base-path", "--model-base-path")
    parser.add_argument("--fast", action="store_true")
    parser.add_alias("--quick", "--fast")
    parser.add_argument("--model", action="append", default=[])
    parser.add_alias("--run", "--model")
    return parser


def test_an_alias_parses_as_its_new_flag_and_says_it_is_renamed(capsys):
    new = _alias_parser().parse_args(
        ["--nesting-dims", "8", "16", "--model-base-path", "b", "--fast", "--model", "a"]
    )
    assert capsys.readouterr().err == ""
    old = _alias_parser().parse_args(
        ["--dims", "8", "16", "--base-path", "b", "--quick", "--run", "a"]
    )
    assert (
        vars(old) == vars(new) == {"dims": [8, 16], "base_path": "b", "fast": True, "model": ["a"]}
    )
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "mrl thing: --dims is renamed --nesting-dims; --dims goes away in the next release"
    )
    assert len(err) == 4


def test_an_alias_is_hidden_and_a_required_flag_is_still_required(capsys):
    parser = _alias_parser()
    text = parser.format_help()
    assert "--nesting-dims" in text and "--dims" not in text.replace("--nesting-dims", "")
    assert "--base-path" not in text.replace("--model-base-path", "")
    assert "[--model-base-path" not in parser.format_usage()  # shown as required
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--fast"])
    assert e.value.code == 2
    assert "required: --model-base-path" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--dims", "8", "x", "--base-path", "b"])  # the alias keeps the type
    assert "invalid int value: 'x'" in capsys.readouterr().err


def test_an_alias_of_an_unknown_flag_is_refused():
    with pytest.raises(ValueError, match="'--nope' to be added before"):
        Parser(prog="mrl thing").add_alias("--old", "--nope")
