"""Prometheus metrics of the dev model server, served on the REST port at the path of the
monitoring config (`--monitoring-config-file`, TF Serving's `prometheus_config`).

`:tensorflow:serving:request_count{model_name, status}` as TF Serving names it; the dev
server's own under `mrl_model_server_`: Predict latency (a summary: `_sum`, `_count`) and, with
batching, batches run, rows batched, padding rows, rows waiting in the queue, and batches per
padded size.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

__all__ = ["ServerMetrics"]


def _labels(**values: Any) -> str:
    inner = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in values.items()
    )
    return "{" + inner + "}"


class ServerMetrics:
    """Counts Predict calls by model and status and their latency; renders the text format."""

    def __init__(self):
        self._lock = threading.Lock()
        self._requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self._latency_sum: collections.Counter[str] = collections.Counter()
        self._latency_count: collections.Counter[str] = collections.Counter()

    def observe(self, model_name: str, status: str, seconds: float) -> None:
        with self._lock:
            self._requests[(model_name, status)] += 1
            self._latency_sum[model_name] += seconds
            self._latency_count[model_name] += 1

    def render(self, batcher: Any = None) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            requests = dict(self._requests)
            sums, counts = dict(self._latency_sum), dict(self._latency_count)
        lines = [
            "# TYPE :tensorflow:serving:request_count counter",
            *(
                f":tensorflow:serving:request_count{_labels(model_name=m, status=s)} {n}"
                for (m, s), n in sorted(requests.items())
            ),
            "# TYPE mrl_model_server_request_latency_seconds summary",
        ]
        for m in sorted(counts):
            lines.append(
                f"mrl_model_server_request_latency_seconds_sum{_labels(model_name=m)} {sums[m]:.6f}"
            )
            lines.append(
                f"mrl_model_server_request_latency_seconds_count{_labels(model_name=m)} {counts[m]}"
            )
        if batcher is not None:
            for name, kind, value in (
                ("batches_total", "counter", batcher.batches),
                ("batched_rows_total", "counter", batcher.rows),
                ("padding_rows_total", "counter", batcher.padded_rows),
                ("batch_queue_rows", "gauge", batcher.queued_rows),
            ):
                lines += [
                    f"# TYPE mrl_model_server_{name} {kind}",
                    f"mrl_model_server_{name} {value}",
                ]
            lines.append("# TYPE mrl_model_server_batches_by_size_total counter")
            for size, n in sorted(dict(batcher.batch_sizes).items()):
                lines.append(f"mrl_model_server_batches_by_size_total{_labels(size=size)} {n}")
        return "\n".join(lines) + "\n"
