"""The data of each figure, taken from a demo's `report.json` (shared by tables and plots)."""

from __future__ import annotations

from typing import Any

METHOD_ORDER = ("MRL", "MRL-E", "FF", "SVD", "Random")
HEAD_METHODS = ("MRL", "MRL-E", "FF")

FIGURES = {
    "fig2": ("fig2_top1.png", "Figure 2: top-1 vs representation size"),
    "fig3": ("fig3_1nn.png", "Figure 3: 1-NN top-1 vs representation size"),
    "fig5": ("fig5_interpolation.png", "Figure 5: every power of two and midpoint"),
    "fig6": ("fig6_cascade.png", "Figure 6: adaptive classification (MRL-AC)"),
    "fig7": ("fig7_map10.png", "Figure 7: mAP@10 vs representation size"),
    "fig8": ("fig8_retrieval.png", "Figure 8: mAP@10 vs MFLOPs per query"),
}


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return (results.get("evaluation") or {}).get("rows", [])


def methods(results: dict[str, Any]) -> list[str]:
    names = list(dict.fromkeys(r["method"] for r in rows(results)))
    return sorted(names, key=lambda n: (METHOD_ORDER.index(n) if n in METHOD_ORDER else 99, n))


def series(
    results: dict[str, Any], metric: str, nesting_only: bool = True
) -> dict[str, list[tuple[int, float]]]:
    """`{method: [(dim, value), ...]}` of one evaluation metric, dims ascending."""
    nesting = set(results.get("nesting_dims") or [])
    out: dict[str, list[tuple[int, float]]] = {}
    for method in methods(results):
        points = sorted(
            (r["dim"], r[metric])
            for r in rows(results)
            if r["method"] == method
            and r.get(metric) is not None
            and (not nesting_only or r["dim"] in nesting)
        )
        if points:
            out[method] = points
    return out


def top1_series(results: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """Figure 2: the models' own linear heads (MRL, MRL-E, FF), linear probes otherwise."""
    heads = series(results, "head_top1")
    probes = series(results, "linear_probe_top1")
    out = {m: heads[m] for m in methods(results) if m in HEAD_METHODS and m in heads}
    for method in methods(results):
        if method not in out and method in probes:
            out[method] = probes[method]
    return out


def interpolation_series(results: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """Figure 5: MRL at every evaluated dim (1-NN and linear probe), FF 1-NN at its widths."""
    out = {}
    for metric, label in (("1nn_top1", "1-NN"), ("linear_probe_top1", "linear probe")):
        mrl = series(results, metric, nesting_only=False).get("MRL")
        if mrl:
            out[f"MRL {label}"] = mrl
    ff = series(results, "1nn_top1").get("FF")
    if ff:
        out["FF 1-NN"] = ff
    return out


def cascade_points(results: dict[str, Any]) -> dict[str, Any]:
    """Figure 6: the MRL-AC curve on test, the calibrated point, fixed heads of MRL and FF."""
    cascade = results.get("cascade") or {}
    out: dict[str, Any] = {
        "curve": [(r["test_expected_dim"], r["test_accuracy"]) for r in cascade.get("curve", [])],
        "fixed_mrl": [(r["dim"], r["accuracy"]) for r in cascade.get("fixed", [])],
        "calibrated": None,
        "ff": series(results, "head_top1").get("FF", []),
    }
    test = cascade.get("test")
    if test:
        out["calibrated"] = (test["expected_dim"], test["accuracy"])
    return out


def retrieval_points(results: dict[str, Any]) -> dict[str, Any]:
    """Figure 8: (MFLOPs/query, mAP@10) of single-shot at each size, AR, funnel (+ FF)."""
    r = results.get("retrieval") or {}
    out = {
        "single_shot": [
            (x["mflops_per_query"], x["mAP@10"], x["dim"])
            for x in r.get("single_shot", [])
            if x["kind"] == "exact"
        ],
        "ar": [
            (x["mflops_per_query"], x["mAP@10"], f"{x['shortlist_dim']}->{x['rerank_dim']}")
            for x in r.get("ar", [])
        ],
        "funnel": [
            (x["mflops_per_query"], x["mAP@10"], f"funnel from {x['shortlist_dim']}")
            for x in r.get("funnel", [])
        ],
        "ff": [],
    }
    n = r.get("database")
    ff_rows = [x for x in rows(results) if x["method"] == "FF" and "mAP@10" in x]
    ev = results.get("evaluation") or {}
    if n and ff_rows and ev.get("num_test") == r.get("queries"):
        out["ff"] = sorted((x["dim"] * n / 1e6, x["mAP@10"], x["dim"]) for x in ff_rows)
    return out
