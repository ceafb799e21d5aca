"""TF Serving's `--batching_parameters_file` and `--monitoring_config_file`, parsed as TF Serving
parses them: protobuf text format into `tensorflow.serving.BatchingParameters` and
`tensorflow.serving.MonitoringConfig`.

tensorflow-serving-api 2.20 ships neither message (its wheel has `tensorflow_serving/apis` and
`config/` without `monitoring_config_pb2`, and no `servables/`), so both are built here with
`google.protobuf.descriptor_pb2` from the field names, numbers and types of TF Serving's
`session_bundle_config.proto` and `monitoring_config.proto`, and parsed with
`google.protobuf.text_format`: a file TF Serving accepts parses the same way here, and an
unknown field or a wrong type is an error naming the line.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

__all__ = [
    "BatchingParameters",
    "MonitoringConfig",
    "read_batching_parameters",
    "read_monitoring_config",
]

_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath


@dataclass(frozen=True)
class BatchingParameters:
    """The dev server's batching: split a request into chunks of at most `max_batch_size`
    rows, queue them, and run batches of queued chunks on `num_batch_threads` threads.

    Defaults are TF Serving's where a field is left out (`BasicBatchScheduler::Options`).
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self):
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expected {name} >= 1. Received: {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(
                f"Expected batch_timeout_micros >= 0. Received: {self.batch_timeout_micros}"
            )
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(b < 1 for b in sizes) or list(sizes) != sorted(set(sizes)):
                raise ValueError(
                    f"Expected allowed_batch_sizes increasing and >= 1. Received: {list(sizes)}"
                )
            if sizes[-1] != self.max_batch_size:
                raise ValueError(
                    "The final entry of allowed_batch_sizes must equal max_batch_size. "
                    f"Received: {list(sizes)} and max_batch_size {self.max_batch_size}"
                )

    def padded_size(self, rows: int) -> int:
        """The batch size a batch of `rows` rows runs at (the next allowed size)."""
        return next((b for b in self.allowed_batch_sizes if b >= rows), rows)


@dataclass(frozen=True)
class MonitoringConfig:
    """Prometheus metrics on the REST port at `path` when `enable`."""

    enable: bool = False
    path: str = _PROMETHEUS_PATH


@functools.cache
def _messages():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="mrl_keras/tensorflow_serving_server_files.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    def message(name, fields):
        m = file.message_type.add(name=name)
        for field_name, number, kind, type_name, label in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name

    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    int64 = (F.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    message(
        "BatchingParameters",
        [
            ("max_batch_size", 1, *int64, one),
            ("batch_timeout_micros", 2, *int64, one),
            ("max_enqueued_batches", 3, *int64, one),
            ("num_batch_threads", 4, *int64, one),
            ("thread_pool_name", 5, F.TYPE_MESSAGE, ".google.protobuf.StringValue", one),
            ("allowed_batch_sizes", 6, F.TYPE_INT64, None, many),
            ("pad_variable_length_inputs", 7, F.TYPE_BOOL, None, one),
        ],
    )
    message(
        "PrometheusConfig",
        [("enable", 1, F.TYPE_BOOL, None, one), ("path", 2, F.TYPE_STRING, None, one)],
    )
    message(
        "MonitoringConfig",
        [("prometheus_config", 1, F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig", one)],
    )
    pool.Add(file)
    get = message_factory.GetMessageClass
    return (
        get(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")),
        get(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")),
    )


def _parse(path: str, message_class, what: str):
    from google.protobuf import text_format

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"Cannot read the {what} file {path!r}: {e.strerror or e}") from e
    try:
        return text_format.Parse(text, message_class())
    except text_format.ParseError as e:
        raise ValueError(f"{path!r} is not a valid {what} text proto: {e}") from e


def read_batching_parameters(path: str) -> BatchingParameters:
    """Reads a TF Serving `--batching_parameters_file` (text `BatchingParameters`).

    Raises:
        ValueError: the file cannot be read, is not the text proto, or its values are
            inconsistent (e.g. allowed_batch_sizes not ending at max_batch_size).
    """
    proto = _parse(path, _messages()[0], "batching parameters")
    values = {
        name: getattr(proto, name).value
        for name in (
            "max_batch_size",
            "batch_timeout_micros",
            "max_enqueued_batches",
            "num_batch_threads",
        )
        if proto.HasField(name)
    }
    try:
        return BatchingParameters(
            **values,
            allowed_batch_sizes=tuple(int(b) for b in proto.allowed_batch_sizes),
            pad_variable_length_inputs=bool(proto.pad_variable_length_inputs),
        )
    except ValueError as e:
        raise ValueError(f"{path!r}: {e}") from e


def read_monitoring_config(path: str) -> MonitoringConfig:
    """Reads a TF Serving `--monitoring_config_file` (text `MonitoringConfig`)."""
    proto = _parse(path, _messages()[1], "monitoring config")
    prometheus = proto.prometheus_config
    metrics_path = prometheus.path or _PROMETHEUS_PATH
    if not metrics_path.startswith("/"):
        raise ValueError(
            f"{path!r}: expected prometheus_config.path to start with '/'. Received: "
            f"{metrics_path!r}"
        )
    return MonitoringConfig(enable=bool(prometheus.enable), path=metrics_path)
