"""`mrl index build --embeddings-manifest DIR [--shards S]` (serving/cli/index_shards.py)."""

import sys
from pathlib import Path

import numpy as np

from mrl_keras.serving.cli import index_build
from mrl_keras.serving.retrieval.index import AdaptiveIndex
from mrl_keras.serving.retrieval.sharded import ShardedIndex, is_sharded_index

sys.path.insert(0, str(Path(__file__).parents[1] / "retrieval"))
from sharding_testing import write_embedding_shards  # noqa: E402


def test_sharded_and_single_builds_from_an_embeddings_manifest(tmp_path, capsys):
    ids, _ = write_embedding_shards(tmp_path / "emb", n=300, d=16, num_shards=6)
    base = ["build", "--embeddings-manifest", str(tmp_path / "emb"), "--no-progress"]
    assert index_build.main(base + ["--out", str(tmp_path / "s"), "--shards", "3", "--processes", "1"]) == 0
    assert "300 items in 3 shards" in capsys.readouterr().out
    assert is_sharded_index(tmp_path / "s")
    assert sum(s.count for s in ShardedIndex.load(tmp_path / "s").shards) == 300
    assert index_build.main(base + ["--out", str(tmp_path / "one"), "--shortlist-dim", "8"]) == 0
    index = AdaptiveIndex.load(tmp_path / "one")
    assert sorted(index.ids.tolist()) == sorted(ids.tolist()) and index.shortlist_dim == 8


def test_bad_embeddings_manifests_are_one_line_errors(tmp_path, capsys):
    write_embedding_shards(tmp_path / "emb", n=60, d=16, num_shards=2, model_version=4)
    base = ["build", "--embeddings-manifest", str(tmp_path / "emb"), "--out", str(tmp_path / "o")]
    cases = [
        (base + ["--shards", "0"], "--shards must be >= 1"),
        (base + ["--shards", "3"], "fewer than --shards 3"),
        (base + ["--model-version", "2"], "version 4, but version 2"),
        (base + ["--limit", "5"], "--limit does not apply"),
        (["build", "--embeddings-manifest", str(tmp_path), "--out", str(tmp_path / "o")], "no embeddings manifest"),
    ]
    for argv, message in cases:
        assert index_build.main(argv) != 0
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    np.testing.assert_equal(len(list(tmp_path.glob(".o.tmp*"))), 0)
