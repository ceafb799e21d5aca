"""serving/model_server/server_files.py: TF Serving's batching and monitoring text protos."""

from __future__ import annotations

import pytest

from mrl_keras.serving.model_server.server_files import (
    BatchingParameters,
    read_batching_parameters,
    read_monitoring_config,
)


def write(tmp_path, text, name="file.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_batching_parameters_as_tf_serving_writes_them(tmp_path):
    path = write(
        tmp_path,
        "# a comment\n"
        "max_batch_size { value: 32 }\n"
        "batch_timeout_micros { value: 1500 }\n"
        "max_enqueued_batches { value: 3 }\n"
        "num_batch_threads { value: 2 }\n"
        "thread_pool_name { value: 'pool' }\n"
        "allowed_batch_sizes: 8\nallowed_batch_sizes: 32\n"
        "pad_variable_length_inputs: true\n",
    )
    assert read_batching_parameters(path) == BatchingParameters(
        max_batch_size=32,
        batch_timeout_micros=1500,
        max_enqueued_batches=3,
        num_batch_threads=2,
        allowed_batch_sizes=(8, 32),
        pad_variable_length_inputs=True,
    )


def test_left_out_fields_take_tf_serving_defaults(tmp_path):
    params = read_batching_parameters(write(tmp_path, "max_batch_size { value: 16 }\n"))
    assert (params.max_batch_size, params.batch_timeout_micros, params.max_enqueued_batches) == (
        16,
        0,
        10,
    )
    assert params.padded_size(5) == 5  # no allowed sizes: no padding
    assert BatchingParameters(max_batch_size=8, allowed_batch_sizes=(2, 8)).padded_size(3) == 8


@pytest.mark.parametrize(
    "text, match",
    [
        ("max_batch_size: 16\n", "max_batch_size"),  # a wrapper, not a scalar
        ("bogus_field: 1\n", 'no field named "bogus_field"'),
        ("max_batch_size { value: 0 }\n", "max_batch_size >= 1"),
        (
            "max_batch_size { value: 16 }\nallowed_batch_sizes: 8\n",
            "final entry of allowed_batch_sizes must equal max_batch_size",
        ),
        (
            "max_batch_size { value: 16 }\nallowed_batch_sizes: 16\nallowed_batch_sizes: 8\n",
            "increasing",
        ),
    ],
)
def test_bad_batching_files_are_refused_naming_the_problem(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_batching_parameters(write(tmp_path, text))


def test_an_unreadable_file_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="Cannot read the batching parameters file"):
        read_batching_parameters(str(tmp_path / "missing.txt"))


def test_monitoring_config(tmp_path):
    on = read_monitoring_config(
        write(tmp_path, 'prometheus_config { enable: true, path: "/metrics/p" }\n')
    )
    assert (on.enable, on.path) == (True, "/metrics/p")
    default = read_monitoring_config(write(tmp_path, "prometheus_config { enable: true }\n"))
    assert default.path == "/monitoring/prometheus/metrics"
    assert read_monitoring_config(write(tmp_path, "")).enable is False
    with pytest.raises(ValueError, match="start with '/'"):
        read_monitoring_config(write(tmp_path, 'prometheus_config { path: "metrics" }\n'))
