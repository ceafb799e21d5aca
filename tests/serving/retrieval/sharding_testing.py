"""Helpers of the embedding-shard, sharded-index and front tests: random embedding shards on
disk and the unsharded exact reference."""

from __future__ import annotations

import numpy as np

from mrl_keras.serving.retrieval.embedding_shards import write_embeddings_manifest, write_shard


def write_embedding_shards(out, n=1400, d=32, num_shards=14, seed=0, model_version=1, dtype="float32"):
    """`num_shards` embedding shards of `n` random float32 rows (string ids); returns (ids, x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.array([f"item{i:05d}" for i in range(n)])
    part = np.arange(n) % num_shards
    rng.shuffle(part)
    entries = [
        write_shard(out, s, num_shards, ids[part == s], x[part == s], dtype) for s in range(num_shards)
    ]
    write_embeddings_manifest(
        out, entries, num_shards=num_shards, dtype=dtype, model_name="tiny", model_version=model_version
    )
    return ids, x


def exact_top_k(x, ids, queries, k):
    """NumPy reference: cosine top-k over all rows, ties broken by id. (ids (n, k), scores)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q @ x.T
    out_ids, out_scores = [], []
    for row in scores:
        order = np.lexsort((ids, -row))[:k]
        out_ids.append(ids[order])
        out_scores.append(row[order])
    return np.array(out_ids), np.array(out_scores, np.float32)
