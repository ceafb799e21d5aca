"""Real MRL embeddings at scale: CJK glyph renders embedded by a model trained by our recipe.

The corpus is the 1,000 CJK classes of the model's training set, rendered over every *train*
face with seeded augmentation (shift, scale, rotation, stroke width, Gaussian noise), so that
millions of distinct images exist; the queries are rendered the same way from the *held-out*
faces (the design families `mrl_keras.training.cjk.split_faces` kept for test: the model never
saw them). Images are produced by a generator, one batch at a time, and embedded at once by the
model's `embedding` layer (full d); only the embeddings are kept, in a memory-mapped `.npy`
under the benchmark cache (outside git), L2-normalised. The work is resumable in chunks: a killed
run continues where it stopped, and a larger `--n` extends a smaller cached corpus (item `i`
depends only on the seed and `i`). `--workers` processes (default: one a core) render chunks
while the main process embeds; the corpus is the same for any worker count. The cache folder is
keyed by the model (its folder name and a hash of its resolved path), and a folder built by
another model is refused rather than extended.

Usage (from the repository root):

    python -m benchmarks.cjk_corpus --n 1000000          # ~ the headline corpus
    python -m benchmarks.cjk_corpus --n 1000000 --queries 1100 \
        --model /work/runs/cjk1000_d2048/s0/mrl/model.keras   # the d = 2048 table
    python -m benchmarks.cjk_corpus --n 20000 --queries 1000

The model defaults to /work/runs/cjk1000/s0/mrl/model.keras (CJK-1000, d=512, 24 px); any
`.keras` model of our training convention (a layer named `embedding`) works.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_CACHE, log

DEFAULT_MODEL = Path("/work/runs/cjk1000/s0/mrl/model.keras")
CHUNK = 8192  # items rendered + embedded per resumable unit
QUERY_STREAM = 7_000_001
FORMAT = 1


def augmentation(rng: np.random.Generator) -> dict[str, float]:
    """One draw of the augmentation parameters (wider than the training renders')."""
    return {
        "scale": float(rng.uniform(0.55, 0.9)),
        "angle": float(rng.uniform(-15.0, 15.0)),
        "dx": float(rng.uniform(-0.08, 0.08)),
        "dy": float(rng.uniform(-0.08, 0.08)),
        "stroke": int(rng.integers(0, 3)),  # extra stroke width in canvas pixels
        "noise": float(rng.uniform(0.0, 0.12)),
    }


class GlyphRenderer:
    """Renders a character on a 2x canvas with PIL, then box-downsamples to `image_size`."""

    def __init__(self, faces, image_size: int):
        from PIL import ImageFont

        self._font_cls = ImageFont
        self.faces, self.size, self.canvas = faces, image_size, 2 * image_size
        self._fonts: dict[tuple[int, int], object] = {}

    def _font(self, face: int, px: int):
        key = (face, px)
        if key not in self._fonts:
            f = self.faces[face]
            self._fonts[key] = self._font_cls.truetype(f.path, px, index=f.index)
        return self._fonts[key]

    def render(self, char: str, face: int, aug: dict[str, float], rng) -> np.ndarray:
        from PIL import Image, ImageDraw

        c = self.canvas
        font = self._font(face, max(4, int(round(aug["scale"] * c))))
        img = Image.new("L", (c, c), 0)
        draw = ImageDraw.Draw(img)
        stroke = int(aug["stroke"])
        left, top, right, bottom = draw.textbbox((0, 0), char, font=font, stroke_width=stroke)
        x = (c - (right - left)) / 2 - left + aug["dx"] * c
        y = (c - (bottom - top)) / 2 - top + aug["dy"] * c
        draw.text((x, y), char, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
        if aug["angle"]:
            img = img.rotate(aug["angle"], resample=Image.BILINEAR, fillcolor=0)
        out = np.asarray(img.resize((self.size, self.size), Image.BOX), dtype=np.float32) / 255.0
        if aug["noise"] > 0:
            out = out + rng.normal(0.0, aug["noise"], out.shape).astype(np.float32)
        return np.clip(out, 0.0, 1.0)


def corpus_setup(classes: int = 1000, seed: int = 0, fonts=None):
    """Faces (train, test), the class characters, as the CJK-1000 training run chose them."""
    from mrl_keras.training import cjk

    faces = cjk.available_faces(fonts)
    train_ids, test_ids = cjk.split_faces(faces, 0.2, seed)
    chars = cjk.select_characters(faces, classes)
    return faces, train_ids, test_ids, chars


def generate_images(renderer, chars, face_ids, start: int, stop: int, seed: int, stream: int):
    """Images `(stop - start, s, s, 1)` float32 and labels of items `start..stop-1`.

    Item `i` is class `i % classes`, face `face_ids[(i // classes) % len(face_ids)]`, with the
    augmentation of `default_rng([seed, stream, i])`: any item can be regenerated on its own.
    """
    s = renderer.size
    x = np.empty((stop - start, s, s, 1), np.float32)
    y = np.empty(stop - start, np.int64)
    classes = len(chars)
    for j, i in enumerate(range(start, stop)):
        rng = np.random.default_rng([seed, stream, i])
        label = i % classes
        face = face_ids[(i // classes + int(rng.integers(0, len(face_ids)))) % len(face_ids)]
        x[j, :, :, 0] = renderer.render(chars[label], face, augmentation(rng), rng)
        y[j] = label
    return x, y


_WORKER: dict = {}


def _worker_init(fonts, seed: int, image_size: int) -> None:
    faces, train_ids, _, chars = corpus_setup(seed=seed, fonts=fonts)
    _WORKER.update(renderer=GlyphRenderer(faces, image_size), chars=chars, ids=train_ids, seed=seed)


def _worker_render(span: tuple[int, int]):
    """Renders items `span[0]..span[1]-1` in a worker; returns `(x, y, process seconds)`."""
    t0 = time.process_time()
    w = _WORKER
    x, y = generate_images(w["renderer"], w["chars"], w["ids"], span[0], span[1], w["seed"], 1)
    return x, y, time.process_time() - t0


def model_key(model_path: Path) -> str:
    """Cache-folder key of a model: its folder's name and a hash of its resolved path.

    Two models in folders of the same name (`runs/a/s0/mrl`, `runs/b/s0/mrl`) must not share
    a cached corpus: the key was the folder name alone until 2026-12-04.
    """
    import hashlib

    resolved = str(Path(model_path).resolve())
    return f"{Path(model_path).parent.name}_{hashlib.sha1(resolved.encode()).hexdigest()[:8]}"


def corpus_folder(cache: Path, model_path: Path, seed: int) -> Path:
    return Path(cache) / f"cjk_corpus_{model_key(model_path)}_s{seed}_f{FORMAT}"


class Embedder:
    """The `embedding` layer of a trained `.keras` model, called in fixed-size batches."""

    def __init__(self, model_path: Path, batch: int = 512):
        import keras
        import tensorflow as tf

        import mrl_keras

        mrl_keras.register_keras_objects()
        model = keras.saving.load_model(str(model_path), compile=False)
        embed = keras.Model(model.inputs, model.get_layer("embedding").output)
        self.fn = tf.function(lambda x: embed(x, training=False), reduce_retracing=True)
        self.batch = batch
        self.dim = int(embed.output.shape[-1])
        self.image_size = int(model.inputs[0].shape[1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = [np.asarray(self.fn(x[b : b + self.batch])) for b in range(0, len(x), self.batch)]
        z = np.concatenate(out).astype(np.float32)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def build_corpus(
    n: int,
    queries: int,
    cache: Path = DEFAULT_CACHE,
    model_path: Path = DEFAULT_MODEL,
    seed: int = 0,
    fonts=None,
    time_budget_s: float | None = None,
    workers: int = 1,
) -> Path:
    """Renders and embeds the corpus (resumably) into `cache/cjk_corpus_*`; returns the folder.

    Peak memory is one chunk of images (8,192 x 24 x 24 floats) plus the model. With
    `time_budget_s`, stops after the chunk that crosses it (the folder then holds fewer rows;
    `status.json` says how many) and a later call continues. With `workers > 1`, that many
    spawned processes render chunks while this one embeds (the items, and so the corpus, are
    the same for any worker count: item `i` depends only on the seed and `i`).
    """
    if n < 1 or queries < 1:
        raise ValueError(f"Expected n >= 1 and queries >= 1. Received: n={n}, queries={queries}")
    if workers < 1:
        raise ValueError(f"Expected workers >= 1. Received: workers={workers}")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise SystemExit(f"error: no model at {model_path} (train one with `mrl train`)")
    folder = corpus_folder(cache, model_path, seed)
    folder.mkdir(parents=True, exist_ok=True)
    status_path = folder / "status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {"rows": 0}
    if status.get("model") not in (None, str(model_path.resolve())):
        raise SystemExit(
            f"error: {folder} holds the corpus of model {status['model']}, not {model_path}"
        )
    capacity = status.get("capacity", 0)
    db_path = folder / "db.npy"
    embedder = Embedder(model_path)
    faces, train_ids, test_ids, chars = corpus_setup(seed=seed, fonts=fonts)
    renderer = GlyphRenderer(faces, embedder.image_size)
    if capacity < n:  # grow the memory-mapped file, keeping what is done
        new = np.lib.format.open_memmap(folder / "db.tmp.npy", "w+", np.float32, (n, embedder.dim))
        labels = np.zeros(n, np.int64)
        if status["rows"]:
            old = np.load(db_path, mmap_mode="r")
            new[: status["rows"]] = old[: status["rows"]]
            labels[: status["rows"]] = np.load(folder / "db_labels.npy")[: status["rows"]]
            del old
        new.flush()
        del new
        os.replace(folder / "db.tmp.npy", db_path)
        np.save(folder / "db_labels.npy", labels)
        status["capacity"] = n
    qpath = folder / f"queries_{queries}.npz"
    if not qpath.exists():
        t0 = time.perf_counter()
        qx, ql = generate_images(renderer, chars, test_ids, 0, queries, seed, QUERY_STREAM)
        np.savez(qpath, queries=embedder(qx), labels=ql)
        log(
            f"cjk corpus: {queries} queries from held-out faces in {time.perf_counter() - t0:.0f} s"
        )
    db = np.load(db_path, mmap_mode="r+")
    labels = np.load(folder / "db_labels.npy")
    started = time.perf_counter()
    render_s = embed_s = 0.0
    done = first = int(status["rows"])
    spans = [(a, min(n, a + CHUNK)) for a in range(done, n, CHUNK)]
    pool = None
    if workers > 1 and spans:
        import multiprocessing

        # spawn: the workers must not inherit this process's TensorFlow threads
        pool = multiprocessing.get_context("spawn").Pool(
            workers, _worker_init, (fonts, seed, embedder.image_size)
        )
        rendered = pool.imap(_worker_render, spans)
    else:  # this process renders, with the renderer (and its font cache) built above
        _WORKER.update(renderer=renderer, chars=chars, ids=train_ids, seed=seed)
        rendered = map(_worker_render, spans)
    last = started
    try:
        for (a, stop), (x, y, render_cpu) in zip(spans, rendered, strict=True):
            t1 = time.perf_counter()
            db[a:stop] = embedder(x)
            t2 = time.perf_counter()
            render_s, embed_s = render_s + render_cpu, embed_s + t2 - t1
            labels[a:stop] = y
            done = stop
            db.flush()
            np.save(folder / "db_labels.npy", labels)
            status.update(
                rows=done,
                render_s=round(status.get("render_s", 0.0) + render_cpu, 1),
                embed_s=round(status.get("embed_s", 0.0) + t2 - t1, 1),
                wall_s=round(status.get("wall_s", 0.0) + t2 - last, 1),
                workers=workers,
                model=str(model_path.resolve()),
                d=embedder.dim,
                train_faces=[faces[i].path for i in train_ids],
                test_faces=[faces[i].path for i in test_ids],
            )
            tmp = status_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(status, indent=1))
            os.replace(tmp, status_path)
            last, rate = t2, max(1, done - first)
            elapsed = time.perf_counter() - started
            log(
                f"cjk corpus: {done:,}/{n:,} rows ({render_s:.0f} s render CPU in {workers} "
                f"worker(s), {embed_s:.0f} s embed, {elapsed / rate * 1e3:.2f} ms/item wall)"
            )
            if time_budget_s is not None and elapsed > time_budget_s:
                break
    finally:
        if pool is not None:
            pool.terminate()
    return folder


def load_corpus(cache: Path, queries: int, model_path: Path = DEFAULT_MODEL, seed: int = 0):
    """`(db memmap (rows, d), labels, queries, query labels, status)` of a built corpus."""
    folder = corpus_folder(cache, model_path, seed)
    status = json.loads((folder / "status.json").read_text())
    rows = int(status["rows"])
    db = np.load(folder / "db.npy", mmap_mode="r")[:rows]
    labels = np.load(folder / "db_labels.npy")[:rows]
    with np.load(folder / f"queries_{queries}.npz") as z:
        q, ql = z["queries"], z["labels"]
    return db, labels, q, ql, status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cjk_corpus", description=__doc__)
    p.add_argument("--n", type=int, default=1_000_000, help="corpus size (items)")
    p.add_argument("--queries", type=int, default=1000, help="queries from held-out faces")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-budget", type=float, default=None, help="stop after ~this many s")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="render processes (default: one a core); the corpus does not depend on it",
    )
    args = p.parse_args(argv)
    if args.n < 1 or args.queries < 1:
        p.error("--n and --queries must be >= 1")
    if args.workers < 1:
        p.error(f"--workers must be >= 1. Received: {args.workers}")
    folder = build_corpus(
        args.n,
        args.queries,
        args.cache,
        args.model,
        args.seed,
        time_budget_s=args.time_budget,
        workers=args.workers,
    )
    print(
        json.dumps(
            {
                k: v
                for k, v in json.loads((folder / "status.json").read_text()).items()
                if not k.endswith("faces")
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
