"""The demo report: `report.json` (the measurements), `report.md`, a self-contained
`report.html` (PNG plots embedded as base64) and the plots, all rendered from the JSON alone, so
the same JSON always gives the same markdown.

Over 400 lines because it renders every section of the report; each section is a function
of its own over the JSON (`SECTIONS`), the plots and the claims live in plots.py and claims.py.
"""

from __future__ import annotations

import base64
import html
import json
import os
from typing import Any

from mrl_keras.demo import figures as F
from mrl_keras.demo.claims import check_claims

SECTIONS = (
    "Summary",
    "Where everything was written",
    "Per-prefix accuracy (MRL)",
    F.FIGURES["fig2"][1],
    F.FIGURES["fig3"][1],
    F.FIGURES["fig5"][1],
    F.FIGURES["fig6"][1],
    F.FIGURES["fig7"][1],
    F.FIGURES["fig8"][1],
    "HTTP service",
    "Comparison with the paper's claims",
    "Stages",
)
STAGE_ORDER = ("data", "train", "baselines", "evaluate", "calibrate", "export", "index",
               "retrieval", "service", "report")  # fmt: skip


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# -- console summary ------------------------------------------------------------------------


def summary_lines(results: dict[str, Any]) -> list[str]:
    """What a user wants to see at the end of `mrl demo`, from `report.json`."""
    lines = []
    data = results.get("data") or {}
    if data:
        lines.append(
            f"dataset {data['name']}: {data['num_train']} train (the index), "
            f"{data['num_holdout']} holdout (calibration), {data['num_test']} test, "
            f"{data['num_classes']} classes"
        )
    heads = dict(F.series(results, "head_top1").get("MRL", []))
    nn = dict(F.series(results, "1nn_top1").get("MRL", []))
    if heads or nn:
        n_eval = (results.get("evaluation") or {}).get("num_test")
        on = f"{n_eval} test queries" if n_eval else "test"
        lines.append(f"per-prefix accuracy of the MRL model (%, on {on}): dim head-top1 1-NN")
        for m in results.get("nesting_dims", []):
            lines.append(f"  {m:>5}  {_pct(heads.get(m)):>6}  {_pct(nn.get(m)):>6}")
    cascade = (results.get("cascade") or {}).get("test")
    if cascade:
        d = results["nesting_dims"][-1]
        drop = 100 * (cascade["accuracy"] - cascade["full_dim_accuracy"])
        cal = (results.get("cascade") or {}).get("calibration") or {}
        target = cal.get("target_accuracy")
        allowed = (
            100 * (target - cal["full_dim_accuracy"]) if target is not None else -100 * 0.005
        )
        verdict = "meets" if drop >= allowed - 1e-9 else "misses"
        lines.append(
            f"cascade (thresholds learnt on the holdout, baked into classify_cascade), on "
            f"{cascade.get('num_test', '?')} test queries: accuracy {_pct(cascade['accuracy'])}% "
            f"at expected dim {cascade['expected_dim']:.1f} ({d / cascade['expected_dim']:.1f}x "
            f"fewer than d={d}, whose accuracy is {_pct(cascade['full_dim_accuracy'])}%): "
            f"{drop:+.2f} points, {verdict} the calibration target ({allowed:+.2f} points)"
        )
    r = results.get("retrieval") or {}
    if r.get("single_shot"):
        d = r["d"]
        exact = {x["dim"]: x for x in r["single_shot"] if x["kind"] == "exact"}.get(d)
        scann = next((x for x in r["single_shot"] if x["kind"] == "scann"), None)
        d_s = r.get("demo_shortlist_dim")
        lines.append(
            f"retrieval over {r['database']} vectors, {r['queries']} queries (mAP@10 %, "
            "MFLOPs/query, ms/query):"
        )
        if exact:
            lines.append(
                f"  single-shot exact d={d}: {_pct(exact['mAP@10'])}, "
                f"{exact['mflops_per_query']:.2f}, {exact['ms_per_query']:.3f}"
            )
        if scann:
            lines.append(
                f"  single-shot ScaNN d={d}: {_pct(scann['mAP@10'])}, "
                f"{scann['mflops_per_query']:.2f}, {scann['ms_per_query']:.3f}"
            )
        for x in r.get("ar", []):
            if x["shortlist_dim"] == d_s and x["rerank_dim"] == d:
                lines.append(
                    f"  AR D_s={d_s} K={r['K']} D_r={d}: {_pct(x['mAP@10'])}, "
                    f"{x['mflops_per_query']:.2f}, {x['ms_per_query']:.3f}"
                )
        for x in r.get("funnel", []):
            if x["shortlist_dim"] == d_s:
                lines.append(
                    f"  funnel from D_s={d_s}: {_pct(x['mAP@10'])}, "
                    f"{x['mflops_per_query']:.2f}, {x['ms_per_query']:.3f}"
                )
    service = results.get("service") or {}
    if service.get("status") == "ok":
        lines.append(
            f"HTTP service at {service['url']}: {service['requests']} requests, search "
            f"mAP@10 {_pct(service['search_mAP@10'])}%, cascade accuracy "
            f"{_pct(service['classify_accuracy'])}% on {service['queries']} test images, answers "
            f"equal to direct calls for {_pct(min(service['agreement'].values()))}%; stopped"
        )
    elif service.get("status"):
        lines.append(f"HTTP service: {service['status']} ({service.get('reason', '')})")
    paths = results.get("paths") or {}
    for key in ("report", "saved_model", "index", "mrl_run"):
        if key in paths:
            lines.append(f"{key.replace('_', ' ')}: {paths[key]}")
    if results.get("status") == "failed":
        f = results.get("failure", {})
        lines.append(f"FAILED at stage {f.get('stage')}: {f.get('reason')}")
    else:
        lines.append(f"all stages ok in {results.get('total_seconds', 0):.0f}s")
    return lines


# -- blocks: one structure rendered to markdown and to HTML ---------------------------------


def _table(header: list[str], rows: list[list[str]]) -> tuple:
    return ("table", header, rows)


def _pivot(results, data: dict[str, list[tuple[int, float]]]) -> tuple:
    names = list(data)
    dims = sorted({m for points in data.values() for m, _ in points})
    cell = {(n, m): v for n, points in data.items() for m, v in points}
    return _table(
        ["dim", *names], [[str(m), *(_pct(cell.get((n, m))) for n in names)] for m in dims]
    )


def _baseline_source(results: dict[str, Any]) -> str:
    sources = {r["source"] for r in F.rows(results) if r.get("source")}
    return ", ".join(sorted(sources)) or "-"


def _figure(key: str, plots: dict[str, str], text: str, table: tuple | None) -> list[tuple]:
    file, title = F.FIGURES[key]
    blocks: list[tuple] = [("h", 2, title), ("p", text)]
    if table is not None and table[2]:
        blocks.append(table)
    if key in plots:
        blocks.append(("img", file, title))
    else:
        blocks.append(("p", "Not available: the run has no data for this figure."))
    return blocks


def build_blocks(results: dict[str, Any], plots: dict[str, str]) -> list[tuple]:
    """The report as a list of blocks: headings, paragraphs, tables, lists and images."""
    data = results.get("data") or {}
    ev = results.get("evaluation") or {}
    status = results.get("status", "unknown")
    blocks: list[tuple] = [
        ("h", 1, f"mrl demo report: {results['dataset']} ({results['mode']})"),
        ("p", f"Status: **{status}**. Command: `{results.get('command', '')}`. Wall time: "
              f"{results.get('total_seconds', 0):.0f}s on {results['machine']['cpus']} CPU(s)."),
        ("h", 2, "Summary"),
        ("list", summary_lines(results)),
        ("h", 2, "Where everything was written"),
        _table(["artifact", "path"],
               [[k, f"`{v}`"] for k, v in sorted((results.get("paths") or {}).items())]),
    ]  # fmt: skip

    mrl = [r for r in F.rows(results) if r["method"] == "MRL" and r["dim"] in
           set(results.get("nesting_dims") or [])]  # fmt: skip
    training = (results.get("training") or {}).get("MRL", {})
    blocks += [
        ("h", 2, "Per-prefix accuracy (MRL)"),
        ("p", f"One MRL model trained {training.get('epochs', '-')} epoch(s) "
              f"({training.get('train_seconds', '-')}s); every prefix z[:m] evaluated on "
              f"{ev.get('num_test', '-')} test queries against {ev.get('num_train', '-')} train "
              "images. Values in %."),
        _table(["dim", "head top-1", "linear probe", "1-NN", "mAP@10", "P@10"],
               [[str(r["dim"]), _pct(r.get("head_top1")), _pct(r.get("linear_probe_top1")),
                 _pct(r.get("1nn_top1")), _pct(r.get("mAP@10")), _pct(r.get("P@10"))]
                for r in sorted(mrl, key=lambda r: r["dim"])]),
    ]  # fmt: skip

    blocks += _figure(
        "fig2", plots,
        "Top-1 vs representation size: the models' own linear heads for MRL, MRL-E and FF (as "
        "in the paper), a linear probe on frozen features for SVD and random features of the "
        f"full-width embedding of {_baseline_source(results)}. Values in %.",
        _pivot(results, F.top1_series(results)),
    )  # fmt: skip
    blocks += _figure(
        "fig3", plots,
        "1-NN top-1 (database = train, queries = test, cosine on re-normalised prefixes). "
        "Values in %.",
        _pivot(results, F.series(results, "1nn_top1")),
    )  # fmt: skip
    blocks += _figure(
        "fig5", plots,
        "MRL optimises only the nesting dims, yet every power of two and midpoint between them "
        "is a working representation (interpolated dims are not trained explicitly). Values in %.",
        _pivot(results, F.interpolation_series(results)),
    )  # fmt: skip

    cascade = results.get("cascade") or {}
    cal = cascade.get("calibration") or {}
    test = cascade.get("test") or {}
    text = (
        f"Thresholds on the max softmax of each prefix's head, learnt on {cascade.get('holdout_size', '-')} "
        "holdout images (`calibrate_cascade`), applied to "
        f"{test.get('num_test', '-')} test images (the evaluation's queries). The exported "
        "`classify_cascade` uses the cheapest thresholds whose one-sided 95% lower "
        "confidence bound of accuracy (paired with the full-dim head on the same holdout "
        "images) reaches full-dim accuracy minus 0.5 points; the out-of-fold column is the same "
        "calibration fitted on 4/5 of the holdout and scored on the rest. The curve sweeps "
        "expected-dimension budgets."
    )
    blocks += [("h", 2, F.FIGURES["fig6"][1]), ("p", text)]
    if test:
        blocks.append(_table(
            ["", "holdout", "holdout, out-of-fold", "test"],
            [["accuracy (%)", _pct(cal.get("accuracy")), _pct(cal.get("cv_accuracy")),
              _pct(test.get("accuracy"))],
             ["95% lower bound of accuracy (%)", _pct(cal.get("accuracy_lower_bound")), "", ""],
             ["full-dim accuracy (%)", _pct(cal.get("full_dim_accuracy")),
              _pct(cal.get("cv_full_dim_accuracy")), _pct(test.get("full_dim_accuracy"))],
             ["expected dim", _num(cal.get("expected_dim"), 2),
              _num(cal.get("cv_expected_dim"), 2), _num(test.get("expected_dim"), 2)],
             ["thresholds", ", ".join(f"{t:.3f}" for t in cal.get("thresholds", [])), "", ""]],
        ))  # fmt: skip
    if cascade.get("curve"):
        blocks.append(_table(
            ["budget", "holdout exp. dim", "holdout acc.", "test exp. dim", "test acc."],
            [[_num(r["budget"], 2), _num(r["expected_dim"], 2), _pct(r["accuracy"]),
              _num(r["test_expected_dim"], 2), _pct(r["test_accuracy"])]
             for r in cascade["curve"]],
        ))  # fmt: skip
    blocks.append(("img", F.FIGURES["fig6"][0], F.FIGURES["fig6"][1]) if "fig6" in plots
                  else ("p", "Not available: the run has no data for this figure."))  # fmt: skip

    blocks += _figure(
        "fig7", plots,
        "mAP@10 with class relevance (exact search over the train set). Values in %.",
        _pivot(results, F.series(results, "mAP@10")),
    )  # fmt: skip

    r = results.get("retrieval") or {}
    text = (
        f"Database: {r.get('database', '-')} train embeddings from the exported model; "
        f"{r.get('queries', '-')} test queries; K = {r.get('K', '-')}. Single-shot exact search "
        "(brute force) at each size; ScaNN single-shot at full d (an index with D_s = d); AR = "
        "ScaNN shortlist at D_s, rerank at D_r (`AdaptiveRetriever`); funnel = halve the "
        "shortlist and double the dim at every stage. MFLOPs/query by the paper's exact-search "
        "cost model (`D_s * N + K * D_r`); ms/query measured, batched, on this machine."
    )
    rows = [[f"single-shot {x['kind']}", str(x["dim"]), "-", _pct(x["mAP@10"]),
             _num(x["mflops_per_query"], 3), _num(x["ms_per_query"], 4)]
            for x in r.get("single_shot", [])]  # fmt: skip
    rows += [["AR", str(x["shortlist_dim"]), str(x["rerank_dim"]), _pct(x["mAP@10"]),
              _num(x["mflops_per_query"], 3), _num(x["ms_per_query"], 4)]
             for x in r.get("ar", [])]  # fmt: skip
    rows += [["funnel", str(x["shortlist_dim"]), " > ".join(f"{a}:{b}" for a, b in x["stages"]),
              _pct(x["mAP@10"]), _num(x["mflops_per_query"], 3), _num(x["ms_per_query"], 4)]
             for x in r.get("funnel", [])]  # fmt: skip
    blocks += _figure(
        "fig8", plots, text,
        _table(["method", "dim / D_s", "D_r / stages (dim:size)", "mAP@10 (%)", "MFLOPs/query",
                "ms/query"], rows),
    )  # fmt: skip

    service = results.get("service") or {}
    blocks.append(("h", 2, "HTTP service"))
    if service.get("status") == "ok":
        agreement = service["agreement"]
        blocks += [
            ("p", f"The HTTP service (the FastAPI app `mrl serve` runs) started on "
                  f"{service['url']} with the in-process local model backend in "
                  f"{service['startup_seconds']}s; the demo sent {service['requests']} requests "
                  f"({service['queries']} test images, batches of {service['batch']}: "
                  "`POST /v1/search` AR and funnel, `POST /v1/classify`, `GET /healthz`, "
                  "`/readyz`, `/metrics`), compared the answers with the same calls made "
                  "directly in Python, and stopped the service."),
            _table(["measure", "value"], [
                ["search mAP@10 (%)", _pct(service["search_mAP@10"])],
                ["funnel mAP@10 (%)", _pct(service["funnel_mAP@10"])],
                ["classify accuracy (%)", _pct(service["classify_accuracy"])],
                ["classify expected dim", _num(service["classify_expected_dim"], 2)],
                ["search latency p50 (ms per request)", _num(service["search_latency_ms_p50"], 1)],
                *[[f"agreement with direct calls: {k}", _pct(v)] for k, v in agreement.items()],
            ]),
        ]  # fmt: skip
    else:
        blocks.append(("p", f"Status: {service.get('status', 'not run')}. "
                            f"{service.get('reason', '')}".strip()))  # fmt: skip

    claims = check_claims(results)
    blocks += [
        ("h", 2, "Comparison with the paper's claims"),
        ("p", "Computed from this run's numbers (a difference of MRL minus a baseline is in "
              "points of %)."),
        _table(["claim", "measured here", "verdict"],
               [[c["claim"], c["measured"], c["verdict"]] for c in claims]),
    ]  # fmt: skip
    stages = results.get("stages") or {}
    order = sorted(stages, key=lambda k: (STAGE_ORDER.index(k) if k in STAGE_ORDER else 99, k))
    blocks += [
        ("h", 2, "Stages"),
        _table(["stage", "status", "seconds"],
               [[k, stages[k]["status"],
                 "-" if stages[k]["seconds"] is None else f"{stages[k]['seconds']:.1f}"]
                for k in order]),
    ]  # fmt: skip
    if data:
        blocks.append(("p", f"Dataset `{data['name']}`: {data['num_train']} train, "
                            f"{data['num_holdout']} holdout, {data['num_test']} test images of "
                            f"shape {tuple(data['input_shape'])}, {data['num_classes']} classes."))  # fmt: skip
    return blocks


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[tuple]) -> str:
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind == "list":
            out.append("\n".join(f"- `{line}`" if line.startswith("  ") else f"- {line}"
                                 for line in block[1]))  # fmt: skip
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
                     "|" + "---|" * len(header)]  # fmt: skip
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escapes text and renders `code` and **bold** spans."""
    parts = html.escape(str(text)).split("`")
    rendered = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    chunks = rendered.split("**")
    return "".join(f"<b>{c}</b>" if i % 2 else c for i, c in enumerate(chunks))


def to_html(blocks: list[tuple], image_dir: str) -> str:
    """A self-contained HTML page: images are read from `image_dir` and embedded as base64."""
    title = next((b[2] for b in blocks if b[0] == "h"), "mrl demo report")
    body: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "list":
            items = "".join(
                f"<li><code>{html.escape(line)}</code></li>"
                if line.startswith("  ")
                else f"<li>{_inline(line)}</li>"
                for line in block[1]
            )
            body.append(f"<ul>{items}</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                for row in block[2]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            with open(os.path.join(image_dir, block[1]), "rb") as f:
                encoded = base64.b64encode(f.read()).decode()
            body.append(
                f'<figure><img alt="{html.escape(block[2])}" '
                f'src="data:image/png;base64,{encoded}"><figcaption>{_inline(block[2])}'
                "</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}code{background:#f3f3f3;white-space:pre}"
        "img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def render_markdown(results: dict[str, Any]) -> str:
    """`report.md` of a `report.json` (its plots are the files `write_plots` names)."""
    plots = {k: v for k, v in (results.get("plots") or {}).items()}
    return to_markdown(build_blocks(results, plots))


def write_report(results: dict[str, Any], out: str) -> dict[str, str]:
    """Writes `report.json`, the plots, `report.md` and `report.html` into `out`.

    Returns:
        `{"json": ..., "markdown": ..., "html": ...}` paths.
    """
    from mrl_keras.demo.plots import write_plots

    os.makedirs(out, exist_ok=True)
    results["plots"] = write_plots(results, out)
    # Render from the JSON form, so the markdown is exactly what `report.json` re-renders to.
    text = json.dumps(results, indent=2, sort_keys=True) + "\n"
    results = json.loads(text)
    paths = {
        "json": os.path.join(out, "report.json"),
        "markdown": os.path.join(out, "report.md"),
        "html": os.path.join(out, "report.html"),
    }
    with open(paths["json"], "w") as f:
        f.write(text)
    blocks = build_blocks(results, results["plots"])
    with open(paths["markdown"], "w") as f:
        f.write(to_markdown(blocks))
    with open(paths["html"], "w") as f:
        f.write(to_html(blocks, out))
    return paths
