"""serving/model_server/batching.py: split, queue, batch and pad, against the unbatched model
and the tiny model's NumPy reference."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from serving_testing import sample_inputs

from mrl_keras.serving.backends.errors import BackendError, Unavailable
from mrl_keras.serving.model_server.batching import Batcher
from mrl_keras.serving.model_server.server_files import BatchingParameters


@pytest.fixture
def batcher_of():
    made = []

    def make(**params):
        batcher = Batcher(BatchingParameters(**params))
        batcher.start()
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.stop()


def test_a_request_larger_than_max_batch_size_is_split_queued_and_answered(
    batcher_of, local_model, tiny_model
):
    # a queue of one batch: the request's six chunks must wait for room, not be refused
    batcher = batcher_of(
        max_batch_size=4, allowed_batch_sizes=(2, 4), max_enqueued_batches=1, num_batch_threads=1
    )
    x = sample_inputs(23, seed=3)
    out = batcher.run(local_model, "embed_16", {"inputs": x})
    np.testing.assert_allclose(out["embedding"], tiny_model.normalized_prefix(x, 16), atol=1e-5)
    assert (batcher.batches, batcher.rows) == (6, 23)  # ceil(23 / 4) batches
    assert batcher.padded_rows == 1 and batcher.batch_sizes == {4: 6}  # 3 rows ran padded to 4
    assert batcher.queued_rows == 0


def test_concurrent_requests_share_one_batch(batcher_of, local_model, tiny_model):
    batcher = batcher_of(max_batch_size=4, batch_timeout_micros=5_000_000, num_batch_threads=1)
    xs = [sample_inputs(1, seed=10 + i) for i in range(4)]
    results = {}

    def call(i):
        results[i] = batcher.run(local_model, "classify_8", {"inputs": xs[i]})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert batcher.batches == 1 and batcher.rows == 4  # four rows reached max_batch_size
    for i, x in enumerate(xs):
        expected = local_model.run_signature("classify_8", {"inputs": x})
        for key in ("probabilities", "classes"):
            np.testing.assert_allclose(results[i][key], expected[key], atol=1e-6)


def test_padding_to_an_allowed_size_does_not_leak_into_the_answer(
    batcher_of, local_model, tiny_model
):
    batcher = batcher_of(max_batch_size=8, allowed_batch_sizes=(8,))
    x = sample_inputs(3, seed=5)
    out = batcher.run(local_model, "embed_32", {"inputs": x})
    assert out["embedding"].shape == (3, 32)
    np.testing.assert_allclose(out["embedding"], tiny_model.normalized_prefix(x, 32), atol=1e-5)
    assert batcher.padded_rows == 5


def test_a_failing_batch_fails_its_requests_with_the_models_error(batcher_of, local_model):
    batcher = batcher_of(max_batch_size=4)
    with pytest.raises(BackendError, match="embed_999"):
        batcher.run(local_model, "embed_999", {"inputs": sample_inputs(6, seed=1)})


def test_a_stopped_batcher_refuses_with_unavailable(local_model):
    batcher = Batcher(BatchingParameters(max_batch_size=4))
    batcher.start()
    batcher.stop()
    with pytest.raises(Unavailable):
        batcher.run(local_model, "embed_8", {"inputs": sample_inputs(2, seed=1)})
