"""`mrl embed` on Beam's DirectRunner with 1, 2 and 4 worker processes over the same corpus.

The corpus: Fashion-MNIST's 60,000 training images repeated with seeded augmentation (a random
shift of up to 2 pixels, a horizontal flip half the time, brightness x U(0.8, 1.2)) up to
`--items`, written as `.npy` shards of model inputs (float32 (n, 28, 28, 1)) with ids files.
The model: the Fashion-MNIST MLP of the serving tests (784 -> 256 -> z of d = 64, MatryoshkaHead
over 8..64), untrained (throughput does not depend on the weights), exported with
`mrl_keras.export`. Each worker count runs the same `run_embed` job (multi_processing mode);
a sampler reads the RSS of every Beam worker process every 0.2 s (peak per worker).

    nice -n 10 python -m benchmarks.beam_embed_scaling --items 200000 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import common


def make_corpus(out: Path, items: int, files: int, seed: int = 0) -> None:
    from mrl_keras.serving.retrieval.corpus import load_dataset_split

    images, _ = load_dataset_split("fashion_mnist", "train")
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for f, rows in enumerate(np.array_split(np.arange(items), files)):
        src = images[rows % len(images), :, :, 0].astype(np.float32) / 255.0
        shifts = rng.integers(-2, 3, size=(len(rows), 2))
        flips = rng.random(len(rows)) < 0.5
        gain = rng.uniform(0.8, 1.2, size=(len(rows), 1, 1)).astype(np.float32)
        x = np.empty_like(src)
        for i in range(len(rows)):
            img = np.roll(src[i], tuple(shifts[i]), axis=(0, 1))
            x[i] = img[:, ::-1] if flips[i] else img
        x = np.clip(x * gain, 0.0, 1.0)[..., None]
        np.save(out / f"part{f:03d}.npy", x)
        np.save(out / f"part{f:03d}.ids.npy", np.array([f"fm{r:07d}" for r in rows]))


def export_model(base: Path) -> str:
    import keras

    import mrl_keras
    from mrl_keras.export import export_saved_model

    keras.utils.set_random_seed(0)
    dims = (8, 16, 32, 64)
    inputs = keras.Input((28, 28, 1), name="inputs")
    h = keras.layers.Dense(256, activation="relu")(keras.layers.Flatten()(inputs))
    z = keras.layers.Dense(64, name="embedding")(h)
    model = keras.Model(inputs, mrl_keras.MatryoshkaHead(10, dims)(z), name="fashion_mnist_mlp")
    export_saved_model(model, str(base), 1, model_name="fashion_mnist")
    return str(base)


class RssSampler:
    """Peak RSS (MiB) of each descendant process of this one, sampled every `period` s."""

    def __init__(self, period: float = 0.2):
        import psutil

        self.me, self.period, self.peak = psutil.Process(), period, {}
        self.main_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                self.main_peak = max(self.main_peak, self.me.memory_info().rss / 2**20)
                for child in self.me.children(recursive=True):
                    try:
                        rss = child.memory_info().rss / 2**20
                        cmd = child.cmdline()
                    except psutil.Error:
                        continue
                    # the Python SDK workers (not the `sh -c` that starts each)
                    if "sdk_worker_main" in " ".join(cmd) and "python" in os.path.basename(cmd[0]):
                        self.peak[child.pid] = max(self.peak.get(child.pid, 0.0), rss)
            except psutil.Error:
                pass
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--max-batch-size", type=int, default=256)
    parser.add_argument("--work", default=str(common.DEFAULT_CACHE / "beam_embed"))
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)
    started = time.time()
    load = os.getloadavg()[0]
    work = Path(args.work)
    corpus = work / f"corpus-{args.items}"
    if not (corpus / f"part{args.files - 1:03d}.npy").exists():
        common.log(f"writing {args.items} augmented images to {corpus}")
        make_corpus(corpus, args.items, args.files)
    base = work / "model" / "fashion_mnist"
    if not (base / "1").exists():
        export_model(base)
    from mrl_keras.pipelines.embed import EmbedJob, run_embed

    rows = []
    for w in [int(v) for v in args.workers.split(",")]:
        out = work / f"out-{w}"
        shutil.rmtree(out, ignore_errors=True)
        job = EmbedJob("npy", str(corpus / "part*.npy"), str(base), str(out),
                       num_shards=args.shards, max_batch_size=args.max_batch_size)
        beam_args = ["--runner", "DirectRunner", "--direct_num_workers", str(w),
                     "--direct_running_mode", "multi_processing"]
        common.log(f"mrl embed with {w} worker process(es) ...")
        with RssSampler() as rss:
            t0 = time.perf_counter()
            manifest = run_embed(job, beam_args)
            wall = time.perf_counter() - t0
        assert manifest["count"] == args.items, manifest["count"]
        peaks = sorted(rss.peak.values(), reverse=True)
        rows.append({"workers": w, "wall_s": wall, "items_per_s": args.items / wall,
                     "worker_peak_rss_mib": peaks, "driver_peak_rss_mib": rss.main_peak})
        common.log(f"  {wall:.1f} s, {args.items / wall:.0f} items/s, worker peak RSS {peaks}")
    base_rate = rows[0]["items_per_s"]
    table = common.md_table(
        ["workers", "wall s", "items/s", "speed-up vs 1", "peak RSS per worker (MiB)", "driver peak RSS (MiB)"],
        [[r["workers"], f"{r['wall_s']:.1f}", f"{r['items_per_s']:.0f}", f"{r['items_per_s'] / base_rate:.2f}x",
          ", ".join(f"{p:.0f}" for p in r["worker_peak_rss_mib"]),
          f"{r['driver_peak_rss_mib']:.0f}"] for r in rows],
    )
    run = {"command": common.command_line(argv, "benchmarks.beam_embed_scaling"), "date": common.utc_now(),
           "wall_s": time.time() - started, "machine": dict(common.machine(), load_avg_1m_at_start=round(load, 2)),
           "versions": common.versions("apache_beam", "tensorflow", "numpy"), "rows": rows,
           "items": args.items}
    common.save_json(common.BENCH_DIR / "results" / "beam_embed_scaling.json", run)
    print(table)
    if not args.no_write:
        body = "\n".join(common.run_header(run, "; shared with other agents' work (load average at start {load})")) + "\n\n"
        body += (f"{args.items} items (Fashion-MNIST train repeated with seeded augmentation, `.npy` shards "
                 f"of float32 model inputs), {args.shards} output shards, BatchElements up to "
                 f"{args.max_batch_size}; the untrained 784-256-64 MLP.\n\n" + table + "\n")
        common.write_section("Embedding with Apache Beam (mrl embed, DirectRunner)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
