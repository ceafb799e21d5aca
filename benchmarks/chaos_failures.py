"""Chaos on loopback, the failure half: the model server killed and restarted, a storm of
reloads, a bit flipped in a served file, hostile JSON and clients that hang up mid-body.

Each `scenario_<name>(workdir, quick) -> list[dict]` returns rows with the keys of
`benchmarks.chaos.row` (`scenario, sent, failed_by_status, p50_ms, p99_ms, time_to_503_ms,
time_to_recover_ms, loads_mixed, notes`, None where not applicable) and `ok` (False marks a
violated correctness target). `benchmarks/chaos.py` discovers and runs them with its own
scenarios and prints one table; this module also runs alone:

    nice python -m benchmarks.chaos_failures            # the full run
    python -m benchmarks.chaos_failures --quick         # correctness only (no timing checked)

- `kill_model_server_grpc`, `kill_model_server_rest`: `mrl model-server` as a subprocess on
  127.0.0.1 (`--quick`: the dev server in this process, stopped abruptly, to spare two
  TensorFlow start-ups per scenario), the service (in this process) over it, clients searching
  (full run: 16 threads in a child process, so that they do not share the service's GIL;
  `--quick`: 4 threads in this process); kill -9 of the server:
  time until the first 503, the latency of the 503s (p50/p99) and of `/readyz` during the
  outage; the same command restarted on the same ports: the seconds until it reports the
  model AVAILABLE (the dev server's restart time), then the time until the service answers
  200 again (time to recover, measured from AVAILABLE). Target: every failure a 503 (no 500,
  no hang), recovery without a restart of the service.
- `reload_storm`: clients searching for a while; then the same with 40 threads calling
  `GET /healthz` as fast as they can (the control: what 40 clients' requests cost the event
  loop and the GIL, as the clients run in this process); then, after a rebuild of the index,
  40 threads calling `POST /admin/reload`: searches per second and p50/p99 in each phase,
  and how many runs and index loads the storm's calls cost (the reload worker coalesces them;
  an unchanged directory is not loaded again).
  Target: no failed search; at most one load at a time.
- `bit_flip`: one bit of the served version's `rerank.npy` flipped in place under a running
  service (verification every 0.2 s): the time until it is detected, and whether any answer
  after that used the flipped file (a score above 1 + 1e-4 for unit vectors would show it).
  Over a versioned base path the service falls back to the previous version; over an
  un-versioned directory `/readyz` and searches turn 503. Target: detected, nothing served
  from the flipped file afterwards.
- `nested_json`: 100,000-deep `[[[[...` bodies (alone, inside `instances`, inside
  `embeddings`) to every POST route of the service and to the dev model server's REST
  predict. Target: every answer 400, never 500.
- `client_disconnect`: clients that announce a body and hang up halfway. Target: counted
  under status 499 in /metrics, no 500, no traceback in the log.

Over 400 lines because it is one program: each failure scenario with its own servers, load
and checks, side by side so that they share the harness.
"""

from __future__ import annotations

import argparse
import collections
import gc
import io
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks import chaos, common  # noqa: E402

SECTION = "Chaos: failures (kill -9, reload storm, bit flip, hostile JSON, disconnects)"
DEEP = 100_000
JSON_HEADERS = {"content-type": "application/json"}


# -- shared pieces ------------------------------------------------------------------------
def _model_base(workdir: Path, quick: bool) -> Path:
    """A base path with version 1 of the chaos model (exported once per workdir)."""
    exports = chaos.exported_versions(workdir, quick)
    base = Path(tempfile.mkdtemp(prefix="failures-", dir=workdir)) / "models" / chaos.MODEL_NAME
    base.mkdir(parents=True)
    chaos.copy_version(exports[1], base, 1)
    return base


def _build(backend: Any, out: Path, *, versioned: bool = False, tag: str = "m1") -> Path:
    from mrl_keras.serving import build_index

    z = backend.embed(chaos.corpus_inputs(), chaos.EMBEDDING_DIM).embeddings
    ids = np.asarray([f"{tag}-{i}" for i in range(chaos.CORPUS)])
    return build_index(
        out,
        z,
        ids,
        shortlist_dim=8,
        model_name=chaos.MODEL_NAME,
        model_version=1,
        scann_options={"num_leaves": 1, "reorder_num_neighbors": chaos.CORPUS},
        versioned=versioned,
    )


class Searchers:
    """`n` threads posting one-example searches until stopped, timing each answer; with
    another `path`, `GET /healthz` or `POST <path>` with `{}` (the storms) instead."""

    def __init__(self, url: str, n: int, path: str = "/v1/search"):
        self.url, self.n, self.path = url, n, path
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.log: list[tuple[float, float, Any, float]] = []  # (t_end, latency, status, top)
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(n)]

    def start(self) -> Searchers:
        for t in self.threads:
            t.start()
        return self

    def _run(self, seed: int) -> None:
        import requests

        x = chaos.corpus_inputs()
        rng = np.random.default_rng(seed)
        session = requests.Session()
        while not self.stop.is_set():
            i = int(rng.integers(chaos.CORPUS))
            start = time.perf_counter()
            top = float("nan")
            try:
                if self.path == "/healthz":
                    r = session.get(f"{self.url}{self.path}", timeout=60)
                elif self.path != "/v1/search":
                    r = session.post(f"{self.url}{self.path}", json={}, timeout=60)
                else:
                    r = session.post(
                        f"{self.url}/v1/search",
                        json={"instances": x[i : i + 1].tolist(), "k": 3},
                        timeout=30,
                    )
                status = r.status_code
                if status == 200 and self.path == "/v1/search":
                    scores = r.json()["results"][0]["scores"]
                    top = max(s for s in scores if s is not None)
            except Exception as e:  # a dropped connection is a failure of its own kind
                status = type(e).__name__
            end = time.perf_counter()
            with self.lock:
                self.log.append((time.monotonic(), end - start, status, top))
        session.close()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def window(self, t0: float, t1: float) -> list[tuple[float, float, Any, float]]:
        with self.lock:
            return [e for e in self.log if t0 <= e[0] < t1]


class RemoteSearchers(Searchers):
    """`Searchers` in a child process (`python -m benchmarks.chaos_failures --search-clients
    URL N`), as real clients are: their threads then share neither the GIL nor the event loop
    with the service under test, so the latencies measured are the service's. The child
    prints one line per answer (`t_end latency status top`, `t_end` on the machine-wide
    monotonic clock, comparable across processes); a reader thread here collects them. The
    child stops when its stdin closes."""

    def __init__(self, url: str, n: int, path: str = "/v1/search"):
        super().__init__(url, 0, path)
        self.n = n
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None

    def start(self) -> RemoteSearchers:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.chaos_failures", "--clients", self.url,
             str(self.n), self.path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            t_end, latency, status, top = line.split()
            entry = (float(t_end), float(latency), int(status) if status.isdigit() else status,
                     float(top))  # fmt: skip
            with self.lock:
                self.log.append(entry)

    def finish(self) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.reader is not None:
            self.reader.join(timeout=30)


def _clients_main(url: str, n: int, path: str) -> int:
    """The child of `RemoteSearchers`: `n` client threads until stdin closes, each answer
    printed as it comes."""
    searchers = Searchers(url, n, path)
    printed = 0

    def flush() -> None:
        nonlocal printed
        with searchers.lock:
            new, printed = searchers.log[printed:], len(searchers.log)
        if new:
            sys.stdout.write("".join(f"{t!r} {lat!r} {s} {top!r}\n" for t, lat, s, top in new))
            sys.stdout.flush()

    searchers.start()
    closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), closed.set()), daemon=True).start()
    while not closed.wait(0.005):  # stream answers every 5 ms: the parent watches for recovery
        flush()
    searchers.finish()
    flush()
    return 0


def _failed(entries) -> dict[str, int]:
    return dict(collections.Counter(str(e[2]) for e in entries if e[2] != 200))


def _stop_http(http: Any, thread: threading.Thread) -> None:
    http.should_exit = True
    thread.join(timeout=30)


# -- kill -9 of the model server ------------------------------------------------------------
def _model_server_cmd(base: Path, grpc_port: int, rest_port: int) -> list[str]:
    return [
        sys.executable, "-m", "mrl_keras.cli", "model-server",
        "--model-base-path", str(base), "--model-name", chaos.MODEL_NAME,
        "--port", str(grpc_port), "--rest-api-port", str(rest_port), "--host", "127.0.0.1",
    ]  # fmt: skip


def _available(rest_port: int) -> bool:
    import requests

    try:
        r = requests.get(f"http://127.0.0.1:{rest_port}/v1/models/{chaos.MODEL_NAME}", timeout=1)
        states = [v["state"] for v in r.json().get("model_version_status", [])]
        return "AVAILABLE" in states
    except (requests.RequestException, ValueError):
        return False


def _start_model_server(base: Path, grpc_port: int, rest_port: int, log: Path):
    out = open(log, "ab")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        _model_server_cmd(base, grpc_port, rest_port), stdout=out, stderr=subprocess.STDOUT
    )
    proc.log_file = out
    start = time.monotonic()
    while not _available(rest_port):
        if proc.poll() is not None or time.monotonic() - start > 180:
            raise RuntimeError(f"mrl model-server did not become AVAILABLE (see {log})")
        time.sleep(0.01)
    return proc, time.monotonic() - start


def _kill(proc) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.log_file.close()


class _InProcess:
    """The quick form's model server: in this process (no TensorFlow start-up per restart),
    stopped abruptly (connections dropped) instead of kill -9."""

    def __init__(self, base: Path, grpc_port: int, rest_port: int):
        from mrl_keras.serving import ModelServer

        start = time.monotonic()
        self.server = ModelServer(
            str(base), chaos.MODEL_NAME, port=grpc_port, rest_api_port=rest_port
        ).start(wait_for_model_s=120)
        self.start_s = time.monotonic() - start

    def poll(self):
        return None if self.server is not None else 0

    def kill(self) -> None:
        if self.server is not None:
            self.server.stop(grace=0)
            self.server = None


def _launch(base: Path, grpc_port: int, rest_port: int, log: Path, quick: bool):
    if quick:
        proc = _InProcess(base, grpc_port, rest_port)
        return proc, proc.start_s
    return _start_model_server(base, grpc_port, rest_port, log)


def _terminate(proc) -> None:
    if isinstance(proc, _InProcess):
        proc.kill()
    else:
        _kill(proc)


class GcPauses:
    """Records the cyclic garbage collector's pauses in this process (`gc.callbacks`): a full
    collection stops every thread of the service, so it shows in the latency tails."""

    def __init__(self):
        self.pauses: list[tuple[float, float]] = []  # (monotonic end, ms)
        self._start = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((time.monotonic(), (time.perf_counter() - self._start) * 1e3))

    def longest_ms(self, t0: float, t1: float) -> float:
        return max((ms for t, ms in self.pauses if t0 <= t < t1), default=0.0)


def kill_model_server(workdir: Path, transport: str, quick: bool) -> list[dict[str, Any]]:
    import requests

    from mrl_keras.serving import LocalModel, TFServingGrpc, TFServingRest
    from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

    base = _model_base(workdir, quick)
    index = _build(LocalModel(str(base), model_name=chaos.MODEL_NAME), base.parent.parent / "index")
    grpc_port, rest_port = chaos.free_port(), chaos.free_port()
    log = base.parent.parent / "model_server.log"
    proc, first_start_s = _launch(base, grpc_port, rest_port, log, quick)
    if transport == "grpc":
        backend = TFServingGrpc(f"127.0.0.1:{grpc_port}", chaos.MODEL_NAME, timeout=10, check=False)
    else:
        backend = TFServingRest(
            f"http://127.0.0.1:{rest_port}", chaos.MODEL_NAME, timeout=10, check=False
        )
    for attempt in range(3):  # a loaded machine can time out a first connect: bounded retries
        try:
            backend.refresh()
            break
        except Exception:
            if attempt == 2:
                raise
            time.sleep(1.0)
    service = SearchService(backend, index, ServiceConfig(default_timeout=10.0))
    url, http, http_thread = chaos._serve(service)
    clients = 4 if quick else 16
    # The full run's clients are another process (the service's latencies, not the GIL's);
    # the quick form keeps them in this one.
    searchers = (Searchers if quick else RemoteSearchers)(url, clients).start()
    ready_ms: list[float] = []
    notes = []
    gc_pauses = GcPauses().__enter__()
    try:
        time.sleep(1.0 if quick else 3.0)
        killed = time.monotonic()
        _terminate(proc)
        outage = 1.5 if quick else 5.0
        while time.monotonic() - killed < outage:  # /readyz while the backend is down
            t = time.perf_counter()
            r = requests.get(f"{url}/readyz", timeout=10)
            ready_ms.append((time.perf_counter() - t) * 1e3)
            if r.status_code == 200 and time.monotonic() - killed > 1.0:
                notes.append("readyz still 200 1 s after the kill")
            time.sleep(0.05)
        restart = time.monotonic()
        proc, restart_s = _launch(base, grpc_port, rest_port, log, quick)
        available = time.monotonic()
        recovered = None
        while recovered is None and time.monotonic() - available < 30:
            ok = [e for e in searchers.window(available, time.monotonic()) if e[2] == 200]
            if ok:
                recovered = min(e[0] for e in ok)
            time.sleep(0.005)
        time.sleep(0.5)
    finally:
        gc_pauses.__exit__()
        searchers.finish()
        _stop_http(http, http_thread)
        service.close()
        backend.close()
        _terminate(proc)
    down = searchers.window(killed, restart)
    first_503 = min((e[0] for e in down if e[2] == 503), default=None)
    bad = {s: n for s, n in _failed(down).items() if s != "503"}
    p50, p99 = common.percentiles_ms([e[1] for e in down if e[2] == 503])
    after = searchers.window(available, float("inf"))
    notes.insert(
        0,
        f"dev server start {first_start_s:.1f} s, restart to AVAILABLE {restart_s:.1f} s; "
        f"/readyz during the outage p50 {np.median(ready_ms):.1f} ms, max {max(ready_ms):.1f} "
        f"ms; longest GC pause of the service's process during the outage "
        f"{gc_pauses.longest_ms(killed, restart):.0f} ms; p50/p99 are the 503s' latency",
    )
    ok = first_503 is not None and not bad and recovered is not None and not notes[1:]
    shutil.rmtree(base.parent.parent, ignore_errors=True)
    what = "stop of the in-process dev server" if quick else "kill -9 of mrl model-server"
    return [
        chaos.row(
            f"{what} + restart, {clients} clients, {transport}",
            sent=len(down) + len(after),
            failed_by_status=_failed(down + after),
            p50_ms=p50,
            p99_ms=p99,
            time_to_503_ms=None if first_503 is None else (first_503 - killed) * 1e3,
            time_to_recover_ms=None if recovered is None else (recovered - available) * 1e3,
            notes="; ".join(notes),
            ok=ok,
        )
    ]


def scenario_kill_model_server_grpc(workdir: Path, quick: bool) -> list[dict[str, Any]]:
    return kill_model_server(workdir, "grpc", quick)


def scenario_kill_model_server_rest(workdir: Path, quick: bool) -> list[dict[str, Any]]:
    return kill_model_server(workdir, "rest", quick)


# -- reload storm ---------------------------------------------------------------------------
def scenario_reload_storm(workdir: Path, quick: bool) -> list[dict[str, Any]]:
    from mrl_keras.serving import LocalModel
    from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

    base = _model_base(workdir, quick)
    backend = LocalModel(str(base), model_name=chaos.MODEL_NAME)
    index = _build(backend, base.parent.parent / "index")  # un-versioned: every reload loads
    service = SearchService(backend, index, ServiceConfig(verify_interval_s=0))
    url, http, http_thread = chaos._serve(service)
    clients, stormers, phase = (4, 8, 2.0) if quick else (16, 40, 15.0)
    # The full run's clients and stormers are child processes (the service's throughput, not
    # the load generator's GIL); the quick form keeps them in this one.
    pool = Searchers if quick else RemoteSearchers
    searchers = pool(url, clients).start()

    def phase_with(path: str | None) -> dict[str, Any]:
        switches = service.pair_switches._value.get()
        storm = pool(url, stormers, path).start() if path else None
        if storm is not None:
            time.sleep(0.5)  # the stormers' start-up (a child process) before the window
        t0 = time.monotonic()
        time.sleep(phase)
        t1 = time.monotonic()
        calls, statuses = 0, collections.Counter()
        if storm is not None:
            storm.finish()
            window = storm.window(t0, t1)
            calls, statuses = len(window), collections.Counter(str(e[2]) for e in window)
        loads = int(service.pair_switches._value.get() - switches)
        return {"window": (t0, t1), "calls": calls, "statuses": dict(statuses), "loads": loads}

    try:
        time.sleep(1.0)  # warm up
        phases = {"before": phase_with(None)}
        phases["during a /healthz storm (control)"] = phase_with("/healthz")
        # A real rebuild to pick up, then the storm: its calls share the reloads in progress.
        _build(backend, index)
        runs_before = service.reloader.runs
        phases["during"] = phase_with("/admin/reload")
        runs = service.reloader.runs - runs_before
    finally:
        searchers.finish()
        _stop_http(http, http_thread)
        service.close()
        backend.close()
    rows = []
    for label, info in phases.items():
        a, b = info["window"]
        entries = searchers.window(a, b)
        p50, p99 = common.percentiles_ms([e[1] for e in entries])
        note = f"{len(entries) / (b - a):.0f} searches/s"
        if label.startswith("during a"):
            note += f"; {info['calls']} GET /healthz from {stormers} threads"
        elif label == "during":
            note += (
                f"; {info['calls']} reload calls from {stormers} threads: {runs} runs of the "
                f"reload worker (at most {service.reloader.max_concurrent} at a time), "
                f"{info['loads']} index load(s); answers {info['statuses']}"
            )
        ok = not _failed(entries) and set(info["statuses"]) <= {"200"}
        if label == "during":
            ok = ok and service.reloader.max_concurrent == 1 and info["loads"] >= 1
        rows.append(
            chaos.row(
                f"reload storm: searches {label}, {clients} search clients",
                sent=len(entries),
                failed_by_status=_failed(entries),
                p50_ms=p50,
                p99_ms=p99,
                notes=note,
                ok=ok,
            )
        )
    shutil.rmtree(base.parent.parent, ignore_errors=True)
    return rows


# -- bit flip -------------------------------------------------------------------------------
def _flip_bit(path: Path, offset_from_end: int = 5) -> None:
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) - offset_from_end)
        byte = f.read(1)
        f.seek(-1, io.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x40]))  # an exponent bit of a float32: a huge score


def scenario_bit_flip(workdir: Path, quick: bool) -> list[dict[str, Any]]:
    import requests

    from mrl_keras.serving import LocalModel
    from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

    base = _model_base(workdir, quick)
    backend = LocalModel(str(base), model_name=chaos.MODEL_NAME)
    rows = []
    for layout in ("versioned", "un-versioned"):
        root = Path(tempfile.mkdtemp(prefix="flip-", dir=workdir))
        if layout == "versioned":
            _build(backend, root / "indexes", versioned=True, tag="v1")
            served = _build(backend, root / "indexes", versioned=True, tag="v2")
            index_arg = root / "indexes"
        else:
            served = index_arg = _build(backend, root / "index")
        config = ServiceConfig(verify_interval_s=0.2, index_poll_s=0)
        service = SearchService(backend, index_arg, config)
        url, http, http_thread = chaos._serve(service)
        searchers = Searchers(url, 2 if quick else 8).start()
        detected = None
        try:
            time.sleep(0.5)
            flipped = time.monotonic()
            _flip_bit(Path(served) / "rerank.npy")
            while detected is None and time.monotonic() - flipped < 20:
                ready = requests.get(f"{url}/readyz", timeout=5)
                moved = service.index.path != Path(served)
                if ready.status_code == 503 or moved:
                    detected = time.monotonic()
                time.sleep(0.01)
            time.sleep(1.0)
        finally:
            searchers.finish()
            _stop_http(http, http_thread)
            service.close()
        after = [] if detected is None else searchers.window(detected + 0.05, float("inf"))
        wrong = [e for e in after if e[2] == 200 and not e[3] <= 1.0 + 1e-4]
        if layout == "versioned":
            outcome = f"fell back to index version {service.index.version}"
            fine = service.index.version == 1 and not _failed(after)
        else:
            statuses = sorted({str(e[2]) for e in after})
            outcome = f"searches after detection answered {statuses}"
            fine = statuses == ["503"]
        rows.append(
            chaos.row(
                f"bit flip in the served rerank.npy ({layout})",
                sent=len(searchers.log),
                failed_by_status=_failed(searchers.log),
                time_to_503_ms=None if detected is None else (detected - flipped) * 1e3,
                notes=f"{'detected' if detected else 'NOT detected'}; {outcome}; "
                f"{len(wrong)} answers from the flipped file after detection",
                ok=detected is not None and not wrong and fine,
            )
        )
        shutil.rmtree(root, ignore_errors=True)
    backend.close()
    shutil.rmtree(base.parent.parent, ignore_errors=True)
    return rows


# -- hostile JSON and disconnects -----------------------------------------------------------
def _deep(n: int = DEEP) -> bytes:
    return b"[" * n + b"]" * n


def scenario_nested_json(workdir: Path, quick: bool) -> list[dict[str, Any]]:
    import requests

    from mrl_keras.serving import LocalModel, ModelServer
    from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

    base = _model_base(workdir, quick)
    backend = LocalModel(str(base), model_name=chaos.MODEL_NAME)
    index = _build(backend, base.parent.parent / "index")
    service = SearchService(backend, index, ServiceConfig(verify_interval_s=0))
    url, http, http_thread = chaos._serve(service)
    server = ModelServer(str(base), chaos.MODEL_NAME, port=0, rest_api_port=0).start(60)
    bodies = [
        _deep(),
        b'{"instances": ' + _deep() + b"}",
        b'{"embeddings": ' + _deep() + b"}",
        b'{"instances": [[' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"]]}",
    ]
    targets = [f"{url}{route}" for route in ("/v1/search", "/v1/classify", "/v1/embed")]
    targets.append(f"{server.rest_url}/v1/models/{chaos.MODEL_NAME}:predict")
    statuses, latencies = collections.Counter(), []
    try:
        for _ in range(1 if quick else 5):
            for target in targets:
                for body in bodies:
                    t = time.perf_counter()
                    r = requests.post(target, data=body, headers=JSON_HEADERS, timeout=60)
                    latencies.append(time.perf_counter() - t)
                    statuses[str(r.status_code)] += 1
        alive = requests.post(
            f"{url}/v1/search", json={"embeddings": [[0.1] * chaos.EMBEDDING_DIM]}, timeout=30
        ).status_code
    finally:
        _stop_http(http, http_thread)
        service.close()
        server.stop()
        backend.close()
    p50, p99 = common.percentiles_ms(latencies)
    shutil.rmtree(base.parent.parent, ignore_errors=True)
    return [
        chaos.row(
            f"JSON nested {DEEP:,} deep: 3 service routes + dev server REST",
            sent=sum(statuses.values()),
            failed_by_status=dict(statuses),
            p50_ms=p50,
            p99_ms=p99,
            notes=f"all 400 (none 500); a valid search after them: {alive}",
            ok=set(statuses) == {"400"} and alive == 200,
        )
    ]


def scenario_client_disconnect(workdir: Path, quick: bool) -> list[dict[str, Any]]:
    import requests

    from mrl_keras.serving import LocalModel
    from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

    base = _model_base(workdir, quick)
    backend = LocalModel(str(base), model_name=chaos.MODEL_NAME)
    index = _build(backend, base.parent.parent / "index")
    service = SearchService(backend, index, ServiceConfig(verify_interval_s=0))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    watched = [logging.getLogger(n) for n in ("mrl_keras.serving.service", "uvicorn.error")]
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    url, http, http_thread = chaos._serve(service)
    port = int(url.rsplit(":", 1)[1])
    n = 10 if quick else 200
    try:
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(
                    b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                    b'{"instances": [[0.1, 0.2'
                )
        metrics, seen = "", 0
        for _ in range(400):  # bounded: until the server counted them all
            try:
                metrics = requests.get(f"{url}/metrics", timeout=30).text
            except requests.Timeout:
                continue
            line = [x for x in metrics.splitlines() if 'route="/v1/search",status="499"' in x]
            seen = int(float(line[0].rsplit(" ", 1)[1])) if line else 0
            if seen >= n:
                break
            time.sleep(0.05)
    finally:
        _stop_http(http, http_thread)
        service.close()
        backend.close()
        for logger in watched:
            logger.removeHandler(handler)
    errors = [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
    five_hundreds = 'status="500"' in metrics
    shutil.rmtree(base.parent.parent, ignore_errors=True)
    return [
        chaos.row(
            f"client disconnect mid-body x{n}",
            sent=n,
            failed_by_status={"499": seen},
            notes=f"{seen} counted as 499 in /metrics, 500s: {'yes' if five_hundreds else 'none'}, "
            f"log errors/tracebacks: {len(errors)}",
            ok=seen == n and not five_hundreds and not errors,
        )
    ]


# -- standalone ------------------------------------------------------------------------------
def scenarios() -> list[tuple[str, Any]]:
    return [(n, f) for n, f in sorted(globals().items()) if n.startswith("scenario_")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos_failures", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="correctness checks only")
    parser.add_argument("--only", default="", help="comma list: scenarios whose name has one")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one)")
    parser.add_argument("--results", action="store_true", help="write the RESULTS.md section")
    parser.add_argument("--clients", nargs=3, metavar=("URL", "N", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clients:  # the child process of RemoteSearchers
        return _clients_main(args.clients[0], int(args.clients[1]), args.clients[2])
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mrl-chaos-failures-"))
    workdir.mkdir(parents=True, exist_ok=True)
    wanted = [w for w in args.only.split(",") if w]
    rows, start = [], time.monotonic()
    for name, fn in scenarios():
        if wanted and not any(w in name for w in wanted):
            continue
        common.log(f"chaos_failures: {name} ...")
        t0 = time.monotonic()
        try:
            rows.extend(fn(workdir, args.quick))
        except Exception as e:  # a scenario that cannot finish is a violation, not a crash
            rows.append(chaos.row(name, notes=f"did not finish: {type(e).__name__}: {e}", ok=False))
        common.log(f"chaos_failures: {name} done in {time.monotonic() - t0:.1f} s")
    bad = chaos.report(rows, argv, "benchmarks.chaos_failures", "chaos_failures", SECTION,
                       start, args.results and not args.quick)  # fmt: skip
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
