"""Evaluation outputs: JSON, markdown tables and PNG plots (accuracy vs dims on a log axis,
one line per method, like the paper's Figures 2, 3 and 7)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

METHOD_ORDER = ("MRL", "MRL-E", "FF", "SVD", "Random")


def _methods(rows: list[dict[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(r["method"] for r in rows))
    return sorted(names, key=lambda n: (METHOD_ORDER.index(n) if n in METHOD_ORDER else 99, n))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.2f}"
    return str(value)


def pivot_table(result: dict[str, Any], metric: str, rows: list | None = None) -> str:
    """A markdown table: one row per dim, one column per method, values of `metric` in %."""
    rows = result["rows"] if rows is None else rows
    methods = _methods(rows)
    dims = sorted({r["dim"] for r in rows})
    cell = {(r["method"], r["dim"]): r.get(metric) for r in rows}
    lines = ["| dim | " + " | ".join(methods) + " |", "|---:|" + "---:|" * len(methods)]
    for m in dims:
        lines.append(f"| {m} | " + " | ".join(_fmt(cell.get((n, m))) for n in methods) + " |")
    return "\n".join(lines)


def full_table(result: dict[str, Any]) -> str:
    """A markdown table with every metric of every (method, dim)."""
    ks = result.get("ks", [10, 25, 50, 100])
    cols = (
        ["head_top1", "linear_probe_top1", "1nn_top1"]
        + [f"mAP@{k}" for k in ks]
        + [f"P@{k}" for k in ks]
    )
    names = (
        ["head top-1", "LP top-1", "1-NN top-1"] + [f"mAP@{k}" for k in ks] + [f"P@{k}" for k in ks]
    )
    lines = [
        "| method | dim | " + " | ".join(names) + " | FLOPs/query |",
        "|---|---:|" + "---:|" * (len(cols) + 1),
    ]
    order = {n: i for i, n in enumerate(_methods(result["rows"]))}
    for r in sorted(result["rows"], key=lambda r: (order[r["method"]], r["dim"])):
        values = " | ".join(_fmt(r.get(c)) for c in cols)
        lines.append(f"| {r['method']} | {r['dim']} | {values} | {r['flops_per_query']:.2e} |")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    head = (
        f"Dataset `{result['dataset']}`: database {result['num_train']} train images, "
        f"{result['num_test']} test queries, {result['num_classes']} classes. Values in %."
    )
    parts = [
        head,
        "",
        "1-NN top-1 (cosine on re-normalised prefixes):",
        "",
        pivot_table(result, "1nn_top1"),
    ]
    if any("linear_probe_top1" in r for r in result["rows"]):
        parts += ["", "Linear probe top-1:", "", pivot_table(result, "linear_probe_top1")]
    for key, label, metrics in (
        ("robustness", "corruption", ("1nn_top1", "head_top1")),
        ("few_shot", "shots", ("1nn_top1",)),
    ):
        for group in _groups(result, key, label):
            for metric in metrics:
                subset = [r for r in result[key] if r[label] == group and metric in r]
                if subset:
                    title = {"1nn_top1": "1-NN top-1", "head_top1": "head top-1"}[metric]
                    what = (
                        f"queries corrupted by `{group}`"
                        if key == "robustness"
                        else f"{group}-shot on novel classes"
                    )
                    parts += ["", f"{title}, {what}:", "", pivot_table(result, metric, subset)]
    parts += ["", "All metrics:", "", full_table(result)]
    return "\n".join(parts) + "\n"


def _groups(result: dict[str, Any], key: str, label: str) -> list[Any]:
    return list(dict.fromkeys(r[label] for r in result.get(key) or []))


def plot(
    result: dict[str, Any], metric: str, path: str, title: str, rows: list | None = None
) -> None:
    from mrl_keras.optional import require

    require("matplotlib", "mrl evaluate's PNG plots").use("Agg")
    plt = require("matplotlib.pyplot", "mrl evaluate's PNG plots")

    rows = result["rows"] if rows is None else rows
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for method in _methods(rows):
        points = sorted(
            (r["dim"], r[metric])
            for r in rows
            if r["method"] == method and r.get(metric) is not None
        )
        if points:
            ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("representation size")
    ax.set_ylabel(f"{title} (%)")
    ax.set_title(f"{result['dataset']}: {title}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(result: dict[str, Any], out: str) -> None:
    """Writes `evaluation.json`, `evaluation.md` and `plot_{1nn,linear_probe,map10}.png`."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "evaluation.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(out, "evaluation.md"), "w") as f:
        f.write(markdown(result))
    from mrl_keras.optional import available

    if not available("matplotlib"):  # the tables are written; the figures need the extra
        print(
            "mrl evaluate: PNG plots skipped: matplotlib is not installed "
            "(pip install 'mrl-keras[plots]')",
            file=sys.stderr,
        )
        return
    plot(result, "1nn_top1", os.path.join(out, "plot_1nn.png"), "1-NN top-1")
    if any("linear_probe_top1" in r for r in result["rows"]):
        plot(
            result,
            "linear_probe_top1",
            os.path.join(out, "plot_linear_probe.png"),
            "linear probe top-1",
        )
    if any("mAP@10" in r for r in result["rows"]):
        plot(result, "mAP@10", os.path.join(out, "plot_map10.png"), "mAP@10")
    for group in _groups(result, "robustness", "corruption"):
        subset = [r for r in result["robustness"] if r["corruption"] == group]
        path = os.path.join(out, f"plot_robustness_{group}.png")
        plot(result, "1nn_top1", path, f"1-NN top-1, {group} queries", subset)
    for group in _groups(result, "few_shot", "shots"):
        subset = [r for r in result["few_shot"] if r["shots"] == group]
        path = os.path.join(out, f"plot_few_shot_{group}.png")
        plot(result, "1nn_top1", path, f"{group}-shot 1-NN top-1, novel classes", subset)
