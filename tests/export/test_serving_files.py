"""export/serving_files.py: batching parameters chosen from measured latencies (the rule,
against a hand computation), the text files TF Serving reads, and the export's latencies."""

from __future__ import annotations

import os

import pytest

from mrl_keras.export.serving_files import (
    batching_parameters_text,
    choose_batching,
    measure_batch_latency,
    monitoring_config_text,
    write_text_file,
)
from mrl_keras.serving.model_server.server_files import (
    read_batching_parameters,
    read_monitoring_config,
)

# seconds per call: per example 1000, 500, 312.5, 281.25, 273.4 us
LATENCY = {1: 0.001, 4: 0.002, 16: 0.005, 64: 0.018, 256: 0.070}


def test_the_rule_picks_the_smallest_batch_within_10_percent_of_the_best_per_example():
    choice = choose_batching(LATENCY, cpu_count=3)
    best = min(t / b for b, t in LATENCY.items())  # 273.4 us at 256
    expected = min(b for b, t in LATENCY.items() if t / b <= 1.1 * best)
    assert choice.max_batch_size == expected == 64  # 281 us <= 300.8 us; 16 (312 us) is not
    assert choice.allowed_batch_sizes == (1, 4, 16, 64)
    assert choice.batch_timeout_micros == 9000  # half of 18 ms
    assert (choice.num_batch_threads, choice.max_enqueued_batches) == (3, 3)


def test_timeout_is_clamped_and_a_flat_curve_needs_no_batching():
    fast = choose_batching({1: 1e-5, 8: 8e-5}, cpu_count=1)
    assert fast.max_batch_size == 1 and fast.batch_timeout_micros == 100
    slow = choose_batching({1: 0.1, 2: 0.11}, cpu_count=1)
    assert slow.max_batch_size == 2 and slow.batch_timeout_micros == 10_000


@pytest.mark.parametrize(
    "latency, match",
    [({}, "at least one batch size"), ({0: 0.1}, "batch sizes >= 1"), ({4: 0.0}, "> 0 s")],
)
def test_bad_latencies_are_refused(latency, match):
    with pytest.raises(ValueError, match=match):
        choose_batching(latency)


def test_the_files_parse_as_tf_servings_protos(tmp_path):
    choice = choose_batching(LATENCY, cpu_count=2)
    path = write_text_file(str(tmp_path / "batching.txt"), batching_parameters_text(choice))
    params = read_batching_parameters(path)
    assert (params.max_batch_size, params.batch_timeout_micros) == (64, 9000)
    assert (params.num_batch_threads, params.max_enqueued_batches) == (2, 2)
    assert params.allowed_batch_sizes == (1, 4, 16, 64)
    path = write_text_file(str(tmp_path / "monitoring.config"), monitoring_config_text())
    config = read_monitoring_config(path)
    assert config.enable and config.path == "/monitoring/prometheus/metrics"
    assert sorted(os.listdir(tmp_path)) == ["batching.txt", "monitoring.config"]  # no temp left
    with pytest.raises(ValueError, match="URL path"):
        monitoring_config_text("metrics")
    with pytest.raises(ValueError, match="does not exist"):
        write_text_file(str(tmp_path / "no" / "x.txt"), "x")


def test_latency_is_measured_on_the_exported_signature(exported_mrl):
    _, result = exported_mrl
    latency = measure_batch_latency(result.path, sizes=(4, 1), repeats=2)
    assert sorted(latency) == [1, 4] and all(t > 0 for t in latency.values())
    with pytest.raises(ValueError, match="batch sizes >= 1"):
        measure_batch_latency(result.path, sizes=(0,))
