"""PNG plots of the demo report, one per figure of the paper (drawn from `report.json`)."""

from __future__ import annotations

import os
from typing import Any

from mrl_keras.demo import figures as F

STYLE = {
    "MRL": {"color": "tab:blue", "marker": "o"},
    "MRL-E": {"color": "tab:orange", "marker": "s"},
    "FF": {"color": "tab:green", "marker": "^"},
    "SVD": {"color": "tab:red", "marker": "v"},
    "Random": {"color": "tab:purple", "marker": "D"},
}


def _pyplot():
    from mrl_keras.optional import require

    require("matplotlib", "mrl demo's figures").use("Agg")
    return require("matplotlib.pyplot", "mrl demo's figures")


def _size_plot(results, data, ylabel, title, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for name, points in data.items():
        style = STYLE.get(name.split(" ")[0], {})
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], label=name, **style)
    _finish(plt, fig, ax, path, "representation size", ylabel, f"{results['dataset']}: {title}")


def _finish(plt, fig, ax, path, xlabel, ylabel, title, log_base=2, legend_fontsize=None):
    """Log-scale x axis, labels, title, grid and legend, then the PNG (no timestamp metadata)."""
    if log_base == 10:
        ax.set_xscale("log")
    else:
        ax.set_xscale("log", base=log_base)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(**({} if legend_fontsize is None else {"fontsize": legend_fontsize}))
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _interpolation_plot(results, data, path):
    plt = _pyplot()
    nesting = set(results.get("nesting_dims") or [])
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    colors = {"1-NN": "tab:blue", "linear probe": "tab:cyan"}
    for name, points in data.items():
        if name.startswith("FF"):
            ax.plot([p[0] for p in points], [100 * p[1] for p in points], label=name,
                    **STYLE["FF"])  # fmt: skip
            continue
        color = colors.get(name.split(" ", 1)[1], "tab:blue")
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], color=color, label=name)
        inside = [p for p in points if p[0] in nesting]
        between = [p for p in points if p[0] not in nesting]
        ax.scatter([p[0] for p in inside], [100 * p[1] for p in inside], color=color, marker="o")
        ax.scatter([p[0] for p in between], [100 * p[1] for p in between], color=color,
                   marker="x", s=50)  # fmt: skip
    _finish(plt, fig, ax, path, "representation size (o: nesting dim, x: interpolated)",
            "top-1 (%)", f"{results['dataset']}: MRL at every power of two and midpoint")  # fmt: skip


def _cascade_plot(results, data, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    if data["curve"]:
        curve = sorted(data["curve"])
        ax.plot([p[0] for p in curve], [100 * p[1] for p in curve], marker=".",
                color="tab:blue", label="MRL-AC (cascade), test")  # fmt: skip
    if data["fixed_mrl"]:
        ax.plot([p[0] for p in data["fixed_mrl"]], [100 * p[1] for p in data["fixed_mrl"]],
                linestyle="--", marker="o", color="tab:cyan", label="MRL, one prefix")  # fmt: skip
    if data["ff"]:
        ax.plot([p[0] for p in data["ff"]], [100 * p[1] for p in data["ff"]], label="FF",
                **STYLE["FF"])  # fmt: skip
    if data["calibrated"]:
        x, y = data["calibrated"]
        ax.scatter([x], [100 * y], marker="*", s=180, color="tab:red", zorder=5,
                   label="exported cascade (calibrated)")  # fmt: skip
    _finish(plt, fig, ax, path, "expected representation size", "top-1 (%)",
            f"{results['dataset']}: adaptive classification")  # fmt: skip


def _retrieval_plot(results, data, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4.4), dpi=100)
    single = sorted(data["single_shot"])
    if single:
        ax.plot([p[0] for p in single], [100 * p[1] for p in single], marker="o",
                color="tab:orange", label="single-shot MRL (exact)")  # fmt: skip
        for x, y, dim in single:
            ax.annotate(str(dim), (x, 100 * y), fontsize=7, xytext=(3, -9),
                        textcoords="offset points")  # fmt: skip
    if data["ff"]:
        ax.plot([p[0] for p in data["ff"]], [100 * p[1] for p in data["ff"]], linestyle=":",
                label="single-shot FF (exact)", **STYLE["FF"])  # fmt: skip
    if data["ar"]:
        ax.scatter([p[0] for p in data["ar"]], [100 * p[1] for p in data["ar"]], marker="s",
                   color="tab:blue", label="AR (D_s->D_r, K shortlist)", zorder=4)  # fmt: skip
        for x, y, label in data["ar"]:
            ax.annotate(label, (x, 100 * y), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    if data["funnel"]:
        ax.scatter([p[0] for p in data["funnel"]], [100 * p[1] for p in data["funnel"]],
                   marker="*", s=140, color="tab:red", label="funnel", zorder=5)  # fmt: skip
    _finish(plt, fig, ax, path, "MFLOPs / query (exact-search cost model)", "mAP@10 (%)",
            f"{results['dataset']}: adaptive retrieval vs single-shot", log_base=10,
            legend_fontsize=8)  # fmt: skip


def write_plots(results: dict[str, Any], out: str) -> dict[str, str]:
    """Draws every figure that has data; returns `{figure key: file name}` of those drawn."""
    os.makedirs(out, exist_ok=True)
    written: dict[str, str] = {}

    cascade, retrieval = F.cascade_points(results), F.retrieval_points(results)
    # figure -> (its data, or None when the run has none; how to draw it)
    plots = {
        "fig2": (F.top1_series(results), lambda d, p: _size_plot(
            results, d, "top-1 (%)", "head / linear-probe top-1", p)),
        "fig3": (F.series(results, "1nn_top1"), lambda d, p: _size_plot(
            results, d, "1-NN top-1 (%)", "1-NN top-1", p)),
        "fig5": (F.interpolation_series(results), lambda d, p: _interpolation_plot(results, d, p)),
        "fig6": (cascade if cascade["curve"] or cascade["calibrated"] else None,
                 lambda d, p: _cascade_plot(results, d, p)),
        "fig7": (F.series(results, "mAP@10"), lambda d, p: _size_plot(
            results, d, "mAP@10 (%)", "mAP@10", p)),
        "fig8": (retrieval if retrieval["single_shot"] or retrieval["ar"] else None,
                 lambda d, p: _retrieval_plot(results, d, p)),
    }  # fmt: skip
    for key, (data, draw) in plots.items():
        if data:
            draw(data, os.path.join(out, F.FIGURES[key][0]))
            written[key] = F.FIGURES[key][0]
    return written
