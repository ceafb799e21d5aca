"""`mrl index tune` (serving/cli/index_tune.py), reached through `mrl index`."""

import numpy as np
import pytest
from cli_testing import assert_fails_with_one_line, assert_help

from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever
from mrl_keras.serving.cli.index_build import main as index_main
from mrl_keras.serving.retrieval.manifest import read_manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune-cli")
    rng = np.random.default_rng(0)
    scale = (1.0 + np.arange(32) / 4.0) ** -1.0
    centres = rng.standard_normal((20, 32)) * scale
    z = centres[rng.integers(0, 20, 1500)] + 0.7 * rng.standard_normal((1500, 32)) * scale
    z = (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)
    np.save(root / "corpus.npy", z)
    np.save(root / "queries.npy", z[:64] + 0.01)
    out = root / "indexes" / "demo" / "1"
    argv = [
        "build",
        "--embeddings",
        str(root / "corpus.npy"),
        "--out",
        str(out),
        "--shortlist-dim",
        "8",
        "--store-dtype",
        "int8",
        "--scann",
        "num_leaves=10",
        "--no-progress",
    ]
    assert index_main(argv) == 0
    return root, out


def test_tune_publishes_the_next_version_with_defaults(built, capsys):
    root, v1 = built
    capsys.readouterr()
    assert (
        index_main(
            ["tune", str(v1), "--target-recall", "0.9", "--sample", "200", "--cost", "bytes"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Pareto front" in out and "chosen" in out and "published" in out
    v2 = v1.parent / "2"
    manifest = read_manifest(v2)
    assert manifest["tuned_from"] == read_manifest(v1)["index_version"]
    assert manifest["tuning"]["target_recall"] == 0.9 and manifest["tuning"]["recall_lcb"] >= 0.9
    plan = AdaptiveRetriever(AdaptiveIndex.load(v2)).plan(10)
    assert plan.shortlist_size == manifest["search_defaults"]["shortlist_size"]


def test_tune_over_added_shortlists(built, capsys):
    root, v1 = built
    capsys.readouterr()
    argv = [
        "tune",
        str(v1),
        "--add-shortlists",
        "16",
        "--sample",
        "100",
        "--cost",
        "bytes",
        "--target-recall",
        "0.9",
    ]
    assert index_main(argv) == 0
    out = capsys.readouterr().out
    assert "added shortlists [16]" in out and "D_s 16" in out
    newest = max(int(p.name) for p in v1.parent.iterdir() if p.name.isdigit())
    manifest = read_manifest(v1.parent / str(newest))
    assert "16" in manifest["shortlists"] and "shortlist_dim" in manifest["search_defaults"]


def test_tune_with_query_file_and_dry_run(built, capsys):
    root, v1 = built
    capsys.readouterr()
    assert (
        index_main(
            [
                "tune",
                str(v1),
                "--queries",
                str(root / "queries.npy"),
                "--target-recall",
                "0.8",
                "--repeats",
                "1",
                "--dry-run",
            ]
        )
        == 0
    )
    assert "dry run: nothing published" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, code, match",
    [
        (["tune", "/nonexistent-index"], 2, "index directory not found"),
        (["tune", "{v1}", "--target-recall", "1.5"], 2, "--target-recall must be in (0, 1]"),
        (["tune", "{v1}", "--sample", "2"], 2, "--sample must be >= 4"),
        (["tune", "{v1}", "--sample", "10", "--queries", "q.npy"], 2, "not allowed with"),
        (["tune", "{v1}", "--queries", "/nonexistent.npy"], 2, "file not found"),
        (["tune", "{v1}", "--add-shortlists", "x"], 2, "--add-shortlists expects"),
        (["tune", "{v1}", "--heldout-checks", "0"], 2, "--heldout-checks must be >= 1"),
        (
            [
                "tune",
                "{v1}",
                "--target-recall",
                "1.0",
                "--sample",
                "50",
                "--cost",
                "bytes",
                "--heldout-fraction",
                "0.5",
            ],
            1,
            "nothing published",
        ),
    ],
)
def test_bad_arguments_exit_nonzero_with_one_line(built, argv, code, match, capsys):
    argv = [a.replace("{v1}", str(built[1])) for a in argv]
    assert_fails_with_one_line(index_main, argv, code, match, capsys)


def test_help_exits_zero(capsys):
    assert_help(index_main, ["tune", "--help"], "--target-recall", capsys)
