"""`mrl index build` (serving/cli/index_build.py)."""

import numpy as np
import pytest
from cli_testing import assert_fails_with_one_line, assert_help, json_lines
from fashion_mnist_testing import exported_base_path as fm_base_path

from mrl_keras.serving import AdaptiveIndex
from mrl_keras.serving.cli.classify import main as classify_main
from mrl_keras.serving.cli.index_build import main as index_main
from mrl_keras.serving.cli.search import main as search_main


def test_index_build_from_embeddings(tiny_index):
    index = AdaptiveIndex.load(tiny_index)
    assert (index.count, index.shortlist_dim, index.rerank_dim, index.model_version) == (
        300,
        8,
        32,
        1,
    )
    assert index.ids[:3].tolist() == [0, 10, 20]


@pytest.mark.parametrize(
    "argv, code, match",
    [
        (["build", "--out", "/tmp/x"], 2, "required"),
        (["build", "--out", "/tmp/x", "--embeddings", "/nonexistent.npy"], 1, "not found"),
        (["build", "--out", "/tmp/x", "--dataset", "fashion_mnist"], 2, "a model is needed"),
        ([], 2, "mrl index build"),
    ],
)
def test_bad_arguments_exit_nonzero_with_one_line(argv, code, match, capsys):
    assert_fails_with_one_line(index_main, argv, code, match, capsys)


def test_help_exits_zero(capsys):
    assert_help(index_main, ["build", "--help"], "--shortlist-dim", capsys)


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
    rows = json_lines(capsys.readouterr().out)
    assert [r["ids"][0] for r in rows] == [0, 1, 2]  # each query is in the index: found first
    assert classify_main(["--model", base, "--dataset", "fashion_mnist", "--rows", "0-3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all("class=" in line and "dims_used=" in line for line in lines)


def test_out_layouts_versions_keep_and_unversioned(tmp_path, capsys):
    from mrl_keras.serving.retrieval.index_versions import list_versions
    from mrl_keras.serving.retrieval.manifest import read_manifest

    np.save(tmp_path / "z.npy", np.random.default_rng(0).standard_normal((40, 16), np.float32))
    common = ["build", "--embeddings", str(tmp_path / "z.npy"), "--shortlist-dim", "8"]
    common += ["--scann", "num_leaves=1", "--no-progress"]
    base = tmp_path / "indexes" / "toy"
    for _ in range(3):
        assert index_main([*common, "--out", str(base), "--keep", "2"]) == 0
    assert list_versions(base) == [2, 3]
    assert "index_version 3-" in capsys.readouterr().out
    assert index_main([*common, "--out", str(base / "7")]) == 0  # exactly version 7
    assert list_versions(base) == [2, 3, 7]
    assert_fails_with_one_line(
        index_main, [*common, "--out", str(base / "7")], 1, "immutable", capsys
    )
    legacy = tmp_path / "legacy"
    assert index_main([*common, "--out", str(legacy), "--unversioned"]) == 0
    first = read_manifest(legacy)["build_id"]
    assert index_main([*common, "--out", str(legacy)]) == 0  # a legacy index: replaced in place
    assert "un-versioned index" in capsys.readouterr().err
    assert read_manifest(legacy)["build_id"] != first and read_manifest(legacy)["version"] is None
    assert_fails_with_one_line(
        index_main, [*common, "--out", str(legacy), "--keep", "2"], 2, "versioned --out", capsys
    )
    assert_fails_with_one_line(
        index_main, [*common, "--out", str(base), "--keep", "0"], 2, "--keep must be >= 1", capsys
    )
