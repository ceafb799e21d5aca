import json

import numpy as np
import pytest
from sharding_testing import write_embedding_shards

from mrl_keras.serving.retrieval.embedding_shards import (
    EmbeddingShardError,
    iter_shards,
    read_embeddings_manifest,
    shard_file_names,
    write_embeddings_manifest,
    write_shard,
)
from mrl_keras.serving.retrieval.manifest import seal_manifest


def test_round_trip_every_id_once_sorted_and_checksummed(tmp_path):
    ids, x = write_embedding_shards(tmp_path, n=300, num_shards=4)
    manifest = read_embeddings_manifest(tmp_path, model_version=1)
    assert manifest["count"] == 300 and manifest["dim"] == 32 and manifest["num_shards"] == 4
    got = {}
    for shard_ids, emb in iter_shards(tmp_path, manifest):
        assert list(shard_ids) == sorted(shard_ids)
        got.update(zip(shard_ids.tolist(), emb, strict=True))
    assert sorted(got) == sorted(ids.tolist())
    np.testing.assert_array_equal(np.stack([got[i] for i in ids.tolist()]), x)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporaries left


def test_bfloat16_shards_round_to_bfloat16(tmp_path):
    ids, x = write_embedding_shards(tmp_path, n=50, num_shards=2, dtype="bfloat16")
    manifest = read_embeddings_manifest(tmp_path)
    for shard_ids, emb in iter_shards(tmp_path, manifest):
        ref = x[np.searchsorted(ids, shard_ids)]
        np.testing.assert_allclose(emb, ref, rtol=2**-8)


def test_rewriting_a_shard_replaces_it(tmp_path):
    first = write_shard(tmp_path, 0, 2, ["a", "b"], np.ones((2, 4)))
    again = write_shard(tmp_path, 0, 2, ["b", "a"], np.ones((2, 4)))
    assert first == again
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(shard_file_names(0, 2))


@pytest.mark.parametrize(
    "args, match",
    [
        ((["a", "a"], np.ones((2, 4))), "duplicate id 'a'"),
        ((["a"], np.ones((2, 4))), "Expected embeddings"),
        ((["a", "b"], np.full((2, 4), np.nan)), "NaN"),
    ],
)
def test_write_shard_rejects(tmp_path, args, match):
    with pytest.raises(ValueError, match=match):
        write_shard(tmp_path, 0, 1, *args)


def _rewrite_manifest(path, **changes):
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_bytes(seal_manifest(manifest))


def test_manifest_of_another_model_version_is_refused(tmp_path):
    write_embedding_shards(tmp_path, n=40, num_shards=2, model_version=3)
    with pytest.raises(EmbeddingShardError, match=r"manifest.json: .*version 3, but version 1"):
        read_embeddings_manifest(tmp_path, model_version=1)


def test_missing_shard_file_is_named(tmp_path):
    write_embedding_shards(tmp_path, n=40, num_shards=2)
    (tmp_path / shard_file_names(1, 2)[0]).unlink()
    with pytest.raises(EmbeddingShardError, match=r"embeddings-00001-of-00002.npy: shard file .* missing"):
        read_embeddings_manifest(tmp_path)


def test_shards_of_different_dims_are_refused(tmp_path):
    a = write_shard(tmp_path, 0, 2, ["a"], np.ones((1, 4)))
    b = write_shard(tmp_path, 1, 2, ["b"], np.ones((1, 8)))
    with pytest.raises(ValueError, match="one embedding dim"):
        write_embeddings_manifest(tmp_path, [a, b], num_shards=2, dtype="float32", model_name="m", model_version=1)
    # a manifest edited to list them anyway (and resealed) is refused at read time
    write_embeddings_manifest(tmp_path, [a], num_shards=2, dtype="float32", model_name="m", model_version=1)
    _rewrite_manifest(tmp_path, shards=[a, b])
    with pytest.raises(EmbeddingShardError, match=r"embeddings-00001-of-00002.npy: shards of different dims"):
        read_embeddings_manifest(tmp_path)


def test_duplicate_ids_across_shards_are_named(tmp_path):
    a = write_shard(tmp_path, 0, 2, ["a", "x"], np.ones((2, 4)))
    b = write_shard(tmp_path, 1, 2, ["b", "x"], np.ones((2, 4)))
    write_embeddings_manifest(tmp_path, [a, b], num_shards=2, dtype="float32", model_name="m", model_version=1)
    with pytest.raises(EmbeddingShardError, match=r"ids-00001-of-00002.npy: duplicate id 'x' across shards \(also in ids-00000-of-00002.npy\)"):
        read_embeddings_manifest(tmp_path)


def test_corruption_and_edits_are_detected(tmp_path):
    write_embedding_shards(tmp_path, n=40, num_shards=2)
    path = tmp_path / shard_file_names(0, 2)[0]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(EmbeddingShardError, match="embeddings-00000-of-00002.npy: checksum mismatch"):
        read_embeddings_manifest(tmp_path)
    read_embeddings_manifest(tmp_path, verify=False)  # headers and sizes only
    text = (tmp_path / "manifest.json").read_text().replace('"count": 40', '"count": 41')
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(EmbeddingShardError, match="checksum does not match"):
        read_embeddings_manifest(tmp_path)


def test_no_manifest_means_an_unfinished_job(tmp_path):
    with pytest.raises(EmbeddingShardError, match="no embeddings manifest"):
        read_embeddings_manifest(tmp_path)
