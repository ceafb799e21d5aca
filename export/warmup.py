"""TF Serving warmup requests: `assets.extra/tf_serving_warmup_requests`.

TF Serving replays these `PredictionLog` records when it loads a version, before it marks it
AVAILABLE, so the first real request does not pay for graph initialisation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


def warmup_path(version_dir: str | os.PathLike) -> str:
    """Returns the path of the warmup file inside a SavedModel version folder."""
    return os.path.join(os.fspath(version_dir), WARMUP_DIR, WARMUP_FILE)


def predict_log(
    model_name: str, signature_name: str, inputs: Mapping[str, np.ndarray]
) -> prediction_log_pb2.PredictionLog:
    """Builds one `PredictionLog` holding a predict request for `signature_name`."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
    )
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )


def write_warmup_requests(
    version_dir: str | os.PathLike,
    model_name: str,
    requests: Sequence[tuple[str, Mapping[str, np.ndarray]]],
) -> str:
    """Writes predict requests as a TFRecord of `PredictionLog` records.

    Args:
        version_dir: the SavedModel version folder (or its temporary stand-in).
        model_name: str. The model name TF Serving serves the model under.
        requests: sequence of `(signature_name, {input_name: array})`.

    Returns:
        The path of the written file.

    Raises:
        ValueError: if there are no requests or more than 1000 (TF Serving's limit).
    """
    if not requests or len(requests) > MAX_WARMUP_RECORDS:
        raise ValueError(
            f"Expected 1 to {MAX_WARMUP_RECORDS} warmup requests. Received: {len(requests)}"
        )
    path = warmup_path(version_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            writer.write(predict_log(model_name, signature_name, inputs).SerializeToString())
    return path


def read_warmup_requests(path: str | os.PathLike) -> list[prediction_log_pb2.PredictionLog]:
    """Parses a warmup file (or a version folder's) back into `PredictionLog` records."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = warmup_path(path)
    records = []
    for raw in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(raw.numpy())
        records.append(log)
    return records
