"""serving/model_server/monitoring.py: the Prometheus text the dev server exposes."""

from __future__ import annotations

from mrl_keras.serving.model_server.batching import Batcher
from mrl_keras.serving.model_server.monitoring import ServerMetrics
from mrl_keras.serving.model_server.server_files import BatchingParameters


def test_requests_are_counted_by_model_and_status():
    metrics = ServerMetrics()
    for status, seconds in (("OK", 0.25), ("OK", 0.5), ("INVALID_ARGUMENT", 0.25)):
        metrics.observe("tiny", status, seconds)
    metrics.observe('we"ird', "OK", 1.0)
    lines = metrics.render().splitlines()
    assert ':tensorflow:serving:request_count{model_name="tiny",status="OK"} 2' in lines
    assert (
        ':tensorflow:serving:request_count{model_name="tiny",status="INVALID_ARGUMENT"} 1' in lines
    )
    assert 'mrl_model_server_request_latency_seconds_sum{model_name="tiny"} 1.000000' in lines
    assert 'mrl_model_server_request_latency_seconds_count{model_name="tiny"} 3' in lines
    assert ':tensorflow:serving:request_count{model_name="we\\"ird",status="OK"} 1' in lines
    assert not any(line.startswith("mrl_model_server_batches") for line in lines)


def test_batching_counters_appear_with_a_batcher():
    batcher = Batcher(BatchingParameters(max_batch_size=4))
    text = ServerMetrics().render(batcher)
    assert "mrl_model_server_batches_total 0" in text.splitlines()
    assert "# TYPE mrl_model_server_batch_queue_rows gauge" in text
