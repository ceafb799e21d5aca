"""A 4-shard index of 1M embeddings built in parallel processes and searched, against the
unsharded index of the same embeddings (build time, QPS, recall@10 against exact search, and
the overlap of the two indexes' answers).

Embeddings: the synthetic Matryoshka-like corpus of `benchmarks/synthetic.py` (unit vectors
around 1,000 class centres with a decaying spectrum), d = 64, written as 16 embedding shards
(`serving/retrieval/embedding_shards.py`, what `mrl embed` writes); queries are a separate draw.
Both indexes use the default settings (D_s = 16, shortlist 200, rerank at D_r = 64, ScaNN's
defaults for their size); the sharded one searches its shards on one thread each and merges
(`ShardedRetriever`), and an exact-settings pass checks sharded == unsharded item for item.

    nice -n 10 python -m benchmarks.sharded_index_scale --items 1000000 --shards 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks import common, synthetic


def exact_top_k(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(q), k), np.int64)
    for s in range(0, len(q), 50):
        scores = q[s : s + 50] @ x.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        out[s : s + 50] = np.take_along_axis(top, order, 1)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)]))


def qps(search, queries: np.ndarray, repeats: int = 3) -> float:
    search(queries[:50])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        search(queries)
        best = min(best, time.perf_counter() - t0)
    return len(queries) / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--work", default=str(common.DEFAULT_CACHE / "sharded_index"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from mrl_keras.serving.retrieval.embedding_shards import write_embeddings_manifest, write_shard
    from mrl_keras.serving.retrieval.index import AdaptiveIndex, build_index
    from mrl_keras.serving.retrieval.retriever import AdaptiveRetriever
    from mrl_keras.serving.retrieval.sharded import (
        ShardedIndex,
        ShardedRetriever,
        build_sharded_index,
        merge_topk,
    )

    started, load = time.time(), os.getloadavg()[0]
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    n, d, k = args.items, args.dim, 10
    common.log(f"generating {n} x {d} embeddings and {args.queries} queries")
    x, _ = synthetic.generate(n, d, seed=0)
    q, _ = synthetic.generate(args.queries, d, seed=0, stream=synthetic.QUERY_STREAM)
    ids = np.arange(n, dtype=np.int64)
    part = np.random.default_rng(0).integers(0, 16, n)
    entries = [write_shard(work / "emb", s, 16, ids[part == s], x[part == s]) for s in range(16)]
    write_embeddings_manifest(work / "emb", entries, num_shards=16, dtype="float32", model_name="synthetic", model_version=1)

    common.log(f"building {args.shards} shards in {args.shards} processes")
    t0 = time.perf_counter()
    build_sharded_index(work / "sharded", work / "emb", shards=args.shards, shortlist_dim=16)
    sharded_build = time.perf_counter() - t0
    common.log(f"  {sharded_build:.0f} s; building the unsharded index")
    t0 = time.perf_counter()
    build_index(work / "single", x, ids, shortlist_dim=16, model_version=1)
    single_build = time.perf_counter() - t0
    common.log(f"  {single_build:.0f} s")

    t0 = time.perf_counter()
    sharded = ShardedIndex.load(work / "sharded")
    fast_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    ShardedIndex.load(work / "sharded", verify="full")
    full_load = time.perf_counter() - t0
    single_index = AdaptiveIndex.load(work / "single")
    single = AdaptiveRetriever(single_index)
    multi = ShardedRetriever(sharded)

    truth = exact_top_k(x, q, k)
    single_ids = single.search_embeddings(q, k).ids
    multi_ids = multi.search_embeddings(q, k).ids
    rows = {
        "unsharded": {"build_s": single_build, "qps": qps(lambda b: single.search_embeddings(b, k), q),
                      "recall_at_10": recall(single_ids, truth)},
        f"{args.shards} shards": {"build_s": sharded_build, "qps": qps(lambda b: multi.search_embeddings(b, k), q),
                                  "recall_at_10": recall(multi_ids, truth)},
    }
    # the same candidates per query as the S shards together: S x 200 reranked (ScaNN searches
    # the same 10% of the points either way)
    size = args.shards * 200
    wide_ids = single.search_embeddings(q, k, shortlist_size=size).ids
    rows[f"unsharded, shortlist {size}"] = {
        "build_s": single_build,
        "qps": qps(lambda b: single.search_embeddings(b, k, shortlist_size=size), q),
        "recall_at_10": recall(wide_ids, truth),
    }
    overlap = recall(multi_ids, single_ids)
    # exact settings on a few queries: every leaf, whole shards shortlisted (sharded) vs the same
    # on the unsharded index, item for item
    few = q[:5]
    exact_multi = multi.search_embeddings(few, k, exact=True)
    ref = single.search_embeddings(few, k, None, n, d, None,
                                   leaves_to_search=int(single_index.scann_options["num_leaves"]))
    ref_ids, _ = merge_topk([ref.ids], [ref.scores], k)
    exact_equal = bool((exact_multi.ids == ref_ids).all())
    table = common.md_table(
        ["index", "build s (wall)", f"QPS (batch of {args.queries}, k=10)", "recall@10 vs exact"],
        [[name, f"{r['build_s']:.0f}", f"{r['qps']:.0f}", f"{r['recall_at_10']:.3f}"] for name, r in rows.items()],
    )
    notes = (f"\n\nSharded vs unsharded answers overlap (recall@10 of one against the other): {overlap:.3f}. "
             f"Exact settings (every leaf, the whole shard shortlisted, rerank at D_r) on 5 queries: sharded "
             f"top-10 == unsharded top-10 item for item: {exact_equal}. Loading the sharded index: "
             f"{fast_load:.2f} s with verify=\"fast\" (sizes, manifests) vs {full_load:.2f} s with verify=\"full\" "
             f"(every byte hashed).\n")
    run = {"command": common.command_line(argv, "benchmarks.sharded_index_scale"), "date": common.utc_now(),
           "wall_s": time.time() - started, "machine": dict(common.machine(), load_avg_1m_at_start=round(load, 2)),
           "versions": common.versions("numpy"), "rows": rows, "overlap": overlap, "exact_equal": exact_equal,
           "fast_load_s": fast_load, "full_load_s": full_load, "items": n, "dim": d}
    common.save_json(common.BENCH_DIR / "results" / "sharded_index_scale.json", run)
    print(table + notes)
    if not args.no_write:
        body = "\n".join(common.run_header(run, "; shared with other agents' work (load average at start {load})")) + "\n\n"
        body += (f"{n} synthetic embeddings, d = {d}, D_s = 16, default search settings; the {args.shards} shards "
                 f"built by {args.shards} processes at once on this machine's 2 cores.\n\n" + table + notes)
        common.write_section("Sharded index (mrl index build --shards)", body)
    multi.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
