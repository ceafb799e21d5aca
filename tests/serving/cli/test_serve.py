"""`mrl serve` (serving/cli/serve.py): the service as a process, searched and reloaded by SIGHUP."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from cli_testing import assert_fails_with_one_line, assert_help, free_port, json_lines
from serving_testing import EMBEDDING_DIM, sample_inputs

from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever
from mrl_keras.serving.backends.cascade_client import CascadeClassifier
from mrl_keras.serving.cli.classify import main as classify_main
from mrl_keras.serving.cli.index_build import main as index_main
from mrl_keras.serving.cli.search import main as search_main
from mrl_keras.serving.cli.serve import main as serve_main


def test_bad_arguments_exit_nonzero_with_one_line(capsys):
    assert_fails_with_one_line(
        serve_main, ["--index", "/nonexistent"], 2, "a model is needed", capsys
    )
    assert_fails_with_one_line(
        serve_main,
        ["--index", "/x", "--model", "/m", "--index-poll-seconds", "-1"],
        2,
        "--index-poll-seconds must be >= 0",
        capsys,
    )


def test_help_exits_zero(capsys):
    assert_help(serve_main, ["--help"], "--index", capsys)


def test_mrl_serve_process_search_classify_and_sighup_reload(
    tiny_index, tiny_files, exported_base_path, local_model, tmp_path, capsys
):
    index_dir = tmp_path / "served-index"
    subprocess.run(["cp", "-r", str(tiny_index), str(index_dir)], check=True)
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "mrl_keras.cli",
        "serve",
        "--model",
        exported_base_path,
        "--index",
        str(index_dir),
        "--port",
        str(port),
        "--auth-token-file",
        str(token),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        cmd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.25)
        else:
            pytest.fail("mrl serve did not become ready")
        headers = {"Authorization": "Bearer t0ken"}
        assert (
            requests.post(
                f"{url}/v1/search", json={"embeddings": [[0.1] * 32]}, timeout=10
            ).status_code
            == 401
        )
        capsys.readouterr()
        queries = str(tiny_files / "queries.npy")
        client = ["--service", url, "--auth-token-file", str(token), "--inputs", queries]
        assert search_main([*client, "--k", "4"]) == 0
        expected = AdaptiveRetriever(AdaptiveIndex.load(tiny_index), local_model).search(
            np.load(tiny_files / "queries.npy"), k=4
        )
        assert [r["ids"] for r in json_lines(capsys.readouterr().out)] == expected.ids.tolist()
        assert classify_main([*client, "--json"]) == 0
        expected = (
            CascadeClassifier(local_model)
            .classify(np.load(tiny_files / "queries.npy"))
            .predictions()
        )
        assert json_lines(capsys.readouterr().out) == expected
        assert search_main(["--service", url, "--inputs", str(tiny_files / "queries.npy")]) == 1
        assert "HTTP 401" in capsys.readouterr().err

        before = requests.post(
            f"{url}/v1/search", json={"embeddings": [[0.1] * 32]}, headers=headers, timeout=10
        ).json()
        z = local_model.embed(sample_inputs(100, seed=43), EMBEDDING_DIM).embeddings
        np.save(tmp_path / "new.npy", z)
        assert (
            index_main(
                [
                    "build",
                    "--model",
                    exported_base_path,
                    "--embeddings",
                    str(tmp_path / "new.npy"),
                    "--out",
                    str(index_dir),
                    "--shortlist-dim",
                    "8",
                    "--no-progress",
                ]
            )
            == 0
        )
        proc.send_signal(signal.SIGHUP)
        deadline, after = time.monotonic() + 30, before
        while time.monotonic() < deadline and after["index_version"] == before["index_version"]:
            time.sleep(0.2)
            after = requests.post(
                f"{url}/v1/search", json={"embeddings": [[0.1] * 32]}, headers=headers, timeout=10
            ).json()
        assert after["index_version"] != before["index_version"]
        assert after["index_version"] == AdaptiveIndex.load(index_dir).index_version
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_port_in_use_fails_before_the_service_says_it_is_up(
    tiny_index, exported_base_path, capsys
):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        capsys.readouterr()
        code = serve_main(
            ["--model", exported_base_path, "--index", str(tiny_index), "--port", str(port)]
        )
    err = capsys.readouterr().err
    assert code == 1
    assert f"mrl serve: cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert "items) on http" not in err  # the announcement never came
    assert "Traceback" not in err and err.count("\n") == 1


def test_max_batch_size_is_a_hidden_alias_of_max_request_batch(capsys):
    from mrl_keras.serving.cli.serve import _serve_parser

    parser = _serve_parser()
    base = ["--index", "i", "--model", "m"]
    old = parser.parse_args([*base, "--max-batch-size", "7"])
    assert vars(old) == vars(parser.parse_args([*base, "--max-request-batch", "7"]))
    assert old.max_batch_size == 7
    assert "--max-batch-size is renamed --max-request-batch" in capsys.readouterr().err
    assert "--max-batch-size" not in parser.format_help()


def test_verify_interval_and_allowed_hosts_flags_are_checked(capsys):
    from mrl_keras.serving.cli.serve import _allowed_hosts

    common = ["--index", "/x", "--model", "/m"]
    assert_fails_with_one_line(
        serve_main, [*common, "--verify-interval", "-1"], 2, "--verify-interval must be >= 0",
        capsys,
    )  # fmt: skip
    assert _allowed_hosts("", "127.0.0.1") == ("127.0.0.1", "::1", "localhost")
    assert "search.internal" in _allowed_hosts("search.internal, a.b", "10.0.0.5")
    assert "10.0.0.5" in _allowed_hosts("", "10.0.0.5")
    assert _allowed_hosts("*", "127.0.0.1") is None
