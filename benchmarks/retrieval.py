"""Adaptive retrieval vs single-shot peers, side by side, in one process.

Contenders, all over the same database and queries with the same thread count: exact brute
force (NumPy/BLAS, full d), ScaNN single-shot at full d (tree + AH + reorder, swept),
FAISS HNSW at full d (M = 32, efSearch swept), our `mrl_keras.serving.AdaptiveRetriever`
over a grid of (D_s, K, D_r) and the paper's funnel, and a benchmark-local prototype of a
faster AR kernel (ScaNN truncate + bfloat16 reorder). For each: recall@10 against the exact
full-d top-10, mAP@10 by class, batched QPS, single-query p50/p99, index build time, bytes per
database vector and MFLOPs per query by the paper's formula.

Usage (from the repository root; see benchmarks/README.md):

    python -m benchmarks.retrieval --n 1000000 --d 2048 --queries 1000 --threads 1
    python -m benchmarks.retrieval --data fashion_mnist
    python -m benchmarks.retrieval --quick            # tiny smoke run (CI)
"""

from __future__ import annotations

import os
import sys


def _pin_threads_from_argv(argv: list[str]) -> None:
    """BLAS/OpenMP pools read their size when NumPy loads: set them before importing it."""
    threads = "1"
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = argv[i + 1]
        elif arg.startswith("--threads="):
            threads = arg.split("=", 1)[1]
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


if __name__ == "__main__":
    _pin_threads_from_argv(sys.argv[1:])

import argparse  # noqa: E402
import gc  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks import contenders as ct  # noqa: E402
from benchmarks import retrieval_data as rd  # noqa: E402
from benchmarks import retrieval_report as report  # noqa: E402

METHODS = ("exact", "scann", "hnsw", "ar", "ar-fused")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.retrieval", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--data",
        default="synthetic",
        help="synthetic | fashion_mnist | cjk (an MRL model trained here on the 1,000-class CJK "
        "benchmark, cached; needs scripts/setup_cjk.sh) | npz:PATH (embeddings+labels[+queries])",
    )
    p.add_argument("--n", type=int, default=1_000_000, help="synthetic database size")
    p.add_argument("--d", type=int, default=2048, help="synthetic dimension")
    p.add_argument("--classes", type=int, default=1000, help="synthetic number of classes")
    p.add_argument("--queries", type=int, default=1000, help="number of queries")
    p.add_argument("--threads", type=int, default=1, help="threads for every contender")
    p.add_argument(
        "--build-threads",
        type=int,
        default=None,
        help="threads for index construction (default: --threads), the same for every contender",
    )
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)}",
    )
    p.add_argument("--ar-dims", default="16,32,64", help="shortlist dims D_s for AR")
    p.add_argument(
        "--ar-store",
        default="float32",
        choices=("float32", "float16", "bfloat16"),
        help="dtype of the AR rerank store",
    )
    p.add_argument(
        "--ar-reorder-dtype",
        default="float32",
        choices=("float32", "bfloat16", "int8"),
        help="dtype of the AR index's ScaNN shortlist reordering (scann_options reorder_dtype)",
    )
    p.add_argument(
        "--ar-kernels",
        default="bfloat16,int8",
        help="prototype rerank stores also measured on each AR index ('' for none)",
    )
    p.add_argument(
        "--hnsw-max-n",
        type=int,
        default=1_000_000,
        help="skip HNSW (and say so) when the database is larger",
    )
    p.add_argument("--repeats", type=int, default=2, help="timed passes per config (best kept)")
    p.add_argument(
        "--exact-queries",
        type=int,
        default=200,
        help="queries timed for brute force (its recall is 1 by definition)",
    )
    p.add_argument(
        "--prepare-only",
        action="store_true",
        help="only generate/load the database and cache the ground truth",
    )
    p.add_argument(
        "--latency-queries",
        type=int,
        default=200,
        help="single queries timed per config for p50/p99",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=common.DEFAULT_CACHE,
        help="cache for databases, ground truth, indexes (outside git)",
    )
    p.add_argument("--tag", default=None, help="name of this run in RESULTS.md (default: data+n)")
    p.add_argument(
        "--no-results",
        action="store_true",
        help="do not write benchmarks/RESULTS.md, the JSON or the PNG",
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where RESULTS.md, results/*.json and the PNG go (default: benchmarks/; with "
        "--quick: nowhere unless given)",
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help="only re-render the RESULTS.md section from the saved runs and notes",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke run: n=2000, d=64, 50 queries, 1 repeat, no outputs",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.d, args.classes, args.queries = 2000, 64, 20, 50
        args.repeats, args.latency_queries, args.ar_dims = 1, 10, "8,16"
        args.no_results = args.results_dir is None
    if args.results_dir is None:
        args.results_dir = common.BENCH_DIR
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        p.error(f"unknown --methods {sorted(unknown)}; expected a subset of {METHODS}")
    for name in ("n", "d", "queries", "threads", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


def load_dataset(args) -> rd.Dataset:
    if args.data == "synthetic":
        return rd.synthetic_dataset(args.n, args.d, args.classes, args.queries, args.cache)
    if args.data == "fashion_mnist":
        return rd.fashion_mnist_dataset(args.cache, args.queries)
    if args.data == "cjk":
        return rd.cjk_dataset(args.cache, args.queries)
    if args.data.startswith("npz:"):
        path = Path(args.data[4:])
        if not path.is_file():
            raise SystemExit(f"error: --data {args.data}: no such file")
        return rd.npz_dataset(path, args.queries)
    raise SystemExit(
        f"error: unknown --data {args.data!r} (synthetic | fashion_mnist | cjk | npz:PATH)"
    )


def time_batched(contender, queries: np.ndarray, config: dict, repeats: int):
    """Best wall time and best CPU (process) time of `repeats` batched passes."""
    contender.search(queries[: min(8, len(queries))], config)  # warm-up
    best, best_cpu, ids = float("inf"), float("inf"), None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        ids = contender.search(queries, config)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return ids, best, best_cpu


def time_single(contender, queries: np.ndarray, config: dict, count: int, budget_s: float):
    times, start = [], time.perf_counter()
    for i in range(min(count, len(queries))):
        t0 = time.perf_counter()
        contender.search(queries[i : i + 1], config)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return times


def make_contenders(method: str, ds: rd.Dataset, args, work: Path) -> list:
    contenders = _make_contenders(method, ds, args, work)
    for c in contenders:
        c.build_threads = args.build_threads
    return contenders


def _make_contenders(method: str, ds: rd.Dataset, args, work: Path) -> list:
    n, d = ds.db.shape
    t = args.threads
    if method == "exact":
        return [ct.Exact(ds.db, t)]
    if method == "scann":
        return [ct.ScannFull(ds.db, t, ct.default_num_leaves(n), work)]
    if method == "hnsw":
        return [ct.FaissHnsw(ds.db, t)]
    dims = [int(x) for x in args.ar_dims.split(",") if 0 < int(x) < d]
    if method == "ar":
        kernels = tuple(k for k in args.ar_kernels.split(",") if k)
        return [
            ct.OurAdaptive(
                ds.db,
                t,
                m,
                work,
                store_dtype=args.ar_store,
                kernels=kernels,
                reorder_dtype=args.ar_reorder_dtype,
            )
            for m in dims
        ]
    if method == "ar-fused":
        return [ct.FusedScannAR(ds.db, t, m, work, ct.default_num_leaves(n)) for m in dims]
    raise ValueError(method)


def run_contender(c, ds: rd.Dataset, args) -> list[dict[str, Any]]:
    common.log(f"{c.name}: building ...")
    build_s = c.build()
    bpv = c.bytes_per_vector()
    common.log(f"  built in {build_s:.1f} s, {bpv:,.0f} bytes/vector")
    rows = []
    is_exact = isinstance(c, ct.Exact)
    nq = min(len(ds.queries), args.exact_queries) if is_exact else len(ds.queries)
    queries, gt = ds.queries[:nq], ds.gt[:nq]
    for config in c.configs():
        if hasattr(c, "skip") and c.skip(config, rows):
            continue
        ids, secs, cpu_secs = time_batched(c, queries, config, 1 if is_exact else args.repeats)
        lat = time_single(
            c, queries, config, 5 if is_exact else args.latency_queries, budget_s=20.0
        )
        p50, p99 = common.percentiles_ms(lat)
        row = {
            "method": c.name,
            "config": config,
            "recall": rd.recall_at_k(ids, gt),
            "map10": rd.map_at_k(ids, ds.db_labels, ds.query_labels[:nq]),
            "qps": nq / secs,
            "qps_cpu": nq / max(cpu_secs, 1e-9),
            "queries": nq,
            "p50_ms": p50,
            "p99_ms": p99,
            "latency_n": len(lat),
            "build_s": build_s,
            "build_cpu_s": getattr(c, "build_cpu_s", float("nan")),
            "bytes_per_vector": bpv,
            "mflops": c.mflops(config),
        }
        if hasattr(c, "row_overrides"):
            row.update(c.row_overrides(config))
        if isinstance(c, ct.FaissHnsw):
            row["ndis_per_query"] = _hnsw_ndis(c, ds.queries[:100], config)
            config = dict(config, _ndis=row["ndis_per_query"])
        row["bytes_touched"] = c.bytes_touched(config)
        common.log(
            f"  {row['method'][:28]} {config}: recall@10={row['recall']:.3f} mAP@10={row['map10']:.3f} "
            f"QPS={row['qps']:,.0f} (cpu {row['qps_cpu']:,.0f}) p50={p50:.3f} ms p99={p99:.3f} ms"
        )
        rows.append(row)
    c.close()
    gc.collect()
    return rows


def _hnsw_ndis(c, queries: np.ndarray, config: dict) -> float:
    stats = c.faiss.cvar.hnsw_stats
    stats.reset()
    c.search(queries, config)
    return stats.ndis / len(queries)


def memory_bandwidth_gbs(size_mb: int = 512) -> float:
    """Single-thread streaming read bandwidth (sum of a large float32 array), GB/s."""
    a = np.ones(size_mb * (1 << 20) // 4, np.float32)
    a.sum()
    best = min(_timed(a.sum) for _ in range(3))
    return a.nbytes / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        report.render_section(args.results_dir)
        return 0
    started = time.time()
    args.cache.mkdir(parents=True, exist_ok=True)
    work = args.cache / "work"
    work.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args)
    ds.gt = rd.ground_truth(ds, args.cache)
    if args.prepare_only:
        common.log(f"prepared {ds.name} and its ground truth under {args.cache}")
        return 0
    n, d = ds.db.shape
    methods = args.methods.split(",")
    skipped = []
    if "hnsw" in methods and n > args.hnsw_max_n:
        methods.remove("hnsw")
        skipped.append(f"FAISS HNSW skipped: n={n:,} > --hnsw-max-n={args.hnsw_max_n:,}")
    rows: list[dict[str, Any]] = []
    for method in methods:
        for c in make_contenders(method, ds, args, work):
            try:
                rows.extend(run_contender(c, ds, args))
            except ImportError as e:
                skipped.append(f"{c.name} skipped: {e}")
                common.log(skipped[-1])
            # keep what was measured so far if a later contender dies (e.g. out of memory)
            common.save_json(work / "partial_rows.json", {"args": vars(args), "rows": rows})
    run = {
        "tag": args.tag or (f"{args.data}-{n}" if args.data == "synthetic" else args.data),
        "dataset": ds.name,
        "dataset_notes": ds.notes,
        "n": n,
        "d": d,
        "queries": int(len(ds.queries)),
        "threads": args.threads,
        "build_threads": args.build_threads or args.threads,
        "command": common.command_line(argv, "benchmarks.retrieval"),
        "date": common.utc_now(),
        "wall_s": round(time.time() - started, 1),
        "machine": common.machine() | {"read_bandwidth_gbs_1thread": memory_bandwidth_gbs()},
        "versions": common.versions("numpy", "faiss", "tensorflow", "keras", "mrl_keras"),
        "rows": rows,
        "skipped": skipped,
    }
    run["summary"] = report.summarize(run)
    run["summary_cpu"] = report.summarize(run, "qps_cpu")
    print(report.render_run(run))
    if not args.no_results:
        report.save_run(run, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
