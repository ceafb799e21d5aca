"""`CrossReplicaContrastiveLoss`: the Matryoshka InfoNCE with negatives from the global batch.

TensorFlow-side (it uses `tf.distribute`), so it lives in `training/`; the core
`mrl_keras.MatryoshkaContrastiveLoss` stays in `keras.ops` and runs on every backend.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mrl_keras.matryoshka_contrastive_loss import MatryoshkaContrastiveLoss
from mrl_keras.types import Tensor


@keras.saving.register_keras_serializable(package="mrl_keras")
class CrossReplicaContrastiveLoss(MatryoshkaContrastiveLoss):
    """`mrl_keras.MatryoshkaContrastiveLoss` with both towers all-gathered across replicas.

    Under a data-parallel `tf.distribute` strategy (`MirroredStrategy`,
    `MultiWorkerMirroredStrategy`, `TPUStrategy`) each replica sees `B/N` of the global batch
    `B`. This loss all-gathers both towers' full embeddings (every prefix is a slice of them)
    with `tf.distribute.ReplicaContext.all_gather`, so each local example is contrasted with
    the `B - 1` negatives of the global batch in both directions, as in ALIGN (Jia et al.,
    2021) and the MRL-ALIGN models of Kusupati et al., "Matryoshka Representation Learning"
    (NeurIPS 2022, section 4.1). Each replica returns the values of its own examples; with the
    default `"sum_over_batch_size"` reduction Keras scales each replica's mean by `1/N` and
    sums over replicas, which gives exactly the loss of one device over the concatenated batch,
    and the gradients too (the gradient of `all_gather` sums the upstream gradients of every
    replica before slicing).

    Outside a replica context with several replicas (eager calls, the default strategy,
    `OneDeviceStrategy`) the gather is a no-op and this is `MatryoshkaContrastiveLoss`.
    Every replica must call the loss the same number of times (`all_gather` is collective),
    which `model.fit` does. The per-replica batches may differ in size (a short last batch).

    Args:
        As for `mrl_keras.MatryoshkaContrastiveLoss`; `name` defaults to
        `"cross_replica_contrastive_loss"`.

    Example:

    ```python
    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
        model = keras.Model([image_inputs, text_inputs], keras.ops.stack([a, b], axis=1))
        model.compile("adam", loss=mrl_keras.training.CrossReplicaContrastiveLoss(dims))
    model.fit(pairs, epochs=1)    # negatives: the whole global batch
    ```
    """

    def __init__(self, *args, name: str = "cross_replica_contrastive_loss", **kwargs) -> None:
        super().__init__(*args, name=name, **kwargs)

    def _gather(self, x: Tensor) -> Tensor | None:
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return None
        return context.all_gather(x, axis=0)
