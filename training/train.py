"""The fit program: `train(config, strategy=None)` trains an MRL, MRL-E or the fixed-feature
baselines under any `tf.distribute` strategy, resumes a killed run from its backup, and writes
the run directory described in docs/INTERFACES.md.

Over 400 lines because the fit program's stages (strategy, data, model, optimiser and warmup,
resume from backup, the FF loop, the summary) share one run's state."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import mrl_keras
from mrl_keras.training.anisotropy import check_anisotropy
from mrl_keras.training.backbones import DEFAULT_DIMS, DEFAULT_WARMUP_EPOCHS, SMALLEST_DIM
from mrl_keras.training.data import DataSplits, load_data, make_pipeline, to_numpy
from mrl_keras.training.models import build_model, set_trainable_layers
from mrl_keras.training.strategy import is_chief, mixed_precision_policy, select_strategy
from mrl_keras.training.train_config import TrainConfig

HOLDOUT_LIMIT = 10_000


def _log(message: str) -> None:
    print(f"[mrl train] {message}", flush=True)


def _atomic_json(path: str, payload: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _save_model(model: keras.Model, path: str) -> None:
    tmp = path + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def load_splits(config: TrainConfig) -> DataSplits:
    """Loads the dataset a config names."""
    return load_data(
        config.dataset,
        data_dir=config.data_dir,
        holdout=config.holdout,
        seed=config.seed,
        max_train=config.max_train,
        max_test=config.max_test,
        image_size=config.image_size,
        channels=config.channels,
        cjk=config.cjk_options(),
    )


def resolve_dims(config: TrainConfig) -> tuple[int, ...]:
    """The nesting dims (mrl, mrl-e) or ff widths a config asks for."""
    if config.dims:
        return mrl_keras.validate_nesting_dims(config.dims)
    d = config.d or DEFAULT_DIMS[config.backbone]
    return mrl_keras.nesting_dims(d, SMALLEST_DIM[config.backbone])


def _init_from(model: keras.Model, path: str, input_shape) -> int:
    if not os.path.exists(path):
        raise ValueError(f"--init-from model not found: {path}")
    source = keras.saving.load_model(path, compile=False)
    if tuple(source.input_shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"--init-from model expects inputs of shape {tuple(source.input_shape[1:])}; the data "
            f"has {tuple(input_shape)}. Pass --image-size/--channels to match."
        )
    by_name = {
        layer.name: layer
        for layer in source._flatten_layers(include_self=False, recursive=True)
        if layer.weights
    }
    copied = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        other = by_name.get(layer.name)
        if other is None or not layer.weights or layer.name == "matryoshka_head":
            continue
        mine, theirs = layer.get_weights(), other.get_weights()
        if len(mine) == len(theirs) and all(
            a.shape == b.shape for a, b in zip(mine, theirs, strict=True)
        ):
            layer.set_weights(theirs)
            copied += 1
    if not copied:
        raise ValueError(f"--init-from {path}: no layer matches the new model by name and shape.")
    return copied


@contextlib.contextmanager
def _multi_worker_workarounds(model: keras.Model, strategy, data: DataSplits):
    """Works around two Keras 3 bugs with MultiWorkerMirroredStrategy (keras-team/keras#20585).

    1. fit/evaluate build the model from the first batch by `strategy.reduce`-ing it across
       workers in eager mode, which fails ("Attempt to convert a value (PerReplica...)"): build
       model, loss, metrics and optimizer here from one local batch and skip that step.
    2. The step's scalar logs are reduced with `strategy.reduce("MEAN", v, axis=0)`, which
       fails on scalars: reduce them locally instead. Gradients are still all-reduced across
       workers by the optimizer; only the *logged* loss and metrics are this worker's own.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    x, y = next(iter(data.train.batch(2)))
    with strategy.scope():
        model._symbolic_build(data_batch=(x, y))
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    original = tf_trainer._collective_all_reduce_multi_worker
    tf_trainer._collective_all_reduce_multi_worker = lambda strategy: False
    try:
        yield
    finally:
        tf_trainer._collective_all_reduce_multi_worker = original


def warmup_steps(config: TrainConfig, epochs: int, steps_per_epoch: int) -> int:
    """Steps of linear warmup: `warmup_epochs` (or the backbone's default) epochs, at most all
    steps but one."""
    warmup = config.warmup_epochs
    if warmup is None:
        warmup = DEFAULT_WARMUP_EPOCHS[config.backbone]
    total = max(1, epochs * steps_per_epoch)
    return max(0, min(int(round(warmup * steps_per_epoch)), total - 1))


def learning_rate_schedule(config: TrainConfig, epochs: int, steps_per_epoch: int):
    """Linear warmup from 0 to `learning_rate` over `warmup_steps`, then cosine decay to 1% of
    it over the remaining steps."""
    total = max(1, epochs * steps_per_epoch)
    warmup = warmup_steps(config, epochs, steps_per_epoch)
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=total, alpha=0.01
        )
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=total - warmup,
        alpha=0.01,
        warmup_target=config.learning_rate,
        warmup_steps=warmup,
    )


def _strategy_name(strategy) -> str:
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__.lstrip("_")


class _EpochProgress(keras.callbacks.Callback):
    """One line per epoch with elapsed time, for logs that are not a terminal, and once, early
    in the first epoch, the estimated time per epoch and for the run."""

    def __init__(self, label: str, epochs: int, steps: int, estimate_after: int = 20):
        super().__init__()
        self.label, self.epochs, self.steps = label, epochs, steps
        self.estimate_after = estimate_after
        self.start = time.time()
        self.estimated = False
        self.first_batch_end: float | None = None

    def on_train_batch_end(self, batch, logs=None):
        if self.estimated:
            return
        now = time.time()
        if self.first_batch_end is None:  # the first step includes tracing: time from its end
            self.first_batch_end = now
            return
        timed = batch  # steps since the first one ended
        if timed >= min(self.estimate_after, self.steps - 1):
            per_step = (now - self.first_batch_end) / max(1, timed)
            per_epoch = per_step * self.steps
            _log(
                f"{self.label}: ~{per_epoch:.0f} s per epoch ({per_step * 1000:.0f} ms per step "
                f"over {timed} steps), ~{per_epoch * self.epochs / 60:.1f} min for "
                f"{self.epochs} epochs"
            )
            self.estimated = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        accs = " ".join(
            f"{m}:{logs[f'val_accuracy@{m}']:.3f}"
            for m in sorted(int(k.split("@")[1]) for k in logs if k.startswith("val_accuracy@"))
        )
        _log(
            f"{self.label} epoch {epoch + 1}/{self.epochs} loss={logs.get('loss', float('nan')):.4f} "
            f"val_acc[{accs}] ({time.time() - self.start:.0f}s)"
        )


def _train_one(
    config: TrainConfig,
    data: DataSplits,
    strategy: tf.distribute.Strategy,
    run_dir: str,
    mode: str,
    dims: tuple[int, ...],
    epochs: int,
    ff_dim: int | None = None,
) -> dict[str, Any]:
    chief = is_chief(strategy)
    # Non-chief workers write their (identical) state to their own scratch folder.
    work_dir = (
        run_dir
        if chief
        else os.path.join(
            run_dir,
            ".workers",
            f"{strategy.cluster_resolver.task_type}_{strategy.cluster_resolver.task_id}",
        )
    )
    for sub in ("checkpoints", "backup"):
        os.makedirs(os.path.join(work_dir, sub), exist_ok=True)
    label = os.path.basename(run_dir.rstrip("/")) or run_dir

    batch = config.batch_size
    replicas = strategy.num_replicas_in_sync
    steps = config.steps_per_epoch or max(1, data.num_train // batch)
    with strategy.scope():
        model = build_model(
            config.backbone,
            data.input_shape,
            data.num_classes,
            nesting_dims=None if mode == "ff" else dims,
            mode=mode,
            d=config.d,
            ff_dim=ff_dim,
            backbone_options=config.backbone_options(),
        )
        if config.init_from:
            copied = _init_from(model, config.init_from, data.input_shape)
            frozen = set_trainable_layers(model, config.trainable_layers)
            _log(f"initialised {copied} layers from {config.init_from}; froze {frozen} layers")
        schedule = learning_rate_schedule(config, epochs, steps)
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
        head_dims = (ff_dim,) if mode == "ff" else dims
        model.compile(
            optimizer=optimizer,
            loss=mrl_keras.MatryoshkaLoss(),
            metrics=mrl_keras.matryoshka_metrics(head_dims),
        )

    train_ds = make_pipeline(
        data.train,
        batch,
        num_replicas=replicas,
        shuffle=True,
        augment=config.augment,
        input_shape=data.input_shape,
        seed=config.seed,
        drop_remainder=True,
    ).repeat()
    val_ds = None
    if data.holdout is not None:
        val_ds = make_pipeline(data.holdout, batch, num_replicas=replicas)
    monitor = "val_loss" if val_ds is not None else "loss"
    backup_dir = os.path.join(work_dir, "backup")
    meta_path = os.path.join(backup_dir, "training_metadata.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            done = json.load(f).get("epoch", 0)
        if done >= epochs:  # a finished run's backup (kept: delete_checkpoint=False)
            _log(f"{label}: the backup already holds all {epochs} epochs; nothing left to train")
        else:
            _log(f"{label}: resuming from backup at epoch {done + 1}/{epochs}")
    callbacks = [
        # Progress and history first: a run killed right after its backup has logged the epoch.
        _EpochProgress(label, epochs, steps),
        keras.callbacks.CSVLogger(os.path.join(work_dir, "history.csv"), append=True),
        keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(os.path.join(work_dir, "checkpoints", "last.keras")),
        keras.callbacks.ModelCheckpoint(
            os.path.join(work_dir, "checkpoints", "best.keras"),
            monitor=monitor,
            save_best_only=True,
        ),
        keras.callbacks.TensorBoard(os.path.join(work_dir, "tensorboard"), write_graph=False),
    ]
    verbose = config.verbose
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 0
    _log(
        f"{label}: {mode} {config.backbone} dims={list(head_dims)} on {data.name} "
        f"({data.num_train} train, {data.num_classes} classes), {epochs} epochs x {steps} steps, "
        f"global batch {batch} over {replicas} replica(s) ({_strategy_name(strategy)})"
    )
    probe = data.train.shuffle(4096, seed=config.seed).batch(min(256, max(2, data.num_train)))
    x_probe, _ = next(iter(probe))
    anisotropy = check_anisotropy(model, x_probe, label=label)
    if chief:
        _log(f"{label}: embedding anisotropy at start (mean pairwise cosine): {anisotropy:.3f}")
    start = time.time()
    test_ds = make_pipeline(data.test, batch, num_replicas=replicas)
    with _multi_worker_workarounds(model, strategy, data):
        model.fit(
            train_ds,
            epochs=epochs,
            steps_per_epoch=steps,
            validation_data=val_ds,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,
        )
        seconds = time.time() - start
        results = model.evaluate(test_ds, verbose=0, return_dict=True)
    accuracy = {str(m): float(results[f"accuracy@{m}"]) for m in head_dims}
    summary = {
        "mode": mode,
        "nesting_dims": list(head_dims),
        "accuracy": accuracy,
        "test_loss": float(results["loss"]),
        "anisotropy_at_start": round(anisotropy, 4),
        "warmup_steps": warmup_steps(config, epochs, steps),
        "steps": int(model.optimizer.iterations.numpy()),
        "epochs": epochs,
        "train_seconds": round(seconds, 1),
        "model": os.path.join(run_dir, "model.keras"),
    }
    _save_model(model, os.path.join(work_dir, "model.keras"))
    if chief:
        _atomic_json(os.path.join(run_dir, "summary.json"), summary)
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(work_dir))  # .workers, once every worker's is gone
        except OSError:
            pass
    return summary


def _print_table(rows: list[tuple[str, dict[str, float]]], num_test: int) -> None:
    print(f"\n| model | prefix | head top-1 on all {num_test} test images |\n|---|---:|---:|")
    for name, accuracy in rows:
        for m, acc in accuracy.items():
            print(f"| {name} | {m} | {acc:.4f} |")
    sys.stdout.flush()


def train(
    config: TrainConfig | dict[str, Any],
    strategy: tf.distribute.Strategy | None = None,
    data: DataSplits | None = None,
) -> dict[str, Any]:
    """Trains the model(s) a config describes and returns the run's summary.

    Running the same config again resumes a killed run from `RUN/backup/` (BackupAndRestore);
    `config.fresh` deletes the run directory first.

    Args:
        config: a `TrainConfig` (or its dict).
        strategy: a `tf.distribute.Strategy`; default `select_strategy(config.strategy)`.
        data: already loaded `DataSplits` (default: load `config.dataset`).

    Returns:
        dict with `run_dir`, `mode`, `nesting_dims`, `accuracy` ({dim: test top-1}), `steps`,
        and for `ff` the per-dim sub-run summaries under `runs`.

    Raises:
        ValueError: bad config, data or a run directory holding a different run.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    strategy = strategy or select_strategy(config.strategy, config.tpu)
    chief = is_chief(strategy)
    run_dir = config.out
    config_path = os.path.join(run_dir, "config.json")
    if config.fresh and chief and os.path.exists(run_dir):
        _log(f"--fresh: removing {run_dir}")
        shutil.rmtree(run_dir)
    if os.path.exists(config_path) and not config.fresh:
        previous = TrainConfig.load(config_path).run_key()
        if previous != config.run_key():
            changed = sorted(k for k in previous if previous[k] != config.run_key().get(k))
            raise ValueError(
                f"{run_dir} holds a run with a different config (changed: {', '.join(changed)}). "
                "Pass --fresh to start over or choose another --out."
            )
    keras.utils.set_random_seed(config.seed)
    data = data or load_splits(config)  # before writing anything: bad data leaves no run dir
    os.makedirs(run_dir, exist_ok=True)
    if chief:
        _atomic_json(config_path, config.to_dict())
    if (
        chief
        and data.holdout is not None
        and not os.path.exists(os.path.join(run_dir, "holdout.npz"))
    ):
        x, y = to_numpy(data.holdout, HOLDOUT_LIMIT)
        with open(os.path.join(run_dir, "holdout.npz.tmp"), "wb") as f:
            np.savez(f, x=x, y=y)
        os.replace(os.path.join(run_dir, "holdout.npz.tmp"), os.path.join(run_dir, "holdout.npz"))

    dims = resolve_dims(config)
    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy(mixed_precision_policy(strategy))
    try:
        if config.mode != "ff":
            summary = _train_one(config, data, strategy, run_dir, config.mode, dims, config.epochs)
            _print_table([(config.mode, summary["accuracy"])], data.num_test)
            return {"run_dir": run_dir, **summary}
        runs = {}
        for m in dims:
            keras.utils.set_random_seed(config.seed)
            sub_dir = os.path.join(run_dir, f"ff_{m}")
            if chief:
                os.makedirs(sub_dir, exist_ok=True)
                width = m if config.backbone != "resnet50" else config.d
                sub = dataclasses.replace(config, out=sub_dir, dims=(m,), d=width, fresh=False)
                _atomic_json(os.path.join(sub_dir, "config.json"), sub.to_dict())
            runs[str(m)] = _train_one(
                config,
                data,
                strategy,
                sub_dir,
                "ff",
                (m,),
                config.ff_epochs or config.epochs,
                ff_dim=m,
            )
        accuracy = {m: s["accuracy"][m] for m, s in runs.items()}
        summary = {
            "mode": "ff",
            "nesting_dims": list(dims),
            "accuracy": accuracy,
            "steps": sum(s["steps"] for s in runs.values()),
            "runs": runs,
        }
        if chief:
            _atomic_json(os.path.join(run_dir, "summary.json"), summary)
        _print_table([("ff", accuracy)], data.num_test)
        return {"run_dir": run_dir, **summary}
    finally:
        keras.config.set_dtype_policy(previous_policy)
