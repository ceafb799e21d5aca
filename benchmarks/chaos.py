"""Chaos on loopback: model rollovers under load, and index loads racing index builds.

Over 400 lines because it is one program: the tiny model and its exports, the three backends'
rollovers, the build-vs-load race in processes, the discovery of the failure scenarios and
the table, each a function of its own.

Scenarios defined here (each `scenario_<name>(workdir, quick) -> list[dict]`):

- `rollover_local`, `rollover_grpc`, `rollover_rest`: `mrl serve`'s service (in this process,
  uvicorn on 127.0.0.1) over a versioned index base path, with `--clients` threads searching
  `POST /v1/search` with model inputs for `--duration` seconds, while the operator's rollover
  runs twice: the model server keeps the newest 2 versions (`num_versions=2`); export v2
  (v3); build the next index version against the new model version, pinned (`keep=2`); the
  service switches once it sees that version AVAILABLE; the oldest model version retires.
  Backends: LocalModel (in-process), and the dev model server over gRPC and REST. Every answer
  is checked: its top hit must be the query's own corpus row *under the model version the
  answer names* (ids carry the model version), so a request served by a mixed pair fails.
  Target: 0 failed requests; the service ends on the newest pair.
- `build_load_race`: one process building index versions (alternating corpus A as model v1
  and corpus B as v2) beside loader processes loading the newest (`AdaptiveIndex.load`) until
  `--race-loads` loads; each load is classified whole or mixed (manifest of one build, arrays
  of the other). Both layouts: a versioned base path (with retention, `keep=2`) and an
  un-versioned index directory replaced in place. Target: 0 mixed, 0 failed loads.

Failure scenarios (kill -9 of the model server, reload storm, bit flip, nested JSON, client
disconnect) live in `benchmarks/chaos_failures.py`: every `scenario_*` function there is
discovered and run too, when that module exists. A scenario's rows are dicts with the keys
`scenario, sent, failed_by_status ({status: count}), p50_ms, p99_ms, time_to_503_ms,
time_to_recover_ms, loads_mixed, notes` (None where not applicable) and optionally `ok`
(False marks a violated correctness target).

The program prints ONE table. `--quick` runs small counts and checks correctness only (0 mixed
loads, 0 failed requests in the rollovers, every row's `ok`), exiting 1 on a violation; it
writes nothing unless `--results`. No timing is asserted anywhere.

Usage (from the repository root):

    nice python -m benchmarks.chaos                 # the full run recorded in RESULTS.md
    python -m benchmarks.chaos --quick              # CI smoke (tests/benchmarks/test_chaos.py)
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402

SECTION = "Chaos: rollovers and build-vs-load races"
MODEL_NAME = "chaos"
INPUT_DIM, EMBEDDING_DIM, NESTING = 10, 32, (8, 16, 32)
CORPUS = 200
COLUMNS = [
    "scenario",
    "requests sent",
    "failed by status",
    "p50 ms",
    "p99 ms",
    "time to 503 ms",
    "time to recover ms",
    "loads mixed",
    "notes",
]
KEYS = [
    "scenario",
    "sent",
    "failed_by_status",
    "p50_ms",
    "p99_ms",
    "time_to_503_ms",
    "time_to_recover_ms",
    "loads_mixed",
    "notes",
]
# Set by main(): the knobs of the full run (the quick run overrides them).
SETTINGS: dict[str, Any] = {"clients": 32, "duration": 60.0, "race_loads": 5000}


def row(scenario: str, **fields: Any) -> dict[str, Any]:
    out = {k: None for k in KEYS}
    out.update(scenario=scenario, **fields)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the model ----------------------------------------------------------------------------
def exported_versions(workdir: Path, quick: bool = False) -> dict[int, Path]:
    """Version folders of the tiny model: v1 (seed 1) and v2 (seed 2), exported once per
    workdir; v3 of the rollovers is a copy of v2 under the next number. `quick` exports v1
    only and uses it for v2 too (the answers' ids still name the model version that served
    them, so a mixed pair still fails the check)."""
    cache = workdir / "exports"
    done = {v: cache / MODEL_NAME / str(v) for v in (1, 2)}
    if all((p / "saved_model.pb").exists() for p in done.values()):
        return done
    if quick and (done[1] / "saved_model.pb").exists():
        return {1: done[1], 2: done[1]}
    import keras

    from mrl_keras import MatryoshkaHead
    from mrl_keras.export import export_saved_model

    for version, seed in ((1, 1),) if quick else ((1, 1), (2, 2)):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((INPUT_DIM,), name="inputs")
        h = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
        z = keras.layers.Dense(EMBEDDING_DIM, name="embedding")(h)
        logits = MatryoshkaHead(5, NESTING, name="matryoshka_head")(z)
        model = keras.Model(inputs, logits)
        export_saved_model(model, str(cache / MODEL_NAME), version, model_name=MODEL_NAME)
    return {1: done[1], 2: done[1]} if quick else done


def corpus_inputs() -> np.ndarray:
    return np.random.default_rng(3).normal(size=(CORPUS, INPUT_DIM)).astype(np.float32)


def copy_version(src: Path, base: Path, version: int) -> None:
    """What `mrl export` does to a watched base path: a complete folder appears at once."""
    tmp = base / f".tmp-{version}-{os.getpid()}"
    shutil.copytree(src, tmp)
    os.rename(tmp, base / str(version))


def build_index_version(backend: Any, indexes: Path, model_version: int) -> str:
    """`mrl index build --out indexes --model-version N --keep 2` through `backend`: the
    corpus embedded by model version N (pinned), ids naming that version."""
    from mrl_keras.serving import build_index
    from mrl_keras.serving.retrieval.manifest import read_manifest

    pinned = backend.pinned(model_version)
    z = pinned.embed(corpus_inputs(), EMBEDDING_DIM).embeddings
    ids = np.asarray([f"m{model_version}-{i}" for i in range(CORPUS)])
    path = build_index(
        indexes,
        z,
        ids,
        shortlist_dim=8,
        model_name=MODEL_NAME,
        model_version=model_version,
        scann_options={"num_leaves": 1, "reorder_num_neighbors": CORPUS},
        versioned=True,
        keep=2,
    )
    return read_manifest(path)["index_version"]


# -- rollovers ----------------------------------------------------------------------------
class Clients:
    """`n` threads posting one-example searches until stopped; every answer checked."""

    def __init__(self, url: str, n: int):
        self.url, self.n = url, n
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.failed: collections.Counter = collections.Counter()
        self.first_seen: dict[str, float] = {}
        self.pairs: collections.Counter = collections.Counter()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(n)]

    def start(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def _run(self, seed: int) -> None:
        import requests

        x = corpus_inputs()
        rng = np.random.default_rng(seed)
        session = requests.Session()
        while not self.stop.is_set():
            i = int(rng.integers(CORPUS))
            start = time.perf_counter()
            try:
                r = session.post(
                    f"{self.url}/v1/search",
                    json={"instances": x[i : i + 1].tolist(), "k": 3},
                    timeout=30,
                )
                status, body = r.status_code, (r.json() if r.status_code == 200 else None)
            except Exception as e:  # a dropped connection is a failed request
                status, body = type(e).__name__, None
            elapsed = time.perf_counter() - start
            if body is not None:
                expected = f"m{body['model_version']}-{i}"
                if body["results"][0]["ids"][0] != expected:
                    status = "wrong-pair"
            with self.lock:
                self.latencies.append(elapsed)
                if status != 200:
                    self.failed[str(status)] += 1
                else:
                    pair = (body["model_version"], body["index_version"])
                    self.pairs[pair] += 1
                    self.first_seen.setdefault(body["index_version"], time.monotonic())
        session.close()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def _serve(service: Any) -> tuple[str, Any, threading.Thread]:
    import uvicorn

    from mrl_keras.serving.service.app import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def _wait(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def _status_of(backend: Any, version: int) -> str:
    from mrl_keras.serving.backends.errors import BackendError

    try:
        return backend.pinned(version).status().state
    except BackendError as e:
        return e.code


def rollover(workdir: Path, kind: str, quick: bool) -> list[dict[str, Any]]:
    """Two rollovers (v1 -> v2 -> v3) under load through backend `kind`."""
    from mrl_keras.serving import LocalModel, ModelServer, TFServingGrpc, TFServingRest
    from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

    clients_n = 4 if quick else SETTINGS["clients"]
    duration = 3.0 if quick else SETTINGS["duration"]
    exports = exported_versions(workdir, quick)
    root = Path(tempfile.mkdtemp(prefix=f"rollover-{kind}-", dir=workdir))
    models, indexes = root / "models" / MODEL_NAME, root / "indexes" / MODEL_NAME
    models.mkdir(parents=True)
    copy_version(exports[1], models, 1)
    server = None
    if kind == "local":
        backend = LocalModel(str(models), model_name=MODEL_NAME)
    else:
        server = ModelServer(
            str(models), MODEL_NAME, port=0, rest_api_port=0, poll_interval_s=0.2, num_versions=2
        ).start(wait_for_model_s=60)
        if kind == "grpc":
            backend = TFServingGrpc(server.grpc_address, MODEL_NAME)
        else:
            backend = TFServingRest(server.rest_url, MODEL_NAME)
    published = {1: build_index_version(backend, indexes, 1)}
    service = SearchService(backend, indexes, ServiceConfig(index_poll_s=0.2))
    url, http, http_thread = _serve(service)
    clients = Clients(url, clients_n).start()
    notes, lags = [], []
    start = time.monotonic()
    try:
        for step, new in enumerate((2, 3)):
            time.sleep(max(0.0, start + duration * (0.15 + 0.4 * step) - time.monotonic()))
            copy_version(exports[2], models, new)  # "mrl export" of the new version
            _wait(lambda v=new: _status_of(backend, v) == "AVAILABLE", 120, f"model v{new}")
            published[new] = build_index_version(backend, indexes, new)
            built = time.monotonic()
            _wait(lambda v=new: service.pair.model_version == v, 60, f"the switch to v{new}")
            _wait(lambda v=published[new]: v in clients.first_seen, 60, "an answer of the pair")
            lags.append((clients.first_seen[published[new]] - built) * 1e3)
        if server is not None:  # num_versions=2: v1 retires once v3 is AVAILABLE
            _wait(lambda: _status_of(backend, 1) in ("END", "NOT_FOUND"), 60, "v1 retiring")
            notes.append("model v1 retired")
        time.sleep(max(0.0, start + duration - time.monotonic()))
    finally:
        clients.finish()
        http.should_exit = True
        http_thread.join(timeout=30)
        service.close()
        if server is not None:
            server.stop()
        backend.close()
    final = (service.pair.model_version, service.pair.index_version)
    ok = not clients.failed and final == (3, published[3])
    notes.insert(
        0, f"ends on (model 3, index {final[1].split('-')[0]})" if ok else f"ends on {final}"
    )
    notes.append(
        "first answer of the new pair "
        + ", ".join(f"{x:.0f}" for x in lags)
        + " ms after build_index returned (it publishes, then retires)"
    )
    p50, p99 = common.percentiles_ms(clients.latencies)
    label = {"local": "LocalModel", "grpc": "gRPC (dev server)", "rest": "REST (dev server)"}[kind]
    shutil.rmtree(root, ignore_errors=True)
    return [
        row(
            f"rollover x2, {clients_n} clients, {duration:.0f} s, {label}",
            sent=len(clients.latencies),
            failed_by_status=dict(clients.failed),
            p50_ms=p50,
            p99_ms=p99,
            notes="; ".join(notes),
            ok=ok,
            kind="rollover",
        )
    ]


def scenario_rollover_local(workdir: Path, quick: bool) -> list[dict[str, Any]]:
    return rollover(workdir, "local", quick)


def scenario_rollover_grpc(workdir: Path, quick: bool) -> list[dict[str, Any]]:
    return rollover(workdir, "grpc", quick)


def scenario_rollover_rest(workdir: Path, quick: bool) -> list[dict[str, Any]]:
    return rollover(workdir, "rest", quick)


# -- build-vs-load race -------------------------------------------------------------------
def race_corpora() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((64, 16)).astype(np.float32)
    b = rng.standard_normal((64, 16)).astype(np.float32) + 3.0
    return {1: (a, np.arange(64)), 2: (b, np.arange(1000, 1064))}


def _race_build(out: str, versioned: bool, stop, builds) -> None:
    from mrl_keras.serving import build_index

    corpora = race_corpora()
    extra = {"keep": 2} if versioned else {}
    while not stop.is_set():
        v = 1 + builds.value % 2
        build_index(
            out,
            corpora[v][0],
            corpora[v][1],
            shortlist_dim=8,
            model_version=v,
            scann_options={"num_leaves": 1, "reorder_num_neighbors": 64},
            versioned=versioned,
            **extra,
        )
        with builds.get_lock():
            builds.value += 1


def _race_load(out: str, loads: int, counts) -> None:
    from mrl_keras.serving import AdaptiveIndex

    corpora = race_corpora()
    for _ in range(loads):
        try:
            index = AdaptiveIndex.load(out)
        except Exception:  # a failed load (never expected: a checksum error is spurious)
            with counts.get_lock():
                counts[2] += 1
            continue
        x, ids = corpora[index.model_version]
        whole = np.array_equal(index.ids, ids) and np.array_equal(np.asarray(index.store), x)
        index.close()
        with counts.get_lock():
            counts[0 if whole else 1] += 1


def scenario_build_load_race(workdir: Path, quick: bool) -> list[dict[str, Any]]:
    from mrl_keras.serving import build_index

    loads = 120 if quick else SETTINGS["race_loads"]
    loaders = 1 if quick else 2
    ctx = multiprocessing.get_context("spawn")
    # The full run races processes (as separate `mrl index build` and `mrl serve` would);
    # the quick one threads of this process (no interpreter start-up per layout).
    worker = threading.Thread if quick else ctx.Process
    rows = []
    for versioned in (True, False):
        root = Path(tempfile.mkdtemp(prefix="race-", dir=workdir))
        out = root / ("indexes" if versioned else "index")
        a, ids = race_corpora()[1]
        build_index(
            out,
            a,
            ids,
            shortlist_dim=8,
            model_version=1,
            versioned=versioned,
            scann_options={"num_leaves": 1, "reorder_num_neighbors": 64},
        )
        stop, builds = ctx.Event(), ctx.Value("i", 0)
        counts = ctx.Array("i", 3)  # whole, mixed, failed
        builder = worker(target=_race_build, args=(str(out), versioned, stop, builds))
        builder.start()
        start = time.monotonic()
        procs = [
            worker(target=_race_load, args=(str(out), loads // loaders, counts))
            for _ in range(loaders)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=900)
        crashed = sum(1 for p in procs if getattr(p, "exitcode", 0) not in (0, None))
        wall = time.monotonic() - start
        stop.set()
        builder.join(timeout=120)
        whole, mixed, failed = list(counts)
        failed_by = {"load error": failed} if failed else {}
        if crashed:
            failed_by["loader process died"] = crashed
        layout = "versioned base, keep 2" if versioned else "un-versioned dir, swapped in place"
        rows.append(
            row(
                f"build-vs-load race ({layout})",
                sent=whole + mixed + failed,
                failed_by_status=failed_by,
                loads_mixed=mixed,
                notes=f"{builds.value} builds beside {loaders} loader "
                f"{'thread' if quick else 'process'}(es), {wall:.0f} s",
                ok=not failed_by and mixed == 0 and whole == loads // loaders * loaders,
                kind="race",
            )
        )
        shutil.rmtree(root, ignore_errors=True)
    return rows


# -- the program --------------------------------------------------------------------------
def scenarios() -> list[tuple[str, Any]]:
    """This module's `scenario_*` functions, then those of `benchmarks.chaos_failures`."""
    found = [(n, f) for n, f in sorted(globals().items()) if n.startswith("scenario_")]
    order = ["scenario_rollover_local", "scenario_rollover_grpc", "scenario_rollover_rest"]
    found.sort(key=lambda nf: order.index(nf[0]) if nf[0] in order else len(order))
    try:
        failures = importlib.import_module("benchmarks.chaos_failures")
    except ModuleNotFoundError as e:
        if e.name != "benchmarks.chaos_failures":
            raise
        failures = None
    if failures is not None:
        for name in sorted(dir(failures)):
            fn = getattr(failures, name)
            if name.startswith("scenario_") and callable(fn):
                found.append((f"chaos_failures.{name}", fn))
    return found


def violations(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        if r.get("ok") is False:
            out.append(f"{r['scenario']}: {r.get('notes')}")
        elif r.get("loads_mixed"):
            out.append(f"{r['scenario']}: {r['loads_mixed']} mixed loads")
        elif r.get("kind") == "rollover" and r.get("failed_by_status"):
            out.append(f"{r['scenario']}: failed requests {r['failed_by_status']}")
    return out


def table(rows: list[dict[str, Any]]) -> str:
    def failed(v):
        if v is None:
            return "-"
        return ", ".join(f"{k}: {n}" for k, n in sorted(v.items(), key=str)) or "0"

    cells = [
        [
            r["scenario"],
            "-" if r["sent"] is None else r["sent"],
            failed(r["failed_by_status"]),
            *["-" if r[k] is None else float(r[k]) for k in ("p50_ms", "p99_ms")],
            *[
                "-" if r[k] is None else float(r[k])
                for k in ("time_to_503_ms", "time_to_recover_ms")
            ],
            "-" if r["loads_mixed"] is None else r["loads_mixed"],
            r["notes"] or "",
        ]
        for r in rows
    ]
    return common.md_table(COLUMNS, cells)


def report(
    rows: list[dict[str, Any]],
    argv: list[str] | None,
    prog: str,
    result_name: str,
    section: str,
    start: float,
    write_results: bool,
) -> list[str]:
    """Prints the table and the violations; with `write_results`, saves
    `results/<result_name>.json` and the RESULTS.md `section`. Returns the violations."""
    text = table(rows)
    print(text)
    bad = violations(rows)
    for v in bad:
        print(f"VIOLATION: {v}", file=sys.stderr)
    if write_results:
        run = {
            "command": common.command_line(argv, prog),
            "date": common.utc_now(),
            "wall_s": time.monotonic() - start,
            "machine": common.machine(),
            "versions": common.versions("tensorflow", "grpc", "fastapi", "uvicorn"),
        }
        lines = common.run_header(run, " (load average {load} at the start, shared)")
        common.save_json(
            common.BENCH_DIR / "results" / f"{result_name}.json",
            {**run, "rows": json.loads(json.dumps(rows, default=str))},
        )
        common.write_section(section, "\n".join(lines) + "\n\n" + text + "\n")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts, correctness checks only"
    )
    parser.add_argument("--clients", type=int, default=32, help="client threads per rollover")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per rollover run")
    parser.add_argument("--race-loads", type=int, default=5000, help="loads per race layout")
    parser.add_argument("--only", default="", help="comma list: run scenarios whose name has one")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one)")
    parser.add_argument("--results", action="store_true", help="write the RESULTS.md section")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.duration <= 0 or args.race_loads < 1:
        parser.error("--clients and --race-loads must be >= 1 and --duration > 0")
    SETTINGS.update(clients=args.clients, duration=args.duration, race_loads=args.race_loads)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mrl-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    wanted = [w for w in args.only.split(",") if w]
    run_start, rows = time.monotonic(), []
    for name, fn in scenarios():
        if wanted and not any(w in name for w in wanted):
            continue
        common.log(f"chaos: {name} ...")
        t0 = time.monotonic()
        try:
            rows.extend(fn(workdir, args.quick))
        except Exception as e:  # a scenario that cannot finish is a violation, not a crash
            rows.append(row(name, notes=f"did not finish: {type(e).__name__}: {e}", ok=False))
        common.log(f"chaos: {name} done in {time.monotonic() - t0:.1f} s")
    bad = report(rows, argv, "benchmarks.chaos", "chaos", SECTION, run_start,
                 args.results and not args.quick)  # fmt: skip
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
