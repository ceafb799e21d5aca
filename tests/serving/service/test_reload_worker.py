"""The reload worker: one thread, concurrent submits share the run in progress."""

import threading
import time

import pytest

from mrl_keras.serving.service.reload_worker import ReloadWorker


def test_concurrent_submits_share_one_run_and_later_ones_start_another():
    gate, calls = threading.Event(), []

    def load():
        calls.append(threading.current_thread().name)
        gate.wait(10)
        return len(calls)

    worker = ReloadWorker(load)
    futures = [worker.submit() for _ in range(20)]
    assert len({id(f) for f in futures}) == 1
    gate.set()
    assert [f.result(10) for f in futures] == [1] * 20
    assert worker.submit().result(10) == 2  # the previous one had finished: a new run
    assert worker.runs == 2 and worker.max_concurrent == 1
    assert all(name.startswith("mrl-reload") for name in calls)
    worker.close()


def test_errors_reach_every_waiter():
    def load():
        time.sleep(0.05)
        raise ValueError("broken index")

    worker = ReloadWorker(load)
    futures = [worker.submit() for _ in range(3)]
    for f in futures:
        with pytest.raises(ValueError, match="broken index"):
            f.result(10)
    assert worker.runs == 1
    worker.close()
