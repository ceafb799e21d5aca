"""`mrl index build`, `mrl serve`, `mrl search`, `mrl classify` (serving/cli.py)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from fashion_mnist_testing import exported_base_path as fm_base_path
from serving_testing import EMBEDDING_DIM, sample_inputs

from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever
from mrl_keras.serving.backends.cascade_client import CascadeClassifier
from mrl_keras.serving.cli.classify import main as classify_main
from mrl_keras.serving.cli.index_build import main as index_main
from mrl_keras.serving.cli.search import main as search_main
from mrl_keras.serving.cli.serve import main as serve_main


def _json_lines(text):
    return [json.loads(line) for line in text.strip().splitlines()]


@pytest.fixture(scope="module")
def tiny_files(local_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    corpus = sample_inputs(300, seed=41)
    z = local_model.embed(corpus, EMBEDDING_DIM).embeddings
    np.savez(root / "corpus.npz", embeddings=z, ids=np.arange(300) * 10)
    np.save(root / "queries.npy", sample_inputs(3, seed=42))
    np.save(
        root / "query_embeddings.npy",
        local_model.embed(sample_inputs(3, seed=42), EMBEDDING_DIM).embeddings,
    )
    return root


@pytest.fixture(scope="module")
def tiny_index(tiny_files, exported_base_path):
    out = tiny_files / "index"
    argv = [
        "build",
        "--model",
        exported_base_path,
        "--embeddings",
        str(tiny_files / "corpus.npz"),
        "--out",
        str(out),
        "--shortlist-dim",
        "8",
        "--scann",
        "num_leaves=1",
        "--no-progress",
    ]
    assert index_main(argv) == 0
    return out


def test_index_build_from_embeddings(tiny_index):
    index = AdaptiveIndex.load(tiny_index)
    assert (index.count, index.shortlist_dim, index.rerank_dim, index.model_version) == (
        300,
        8,
        32,
        1,
    )
    assert index.ids[:3].tolist() == [0, 10, 20]


def test_search_directly_equals_python(
    tiny_index, tiny_files, exported_base_path, local_model, capsys
):
    capsys.readouterr()
    argv = [
        "--index",
        str(tiny_index),
        "--model",
        exported_base_path,
        "--inputs",
        str(tiny_files / "queries.npy"),
        "--k",
        "4",
        "--funnel",
        "16:50,32:4",
    ]
    assert search_main(argv) == 0
    rows = _json_lines(capsys.readouterr().out)
    expected = AdaptiveRetriever(AdaptiveIndex.load(tiny_index), local_model).search(
        np.load(tiny_files / "queries.npy"), k=4, funnel=[(16, 50), (32, 4)]
    )
    assert [r["ids"] for r in rows] == expected.ids.tolist()
    assert (
        search_main(
            [
                "--index",
                str(tiny_index),
                "--embeddings",
                str(tiny_files / "query_embeddings.npy"),
                "--k",
                "4",
                "--funnel",
                "16:50,32:4",
            ]
        )
        == 0
    )
    assert [r["ids"] for r in _json_lines(capsys.readouterr().out)] == expected.ids.tolist()


def test_classify_directly(exported_base_path, tiny_files, local_model, capsys):
    capsys.readouterr()
    assert (
        classify_main(
            ["--model", exported_base_path, "--inputs", str(tiny_files / "queries.npy"), "--json"]
        )
        == 0
    )
    expected = (
        CascadeClassifier(local_model).classify(np.load(tiny_files / "queries.npy")).predictions()
    )
    assert _json_lines(capsys.readouterr().out) == expected


@pytest.mark.parametrize(
    "fn, argv, code, match",
    [
        (index_main, ["build", "--out", "/tmp/x"], 2, "required"),
        (
            index_main,
            ["build", "--out", "/tmp/x", "--embeddings", "/nonexistent.npy"],
            1,
            "not found",
        ),
        (
            index_main,
            ["build", "--out", "/tmp/x", "--dataset", "fashion_mnist"],
            2,
            "a model is needed",
        ),
        (index_main, [], 2, "mrl index build"),
        (search_main, ["--embeddings", "q.npy"], 2, "--service URL or --index DIR"),
        (
            search_main,
            ["--index", "/nonexistent", "--embeddings", "q.npy"],
            1,
            "Not an index directory",
        ),
        (classify_main, ["--inputs", "q.npy"], 2, "a model is needed"),
        (serve_main, ["--index", "/nonexistent"], 2, "a model is needed"),
    ],
)
def test_bad_arguments_exit_nonzero_with_one_line(fn, argv, code, match, capsys):
    assert fn(argv) == code
    err = capsys.readouterr().err
    assert match in err
    assert "Traceback" not in err


def test_help_exits_zero(capsys):
    for fn, argv in (
        (index_main, ["build", "--help"]),
        (serve_main, ["--help"]),
        (search_main, ["--help"]),
        (classify_main, ["--help"]),
    ):
        assert fn(argv) == 0
    assert "--shortlist-dim" in capsys.readouterr().out


def test_fashion_mnist_dataset_build_search_classify(tmp_path, capsys):
    base = fm_base_path()
    out = tmp_path / "fm-index"
    argv = [
        "build",
        "--model",
        base,
        "--dataset",
        "fashion_mnist",
        "--split",
        "test",
        "--limit",
        "2000",
        "--out",
        str(out),
        "--shortlist-dim",
        "16",
        "--store-dtype",
        "float16",
        "--no-progress",
    ]
    assert index_main(argv) == 0
    index = AdaptiveIndex.load(out)
    assert (index.count, index.embedding_dim, index.store.dtype) == (2000, 64, np.float16)
    capsys.readouterr()
    assert (
        search_main(
            [
                "--index",
                str(out),
                "--model",
                base,
                "--dataset",
                "fashion_mnist",
                "--rows",
                "0-2",
                "--k",
                "3",
            ]
        )
        == 0
    )
    rows = _json_lines(capsys.readouterr().out)
    assert [r["ids"][0] for r in rows] == [0, 1, 2]  # each query is in the index: found first
    assert classify_main(["--model", base, "--dataset", "fashion_mnist", "--rows", "0-3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all("class=" in line and "dims_used=" in line for line in lines)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mrl_serve_process_search_classify_and_sighup_reload(
    tiny_index, tiny_files, exported_base_path, local_model, tmp_path, capsys
):
    index_dir = tmp_path / "served-index"
    subprocess.run(["cp", "-r", str(tiny_index), str(index_dir)], check=True)
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    port = _free_port()
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
        argv = [
            "--service",
            url,
            "--auth-token-file",
            str(token),
            "--inputs",
            str(tiny_files / "queries.npy"),
            "--k",
            "4",
        ]
        assert search_main(argv) == 0
        expected = AdaptiveRetriever(AdaptiveIndex.load(tiny_index), local_model).search(
            np.load(tiny_files / "queries.npy"), k=4
        )
        assert [r["ids"] for r in _json_lines(capsys.readouterr().out)] == expected.ids.tolist()
        assert (
            classify_main(
                [
                    "--service",
                    url,
                    "--auth-token-file",
                    str(token),
                    "--inputs",
                    str(tiny_files / "queries.npy"),
                    "--json",
                ]
            )
            == 0
        )
        expected = (
            CascadeClassifier(local_model)
            .classify(np.load(tiny_files / "queries.npy"))
            .predictions()
        )
        assert _json_lines(capsys.readouterr().out) == expected
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


@pytest.fixture(scope="module")
def tree_files(tmp_path_factory):
    """A 16-leaf index built by `mrl index build` over 2000 random vectors, plus queries."""
    root = tmp_path_factory.mktemp("cli_tree")
    rng = np.random.default_rng(8)
    np.save(root / "corpus.npy", rng.standard_normal((2000, EMBEDDING_DIM)).astype(np.float32))
    np.save(root / "queries.npy", rng.standard_normal((5, EMBEDDING_DIM)).astype(np.float32))
    argv = ["build", "--embeddings", str(root / "corpus.npy"), "--out", str(root / "index")]
    argv += ["--shortlist-dim", "8", "--scann", "num_leaves=16", "--no-progress"]
    assert index_main(argv) == 0
    return root


def test_search_leaves_to_search_directly_equals_python(tree_files, capsys):
    index = AdaptiveIndex.load(tree_files / "index")
    assert index.scann_options["num_leaves"] == 16
    retriever = AdaptiveRetriever(index)
    queries = np.load(tree_files / "queries.npy")
    capsys.readouterr()
    found = {}
    for leaves in (1, 16):
        argv = ["--index", str(tree_files / "index"), "--embeddings"]
        argv += [str(tree_files / "queries.npy"), "--k", "10", "--leaves-to-search", str(leaves)]
        assert search_main(argv) == 0
        found[leaves] = [r["ids"] for r in _json_lines(capsys.readouterr().out)]
        expected = retriever.search_embeddings(queries, k=10, leaves_to_search=leaves)
        assert found[leaves] == expected.ids.tolist()
    assert found[1] != found[16]


@pytest.mark.parametrize(
    "value, code, match",
    [
        ("0", 1, "Expected 1 <= leaves_to_search <= 16 (the index's ScaNN leaves). Received: "),
        ("-1", 1, "Received: leaves_to_search=-1"),
        (
            "17",
            1,
            "leaves_to_search <= 16 (the index's ScaNN leaves). Received: leaves_to_search=17",
        ),
        ("2.5", 2, "--leaves-to-search: invalid int value: '2.5'"),
        ("True", 2, "--leaves-to-search: invalid int value: 'True'"),
    ],
)
def test_bad_leaves_to_search_exits_nonzero(tree_files, value, code, match, capsys):
    argv = ["--index", str(tree_files / "index"), "--embeddings"]
    argv += [str(tree_files / "queries.npy"), "--leaves-to-search", value]
    capsys.readouterr()
    assert search_main(argv) == code
    captured = capsys.readouterr()
    assert match in captured.err and "Traceback" not in captured.err
    assert captured.out == ""
