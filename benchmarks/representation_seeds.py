"""Representation quality over seeds: reads the `evaluation.json` of one `mrl evaluate` run per
seed and prints mean ± standard deviation (over seeds) of every metric per method and dim, the
MRL - FF gap per dim, and the robustness and few-shot tables when present.

    python -m benchmarks.representation_seeds runs/cjk1000/s0/eval runs/cjk1000/s1/eval \
        runs/cjk1000/s2/eval [--out benchmarks/results/representation_cjk1000.md] \
        [--plots docs/img --plot-prefix seeds_cjk1000]

`--plots DIR` also draws mean ± standard deviation (error bars over seeds) of 1-NN top-1 per dim:
one plot for the clean test set, one per corruption and one per few-shot setting.

Quality, not speed. A number from one seed is an anecdote: every cell here is a mean over the
runs given (the standard deviation uses n - 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict
from typing import Any

METHODS = ("MRL", "MRL-E", "FF", "SVD", "Random")
METRICS = (("head_top1", "head top-1"), ("linear_probe_top1", "linear probe top-1"),
           ("1nn_top1", "1-NN top-1"), ("mAP@10", "mAP@10"))  # fmt: skip


def _load(path: str) -> dict[str, Any]:
    file = os.path.join(path, "evaluation.json") if os.path.isdir(path) else path
    with open(file) as f:
        return json.load(f)


def _collect(results: list[dict[str, Any]], key: str, group: str | None) -> dict:
    """{(group value, method, dim): {metric: [value per seed]}}."""
    cells: dict = defaultdict(lambda: defaultdict(list))
    for result in results:
        for row in result.get(key) or []:
            g = row.get(group) if group else None
            for metric, value in row.items():
                if isinstance(value, float):
                    cells[(g, row["method"], row["dim"])][metric].append(value)
    return cells


def _fmt(values: list[float] | None, n: int) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    text = f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"
    return text if len(values) == n else text + f" (n={len(values)})"


def _methods(cells: dict) -> list[str]:
    found = {m for _, m, _ in cells}
    return [m for m in METHODS if m in found] + sorted(found - set(METHODS))


def pivot(cells: dict, metric: str, n: int, group: Any = None) -> str:
    methods = [m for m in _methods(cells) if any(
        metric in cells[(g, m, d)] for g, mm, d in cells if mm == m and g == group)]  # fmt: skip
    if not methods:
        return ""
    dims = sorted({d for g, _, d in cells if g == group})
    lines = ["| dim | " + " | ".join(methods) + " |", "|---:|" + "---:|" * len(methods)]
    for d in dims:
        row = [_fmt(cells.get((group, m, d), {}).get(metric), n) for m in methods]
        lines.append(f"| {d} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def gaps(cells: dict, metric: str, base: str, other: str = "FF") -> str:
    """Per dim: mean over seeds of (base - other), with the seed-wise min and max."""
    dims = sorted({d for g, m, d in cells if g is None and m == base})
    lines = [f"| dim | {base} - {other} (points, mean) | min over seeds | max over seeds |",
             "|---:|---:|---:|---:|"]  # fmt: skip
    for d in dims:
        a = cells.get((None, base, d), {}).get(metric)
        b = cells.get((None, other, d), {}).get(metric)
        if not a or not b or len(a) != len(b):
            continue
        diff = [100 * (x - y) for x, y in zip(a, b, strict=True)]
        lines.append(
            f"| {d} | {statistics.mean(diff):+.2f} | {min(diff):+.2f} | {max(diff):+.2f} |"
        )
    return "\n".join(lines)


def report(paths: list[str]) -> tuple[str, dict[str, Any]]:
    results = [_load(p) for p in paths]
    n = len(results)
    first = results[0]
    out = [
        f"Dataset `{first['dataset']}`: {first['num_classes']} classes, database "
        f"{first['num_train']} train images, {first['num_test']} test queries; {n} seeds "
        f"({', '.join(paths)}). Mean ± standard deviation over seeds, in %.",
    ]
    main = _collect(results, "rows", None)
    summary: dict[str, Any] = {"paths": paths, "tables": {}}
    for metric, title in METRICS:
        table = pivot(main, metric, n)
        if table:
            out += ["", f"{title}:", "", table]
            summary["tables"][metric] = table
    for base in ("MRL", "MRL-E"):
        if any(m == base for _, m, _ in main):
            out += ["", f"1-NN top-1, {base} - FF per dim:", "", gaps(main, "1nn_top1", base)]
    if any(m == "MRL-E" for _, m, _ in main):
        out += ["", "1-NN top-1, MRL-E - MRL per dim:", "", gaps(main, "1nn_top1", "MRL-E", "MRL")]
    robust = _collect(results, "robustness", "corruption")
    for group in dict.fromkeys(g for g, _, _ in robust):
        for metric, title in (("1nn_top1", "1-NN top-1"), ("head_top1", "head top-1")):
            table = pivot(robust, metric, n, group)
            if table:
                out += ["", f"{title}, test queries corrupted by `{group}`:", "", table]
    shots = _collect(results, "few_shot", "shots")
    for group in sorted({g for g, _, _ in shots}):
        table = pivot(shots, "1nn_top1", n, group)
        out += ["", f"1-NN top-1, {group}-shot on novel classes:", "", table]
    return "\n".join(out) + "\n", summary


def _series(cells: dict, metric: str, group: Any) -> dict[str, list[tuple[int, float, float]]]:
    """{method: [(dim, mean, std), ...]} over the seeds, dims ascending."""
    out: dict[str, list[tuple[int, float, float]]] = {}
    for method in _methods(cells):
        points = []
        for g, m, d in sorted(cells, key=lambda key: key[2]):
            values = cells[(g, m, d)].get(metric)
            if g == group and m == method and values:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                points.append((d, 100 * statistics.mean(values), 100 * std))
        if points:
            out[method] = points
    return out


def write_plots(paths: list[str], directory: str, prefix: str) -> list[str]:
    """Error-bar plots (mean ± std over seeds) of 1-NN top-1 per dim; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [_load(p) for p in paths]
    dataset = results[0]["dataset"]
    plots = [("clean", _collect(results, "rows", None), None, "1-NN top-1, clean test set")]
    robust = _collect(results, "robustness", "corruption")
    for group in dict.fromkeys(g for g, _, _ in robust):
        if group != "clean":
            plots.append((f"robustness_{group}", robust, group, f"1-NN top-1, `{group}` queries"))
    shots = _collect(results, "few_shot", "shots")
    for group in sorted({g for g, _, _ in shots}):
        plots.append((f"few_shot_{group}", shots, group, f"{group}-shot 1-NN, novel classes"))
    os.makedirs(directory, exist_ok=True)
    files = []
    for name, cells, group, title in plots:
        series = _series(cells, "1nn_top1", group)
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
        for method, points in series.items():
            ax.errorbar([p[0] for p in points], [p[1] for p in points],
                        yerr=[p[2] for p in points], marker="o", capsize=3, label=method)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel("representation size")
        ax.set_ylabel("1-NN top-1 (%)")
        ax.set_title(f"{dataset}: {title} ({len(results)} seeds)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = os.path.join(directory, f"{prefix}_{name}.png")
        fig.savefig(path)
        plt.close(fig)
        files.append(path)
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.representation_seeds",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("evaluations", nargs="+", help="evaluation folders or evaluation.json files")
    p.add_argument("--out", help="write the markdown here")
    p.add_argument("--plots", metavar="DIR", help="also write mean ± std plots into DIR")
    p.add_argument("--plot-prefix", default="seeds", help="file name prefix of the plots")
    args = p.parse_args(argv)
    try:
        text, _ = report(args.evaluations)
    except (OSError, ValueError, KeyError) as e:
        print(f"{p.prog}: cannot read the evaluations ({e})", file=sys.stderr)
        return 2
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.plots:
        for path in write_plots(args.evaluations, args.plots, args.plot_prefix):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
