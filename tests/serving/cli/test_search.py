"""`mrl search` (serving/cli/search.py)."""

import numpy as np
import pytest
from cli_testing import assert_fails_with_one_line, assert_help, json_lines

from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever
from mrl_keras.serving.cli.search import main as search_main


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
    rows = json_lines(capsys.readouterr().out)
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
    assert [r["ids"] for r in json_lines(capsys.readouterr().out)] == expected.ids.tolist()


@pytest.mark.parametrize(
    "argv, code, match",
    [
        (["--embeddings", "q.npy"], 2, "--service URL or --index DIR"),
        (["--index", "/nonexistent", "--embeddings", "q.npy"], 1, "Not an index directory"),
    ],
)
def test_bad_arguments_exit_nonzero_with_one_line(argv, code, match, capsys):
    assert_fails_with_one_line(search_main, argv, code, match, capsys)


def test_help_exits_zero(capsys):
    assert_help(search_main, ["--help"], "--leaves-to-search", capsys)


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
        found[leaves] = [r["ids"] for r in json_lines(capsys.readouterr().out)]
        expected = retriever.search_embeddings(queries, k=10, leaves_to_search=leaves)
        assert found[leaves] == expected.ids.tolist()
    assert found[1] != found[16]


def test_search_shortlist_reorder_directly_equals_python(tree_files, capsys):
    index = AdaptiveIndex.load(tree_files / "index")
    retriever = AdaptiveRetriever(index)
    queries = np.load(tree_files / "queries.npy")
    capsys.readouterr()
    argv = ["--index", str(tree_files / "index"), "--embeddings", str(tree_files / "queries.npy")]
    argv += ["--k", "10", "--shortlist-size", "20", "--shortlist-reorder", "20"]
    assert search_main(argv) == 0
    found = [r["ids"] for r in json_lines(capsys.readouterr().out)]
    expected = retriever.search_embeddings(queries, k=10, shortlist_size=20, shortlist_reorder=20)
    assert found == expected.ids.tolist()
    assert search_main(argv[:-1] + ["19"]) == 1
    assert "Expected shortlist_size=20 <= shortlist_reorder" in capsys.readouterr().err


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
