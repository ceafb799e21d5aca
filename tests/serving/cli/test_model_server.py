"""serving/cli/model_server.py: `mrl model-server` flags and process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
import requests
from serving_testing import MODEL_NAME, sample_inputs

from mrl_keras.serving import TFServingGrpc
from mrl_keras.serving.cli.model_server import build_parser, main

X = sample_inputs(2, seed=31)


def test_help_says_production_should_use_tensorflow_serving(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "PRODUCTION SHOULD USE tensorflow/serving" in out
    for flag in (
        "--model-base-path",
        "--model-name",
        "--port",
        "--rest-api-port",
        "--max-request-batch",
    ):
        assert flag in out


def test_flags_accept_tf_serving_spellings():
    args = build_parser().parse_args(
        ["--model_base_path", "/m", "--model_name", "x", "--rest_api_port", "9", "--port", "8"]
    )
    assert (args.model_base_path, args.model_name, args.rest_api_port, args.port) == (
        "/m",
        "x",
        9,
        8,
    )


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["--model-base-path", "/does/not/exist"], "is not a folder"),
        (["--model-base-path", ".", "--port", "70000"], "expected --port in 0..65535"),
        (["--model-base-path", ".", "--version-label", "stable"], "LABEL=VERSION"),
    ],
)
def test_bad_flags_exit_non_zero_with_one_line_reason(argv, reason, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert reason in err and err.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mrl_model_server_process_serves_and_stops_on_sigterm(exported_base_path):
    grpc_port, rest_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mrl_keras.cli",
            "model-server",
            "--model-base-path",
            exported_base_path,
            "--model-name",
            MODEL_NAME,
            "--port",
            str(grpc_port),
            "--rest-api-port",
            str(rest_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()  # printed once the model is AVAILABLE
        assert "serving 'tiny'" in line and f"127.0.0.1:{grpc_port}" in line, line
        status = requests.get(
            f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}", timeout=5
        ).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        backend = TFServingGrpc(f"127.0.0.1:{grpc_port}", MODEL_NAME)
        assert backend.embed(X, 8).embeddings.shape == (2, 8)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


@pytest.mark.parametrize("taken", ["--port", "--rest-api-port"])
def test_a_port_in_use_fails_before_the_server_says_it_is_up(taken, exported_base_path, capsys):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        ports = {"--port": _free_port(), "--rest-api-port": _free_port()}
        ports[taken] = held.getsockname()[1]
        argv = ["--model-base-path", exported_base_path, "--model-name", MODEL_NAME]
        for flag, port in ports.items():
            argv += [flag, str(port)]
        capsys.readouterr()
        assert main(argv) == 1
        captured = capsys.readouterr()
        assert f"127.0.0.1:{ports[taken]}" in captured.err and taken in captured.err
        assert "serving" not in captured.out
        if taken == "--port":  # the REST port bound first is given back
            with socket.socket() as again:
                again.bind(("127.0.0.1", ports["--rest-api-port"]))


@pytest.mark.parametrize("old", ["--max-batch-size", "--max_batch_size"])
def test_max_batch_size_is_a_hidden_alias_of_max_request_batch(old, capsys):
    parser = build_parser()
    args = parser.parse_args(["--model-base-path", "/m", old, "5"])
    assert vars(args) == vars(
        parser.parse_args(["--model-base-path", "/m", "--max-request-batch", "5"])
    )
    assert args.max_batch_size == 5
    assert f"{old} is renamed --max-request-batch" in capsys.readouterr().err
    assert old not in parser.format_help()


@pytest.mark.parametrize(
    "extra, reason",
    [
        (["--batching-parameters-file", "/does/not/exist"], "Cannot read the batching parameters"),
        (["--monitoring-config-file", "/does/not/exist"], "Cannot read the monitoring config"),
    ],
)
def test_bad_server_files_exit_2_with_one_line(extra, reason, tmp_path, capsys):
    assert main(["--model-base-path", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert reason in err and err.count("\n") == 1


def test_metrics_need_the_rest_port(tmp_path, capsys):
    config = tmp_path / "monitoring.config"
    config.write_text("prometheus_config { enable: true }\n")
    argv = ["--model-base-path", str(tmp_path), "--monitoring-config-file", str(config)]
    assert main([*argv, "--rest-api-port", "0"]) == 2
    assert "served on the REST port" in capsys.readouterr().err


def test_tensorflow_is_imported_without_keras_and_keras_still_imports_later():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mrl_keras.serving.cli.model_server import import_tensorflow_without_keras\n"
        "import_tensorflow_without_keras()\n"
        "import tensorflow as tf\n"
        "assert 'keras' not in sys.modules and 'matplotlib' not in sys.modules, 'keras loaded'\n"
        "assert float(tf.reduce_sum(tf.ones(3))) == 3.0\n"
        "import keras\n"
        "assert keras.ops.sum(keras.ops.ones(2)).numpy() == 2.0\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
