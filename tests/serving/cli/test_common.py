"""serving/cli/common.py: the flag parsers and the exit convention the serving commands share."""

import json

import numpy as np
import pytest

from mrl_keras.serving.cli import common


def test_parse_rows():
    assert common.parse_rows("0,5,7") == [0, 5, 7]
    assert common.parse_rows("2-4,9") == [2, 3, 4, 9]
    with pytest.raises(common.CommandError, match="--rows expects e.g. 0,5,7 or 0-9, got 'a-b'"):
        common.parse_rows("a-b")


def test_scann_overrides_parse_json_values_and_keep_strings():
    assert common.scann_overrides(["num_leaves=16", "dist=dot_product", "x=[1,2]"]) == {
        "num_leaves": 16,
        "dist": "dot_product",
        "x": [1, 2],
    }
    with pytest.raises(common.CommandError, match="expected --scann KEY=VALUE, got 'leaves'"):
        common.scann_overrides(["leaves"])


def test_parse_funnel_flag():
    assert common.parse_funnel_flag(None) is None
    assert common.parse_funnel_flag("16:50,32:4") == [[16, 50], [32, 4]]
    with pytest.raises(common.CommandError, match="--funnel expects DIM:SIZE"):
        common.parse_funnel_flag("16:x")


def test_read_array_npy_and_json(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "a.npy", a)
    (tmp_path / "a.json").write_text(json.dumps(a.tolist()))
    np.testing.assert_array_equal(common.read_array(str(tmp_path / "a.npy")), a)
    np.testing.assert_array_equal(common.read_array(str(tmp_path / "a.json")), a)
    with pytest.raises(common.CommandError, match="file not found"):
        common.read_array(str(tmp_path / "missing.npy"))


def test_read_token(tmp_path):
    (tmp_path / "t").write_text("  s3cret\n")
    (tmp_path / "empty").write_text("\n")
    assert common.read_token(None) is None
    assert common.read_token(str(tmp_path / "t")) == "s3cret"
    with pytest.raises(common.CommandError, match="is empty"):
        common.read_token(str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "error, code, message",
    [
        (common.CommandError("bad flag"), 2, "mrl demo-cmd: bad flag"),
        (ValueError("bad value"), 1, "mrl demo-cmd: bad value"),
        (OSError("disk"), 1, "mrl demo-cmd: disk"),
    ],
)
def test_run_command_maps_errors_to_one_line_and_an_exit_code(error, code, message, capsys):
    def fn(argv):
        raise error

    assert common.run_command("demo-cmd", fn, []) == code
    err = capsys.readouterr().err
    assert err.strip() == message and "Traceback" not in err


def test_run_command_passes_the_return_code_and_argparse_exits():
    assert common.run_command("x", lambda argv: 0, []) == 0

    def exits(argv):
        raise SystemExit(2)

    assert common.run_command("x", exits, []) == 2


def test_listen_socket_binds_or_says_the_port_is_taken():
    import socket

    from mrl_keras.cli_parser import CommandError
    from mrl_keras.serving.cli.common import listen_socket

    sock = listen_socket("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}") as e:
            listen_socket("127.0.0.1", port)
        assert e.value.code == 1
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # it listens
    finally:
        sock.close()
    with pytest.raises(CommandError, match=r"--port must be in 0\.\.65535"):
        listen_socket("127.0.0.1", 70000)
