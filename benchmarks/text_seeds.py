"""MRL vs FF text retrieval over seeds: mean and spread of recall@k per prefix dim.

Reads the `results.json` of several `python -m mrl_keras.training.text_models --seed S` runs
(one per seed, same data) and prints a markdown table of mean ± sample standard deviation.

    python benchmarks/text_seeds.py runs/text_seed0 runs/text_seed1 runs/text_seed2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys


def load(run_dirs: list[str]) -> list[dict]:
    runs = []
    for run in run_dirs:
        path = os.path.join(run, "results.json")
        if not os.path.isfile(path):
            raise ValueError(f"No results.json in {run!r}")
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def summarize(runs: list[dict]) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """`{mode: {dim: {k: (mean, std)}}}` over runs (std 0 for one run)."""
    if not runs:
        raise ValueError("Expected at least one run.")
    out: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for mode in runs[0]:
        out[mode] = {}
        for dim, by_k in runs[0][mode]["recall"].items():
            out[mode][dim] = {}
            for k in by_k:
                values = [run[mode]["recall"][dim][k] for run in runs]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                out[mode][dim][k] = (statistics.fmean(values), spread)
    return out


def table(summary: dict, ks: tuple[str, ...] = ("1", "10")) -> str:
    modes = list(summary)
    head = ["dim"] + [f"{mode} R@{k}" for mode in modes for k in ks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for dim in sorted(summary[modes[0]], key=int):
        cells = [dim]
        for mode in modes:
            for k in ks:
                mean, std = summary[mode][dim][k]
                cells.append(f"{mean:.3f} ± {std:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders holding results.json")
    args = p.parse_args(argv)
    try:
        runs = load(args.runs)
    except ValueError as e:
        print(f"text_seeds: {e}", file=sys.stderr)
        return 2
    print(f"{len(runs)} seeds")
    print(table(summarize(runs), ("1", "5", "10")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
