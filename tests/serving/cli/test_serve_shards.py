"""`mrl serve --shards URL,...` (serving/cli/serve_shards.py): flag checks (the front itself
is tested over HTTP in tests/serving/service/test_sharded_front.py)."""

import pytest

from mrl_keras.serving.cli import serve


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shards", "ftp://a"], "http:// or https://"),
        (["--shards", ","], "at least one shard URL"),
        (["--shards", "http://127.0.0.1:1", "--timeout", "0"], "--timeout must be > 0"),
        (["--shards", "http://127.0.0.1:1", "--max-body-bytes", "0"], "--max-body-bytes must be >= 1"),
    ],
)
def test_bad_front_flags_are_one_line_errors(argv, message, capsys):
    assert serve.main(argv) == 2
    assert message in capsys.readouterr().err


def test_help_names_the_front(capsys):
    assert serve.main(["--shards", "x", "--help"]) == 0
    assert "Fan-out front of a sharded index" in capsys.readouterr().out


def test_a_port_in_use_fails_before_the_front_says_it_is_up(capsys):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        assert serve.main(["--shards", "http://127.0.0.1:1", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "front over" not in err
    assert err.count("\n") == 1


def test_a_sharded_index_is_served_in_one_process(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "retrieval"))
    from sharding_testing import write_embedding_shards

    from mrl_keras.serving.retrieval.sharded import build_sharded_index

    write_embedding_shards(tmp_path / "emb", n=40, d=16, num_shards=2)
    build_sharded_index(tmp_path / "idx", tmp_path / "emb", shards=2, shortlist_dim=8, processes=1)
    assert serve.main(["--index", str(tmp_path / "idx"), "--help"]) == 0
    assert "whole sharded index in one process" in capsys.readouterr().out
    assert serve.main(["--index", str(tmp_path / "idx"), "--model", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
