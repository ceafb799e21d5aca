"""Stage-by-stage progress of `mrl demo`: one line when a stage starts, one when it ends."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator


class StageError(RuntimeError):
    """A demo stage failed; `stage` names it and the message says why."""

    def __init__(self, stage: str, message: str):
        super().__init__(f"stage {stage!r} failed: {message}")
        self.stage = stage
        self.reason = message


class Progress:
    """Prints `[mrl demo] (i/n) stage: ...` lines and records each stage's wall time.

    Args:
        stages: the names of the stages, in order (for the `i/n` counter).
        stream: where to print. Defaults to stdout.
    """

    def __init__(self, stages: list[str], stream=None):
        self.stages = list(stages)
        self.stream = stream or sys.stdout
        self.start = time.time()
        self.timings: dict[str, float] = {}
        self.status: dict[str, str] = {name: "pending" for name in self.stages}

    def log(self, message: str) -> None:
        print(f"[mrl demo] {message}", file=self.stream, flush=True)

    def elapsed(self) -> float:
        return time.time() - self.start

    @contextlib.contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        """Runs one stage; a failure inside becomes a `StageError` naming the stage."""
        i = self.stages.index(name) + 1 if name in self.stages else 0
        self.log(f"({i}/{len(self.stages)}) {name}: {what}")
        self.status[name] = "running"
        t0 = time.time()
        try:
            yield
        except StageError:
            self.status[name] = "failed"
            self.timings[name] = round(time.time() - t0, 1)
            raise
        except Exception as e:  # noqa: BLE001 - every failure of a stage is reported the same way
            self.status[name] = "failed"
            self.timings[name] = round(time.time() - t0, 1)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise StageError(name, f"{type(e).__name__}: {first}") from e
        self.status[name] = "ok"
        self.timings[name] = round(time.time() - t0, 1)
        self.log(
            f"({i}/{len(self.stages)}) {name}: done in {self.timings[name]:.1f}s "
            f"(total {self.elapsed():.0f}s)"
        )

    def skip(self, name: str, why: str) -> None:
        self.status[name] = "skipped"
        self.log(f"{name}: skipped ({why})")
