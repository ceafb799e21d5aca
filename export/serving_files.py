"""TF Serving's server files for an exported model: `batching_parameters` tuned to the model's
measured batch latency, and a `monitoring.config` that turns on Prometheus metrics.

Both are protobuf text format, read by `tensorflow_model_server --enable_batching
--batching_parameters_file=...` (message `tensorflow.serving.BatchingParameters`,
`session_bundle_config.proto`) and `--monitoring_config_file=...` (`MonitoringConfig`,
`monitoring_config.proto`). The dev model server (`mrl model-server`) reads the same files.

How the batching parameters are chosen from the latencies `t(b)` measured at export (median of
a few calls of `serving_default` per batch size `b` on this machine):

- `max_batch_size`: the smallest measured `b` whose time per example `t(b)/b` is within
  `tolerance` (10%) of the best time per example measured: larger batches buy less than 10%
  more throughput and cost every request in them latency.
- `allowed_batch_sizes`: the measured sizes up to `max_batch_size` (TF Serving pads a batch up
  to the next one; the last must equal `max_batch_size`).
- `batch_timeout_micros`: half of `t(max_batch_size)`, within [100, 10,000] us: a request waits
  at most half the time a full batch takes to run for others to join it.
- `num_batch_threads`: the machine's CPU count (TF Serving's guidance for CPU serving), and
  `max_enqueued_batches` the same, so the queue holds about one round of batches (bounded
  latency under overload rather than a long queue).

Measure on the serving machine: the numbers are only as good as the match between the two.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BatchingChoice",
    "DEFAULT_BATCH_SIZES",
    "PROMETHEUS_PATH",
    "batching_parameters_text",
    "choose_batching",
    "measure_batch_latency",
    "monitoring_config_text",
    "write_text_file",
]

DEFAULT_BATCH_SIZES = (1, 4, 16, 64, 256)
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's kPrometheusPath


@dataclass(frozen=True)
class BatchingChoice:
    """The batching parameters picked from measured latencies, and those latencies."""

    max_batch_size: int
    batch_timeout_micros: int
    max_enqueued_batches: int
    num_batch_threads: int
    allowed_batch_sizes: tuple[int, ...]
    latency_s: Mapping[int, float]


def choose_batching(
    latency_s: Mapping[int, float], cpu_count: int | None = None, tolerance: float = 0.10
) -> BatchingChoice:
    """Picks TF Serving batching parameters from latencies per batch size (rule: module doc).

    Args:
        latency_s: mapping of batch size -> seconds one call with that batch takes.
        cpu_count: int or None. Threads for batches; `os.cpu_count()` when None.
        tolerance: float. How far above the best time per example a batch size may be.

    Returns:
        `BatchingChoice`.

    Raises:
        ValueError: on no latencies, a batch size below 1 or a latency that is not > 0.
    """
    if not latency_s:
        raise ValueError("Expected latencies for at least one batch size. Received none.")
    for b, t in latency_s.items():
        if int(b) < 1 or not t > 0:
            raise ValueError(f"Expected batch sizes >= 1 and latencies > 0 s. Received: {b} -> {t}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"Expected 0 <= tolerance < 1. Received: tolerance={tolerance}")
    sizes = sorted(int(b) for b in latency_s)
    per_example = {b: latency_s[b] / b for b in sizes}
    best = min(per_example.values())
    max_batch = next(b for b in sizes if per_example[b] <= best * (1 + tolerance))
    threads = max(1, int(cpu_count or os.cpu_count() or 1))
    timeout_us = int(round(min(10_000, max(100, latency_s[max_batch] * 1e6 / 2))))
    return BatchingChoice(
        max_batch_size=max_batch,
        batch_timeout_micros=timeout_us,
        max_enqueued_batches=threads,
        num_batch_threads=threads,
        allowed_batch_sizes=tuple(b for b in sizes if b <= max_batch),
        latency_s={b: float(latency_s[b]) for b in sizes},
    )


def batching_parameters_text(choice: BatchingChoice) -> str:
    """`BatchingParameters` in protobuf text format (the Int64Value fields as `{ value: N }`),
    with the measured latencies as comments."""
    lines = ["# written by mrl export from the latency of serving_default per batch size:"]
    for b, t in choice.latency_s.items():
        lines.append(f"#   batch {b}: {t * 1e3:.3f} ms ({t * 1e6 / b:.1f} us per example)")
    for field in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches"):
        lines.append(f"{field} {{ value: {getattr(choice, field)} }}")
    lines.append(f"num_batch_threads {{ value: {choice.num_batch_threads} }}")
    lines += [f"allowed_batch_sizes: {b}" for b in choice.allowed_batch_sizes]
    return "\n".join(lines) + "\n"


def monitoring_config_text(path: str = PROMETHEUS_PATH) -> str:
    """`MonitoringConfig` in protobuf text format with Prometheus metrics at `path`."""
    if not path.startswith("/") or any(c in path for c in ' "\\\n'):
        raise ValueError(f"Expected a URL path such as {PROMETHEUS_PATH!r}. Received: {path!r}")
    return f'prometheus_config {{\n  enable: true\n  path: "{path}"\n}}\n'


def write_text_file(path: str, text: str) -> str:
    """Writes `text` to `path` atomically (a temporary file in the same folder, renamed)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"The folder of {path!r} does not exist.")
    fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return path


def measure_batch_latency(
    version_dir: str,
    sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    repeats: int = 5,
    budget_s: float = 60.0,
) -> dict[int, float]:
    """Median seconds of one `serving_default` call of the exported SavedModel per batch size.

    Inputs are zeros of the signature's input shape and dtype (the graph's cost does not depend
    on the values). Sizes are measured in increasing order until `budget_s` is spent (at least
    one size is measured).

    Args:
        version_dir: str. An exported version folder (`base/<version>/`).
        sizes: the batch sizes, each >= 1.
        repeats: int. Timed calls per size (after one untimed warm-up call).
        budget_s: float. Stop measuring larger sizes after this many seconds.
    """
    import numpy as np
    import tensorflow as tf

    sizes = sorted({int(b) for b in sizes})
    if not sizes or sizes[0] < 1 or repeats < 1:
        raise ValueError(
            f"Expected batch sizes >= 1 and repeats >= 1. Received: {sizes}, repeats={repeats}"
        )
    loaded = tf.saved_model.load(version_dir)
    fn = loaded.signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    start = time.monotonic()
    out: dict[int, float] = {}
    for b in sizes:
        if out and time.monotonic() - start > budget_s:
            break
        inputs = {
            name: tf.constant(
                np.zeros(
                    [b] + [int(d) if d is not None else 1 for d in spec.shape[1:]],
                    spec.dtype.as_numpy_dtype,
                )
            )
            for name, spec in specs.items()
        }
        fn(**inputs)  # warm-up: tracing and allocation
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            result: Any = fn(**inputs)
            for value in result.values():
                value.numpy()
            times.append(time.perf_counter() - t0)
        out[b] = statistics.median(times)
    return out
