"""`evaluate(...)`: what the paper measures (sections 4.1-4.2) for every prefix of every model.

For each method (MRL, MRL-E, fixed-feature models, SVD and random features of the full FF
embedding) and each dimension m: head top-1 (where a head exists at m), linear-probe top-1,
1-NN top-1 (database = train, queries = test, cosine on re-normalised prefixes), mAP@k and P@k
with class relevance, and FLOPs per query of exact search (`m * N`).

Over 400 lines because it is one function's preparation (loading runs, embedding, baselines)
and its optional studies (robustness, few-shot), kept together so every table is computed
from the same embeddings.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import mrl_keras
from mrl_keras.training import metrics as M
from mrl_keras.training.data import DataSplits, load_data
from mrl_keras.training.train_config import TrainConfig

KS = (10, 25, 50, 100)


def _log(message: str) -> None:
    print(f"[mrl evaluate] {message}", flush=True)


def resolve_model_path(path: str) -> tuple[str, str | None]:
    """A run directory or a `.keras` file -> (model file, run config path or None)."""
    if os.path.isdir(path):
        model = os.path.join(path, "model.keras")
        config = os.path.join(path, "config.json")
    else:
        model = path
        config = os.path.join(os.path.dirname(path) or ".", "config.json")
        if not os.path.exists(config):
            config = os.path.join(os.path.dirname(os.path.dirname(path)) or ".", "config.json")
    if not os.path.exists(model):
        raise ValueError(f"Model not found: {model}. Pass a run directory or a .keras file.")
    return model, config if os.path.exists(config) else None


def ff_models(ff_dir: str) -> dict[int, str]:
    """The `ff_{m}/model.keras` files of an ff run directory, by width."""
    if not os.path.isdir(ff_dir):
        raise ValueError(f"FF run directory not found: {ff_dir}")
    found = {}
    for name in os.listdir(ff_dir):
        path = os.path.join(ff_dir, name, "model.keras")
        if name.startswith("ff_") and name[3:].isdigit() and os.path.exists(path):
            found[int(name[3:])] = path
    if not found:
        raise ValueError(f"No ff_<m>/model.keras under {ff_dir}. Train with `mrl train --mode ff`.")
    return dict(sorted(found.items()))


def interpolation_dims(d: int, smallest: int = 2) -> list[int]:
    """Every power of two and every midpoint (3 * 2^k) from `smallest` up to d, plus d."""
    out = set()
    p = 1
    while p <= d:
        for v in (p, 3 * p // 2):
            if smallest <= v <= d and v == int(v):
                out.add(int(v))
        p *= 2
    out.add(d)
    return sorted(out)


all_dims = interpolation_dims  # the name before `evaluate` took an `all_dims` argument


class _Embedder:
    def __init__(self, model: keras.Model):
        try:
            z = model.get_layer("embedding").output
        except ValueError as e:
            raise ValueError(
                f"Model {model.name!r} has no layer named 'embedding' (docs/INTERFACES.md)."
            ) from e
        try:
            head = model.get_layer("matryoshka_head")
            self.head_dims = tuple(int(m) for m in head.nesting_dims)
            outputs = [z, model.output]
        except ValueError:
            self.head_dims = ()
            outputs = [z]
        self.model = keras.Model(model.inputs, outputs)
        self.width = int(z.shape[-1])
        self._fn = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def run(self, dataset: tf.data.Dataset, batch_size: int):
        zs, preds, ys = [], [], []
        for x, y in dataset.batch(batch_size).prefetch(2):
            out = self._fn(x)
            zs.append(np.asarray(out[0], np.float32))
            if self.head_dims:
                preds.append(np.argmax(np.asarray(out[1], np.float32), axis=-1))
            ys.append(y.numpy())
        z = np.concatenate(zs)
        pred = np.concatenate(preds) if preds else None
        return z, pred, np.concatenate(ys).astype(np.int64)


def _measure(
    name,
    m,
    z_train,
    z_test,
    y_train,
    y_test,
    num_classes,
    ks,
    probe,
    probe_epochs,
    chunk_size,
    seed,
    head_acc=None,
):
    row: dict[str, Any] = {"method": name, "dim": int(m)}
    if head_acc is not None:
        row["head_top1"] = head_acc
    if probe:
        row["linear_probe_top1"] = M.linear_probe(
            z_train, y_train, z_test, y_test, num_classes, epochs=probe_epochs, seed=seed
        )
    kmax = min(max(ks), len(z_train))
    idx, _ = M.knn(z_test, z_train, kmax, chunk_size=chunk_size)
    labels = y_train[idx]
    row["1nn_top1"] = M.one_nn_accuracy(labels, y_test)
    row.update(M.retrieval_metrics(labels, y_test, y_train, [k for k in ks if k <= kmax]))
    row["flops_per_query"] = M.exact_search_flops(m, len(z_train))
    return row


def evaluate(
    models: dict[str, str] | list[str | tuple[str, str]] | str | None = None,
    ff: str | None = None,
    dataset: str | None = None,
    data: DataSplits | None = None,
    dims: list[int] | None = None,
    all_dims: bool = False,
    baselines: tuple[str, ...] = ("svd", "random"),
    ks: tuple[int, ...] = KS,
    probe: bool = True,
    probe_epochs: int = 10,
    max_train: int | None = None,
    max_test: int | None = None,
    data_dir: str | None = None,
    batch_size: int = 256,
    chunk_size: int = 1024,
    seed: int = 0,
    out: str | None = None,
    robustness: tuple[str, ...] = (),
    few_shot: tuple[int, ...] = (),
    novel_classes: int = 500,
) -> dict[str, Any]:
    """Evaluates the representations of trained models and the paper's baselines.

    Args:
        models: `{label: run dir or .keras}`, a list of paths or `(label, path)` pairs, or one
            path; e.g. `{"MRL": "runs/mrl", "MRL-E": "runs/mrl_e"}`. An empty label defaults
            to the run's mode (MRL, MRL-E, FF) or the file name.
        ff: an `ff` run directory (`ff_{m}/model.keras`): the fixed-feature baseline, and the
            source of the SVD and random-feature baselines (its widest model). Without it, SVD
            and random features come from the first model's full embedding.
        dataset: dataset name; default the first run's `config.json` dataset.
        data: already loaded `DataSplits` (overrides dataset).
        dims: the dims to evaluate; default the union of the models' nesting dims (and FF widths).
        all_dims: also every power of two and midpoint up to d (Figure 5's interpolation).
        baselines: subset of ("svd", "random").
        ks: cut-offs of mAP@k and P@k.
        probe: run the linear probe. probe_epochs: its epochs.
        max_train, max_test: subsample the database / queries.
        batch_size: inference batch. chunk_size: queries per 1-NN chunk.
        seed: seeds the probe and the random features.
        out: folder for `evaluation.json`, `evaluation.md` and the PNG plots.
        robustness: corruption names (`mrl_keras.training.corruptions.CORRUPTIONS`, plus
            `"clean"`): head and 1-NN top-1 per dim on corrupted test queries (seeded by
            `seed`) against the clean train database -> `result["robustness"]`.
        few_shot: shots per class (e.g. `(1, 5, 10)`): 1-NN top-1 per dim on `novel_classes`
            CJK classes no model was trained on (the GB2312 characters after the trained
            ones, same fonts and seed): the database holds that many train-font images per
            class, the queries are test-font images -> `result["few_shot"]`. CJK only.
        novel_classes: number of novel classes of the few-shot evaluation.

    Returns:
        dict with `rows` (one per method and dim), `dataset`, sizes and timing, and the
        `robustness` / `few_shot` rows when asked for.
    """
    start = time.time()
    if isinstance(models, str):
        models = [models]
    if isinstance(models, dict):
        models = list(models.items())
    models = [("", m) if isinstance(m, str) else tuple(m) for m in (models or [])]
    if not models and not ff:
        raise ValueError("Nothing to evaluate: pass at least one model or an ff run directory.")
    resolved: dict[str, str] = {}
    config: TrainConfig | None = None
    for label, path in models:
        model_path, config_path = resolve_model_path(path)
        run_config = TrainConfig.load(config_path) if config_path else None
        config = config or run_config
        if not label:
            label = {"mrl": "MRL", "mrl-e": "MRL-E", "ff": "FF"}.get(
                run_config.mode if run_config else "",
                os.path.splitext(os.path.basename(model_path))[0],
            )
        while label in resolved:
            label += "'"
        resolved[label] = model_path
    ff_paths = ff_models(ff) if ff else {}
    if ff and config is None and os.path.exists(os.path.join(ff, "config.json")):
        config = TrainConfig.load(os.path.join(ff, "config.json"))

    if data is None:
        name = dataset or (config.dataset if config else None)
        if not name:
            raise ValueError("Pass --dataset (no run config.json found next to the models).")
        if config is not None and name == config.dataset:
            data = load_data(
                name,
                data_dir=data_dir or config.data_dir,
                holdout=config.holdout,
                seed=config.seed,
                max_train=max_train,
                max_test=max_test,
                image_size=config.image_size,
                channels=config.channels,
                cjk=config.cjk_options(),
            )
        else:
            data = load_data(name, data_dir=data_dir, max_train=max_train, max_test=max_test)
    _log(
        f"{data.name}: database {data.num_train} train, {data.num_test} test queries, "
        f"{data.num_classes} classes"
    )

    embedded: dict[str, tuple] = {}

    def embed(label: str, path: str):
        mrl_keras.register_keras_objects()  # the .keras file holds a MatryoshkaHead
        model = keras.saving.load_model(path, compile=False)
        if tuple(model.input_shape[1:]) != tuple(data.input_shape):
            raise ValueError(
                f"Model {path} expects inputs {tuple(model.input_shape[1:])}; the dataset "
                f"{data.name} gives {tuple(data.input_shape)}. Evaluate with matching --image-size."
            )
        embedder = _Embedder(model)
        z_tr, _, y_tr = embedder.run(data.train, batch_size)
        z_te, pred, y_te = embedder.run(data.test, batch_size)
        _log(f"embedded {label} ({embedder.width}-d) in {time.time() - start:.0f}s")
        return embedder, z_tr, z_te, y_tr, y_te, pred

    rows: list[dict[str, Any]] = []
    for label, path in resolved.items():
        embedded[label] = embed(label, path)
    ff_embedded = {m: embed(f"FF-{m}", p) for m, p in ff_paths.items()}

    widths = [e[0].width for e in embedded.values()] + list(ff_paths)
    d = max(widths)
    head_dims = sorted({m for e in embedded.values() for m in e[0].head_dims} | set(ff_paths))
    eval_dims = sorted(set(dims) if dims else set(head_dims or [d]))
    if all_dims:
        eval_dims = sorted(set(eval_dims) | set(interpolation_dims(d, min(eval_dims + [8]))))

    any_e = next(iter(embedded.values()), None) or next(iter(ff_embedded.values()))
    y_train, y_test = any_e[3], any_e[4]
    common = dict(
        ks=ks,
        probe=probe,
        probe_epochs=probe_epochs,
        chunk_size=chunk_size,
        seed=seed,
        num_classes=data.num_classes,
        y_train=y_train,
        y_test=y_test,
    )

    for label, (embedder, z_tr, z_te, _, _, pred) in embedded.items():
        for m in eval_dims:
            if m > embedder.width:
                continue
            head = None
            if pred is not None and m in embedder.head_dims:
                head = float(np.mean(pred[:, embedder.head_dims.index(m)] == y_test))
            rows.append(_measure(label, m, z_tr[:, :m], z_te[:, :m], head_acc=head, **common))
            _log(f"{label} m={m}: 1-NN {rows[-1]['1nn_top1']:.4f} ({time.time() - start:.0f}s)")
    for m, (_, z_tr, z_te, _, _, pred) in ff_embedded.items():
        head = float(np.mean(pred[:, 0] == y_test)) if pred is not None else None
        rows.append(_measure("FF", m, z_tr, z_te, head_acc=head, **common))
        _log(f"FF m={m}: 1-NN {rows[-1]['1nn_top1']:.4f} ({time.time() - start:.0f}s)")

    if baselines:
        if ff_embedded:
            source = f"FF-{max(ff_embedded)}"
            _, z_tr_full, z_te_full, *_ = ff_embedded[max(ff_embedded)]
        else:
            source = next(iter(embedded))
            _, z_tr_full, z_te_full, *_ = embedded[source]
        full = z_tr_full.shape[1]
        if "svd" in baselines:
            mean, components = M.svd_basis(z_tr_full)
            for m in eval_dims:
                if m <= full:
                    rows.append(
                        _measure(
                            "SVD",
                            m,
                            M.svd_project(z_tr_full, mean, components, m),
                            M.svd_project(z_te_full, mean, components, m),
                            **common,
                        )
                    )
                    rows[-1]["source"] = source
                    _log(
                        f"{rows[-1]['method']} m={m}: 1-NN {rows[-1]['1nn_top1']:.4f} ({time.time() - start:.0f}s)"
                    )
        if "random" in baselines:
            order = M.random_feature_order(full, seed)
            for m in eval_dims:
                if m <= full:
                    rows.append(
                        _measure(
                            "Random", m, z_tr_full[:, order[:m]], z_te_full[:, order[:m]], **common
                        )
                    )
                    rows[-1]["source"] = source
                    _log(
                        f"{rows[-1]['method']} m={m}: 1-NN {rows[-1]['1nn_top1']:.4f} ({time.time() - start:.0f}s)"
                    )
        _log(f"baselines from {source} done ({time.time() - start:.0f}s)")

    extra: dict[str, Any] = {}
    ff_width = {f"FF-{m}": m for m in ff_embedded}
    everything = {**embedded, **{f"FF-{m}": e for m, e in ff_embedded.items()}}

    def embed_arrays(embedder, x, y):
        z, pred, _ = embedder.run(tf.data.Dataset.from_tensor_slices((x, y)), batch_size)
        return z, pred

    if robustness:
        from mrl_keras.training.data import to_numpy
        from mrl_keras.training.robustness import robustness_rows

        x_clean, y_clean = to_numpy(data.test)
        extra["robustness"] = robustness_rows(
            {k: (e[0], e[1], ff_width.get(k)) for k, e in everything.items()},
            x_clean,
            y_clean.astype(np.int64),
            y_train,
            eval_dims,
            robustness,
            embed_arrays,
            seed=seed,
            chunk_size=chunk_size,
        )
        for row in extra["robustness"]:
            if row["method"] in ff_width:
                row["method"] = "FF"
        _log(f"robustness under {list(robustness)} done ({time.time() - start:.0f}s)")
    if few_shot:
        from mrl_keras.training.data import to_numpy
        from mrl_keras.training.few_shot import few_shot_rows

        if data.name != "cjk" or config is None or config.dataset != "cjk":
            raise ValueError(
                "few_shot needs models trained on the cjk benchmark (its novel classes are the "
                f"characters after the trained ones). Received dataset {data.name!r}."
            )
        options = {
            **config.cjk_options(),
            "num_classes": int(novel_classes),
            "class_offset": int(data.num_classes),
            "train_per_class": max(int(k) for k in few_shot),
        }
        novel = load_data(
            "cjk",
            data_dir=data_dir or config.data_dir,
            holdout=0,
            image_size=config.image_size,
            channels=config.channels,
            cjk=options,
        )
        xs, ys = to_numpy(novel.train)
        xq, yq = to_numpy(novel.test)
        embedded_novel = {}
        for k, e in everything.items():
            z_support, _ = embed_arrays(e[0], xs, ys)
            z_query, _ = embed_arrays(e[0], xq, yq)
            embedded_novel[k] = (z_support, z_query, ff_width.get(k))
        extra["few_shot"] = few_shot_rows(
            embedded_novel,
            ys.astype(np.int64),
            yq.astype(np.int64),
            eval_dims,
            few_shot,
            chunk_size=chunk_size,
        )
        for row in extra["few_shot"]:
            if row["method"] in ff_width:
                row["method"] = "FF"
        extra["few_shot_data"] = {
            "novel_classes": int(novel_classes),
            "class_offset": int(data.num_classes),
            "support_pool": int(len(ys)),
            "queries": int(len(yq)),
        }
        _log(f"few-shot {list(few_shot)} on {novel_classes} novel classes done "
             f"({time.time() - start:.0f}s)")  # fmt: skip

    result = {
        "dataset": data.name,
        "num_train": data.num_train,
        "num_test": data.num_test,
        "num_classes": data.num_classes,
        "ks": list(ks),
        "dims": eval_dims,
        "models": resolved,
        "ff": {str(k): v for k, v in ff_paths.items()},
        "rows": rows,
        **extra,
        "seconds": round(time.time() - start, 1),
    }
    if out:
        from mrl_keras.training.report import write_report

        write_report(result, out)
        _log(f"wrote {out}/evaluation.json, evaluation.md and plots")
    return result


def load_evaluation(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)
