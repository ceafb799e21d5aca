"""`mrl embed` in client mode (serving/cli/embed_client.py, reached through pipelines/cli.py):
embeddings through a running service and directly through the model, against NumPy."""

import json

import numpy as np
import pytest
from cli_testing import assert_help, free_port
from http_testing import LiveServer
from serving_testing import EMBEDDING_DIM, INPUT_DIM, sample_inputs

from mrl_keras.pipelines.cli import main as embed_main
from mrl_keras.serving.service.app import create_app
from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

TOKEN = "t0ken"


@pytest.fixture(scope="module")
def service_url(local_model, tiny_index):
    service = SearchService(local_model, tiny_index, ServiceConfig(auth_token=TOKEN))
    live = LiveServer(create_app(service))
    yield live.url
    live.stop()
    service.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed_client")
    x = sample_inputs(4, seed=61)
    np.save(root / "x.npy", x)
    (root / "x.json").write_text(json.dumps(x.tolist()))
    np.save(root / "wide.npy", sample_inputs(3, seed=62)[:, :5])
    (root / "token").write_text(TOKEN + "\n")
    (root / "bad.json").write_text("[[1, 2,")
    return root


def expected(tiny_model, x, m):
    """The model's full embedding (Keras), truncated to `m` and L2-normalised in NumPy."""
    z = tiny_model.embedding(x).astype(np.float64)[:, :m]
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def assert_fails_with_one_line(argv, code, match, capsys):
    """`mrl embed ARGV` exits with `code` and prints one line holding `match` on stderr."""
    capsys.readouterr()
    assert embed_main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mrl embed: ") and match in err[0], err


def run_json(argv, capsys):
    capsys.readouterr()
    assert embed_main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("m, inputs", [(5, "x.npy"), (16, "x.json"), (None, "x.npy")])
def test_service_embeddings_are_the_renormalised_prefix(
    service_url, files, tiny_model, m, inputs, capsys
):
    argv = ["--service", service_url, "--auth-token-file", str(files / "token")]
    argv += ["--inputs", str(files / inputs)] + ([] if m is None else ["--dimensions", str(m)])
    out = run_json(argv, capsys)
    dim = EMBEDDING_DIM if m is None else m
    x = np.load(files / "x.npy")
    np.testing.assert_allclose(out["embeddings"], expected(tiny_model, x, dim), atol=1e-5)
    assert (out["dimensions"], out["model_version"]) == (dim, 1)


def test_backend_embeddings_equal_the_service_and_numpy(
    service_url, files, tiny_model, exported_base_path, tmp_path, capsys
):
    x = np.load(files / "x.npy")
    direct = run_json(["--model", exported_base_path, "--inputs", str(files / "x.npy"),
                       "--dimensions", "12"], capsys)  # fmt: skip
    np.testing.assert_allclose(direct["embeddings"], expected(tiny_model, x, 12), atol=1e-5)
    assert (direct["dimensions"], direct["model_version"]) == (12, 1)
    for out in (tmp_path / "z.npy", tmp_path / "z.json"):
        argv = ["--model", exported_base_path, "--inputs", str(files / "x.npy")]
        argv += ["--dimensions", "12", "--out", str(out)]
        assert embed_main(argv) == 0
        assert f"wrote 4 embeddings (dimensions 12, model version 1) to {out}" in (
            capsys.readouterr().err
        )
    z = np.load(tmp_path / "z.npy")
    assert z.dtype == np.float32 and z.shape == (4, 12)
    np.testing.assert_allclose(z, direct["embeddings"], atol=1e-6)
    assert json.loads((tmp_path / "z.json").read_text()) == direct


@pytest.fixture(scope="module")
def text_server():
    """A server answering every request with HTML: status 200 at `/ok`, 502 elsewhere."""

    async def app(scope, receive, send):
        status = 200 if scope["path"].startswith("/ok") else 502
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/html")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"<html>\n<p>proxy</p>\n</html>"})

    live = LiveServer(app)
    yield live.url
    live.stop()


def test_service_errors_are_one_line(service_url, text_server, files, capsys):
    token = ["--auth-token-file", str(files / "token")]
    x = str(files / "x.npy")
    cases = [
        (["--service", service_url, *token, "--inputs", x, "--dimensions", "33"], "dimensions"),
        (["--service", service_url, *token, "--inputs", str(files / "wide.npy")], "shape"),
        (["--service", service_url, "--inputs", x], "HTTP 401"),
        (["--service", f"http://127.0.0.1:{free_port()}", "--inputs", x], "cannot reach"),
        (["--service", f"{text_server}/ok", "--inputs", x], "did not answer 4 embeddings"),
        (["--service", text_server, "--inputs", x], "HTTP 502: <html> <p>proxy</p>"),
    ]
    for argv, match in cases:
        assert_fails_with_one_line(argv, 1, match, capsys)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--inputs", "x.npy"], "give --service URL (a running `mrl serve`) or a model backend"),
        (["--service", "http://h", "--model", "m", "--inputs", "x.npy"], "not both"),
        (["--service", "http://h", "--model-version", "2", "--inputs", "x.npy"], "not both"),
        (["--service", "http://h", "--inputs", "/nonexistent.npy"], "file not found"),
        (["--service", "http://h", "--inputs", "BAD"], "cannot read --inputs"),
        (["--service", "http://h", "--inputs", "x.npy", "--dimensions", "0"], "integer >= 1"),
        (["--service", "http://h", "--inputs", "x.npy", "--out", "emb"], "--out must name a .npy"),
        (
            ["--service", "http://h", "--inputs", "x.npy", "--runner", "DirectRunner"],
            "unrecognized arguments: --runner",
        ),  # fmt: skip
        (
            ["--service", "http://h", "--inputs", "x.npy", "--npy", "c.npy", "--shards", "2"],
            "--service, --inputs embed a batch through a service or a model backend and --npy, "
            "--shards run the Beam pipeline",
        ),  # fmt: skip
        (
            ["--model", "MODEL", "--inputs", "WIDE"],
            f"has shape (3, 5); the model takes (n, {INPUT_DIM})",
        ),
        (
            ["--model", "MODEL", "--inputs", "x.npy", "--dimensions", str(EMBEDDING_DIM + 1)],
            f"--dimensions must be in 1..{EMBEDDING_DIM}",
        ),  # fmt: skip
    ],
)
def test_bad_input_is_a_one_line_usage_error(argv, match, files, exported_base_path, capsys):
    paths = {"x.npy": str(files / "x.npy"), "BAD": str(files / "bad.json")}
    paths |= {"WIDE": str(files / "wide.npy"), "MODEL": exported_base_path}
    assert_fails_with_one_line([paths.get(a, a) for a in argv], 2, match, capsys)


def test_help_shows_both_modes(capsys):
    assert_help(embed_main, ["--help"], "--tfrecords", capsys)
    assert_help(embed_main, ["--help"], "--dimensions M", capsys)
    assert_help(embed_main, ["--service", "http://h", "--help"], "POST /v1/embed", capsys)
