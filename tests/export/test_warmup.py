"""export/warmup.py: TF Serving warmup requests round-trip through the TFRecord file."""

import numpy as np
import pytest

from mrl_keras.export.warmup import read_warmup_requests, warmup_path, write_warmup_requests


def test_round_trip(tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = write_warmup_requests(
        tmp_path, "m", [("embed_8", {"inputs": x}), ("classify_8", {"inputs": x})]
    )
    assert path == warmup_path(tmp_path)
    records = read_warmup_requests(tmp_path)
    assert [r.predict_log.request.model_spec.signature_name for r in records] == [
        "embed_8",
        "classify_8",
    ]
    request = records[0].predict_log.request
    assert request.model_spec.name == "m"
    import tensorflow as tf

    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["inputs"]), x)


@pytest.mark.parametrize("count", [0, 1001])
def test_request_count_limits(tmp_path, count):
    with pytest.raises(ValueError, match="Expected 1 to 1000 warmup requests"):
        write_warmup_requests(tmp_path, "m", [("s", {"inputs": np.zeros(1)})] * count)
