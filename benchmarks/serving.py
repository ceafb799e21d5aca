"""The HTTP service under bounded concurrent load on loopback.

Over 400 lines because it is one program: the model, the two servers, the load generator,
the direct-call baseline and the RESULTS.md section, each a function of its own.

Starts `mrl serve` on 127.0.0.1 twice, in front of (a) the in-process SavedModel backend
(`--model`) and (b) the dev model server over gRPC (`mrl model-server` + `--tf-serving-grpc`),
and drives `POST /v1/search` and `POST /v1/classify` with one-example requests from a fixed
number of client threads for a bounded number of requests and seconds. Reports QPS, p50/p99
latency and errors per (backend, route, concurrency), and the service's overhead over the
same work done by a direct Python call (`AdaptiveRetriever.search` / `CascadeClassifier
.classify` with the same backend, one request at a time).

The model is a small MRL classifier for 28x28x1 images (Fashion-MNIST, 784-256-64 MLP with a
`MatryoshkaHead`, trained one epoch here and cached) exported with `export_saved_model`; the
index holds the embeddings of `--corpus` training images (D_s = 16, D_r = 64).

Usage (from the repository root; see benchmarks/README.md):

    python -m benchmarks.serving
    python -m benchmarks.serving --quick          # tiny smoke run (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402

SECTION = "Serving under load"
MODEL_NAME = "fmnist_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_artifacts(
    cache: Path, corpus: int, epochs: int, n_fit: int = 50_000
) -> tuple[Path, Path, np.ndarray]:
    """An exported MRL model (base path) and an index over `corpus` training images."""
    import keras

    import mrl_keras
    from mrl_keras.export import export_saved_model
    from mrl_keras.serving import build_index
    from mrl_keras.training.data import load_fashion_mnist

    data = load_fashion_mnist()
    x_train = data["x_train"][..., None].astype("float32") / 255.0
    x_test = data["x_test"][..., None].astype("float32") / 255.0
    tag = f"e{epochs}_f{n_fit}_c{corpus}"
    base, index_dir = cache / f"serving_model_{tag}", cache / f"serving_index_{tag}"
    if not (base / "1").exists():
        common.log(f"training + exporting the serving benchmark model ({epochs} epoch(s)) ...")
        keras.utils.set_random_seed(0)
        inputs = keras.Input((28, 28, 1), name="inputs")
        h = keras.layers.Flatten()(inputs)
        h = keras.layers.Dense(256, activation="relu")(h)
        z = keras.layers.Dense(64, name="embedding")(h)
        logits = mrl_keras.MatryoshkaHead(10, mrl_keras.nesting_dims(64), name="matryoshka_head")(z)
        model = keras.Model(inputs, logits)
        model.compile("adam", loss=mrl_keras.MatryoshkaLoss())
        model.fit(
            x_train[:n_fit], data["y_train"][:n_fit], batch_size=256, epochs=epochs, verbose=0
        )
        export_saved_model(
            model,
            base,
            version=1,
            model_name=MODEL_NAME,
            calibration_data=(x_train[50_000:], data["y_train"][50_000:]),
            overwrite=True,
        )
    if not index_dir.exists():
        from mrl_keras.serving import LocalModel

        common.log(f"building the serving benchmark index over {corpus} images ...")
        backend = LocalModel(str(base))
        emb = np.concatenate(
            [backend.embed(x_train[i : i + 1000], 64).embeddings for i in range(0, corpus, 1000)]
        )[:corpus]
        backend.close()
        build_index(index_dir, emb, shortlist_dim=16, model_name=MODEL_NAME, model_version=1)
    return base, index_dir, x_test


def _mrl(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from mrl_keras.cli import main; sys.exit(main())",
        *args,
    ]


@contextlib.contextmanager
def process(cmd: list[str], log_path: Path, ready, timeout_s: float = 180.0):
    """Runs `cmd` (output to `log_path`) until `ready()` is true; terminates it on exit."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + timeout_s
            while not ready():
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd[3:5]} exited with {proc.returncode}: see {log_path}")
                if time.time() > deadline:
                    raise RuntimeError(f"{cmd[3:5]} not ready after {timeout_s} s: see {log_path}")
                time.sleep(0.5)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _http_ready(url: str) -> bool:
    import requests

    try:
        return requests.get(url + "/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _grpc_ready(port: int, log_path: Path) -> bool:
    """The dev model server prints `serving ...` once a version is AVAILABLE."""
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", port)) != 0:
            return False
    return log_path.exists() and "serving " in log_path.read_text(errors="replace")


def load(url: str, bodies: list[bytes], concurrency: int, requests_n: int, seconds: float):
    """Sends up to `requests_n` POSTs from `concurrency` threads, stopping after `seconds`."""
    import requests

    lock = threading.Lock()
    state = {"next": 0}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop_at = time.perf_counter() + seconds

    def worker():
        session = requests.Session()
        headers = {"Content-Type": "application/json"}
        while True:
            with lock:
                i = state["next"]
                if i >= requests_n or time.perf_counter() > stop_at:
                    return
                state["next"] = i + 1
            t0 = time.perf_counter()
            try:
                r = session.post(url, data=bodies[i % len(bodies)], headers=headers, timeout=30)
                ok, key = r.status_code == 200, f"HTTP {r.status_code}"
            except requests.RequestException as e:
                ok, key = False, type(e).__name__
            dt = time.perf_counter() - t0
            with lock:
                if ok:
                    latencies.append(dt)
                else:
                    errors[key] = errors.get(key, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    p50, p99 = common.percentiles_ms(latencies)
    return {
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "qps": len(latencies) / wall,
        "p50_ms": p50,
        "p99_ms": p99,
        "wall_s": wall,
    }


def direct(backend, index_dir: Path, images: np.ndarray, n: int) -> dict[str, Any]:
    """Direct Python calls, one example at a time: the work the service wraps."""
    from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever
    from mrl_keras.serving.backends.cascade_client import CascadeClassifier

    retriever = AdaptiveRetriever(AdaptiveIndex.load(index_dir), backend)
    cascade = CascadeClassifier(backend)
    out = {}
    for route, fn in (
        ("search", lambda x: retriever.search(x, k=10)),
        ("classify", lambda x: cascade.classify(x)),
    ):
        for i in range(3):
            fn(images[i : i + 1])
        lat = []
        t_start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            fn(images[i % len(images)][None])
            lat.append(time.perf_counter() - t0)
        wall = time.perf_counter() - t_start
        p50, p99 = common.percentiles_ms(lat)
        out[route] = {"qps": n / wall, "p50_ms": p50, "p99_ms": p99, "requests": n}
    return out


def bodies_for(images: np.ndarray, route: str, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        body: dict[str, Any] = {"instances": images[i % len(images)][None].round(4).tolist()}
        if route == "search":
            body["k"] = 10
        out.append(json.dumps(body).encode())
    return out


def run_backend(label: str, serve_args: list[str], args, index_dir: Path, images, work: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = _mrl(
        "serve",
        *serve_args,
        "--index",
        str(index_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    )
    rows = []
    common.log(f"{label}: starting mrl serve on {url} ...")
    with process(cmd, work / f"serve_{label.split()[0]}.log", lambda: _http_ready(url)):
        for route in ("search", "classify"):
            bodies = bodies_for(images, route, 64)
            load(f"{url}/v1/{route}", bodies, 2, 10, 30)  # warm-up
            for c in args.concurrency:
                res = load(f"{url}/v1/{route}", bodies, c, args.requests, args.seconds)
                res.update(backend=label, route=route, concurrency=c)
                common.log(
                    f"  {route} c={c}: {res['qps']:.0f} QPS p50 {res['p50_ms']:.1f} ms "
                    f"p99 {res['p99_ms']:.1f} ms errors {res['errors']}"
                )
                rows.append(res)
    return rows


def render(run: dict[str, Any]) -> str:
    lines = [
        *common.run_header(
            run,
            ", shared with other work (load average at start {load}); client threads, service "
            "and model server share the same cores",
        ),
        f"- Workload: {run['workload']}",
        "",
    ]
    rows = []
    for r in run["rows"]:
        d = run["direct"][r["backend"]][r["route"]]
        overhead = r["p50_ms"] - d["p50_ms"] if r["concurrency"] == 1 else float("nan")
        rows.append(
            [
                r["backend"],
                r["route"],
                r["concurrency"],
                r["requests"],
                r["qps"],
                r["p50_ms"],
                r["p99_ms"],
                r["errors"],
                d["p50_ms"],
                overhead,
            ]
        )
    lines.append(
        common.md_table(
            [
                "backend",
                "route",
                "concurrency",
                "requests",
                "QPS",
                "p50 ms",
                "p99 ms",
                "errors",
                "direct call p50 ms",
                "service overhead p50 ms (c=1)",
            ],
            rows,
        )
    )
    lines += [
        "",
        "Direct Python calls (same backend, one example per call, sequential): "
        + "; ".join(
            f"{b} {route} {v['qps']:.0f} calls/s, p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms"
            for b, routes in run["direct"].items()
            for route, v in routes.items()
        ),
    ]
    lines += [f"- {s}" for s in run.get("skipped", [])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__)
    p.add_argument("--concurrency", default="1,4,16", help="client threads, comma-separated")
    p.add_argument("--requests", type=int, default=600, help="max requests per load step")
    p.add_argument("--seconds", type=float, default=20.0, help="max seconds per load step")
    p.add_argument("--corpus", type=int, default=20_000, help="images in the index")
    p.add_argument("--epochs", type=int, default=1, help="training epochs of the model")
    p.add_argument("--backends", default="local,grpc", help="local,grpc")
    p.add_argument("--cache", type=Path, default=common.DEFAULT_CACHE)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (CI)")
    p.add_argument("--no-results", action="store_true")
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    backends = args.backends.split(",")
    if set(backends) - {"local", "grpc"} or min(args.concurrency) < 1 or args.requests < 1:
        p.error("expected --backends within local,grpc, --concurrency >= 1 and --requests >= 1")
    if args.quick:
        args.concurrency, args.requests, args.seconds, args.corpus = [1, 2], 10, 5.0, 2000
        args.no_results = args.results_dir is None
    started = time.time()
    work = args.cache / "serving_work"
    work.mkdir(parents=True, exist_ok=True)
    base, index_dir, images = prepare_artifacts(
        args.cache, args.corpus, args.epochs, 5_000 if args.quick else 50_000
    )
    images = images[:256]
    rows: list[dict[str, Any]] = []
    direct_res: dict[str, Any] = {}
    skipped: list[str] = []
    n_direct = 20 if args.quick else 300
    if "local" in backends:
        from mrl_keras.serving import LocalModel

        label = "local (in-process SavedModel)"
        backend = LocalModel(str(base))
        direct_res[label] = direct(backend, index_dir, images, n_direct)
        backend.close()
        rows += run_backend(label, ["--model", str(base)], args, index_dir, images, work)
    if "grpc" in backends:
        from mrl_keras.serving import TFServingGrpc

        label = "gRPC (mrl model-server)"
        gport = free_port()
        cmd = _mrl(
            "model-server",
            "--model-base-path",
            str(base),
            "--model-name",
            MODEL_NAME,
            "--port",
            str(gport),
            "--rest-api-port",
            "0",
            "--host",
            "127.0.0.1",
        )
        common.log(f"{label}: starting the dev model server on 127.0.0.1:{gport} ...")
        ms_log = work / "model_server.log"
        with process(cmd, ms_log, lambda: _grpc_ready(gport, ms_log)):
            backend = TFServingGrpc(f"127.0.0.1:{gport}", MODEL_NAME)
            direct_res[label] = direct(backend, index_dir, images, n_direct)
            backend.close()
            rows += run_backend(
                label,
                ["--tf-serving-grpc", f"127.0.0.1:{gport}", "--model-name", MODEL_NAME],
                args,
                index_dir,
                images,
                work,
            )
    run = {
        "command": common.command_line(argv, "benchmarks.serving"),
        "date": common.utc_now(),
        "wall_s": time.time() - started,
        "machine": common.machine(),
        "versions": common.versions(
            "tensorflow", "keras", "numpy", "mrl_keras", "fastapi", "uvicorn", "grpc"
        ),
        "workload": (
            f"one 28x28x1 image per request; search k=10 over {args.corpus:,} items "
            "(D_s 16, K 200, D_r 64); classify = cascade; client threads "
            f"{args.concurrency}, at most {args.requests} requests and {args.seconds:.0f} s per "
            "step, after a warm-up"
        ),
        "rows": rows,
        "direct": direct_res,
        "skipped": skipped,
    }
    text = render(run)
    print(text)
    if not args.no_results:
        out = args.results_dir or common.BENCH_DIR
        common.save_json(out / "results" / "serving.json", run)
        common.write_section(SECTION, text, out / "RESULTS.md")
    errors = sum(r["errors"] for r in rows)
    return 0 if errors == 0 or not args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
