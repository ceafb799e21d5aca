"""Auto-tuned adaptive retrieval against peers tuned over grids, on data we did not design.

Datasets: real MRL embeddings (`--data cjk-corpus`: CJK glyph renders over every train face
with seeded augmentation, embedded by the CJK-1000 model, queries from held-out faces; see
`benchmarks/cjk_corpus.py`) and a generator family (`--data family`: `benchmarks/synthetic.py`
at every spectral decay `--alphas` x cluster noise `--noises`). Contenders (one search thread
each, CPU-time QPS, the same process): brute force; single-shot ScaNN at full d (AH 2 and 4
dims per block x leaves x reorder); FAISS HNSW at full d (efSearch swept); truncate-then-single-
shot (ScaNN and HNSW over the re-normalised `z[:m]`); FAISS IVF-PQ + IndexRefineFlat; and our AR
with its config chosen by `AdaptiveIndex.tune` (the auto-tuner) at recall 0.90/0.95/0.98 on
tuning queries disjoint from the benchmark queries. Reports, per dataset and target, each
family's best QPS, AR's ratio against each, AR's bytes touched per query and the physical limit
(bytes / single-thread read bandwidth).

Usage (from the repository root):

    python -m benchmarks.retrieval_peers --data cjk-corpus --n 1000000
    python -m benchmarks.retrieval_peers --data family --n 50000 --d 512
    python -m benchmarks.retrieval_peers --quick          # smoke run (CI)
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import (
    common,  # noqa: E402
    peers,  # noqa: E402
    synthetic,  # noqa: E402
)
from benchmarks import contenders as ct  # noqa: E402
from benchmarks import retrieval_data as rd  # noqa: E402

TARGETS = (0.90, 0.95, 0.98)
METHODS = ("exact", "ar", "scann", "trunc-scann", "ivfpq", "trunc-hnsw", "hnsw")
FAMILIES = {
    "exact": "brute force",
    "scann": "ScaNN full d",
    "hnsw": "HNSW full d",
    "trunc": "truncate + single-shot",
    "ivfpq": "IVF-PQ + refine",
    "ar": "AR (auto-tuned)",
}


def family_of(method: str) -> str:
    if method.startswith("exact"):
        return "exact"
    if method.startswith("truncate"):
        return "trunc"
    if method.startswith("ScaNN"):
        return "scann"
    if method.startswith("FAISS HNSW"):
        return "hnsw"
    if method.startswith("FAISS IVF"):
        return "ivfpq"
    return "ar"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.retrieval_peers", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--data", default="family", choices=("family", "cjk-corpus"))
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--d", type=int, default=512, help="family: dimension")
    p.add_argument("--classes", type=int, default=1000, help="family: classes")
    p.add_argument(
        "--alphas", default="0.6,1.2,2.0", help="family: spectral decays (slow,current,fast)"
    )
    p.add_argument("--noises", default="0.8,1.6", help="family: within-class noise levels")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--tune-queries", type=int, default=600)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--trunc-dims", default="64,128,256", help="m of the truncate peers")
    p.add_argument(
        "--ar-dims",
        default="16,32",
        help="D_s of the AR indexes, one index each; 32+128: one index (one store) with a "
        "shortlist at each D_s, the tuner choosing among them",
    )
    p.add_argument("--ar-store", default="bfloat16", choices=("float32", "bfloat16", "int8"))
    p.add_argument(
        "--ar-leaves",
        default="2",
        help="leaf counts of AR's shortlist trees, as multiples of sqrt(N) (one index each; "
        "default 2, the index default since 2026-12-03; runs saved before used 1)",
    )
    p.add_argument(
        "--scann-leaves",
        default="0.5,1,2",
        help="leaf counts of the single-shot ScaNN peer, as multiples of sqrt(N) (one build each)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--build-threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--latency-queries", type=int, default=20)
    p.add_argument("--exact-queries", type=int, default=100)
    p.add_argument(
        "--hnsw-max-n", type=int, default=1_000_000, help="skip full-d HNSW above this N"
    )
    p.add_argument("--cache", type=Path, default=common.DEFAULT_CACHE)
    p.add_argument(
        "--cjk-model",
        type=Path,
        default=None,
        help="cjk-corpus: the embedding model (default: benchmarks.cjk_corpus.DEFAULT_MODEL)",
    )
    p.add_argument("--results-dir", type=Path, default=None)
    p.add_argument("--no-results", action="store_true")
    p.add_argument("--quick", action="store_true", help="smoke: n=1500, d=32, one family member")
    p.add_argument(
        "--finalize-partial",
        type=Path,
        nargs="+",
        default=None,
        metavar="PARTIAL_ROWS_JSON",
        help="save a run from a killed run's partial_rows.json (its contenders so far) and "
        "render; several files (one dataset, e.g. the rest of the contenders measured by a "
        "second process after the first was killed) are merged into one run",
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help="only rewrite the RESULTS.md section from results/peers_*.json and peers_notes.md",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.d, args.classes, args.queries, args.tune_queries = 1500, 32, 20, 40, 60
        args.alphas, args.noises, args.trunc_dims, args.ar_dims = "1.2", "0.8", "16", "8"
        args.scann_leaves = args.ar_leaves = "1"  # 1: no tree below 16,000 points, as the index
        args.repeats, args.latency_queries, args.exact_queries = 1, 2, 20
        args.no_results = args.results_dir is None
    try:
        ar_dims = [int(m) for spec in args.ar_dims.split(",") for m in spec.split("+")]
    except ValueError:
        p.error(
            f"--ar-dims: expected integers like 32 or 32+128, comma-separated. Received: {args.ar_dims!r}"
        )
    args.scann_leaf_factors = _leaf_factors(p, "--scann-leaves", args.scann_leaves, "0.5,1,2")
    args.ar_leaf_factors = _leaf_factors(p, "--ar-leaves", args.ar_leaves, "1,2")
    if min(ar_dims) < 1:
        p.error(f"--ar-dims must be >= 1. Received: {args.ar_dims!r}")
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        p.error(f"unknown --methods {sorted(unknown)}; expected a subset of {METHODS}")
    if min(args.n, args.d, args.queries, args.tune_queries) < 1:
        p.error("--n, --d, --queries and --tune-queries must be >= 1")
    if args.results_dir is None:
        args.results_dir = common.BENCH_DIR
    return args


def _leaf_factors(p, flag: str, value: str, example: str) -> list[float]:
    """A comma-separated list of positive multiples of sqrt(N), or a usage error naming `flag`."""
    try:
        factors = [float(f) for f in value.split(",")]
    except ValueError:
        p.error(f"{flag}: expected numbers like {example}. Received: {value!r}")
    if min(factors) <= 0:
        p.error(f"{flag} must be > 0. Received: {value!r}")
    return factors


def datasets(args):
    """Yields `(Dataset, tune_queries)`."""
    if args.data == "cjk-corpus":
        from benchmarks import cjk_corpus

        total = args.queries + args.tune_queries
        model = args.cjk_model or cjk_corpus.DEFAULT_MODEL
        folder = cjk_corpus.build_corpus(
            args.n, total, args.cache, model, workers=os.cpu_count() or 1
        )
        db, labels, q, ql, status = cjk_corpus.load_corpus(args.cache, total, model)
        db = db[: args.n]
        labels = labels[: args.n]
        d = db.shape[1]
        ds = rd.Dataset(
            name=f"real MRL embeddings: CJK renders, d {d} ({len(db):,} x {d}, 1,000 classes)",
            db=db,
            db_labels=labels,
            queries=q[: args.queries],
            query_labels=ql[: args.queries],
            notes=(
                f"model {status['model']}; {status['rows']:,} renders over "
                f"{len(status['train_faces'])} train faces, queries from "
                f"{len(status['test_faces'])} held-out faces; render {status['render_s']:.0f} s, "
                f"embed {status['embed_s']:.0f} s (cached at {folder})"
            ),
        )
        yield ds, q[args.queries :]
        return
    alphas = [float(a) for a in args.alphas.split(",")]
    for noise in (float(x) for x in args.noises.split(",")):  # every decay at each noise level
        for alpha in alphas:
            kw = {"alpha": alpha, "noise": noise}
            db, labels = synthetic.generate(args.n, args.d, args.classes, **kw)
            q, ql = synthetic.generate(
                args.queries, args.d, args.classes, stream=synthetic.QUERY_STREAM, **kw
            )
            tq, _ = synthetic.generate(
                args.tune_queries, args.d, args.classes, stream=synthetic.QUERY_STREAM + 1, **kw
            )
            ds = rd.Dataset(
                name=f"family alpha={alpha:g} noise={noise:g} ({args.n:,} x {args.d}, {args.classes} classes)",
                db=db,
                db_labels=labels,
                queries=q,
                query_labels=ql,
                notes=f"benchmarks/synthetic.py alpha={alpha}, j0={synthetic.DEFAULT_J0}, noise={noise}, seed 0",
            )
            yield ds, tq


def make_contenders(method, ds, tune_q, args, work):
    n, d = ds.db.shape
    t, nl = args.threads, ct.default_num_leaves(n)
    trunc = [int(m) for m in args.trunc_dims.split(",") if 0 < int(m) < d]
    if method == "exact":
        return [ct.Exact(ds.db, t)]
    if method == "scann":  # AH dims per block x leaf count (x leaves searched x reorder)
        counts = sorted(  # most leaves first: the best config at 200k (a partial run has it)
            {max(1, min(n, round(nl * f))) for f in args.scann_leaf_factors}, reverse=True
        )
        return [peers.ScannFullAH(ds.db, t, c, work, b) for b in (2, 4) for c in counts]
    if method == "hnsw":
        return [ct.FaissHnsw(ds.db, t)] if n <= args.hnsw_max_n else []
    if method == "trunc-scann":
        return [peers.TruncateScann(ds.db, t, nl, work, m) for m in trunc]
    if method == "trunc-hnsw":
        return [peers.TruncateHnsw(ds.db, t, m) for m in trunc]
    if method == "ivfpq":  # the default PQ and, at large d, a finer one
        fine = peers.fine_pq_subquantizers(d)
        return [peers.IvfPqRefine(ds.db, t)] + ([peers.IvfPqRefine(ds.db, t, fine)] if fine else [])
    made = []
    for spec in args.ar_dims.split(","):  # "32": one index; "32+128": one index, two shortlists
        dims = [int(m) for m in spec.split("+") if 0 < int(m) < d]
        for factor in args.ar_leaf_factors if dims else ():
            made.append(
                peers.TunedAdaptive(
                    ds.db,
                    t,
                    dims[0],
                    work,
                    tune_q,
                    store_dtype=args.ar_store,
                    extra_shortlists=dims[1:],
                    leaves_factor=factor,
                )
            )
    return made


def summarize(rows, bandwidth_gbs):
    """Per target: best CPU-time QPS of each family, AR's ratios, bytes and physical limit."""
    out = []
    for target in TARGETS:
        best: dict[str, dict] = {}
        for r in rows:
            f = family_of(r["method"])
            if r["recall"] >= target and (f not in best or r["qps_cpu"] > best[f]["qps_cpu"]):
                best[f] = r
        ar = best.get("ar")
        entry = {"target": target, "best": best}
        if ar is not None:
            limit_qps = bandwidth_gbs * 1e9 / max(ar["bytes_touched"], 1.0)
            entry["ar_limit_qps"] = limit_qps
            entry["ratios"] = {
                f: ar["qps_cpu"] / r["qps_cpu"] for f, r in best.items() if f != "ar"
            }
        out.append(entry)
    return out


def bandwidth_cpu_gbs(size_mb: int = 512) -> float:
    """Single-thread streaming read bandwidth by CPU time (a loaded machine's wall time would
    count the time other processes ran), GB/s."""
    a = np.ones(size_mb * (1 << 20) // 4, np.float32)
    a.sum()
    best = float("inf")
    for _ in range(3):
        c0 = time.process_time()
        a.sum()
        best = min(best, time.process_time() - c0)
    return a.nbytes / max(best, 1e-9) / 1e9


def pareto_plot(run, path: Path) -> None:
    """recall@10 vs CPU-time QPS of every config measured, one colour per family, each family's
    Pareto front joined (AR: the tuner's choices for the targets, on the benchmark queries)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for f, label in FAMILIES.items():
        pts = sorted(
            ((r["recall"], r["qps_cpu"]) for r in run["rows"] if family_of(r["method"]) == f),
            key=lambda p: -p[1],
        )
        if not pts:
            continue
        front, best = [], -1.0
        for rec, qps in pts:  # the front: each point beats every faster one on recall
            if rec > best:
                front.append((rec, qps))
                best = rec
        (line,) = ax.plot([p[0] for p in front], [p[1] for p in front], marker="o", label=label)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.3, color=line.get_color())
    for target in TARGETS:
        ax.axvline(target, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 vs exact full-d top-10")
    ax.set_ylabel("queries / CPU-second (one thread)")
    ax.set_title(run["dataset"], fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def render(run) -> str:
    lines = [
        f"### {run['dataset']}",
        "",
        run["notes"],
        "",
        f"- Command: `{run['command']}`",
        f"- Date: {run['date']}; wall {run['wall_s']:.0f} s; single-thread read bandwidth "
        f"{run['bandwidth_gbs']:.1f} GB/s"
        + (
            f" (by CPU time on {run['bandwidth_measured_at']}, after the run: the run measured it "
            "by wall time on a loaded machine)"
            if run.get("bandwidth_measured_at")
            else ""
        )
        + f"; {run['machine']['cpu']}, load at start "
        f"{run['machine']['load_avg_1m_at_start']}",
        "",
    ]
    header = (
        ["recall@10 >="]
        + [FAMILIES[f] for f in FAMILIES]
        + ["AR bytes/query", "AR physical limit (QPS)", "limit / AR"]
    )
    table = []
    for e in run["summary"]:
        row = [f"{e['target']:.2f}"]
        ar = e["best"].get("ar")
        for f in FAMILIES:
            r = e["best"].get(f)
            if r is None:
                ran = any(family_of(x["method"]) == f for x in run["rows"])
                row.append("never" if ran else "not run")
            elif f == "ar" or ar is None:
                row.append(f"{r['qps_cpu']:,.0f} ({r['recall']:.3f})")
            else:
                row.append(
                    f"{r['qps_cpu']:,.0f} ({r['recall']:.3f}) -> AR {ar['qps_cpu'] / r['qps_cpu']:.1f}x"
                )
        if ar is not None:
            row += [
                f"{ar['bytes_touched'] / 1e3:,.0f} kB",
                f"{e['ar_limit_qps']:,.0f}",
                f"{e['ar_limit_qps'] / ar['qps_cpu']:.1f}x",
            ]
        else:
            row += ["-", "-", "-"]
        table.append(row)
    lines.append(common.md_table(header, table))
    lines.append("")
    lines.append(
        "Best configs (CPU-time QPS at the recall in brackets; `never`: no config of the "
        "grid reached it):"
    )
    for e in run["summary"]:  # in FAMILIES order, configs by key: a saved run renders the same
        for f in FAMILIES:
            if (r := e["best"].get(f)) is not None:
                config = dict(sorted(r["config"].items()))
                lines.append(f"- {e['target']:.2f} {FAMILIES[f]}: {r['method']} {config}")
    if run["skipped"]:
        lines.append("")
        lines += [f"- skipped: {s}" for s in run["skipped"]]
    if run.get("plot"):
        lines += ["", f"![recall@10 vs CPU-time QPS]({run['plot']})"]
    return "\n".join(lines)


def release_memory(when: str = "") -> float:
    """Collects garbage and hands the freed heap back to the OS (glibc `malloc_trim`); returns
    and logs the resident set in GB.

    A closed contender's index is freed, but glibc keeps the pages in its arenas: at 1M x 2048
    the process grew to ~14 GB between contenders (AR, then six ScaNN builds) and the OOM
    killer took it in the next 8 GB FAISS HNSW build (2026-12-04).
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    fields = {}
    try:
        with open("/proc/self/status") as f:
            fields = {
                k: int(v.split()[0]) / 2**20
                for k, v in (line.split(":", 1) for line in f if ":" in line)
                if k in ("VmRSS", "RssAnon", "RssFile")
            }
    except (OSError, ValueError):
        return 0.0
    rss = fields.get("VmRSS", 0.0)
    common.log(
        f"  resident {rss:.1f} GB (anonymous {fields.get('RssAnon', float('nan')):.1f}, "
        f"file-backed {fields.get('RssFile', float('nan')):.1f}, e.g. a memory-mapped corpus) "
        f"{when}".rstrip()
    )
    return rss


def run_dataset(ds, tune_q, args, argv, work):
    from benchmarks.retrieval import run_contender

    started = time.time()
    ds.gt = rd.ground_truth(ds, args.cache)
    rows: list[dict[str, Any]] = []
    skipped = []
    for method in args.methods.split(","):
        made = make_contenders(method, ds, tune_q, args, work)
        if method == "hnsw" and not made:
            skipped.append(
                f"FAISS HNSW at full d: n={ds.db.shape[0]:,} > --hnsw-max-n {args.hnsw_max_n:,}"
            )
        for c in made:
            c.build_threads = args.build_threads
            try:
                rows.extend(run_contender(c, ds, args))
            except ImportError as e:
                skipped.append(f"{c.name}: {e}")
            release_memory(f"after {c.name}")
            # what was measured so far survives a later contender's death (memory, time)
            common.save_json(
                work / "partial_rows.json",
                {
                    "dataset": ds.name,
                    "notes": ds.notes,
                    "n": int(ds.db.shape[0]),
                    "d": int(ds.db.shape[1]),
                    "rows": rows,
                    "skipped": skipped,
                    "command": common.command_line(argv, "benchmarks.retrieval_peers"),
                    "started": started,
                },
            )
    run = {
        "dataset": ds.name,
        "notes": ds.notes,
        "n": int(ds.db.shape[0]),
        "d": int(ds.db.shape[1]),
        "queries": int(len(ds.queries)),
        "tune_queries": int(len(tune_q)),
        "command": common.command_line(argv, "benchmarks.retrieval_peers"),
        "date": common.utc_now(),
        "wall_s": round(time.time() - started, 1),
        "machine": common.machine(),
        "bandwidth_gbs": bandwidth_cpu_gbs(),
        "bandwidth_by_cpu": True,
        "rows": rows,
        "skipped": skipped,
    }
    run["summary"] = summarize(rows, run["bandwidth_gbs"])
    return run


def finalize_partial(paths, results_dir: Path) -> None:
    """A run from the rows killed runs saved (`partial_rows.json`), marked as partial.

    Several files must be of one dataset (name, n and d): their rows are merged, and the run's
    notes name the contenders each process measured.
    """
    paths = [Path(p) for p in paths]
    parts = [json.loads(p.read_text()) for p in paths]
    keys = {(p["dataset"], p.get("n"), p.get("d")) for p in parts}
    if len(keys) != 1:
        raise SystemExit(
            f"error: --finalize-partial files are of different datasets: {sorted(map(str, keys))}"
        )
    part = parts[0]
    rows = [r for p in parts for r in p["rows"]]
    methods = sorted({r["method"] for r in rows})
    if len(parts) == 1:
        note = (
            " **Partial run: stopped at the deadline after "
            f"{len(methods)} contenders ({', '.join(methods)}); the others were not measured.**"
        )
    else:
        each = "; ".join(
            f"process {i + 1} ({time.strftime('%H:%M', time.gmtime(p.get('started', 0)))} UTC): "
            + ", ".join(sorted({r["method"] for r in p["rows"]}))
            for i, p in enumerate(parts)
        )
        note = (
            f" **Measured by {len(parts)} processes one after another on the same machine "
            f"(ratios across them compare contenders minutes apart, not in one process): {each}."
            + " Contenders not listed were not measured.**"
        )
    run = {
        "dataset": part["dataset"],
        "notes": part.get("notes", "") + note,
        "n": part.get("n", 0),
        "d": part.get("d", 0),
        "command": " ; ".join(p.get("command", "?") for p in parts),
        "date": common.utc_now(),
        # until each file was last written (after its last contender), summed over processes
        "wall_s": round(
            sum(
                path.stat().st_mtime - p.get("started", path.stat().st_mtime)
                for path, p in zip(paths, parts, strict=True)
            ),
            1,
        ),
        "machine": common.machine(),
        "bandwidth_gbs": bandwidth_cpu_gbs(),
        "bandwidth_by_cpu": True,
        "rows": rows,
        "skipped": [x for p in parts for x in p.get("skipped", [])],
    }
    run["summary"] = summarize(run["rows"], run["bandwidth_gbs"])
    slug = "".join(ch if ch.isalnum() else "-" for ch in run["dataset"].split("(")[0]).strip("-")
    common.save_json(results_dir / "results" / f"peers_{slug}_{run['n']}.json", run)
    _pareto_path(results_dir, slug, run["n"]).unlink(missing_ok=True)  # redrawn
    render_results(results_dir)


SECTION = "Adaptive retrieval vs tuned peers on data we did not design (issue 16)"


def _pareto_path(results_dir: Path, slug: str, n: int) -> Path:
    """The Pareto plot of `results/peers_<slug>_<n>.json` (drawn by `render_results`)."""
    return results_dir / f"peers_pareto_{slug}_{n}.png"


def render_results(results_dir: Path) -> str:
    """The RESULTS.md section: the closing note (`results/peers_notes.md`), then each saved
    run (real embeddings first), written into `results_dir/RESULTS.md`."""
    paths = sorted((results_dir / "results").glob("peers_*.json"))
    runs = [json.loads(p.read_text()) for p in paths]
    bandwidth = None
    for path, r in zip(paths, runs, strict=True):
        # Runs saved before the bandwidth was measured by CPU time: measure it once, here, and
        # save it with its date so that every later render prints the same numbers.
        if not r.get("bandwidth_by_cpu"):
            bandwidth = bandwidth or bandwidth_cpu_gbs()
            r.update(
                bandwidth_gbs=bandwidth,
                bandwidth_by_cpu=True,
                bandwidth_measured_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            )
            r["summary"] = summarize(r["rows"], bandwidth)
            common.save_json(path, r)
        png = results_dir / f"{path.stem.replace('peers_', 'peers_pareto_', 1)}.png"
        if not png.exists():  # drawn from the saved rows: the same plot on every render
            try:
                pareto_plot(r, png)
            except ImportError:  # matplotlib is the `plots` extra
                continue
        r["plot"] = png.name
    runs.sort(key=lambda r: (not r["dataset"].startswith("real"), -r["n"], r["dataset"]))
    notes = results_dir / "results" / "peers_notes.md"
    body = [notes.read_text().strip()] if notes.exists() else []
    body += [render(r) for r in runs]
    text = "\n\n".join(body)
    common.write_section(SECTION, text, results_dir / "RESULTS.md")
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        render_results(args.results_dir)
        return 0
    if args.finalize_partial is not None:
        finalize_partial(args.finalize_partial, args.results_dir)
        return 0
    work = args.cache / f"work_peers_{args.data}_{args.n}"  # one per run: runs may overlap
    work.mkdir(parents=True, exist_ok=True)
    texts = []
    for ds, tune_q in datasets(args):
        common.log(f"== {ds.name}")
        run = run_dataset(ds, tune_q, args, argv, work)
        text = render(run)
        print(text, flush=True)
        texts.append(text)
        if not args.no_results:
            slug = "".join(ch if ch.isalnum() else "-" for ch in ds.name.split("(")[0]).strip("-")
            common.save_json(args.results_dir / "results" / f"peers_{slug}_{run['n']}.json", run)
            _pareto_path(args.results_dir, slug, run["n"]).unlink(missing_ok=True)  # redrawn
            render_results(args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
