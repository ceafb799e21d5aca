"""The service stage: real search and classify requests to `mrl serve`, checked against the
same calls made directly in Python (`AdaptiveRetriever.search`, `LocalModel.classify_cascade`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mrl_keras.demo.retrieval_eval import map_at_10
from mrl_keras.demo.service_client import ServiceError, ServiceProcess
from mrl_keras.serving.retrieval.funnel import paper_funnel

BATCH = 32
MIN_AGREEMENT = 0.95


def _batches(n: int, size: int = BATCH):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def exercise_service(run: Any) -> dict[str, Any]:
    """Starts the service over the run's model and index, sends requests, stops it.

    Raises:
        ServiceError: the service failed to start, answered an error, or disagreed with the
            direct Python calls on more than 5% of the answers.
    """
    from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever

    c = run.config
    n = min(c.service_queries, len(run.x_test))
    x, y = run.x_test[:n], run.y_test[:n]
    d = run.d
    funnel = paper_funnel(c.shortlist_dim, d, c.shortlist_size)
    retriever = AdaptiveRetriever(AdaptiveIndex.load(run.paths["index"]), run.backend)
    direct = retriever.search(x, k=10, shortlist_size=c.shortlist_size)
    direct_funnel = retriever.search(x, k=10, shortlist_size=c.shortlist_size, funnel=funnel)
    direct_cascade = run.backend.classify_cascade(x)

    out: dict[str, Any] = {"status": "failed", "queries": int(n), "batch": BATCH}
    with ServiceProcess(run.backend, run.paths["index"]) as svc:
        run.progress.log(f"service ready at {svc.url} after {svc.startup_seconds:.1f}s")
        out["url"] = svc.url
        out["startup_seconds"] = round(svc.startup_seconds, 1)
        svc.call("/healthz")
        svc.call("/readyz")
        ids, funnel_ids, classes, dims_used, latencies = [], [], [], [], []
        versions = set()
        for s in _batches(n):
            body, seconds = svc.call(
                "/v1/search",
                {"instances": x[s].tolist(), "k": 10, "shortlist_size": c.shortlist_size},
            )
            latencies.append(seconds)
            versions.add((body.get("model_version"), body.get("index_version")))
            ids += [r["ids"] for r in body["results"]]
            body, _ = svc.call(
                "/v1/search",
                {"instances": x[s].tolist(), "k": 10, "shortlist_size": c.shortlist_size,
                 "funnel": funnel},
            )  # fmt: skip
            funnel_ids += [r["ids"] for r in body["results"]]
            body, _ = svc.call("/v1/classify", {"instances": x[s].tolist()})
            classes += [p["class"] for p in body["predictions"]]
            dims_used += [p["dims_used"] for p in body["predictions"]]
        metrics_text, _ = svc.call("/metrics")
    ids = np.asarray(ids, dtype=np.int64)
    funnel_ids = np.asarray(funnel_ids, dtype=np.int64)
    classes = np.asarray(classes)
    dims_used = np.asarray(dims_used)
    agreement = {
        "search_ids": float(np.mean(ids == np.asarray(direct.ids, dtype=np.int64))),
        "funnel_ids": float(np.mean(funnel_ids == np.asarray(direct_funnel.ids, dtype=np.int64))),
        "classify_classes": float(np.mean(classes == np.asarray(direct_cascade.classes))),
        "classify_dims_used": float(np.mean(dims_used == np.asarray(direct_cascade.dims_used))),
    }
    out.update(
        {
            "requests": 3 * len(latencies) + 3,
            "search_mAP@10": map_at_10(ids, run.y_train, y),
            "funnel_mAP@10": map_at_10(funnel_ids, run.y_train, y),
            "classify_accuracy": float(np.mean(classes == y)),
            "classify_expected_dim": float(np.mean(dims_used)),
            "search_latency_ms_p50": round(1000 * float(np.median(latencies)), 1),
            "agreement": agreement,
            "versions": sorted([list(v) for v in versions], key=str),
            "metrics_bytes": len(metrics_text) if isinstance(metrics_text, str) else None,
        }
    )
    worst = min(agreement.values())
    if worst < MIN_AGREEMENT:
        raise ServiceError(
            f"the service's answers disagree with the direct Python calls: {agreement} "
            f"(expected at least {MIN_AGREEMENT})"
        )
    out["status"] = "ok"
    run.progress.log(
        f"service: {out['requests']} requests, search p50 {out['search_latency_ms_p50']} ms per "
        f"batch of {BATCH}, agreement with direct calls {worst:.3f}; service stopped"
    )
    return out
