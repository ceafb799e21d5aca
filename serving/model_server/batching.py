"""Server-side batching for the dev model server, from TF Serving's batching parameters.

A request of `n` rows is split into chunks of at most `max_batch_size` rows (a request larger
than `max_batch_size` is split, not refused). Chunks wait in one queue; `num_batch_threads`
threads each take, for the oldest chunk's (version, signature), as many queued chunks of that
key as fit in `max_batch_size` rows, once that many rows are queued or the oldest chunk has
waited `batch_timeout_micros`; the batch is padded (repeating its first row) up to the next
of `allowed_batch_sizes`, run once, and its outputs handed back chunk by chunk. The queue holds
at most `max_enqueued_batches * max_batch_size` rows: a request waits for room (within its
deadline, at most `QUEUE_WAIT_S`) and then fails with UNAVAILABLE, as TF Serving's full queue
does.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mrl_keras.serving.backends.errors import DeadlineExceeded, Internal, Unavailable
from mrl_keras.serving.model_server.server_files import BatchingParameters

__all__ = ["Batcher", "QUEUE_WAIT_S"]

QUEUE_WAIT_S = 30.0  # the longest a request waits for room in the queue or for its results


class _Task:
    __slots__ = ("key", "model", "signature", "inputs", "rows", "enqueued", "done", "out", "error")

    def __init__(self, key, model, signature, inputs: dict[str, np.ndarray], rows: int):
        self.key = key
        self.model = model
        self.signature = signature
        self.inputs = inputs
        self.rows = rows
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.out: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None


class Batcher:
    """Splits, queues and batches Predict calls (see the module doc).

    Args:
        params: `BatchingParameters` (e.g. from `read_batching_parameters`).

    Attributes:
        batches, rows, padded_rows: counts of the batches run, the rows they carried and the
            padding rows added (for the server's metrics).
    """

    def __init__(self, params: BatchingParameters):
        self.params = params
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self.batches = 0
        self.rows = 0
        self.padded_rows = 0
        self.batch_sizes: collections.Counter[int] = collections.Counter()

    @property
    def capacity_rows(self) -> int:
        return self.params.max_enqueued_batches * self.params.max_batch_size

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def start(self) -> None:
        with self._cond:
            self._stopped = False
            if self._threads:
                return
            for i in range(self.params.num_batch_threads):
                thread = threading.Thread(
                    target=self._work, name=f"mrl-model-server-batch-{i}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            pending = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
            self._cond.notify_all()
        for task in pending:
            task.error = Unavailable("The model server is shutting down.")
            task.done.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def run(
        self,
        model: Any,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        time_left: Callable[[], float | None] = lambda: None,
    ) -> dict[str, np.ndarray]:
        """Runs `model.run_signature(signature, inputs)` through the batch queue.

        Every input must have the same leading (batch) dimension.
        """
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
        if len(sizes) != 1 or None in sizes:
            raise Internal(f"Batching needs one batch dimension on every input. Got {sizes}")
        (n,) = sizes
        if n == 0:
            return model.run_signature(signature, arrays)
        step = self.params.max_batch_size
        key = (id(model), signature)
        tasks = []
        for start in range(0, n, step):
            chunk = {k: a[start : start + step] for k, a in arrays.items()}
            task = _Task(key, model, signature, chunk, min(step, n - start))
            self._enqueue(task, time_left)
            tasks.append(task)
        outputs = [self._result(task, time_left) for task in tasks]
        if len(outputs) == 1:
            return outputs[0]
        return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}

    def _wait_budget(self, time_left) -> float:
        left = time_left()
        return QUEUE_WAIT_S if left is None else max(0.0, min(QUEUE_WAIT_S, left))

    def _enqueue(self, task: _Task, time_left) -> None:
        end = time.monotonic() + self._wait_budget(time_left)
        with self._cond:
            while self._queued_rows + task.rows > self.capacity_rows:
                left = end - time.monotonic()
                if self._stopped or left <= 0:
                    raise Unavailable(
                        "The batch scheduling queue to which this task was submitted is full"
                    )
                self._cond.wait(left)
            if self._stopped:
                raise Unavailable("The model server is shutting down.")
            task.enqueued = time.monotonic()
            self._queue.append(task)
            self._queued_rows += task.rows
            self._cond.notify_all()

    def _result(self, task: _Task, time_left) -> dict[str, np.ndarray]:
        if not task.done.wait(self._wait_budget(time_left)):
            raise DeadlineExceeded("Deadline Exceeded")
        if task.error is not None:
            raise task.error
        assert task.out is not None
        return task.out

    def _take(self) -> list[_Task] | None:
        """The next batch's tasks (blocking), or None once stopped."""
        timeout_s = self.params.batch_timeout_micros / 1e6
        limit = self.params.max_batch_size
        with self._cond:
            while True:
                if self._stopped:
                    return None
                if not self._queue:
                    self._cond.wait(1.0)
                    continue
                first = self._queue[0]
                rows = sum(t.rows for t in self._queue if t.key == first.key)
                wait = first.enqueued + timeout_s - time.monotonic()
                if rows >= limit or wait <= 0:
                    break
                self._cond.wait(wait)
            taken, total = [], 0
            for task in list(self._queue):
                if task.key == first.key and total + task.rows <= limit:
                    taken.append(task)
                    total += task.rows
            for task in taken:
                self._queue.remove(task)
            self._queued_rows -= total
            self._cond.notify_all()  # room for waiting requests
            return taken

    def _work(self) -> None:
        while (tasks := self._take()) is not None:
            self._run_batch(tasks)

    def _run_batch(self, tasks: list[_Task]) -> None:
        total = sum(t.rows for t in tasks)
        size = self.params.padded_size(total)
        batch = {}
        for name in tasks[0].inputs:
            parts = [t.inputs[name] for t in tasks]
            if size > total:
                parts.append(np.repeat(parts[0][:1], size - total, axis=0))
            batch[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
        try:
            out = tasks[0].model.run_signature(tasks[0].signature, batch)
            for k, v in out.items():
                if np.ndim(v) == 0 or len(v) != size:
                    raise Internal(f"Output {k!r} has no batch dimension of {size}: cannot batch")
            start = 0
            for task in tasks:
                task.out = {k: v[start : start + task.rows] for k, v in out.items()}
                start += task.rows
        except BaseException as e:  # every request of the batch gets the error
            for task in tasks:
                task.error = e
        with self._cond:
            self.batches += 1
            self.rows += total
            self.padded_rows += size - total
            self.batch_sizes[size] += 1
        for task in tasks:
            task.done.set()
