"""Choosing a `tf.distribute` strategy and the mixed-precision policy that goes with it."""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def _tpu_hinted() -> bool:
    # Only ask a TPU resolver when something says a TPU is there: the resolver may otherwise wait
    # on a cloud metadata server that does not exist on an ordinary machine.
    return bool(
        os.environ.get("TPU_NAME")
        or os.environ.get("COLAB_TPU_ADDR")
        or os.environ.get("TPU_WORKER_HOSTNAMES")
        or os.path.exists("/dev/accel0")
        or os.path.exists("/dev/vfio/0")
    )


def _tpu_strategy(tpu: str | None = None) -> tf.distribute.Strategy:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def select_strategy(name: str = "auto", tpu: str | None = None) -> tf.distribute.Strategy:
    """Returns the `tf.distribute.Strategy` for `name`.

    `auto` picks a TPU when a resolver finds one (and the environment hints at a TPU),
    `MultiWorkerMirroredStrategy` when `TF_CONFIG` names a cluster, `MirroredStrategy` with
    more than one GPU, else the default strategy (one device).

    Args:
        name: one of `STRATEGIES`.
        tpu: TPU name or address for `tpu` (default: from the environment).

    Raises:
        ValueError: unknown name, or `tpu` when no TPU is found.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}. Expected one of {STRATEGIES}.")
    if name == "auto":
        if tpu or _tpu_hinted():
            try:
                return _tpu_strategy(tpu)
            except (ValueError, RuntimeError, tf.errors.OpError):
                pass
        if json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster"):
            return tf.distribute.MultiWorkerMirroredStrategy()
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "tpu":
        try:
            return _tpu_strategy(tpu)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise ValueError(f"No TPU found for --strategy tpu ({e}). Pass --tpu NAME.") from e
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def mixed_precision_policy(strategy: tf.distribute.Strategy) -> str:
    """`mixed_bfloat16` on TPU and CPU, `mixed_float16` on GPU."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes shared outputs (all but multi-worker: always)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in (resolver.cluster_spec().as_dict() or {})
    )
