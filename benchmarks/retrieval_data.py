"""Databases, queries, cached ground truth and quality metrics for `benchmarks/retrieval.py`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from benchmarks import synthetic
from benchmarks.common import Timer, log
from benchmarks.contenders import K, exact_topk
from mrl_keras import retrieval_metrics
from mrl_keras.retrieval_metrics import l2_normalize


@dataclasses.dataclass
class Dataset:
    """A database with labels, queries with labels, and the exact full-d top-10 of each query."""

    name: str
    db: np.ndarray
    db_labels: np.ndarray
    queries: np.ndarray
    query_labels: np.ndarray
    gt: np.ndarray | None = None
    notes: str = ""


def synthetic_dataset(n: int, d: int, classes: int, queries: int, cache: Path, seed: int = 0):
    """The documented generator (`benchmarks/synthetic.py`), cached as `.npy` under `cache`."""
    folder = cache / f"synthetic_n{n}_d{d}_c{classes}_s{seed}"
    done = folder / "done"
    # chunks are seeded by their index, so whole chunks of a larger database are exactly the
    # database of that size
    larger = _larger_cached(cache, n, d, classes, seed) if n % synthetic.CHUNK == 0 else None
    if not done.exists() and larger is not None:
        log(f"using the first {n:,} rows of {larger}")
        folder.mkdir(parents=True, exist_ok=True)
        db = np.load(larger / "db.npy", mmap_mode="r")[:n]
        labels = np.load(larger / "db_labels.npy")[:n]
        np.save(folder / "db_labels.npy", labels)
        (folder / "source").write_text(str(larger) + "\n")
        done.write_text("ok\n")
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        log(f"generating {n} x {d} synthetic database into {folder} ...")
        with Timer() as t:
            db = np.lib.format.open_memmap(folder / "db.npy", "w+", np.float32, (n, d))
            _, labels = synthetic.generate(n, d, classes, seed=seed, out=db)
            db.flush()
            del db
            np.save(folder / "db_labels.npy", labels)
        log(f"  generated in {t.seconds:.0f} s")
        done.write_text("ok\n")
    qfile = folder / f"queries_{queries}.npz"
    if not qfile.exists():
        q, ql = synthetic.generate(queries, d, classes, seed=seed, stream=synthetic.QUERY_STREAM)
        np.savez(qfile, queries=q, labels=ql)
    with np.load(qfile) as z:
        q, ql = z["queries"], z["labels"]
    source = folder / "source"
    if source.exists():
        db = np.load(Path(source.read_text().strip()) / "db.npy", mmap_mode="r")[:n]
    else:
        db = np.load(folder / "db.npy", mmap_mode="r")
    return Dataset(
        name=f"synthetic {n:,} x {d}, {classes} classes",
        db=db,
        db_labels=np.load(folder / "db_labels.npy"),
        queries=q,
        query_labels=ql,
        notes=(
            f"generator: benchmarks/synthetic.py (alpha={synthetic.DEFAULT_ALPHA}, "
            f"j0={synthetic.DEFAULT_J0}, noise={synthetic.DEFAULT_NOISE}, seed={seed})"
        ),
    )


def _larger_cached(cache: Path, n: int, d: int, classes: int, seed: int) -> Path | None:
    best = None
    for folder in cache.glob(f"synthetic_n*_d{d}_c{classes}_s{seed}"):
        try:
            m = int(folder.name.split("_")[1][1:])
        except ValueError:
            continue
        if m > n and (folder / "done").exists() and not (folder / "source").exists():
            if best is None or m < best[0]:
                best = (m, folder)
    return None if best is None else best[1]


def npz_dataset(path: Path, queries: int, seed: int = 0) -> Dataset:
    """Real embeddings from a `.npz`: `embeddings` (or `db`) and `labels`, optionally
    `queries` and `query_labels` (else `queries` rows are held out at random as queries).
    Rows are L2-normalised."""
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.keys())
        emb_key = "embeddings" if "embeddings" in keys else "db"
        if emb_key not in keys or "labels" not in keys:
            raise ValueError(
                f"Expected arrays 'embeddings' (or 'db') and 'labels' in {path}. "
                f"Received: {sorted(keys)}"
            )
        db, labels = z[emb_key].astype(np.float32), z["labels"].astype(np.int64)
        q = z["queries"].astype(np.float32) if "queries" in keys else None
        ql = z["query_labels"].astype(np.int64) if "query_labels" in keys else None
    if q is None:
        rng = np.random.default_rng(seed)
        perm = rng.permutation(db.shape[0])
        qi, di = perm[:queries], perm[queries:]
        db, labels, q, ql = db[di], labels[di], db[qi], labels[qi]
    else:
        q, ql = q[:queries], ql[:queries]
    db, q = l2_normalize(db), l2_normalize(q)
    return Dataset(Path(path).stem, np.ascontiguousarray(db), labels, q, ql, notes=str(path))


def fashion_mnist_dataset(cache: Path, queries: int, epochs: int = 3, d: int = 64) -> Dataset:
    """Embeddings of Fashion-MNIST from a quick MRL model trained here (cached).

    An MLP (784 -> 512 -> d) with `mrl_keras.MatryoshkaHead` on nesting dims 8..d and
    `MatryoshkaLoss`, trained `epochs` epochs; the database is the 60,000 training images, the
    queries the first `queries` test images.
    """
    path = cache / f"fashion_mnist_mrl_d{d}_e{epochs}.npz"
    if not path.exists():
        import keras

        import mrl_keras
        from mrl_keras.training.data import load_fashion_mnist

        data = load_fashion_mnist()
        x_train = data["x_train"].reshape(len(data["x_train"]), -1).astype("float32") / 255.0
        x_test = data["x_test"].reshape(len(data["x_test"]), -1).astype("float32") / 255.0
        y_train, y_test = data["y_train"].astype("int64"), data["y_test"].astype("int64")
        dims = mrl_keras.nesting_dims(d)
        log(f"training a quick MRL model on Fashion-MNIST (d={d}, {epochs} epochs) ...")
        keras.utils.set_random_seed(0)
        inputs = keras.Input((x_train.shape[1],), name="inputs")
        h = keras.layers.Dense(512, activation="relu")(inputs)
        z = keras.layers.Dense(d, name="embedding")(h)
        logits = mrl_keras.MatryoshkaHead(10, dims, name="matryoshka_head")(z)
        model = keras.Model(inputs, logits)
        model.compile(optimizer="adam", loss=mrl_keras.MatryoshkaLoss())
        model.fit(x_train, y_train, batch_size=256, epochs=epochs, verbose=0)
        embed = keras.Model(inputs, z)
        db = embed.predict(x_train, batch_size=1024, verbose=0)
        q = embed.predict(x_test, batch_size=1024, verbose=0)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, embeddings=db, labels=y_train, queries=q, query_labels=y_test)
    ds = npz_dataset(path, queries)
    ds.name = f"Fashion-MNIST quick MRL model (60,000 x {d}, 10 classes)"
    ds.notes = f"MLP 784-512-{d} + MatryoshkaHead, {epochs} epochs (cached at {path})"
    return ds


CJK_SETTINGS = {  # benchmarks/RESULTS.md, "Many-class CJK benchmark (1,000 classes), 6 epochs"
    "cjk_classes": 1000,
    "cjk_train_per_class": 20,
    "cjk_test_per_class": 10,
    "cjk_image_size": 24,
    "holdout": 0.05,
    "backbone": "small_resnet",
    "d": 512,
    "width": 16,
    "stem_stride": 2,
    "epochs": 6,
    "batch_size": 64,
    "learning_rate": 2e-3,
}


def _require_cjk_fonts(fonts: str | None) -> None:
    """Every face the font set names must be installed (else the data silently changes)."""
    from mrl_keras.training import cjk

    root = Path(cjk.FONT_ROOT)
    if fonts in (None, "all"):
        wanted, script = [p for p, _, _, _ in cjk.FACES], "scripts/setup_cjk.sh"
    elif fonts == "small":
        wanted, script = list(cjk.SMALL_FACES), "scripts/setup.sh"
    else:
        return  # explicit font files: the builder names any that are missing
    missing = [p for p in wanted if not (root / p).exists()]
    if missing:
        raise SystemExit(
            f"error: --data cjk needs the Debian CJK fonts: {len(missing)} of {len(wanted)} "
            f"faces are missing (e.g. {root / missing[0]}). Install them with `bash {script}`."
        )


def cjk_dataset(
    cache: Path,
    queries: int,
    fonts: str | None = None,
    data_dir: str | None = None,
    **overrides,
) -> Dataset:
    """Embeddings of the many-class CJK benchmark from an MRL model trained here (cached).

    Trains `mrl_keras.training.train` with the settings of the 6-epoch CJK benchmark in
    benchmarks/RESULTS.md (`CJK_SETTINGS`; `overrides` replace any of them, e.g. for tests),
    then embeds with the model's `embedding` layer at full d: the database is the train split
    (the holdout removed), the queries the test split (faces unseen in training), shuffled once
    with seed 0 so that the first `queries` of them span the classes.

    Args:
        cache: the benchmark cache; the run directory and the `.npz` go under it, keyed by
            the settings.
        queries: number of queries kept.
        fonts: the CJK font set (`None`/`"all"`: every face of `scripts/setup_cjk.sh`;
            `"small"`: the four faces of `scripts/setup.sh`).
        data_dir: where the rendered images are cached (default the builder's).
    """
    unknown = set(overrides) - set(CJK_SETTINGS)
    if unknown:
        raise ValueError(
            f"Unknown CJK settings {sorted(unknown)}. Expected some of {sorted(CJK_SETTINGS)}."
        )
    s = CJK_SETTINGS | overrides
    font_set = fonts or "all"
    key = (
        f"c{s['cjk_classes']}_tr{s['cjk_train_per_class']}_te{s['cjk_test_per_class']}"
        f"_px{s['cjk_image_size']}_h{s['holdout']}_{s['backbone']}_d{s['d']}_w{s['width']}"
        f"_ss{s['stem_stride']}_e{s['epochs']}_b{s['batch_size']}_lr{s['learning_rate']}"
        f"_{_slug_fonts(font_set)}"
    )
    path = cache / f"cjk_mrl_{key}.npz"
    train_s = None
    if not path.exists():
        _require_cjk_fonts(fonts)
        import keras
        import tensorflow as tf

        from mrl_keras.training import TrainConfig, train
        from mrl_keras.training.train import load_splits

        config = TrainConfig(
            dataset="cjk",
            out=str(cache / f"cjk_run_{key}"),  # a killed run resumes from its backup
            mode="mrl",
            cjk_fonts=fonts,
            data_dir=data_dir,
            verbose=0,
            **s,
        )
        log(f"training an MRL model on the CJK benchmark ({key}) into {config.out} ...")
        data = load_splits(config)
        with Timer() as t:
            summary = train(config, data=data)
        train_s = t.seconds
        log(
            f"  trained in {train_s:.0f} s (fit {summary['train_seconds']} s); test top-1 "
            + " ".join(f"{m}:{a:.3f}" for m, a in summary["accuracy"].items())
        )
        model = keras.saving.load_model(summary["model"], compile=False)
        embed = keras.Model(model.inputs, model.get_layer("embedding").output)
        fn = tf.function(lambda x: embed(x, training=False), reduce_retracing=True)

        def run(split):
            zs, ys = [], []
            for x, y in split.batch(512).prefetch(2):
                zs.append(np.asarray(fn(x), np.float32))
                ys.append(y.numpy())
            return np.concatenate(zs), np.concatenate(ys).astype(np.int64)

        db, labels = run(data.train)
        q, ql = run(data.test)
        order = np.random.default_rng(0).permutation(len(q))
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            embeddings=db,
            labels=labels,
            queries=q[order],
            query_labels=ql[order],
            train_seconds=np.float64(train_s),
            fit_seconds=np.float64(summary["train_seconds"]),
            test_top1=np.array(json.dumps(summary["accuracy"])),
        )
        tmp.replace(path)
    with np.load(path) as z:
        fit_s = float(z["fit_seconds"]) if "fit_seconds" in z else float("nan")
        top1 = json.loads(str(z["test_top1"])) if "test_top1" in z else {}
    ds = npz_dataset(path, queries)
    n, d = ds.db.shape
    ds.name = f"Many-class CJK MRL model ({n:,} x {d}, {s['cjk_classes']:,} classes)"
    full = top1.get(str(d))
    ds.notes = (
        f"small_resnet (width {s['width']}, stem stride {s['stem_stride']}) + MatryoshkaHead, "
        f"mrl_keras.training on CJK {s['cjk_classes']} classes x {s['cjk_train_per_class']} "
        f"train / {s['cjk_test_per_class']} test per class ({s['cjk_image_size']} px, "
        f"{font_set} fonts, test faces unseen), {s['epochs']} epochs, fit {fit_s:.0f} s"
        + (f", head top-1 @{d} {full:.3f}" if full is not None else "")
        + f"; db = train split, queries = test split (cached at {path})"
    )
    return ds


def _slug_fonts(fonts: str) -> str:
    if fonts in ("all", "small"):
        return fonts
    return "f" + hashlib.sha256(fonts.encode()).hexdigest()[:8]


def ground_truth(ds: Dataset, cache: Path) -> np.ndarray:
    """Exact full-d top-10 of each query (cached by a digest of the queries and the db shape)."""
    digest = hashlib.sha256(np.ascontiguousarray(ds.queries).tobytes()).hexdigest()[:16]
    head = hashlib.sha256(np.asarray(ds.db[:64]).tobytes()).hexdigest()[:8]
    path = cache / "gt" / f"gt_{ds.db.shape[0]}x{ds.db.shape[1]}_{head}_{digest}.npy"
    if path.exists():
        return np.load(path)
    log(f"exact ground truth for {len(ds.queries)} queries over {ds.db.shape[0]:,} rows ...")
    with Timer() as t:
        gt = exact_topk(ds.db, ds.queries, K)
    log(f"  ground truth in {t.seconds:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, gt)
    return gt


def recall_at_k(found: np.ndarray, gt: np.ndarray) -> float:
    """Mean fraction of the exact top-k found in the returned top-k."""
    hits = [
        len(np.intersect1d(f[f >= 0], g, assume_unique=False))
        for f, g in zip(found, gt, strict=True)
    ]
    return float(np.mean(hits) / gt.shape[1])


def map_at_k(found: np.ndarray, db_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """mAP@k by class of ranked database rows (`-1`: no result), k = `found.shape[1]`:
    `mrl_keras.retrieval_metrics.map_at_k`, AP@k = sum_{i<=k} P@i * rel_i / min(k, R)."""
    found = np.asarray(found)
    labels = db_labels[np.where(found >= 0, found, 0)]
    return retrieval_metrics.map_at_k(
        labels, query_labels, db_labels, k=found.shape[1], valid=found >= 0
    )
