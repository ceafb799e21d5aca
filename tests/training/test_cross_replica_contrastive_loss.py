"""`CrossReplicaContrastiveLoss`: under MirroredStrategy on two logical CPUs, the loss and the
gradients equal one device's over the concatenated batch (and NumPy's InfoNCE)."""

import json

import keras
import numpy as np
import pytest
from training_helpers import run_python

from mrl_keras import MatryoshkaContrastiveLoss
from mrl_keras.training.cross_replica_contrastive_loss import CrossReplicaContrastiveLoss
from tests.testing import run_serialization_test

DIMS = (2, 4, 8)
BATCH = 8
TEMPERATURE = 0.2

SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from mrl_keras import MatryoshkaContrastiveLoss
from mrl_keras.training.cross_replica_contrastive_loss import CrossReplicaContrastiveLoss

DIMS, BATCH, T = (2, 4, 8), 8, 0.2
rng = np.random.default_rng(0)
xa = rng.normal(size=(BATCH, 5)).astype("float32")
xb = rng.normal(size=(BATCH, 7)).astype("float32")
wa = rng.normal(size=(5, 8)).astype("float32")
wb = rng.normal(size=(7, 8)).astype("float32")

def build():
    ia, ib = keras.Input((5,)), keras.Input((7,))
    a = keras.layers.Dense(8, use_bias=False, name="tower_a")(ia)
    b = keras.layers.Dense(8, use_bias=False, name="tower_b")(ib)
    model = keras.Model([ia, ib], keras.ops.stack([a, b], axis=1))
    model.get_layer("tower_a").set_weights([wa])
    model.get_layer("tower_b").set_weights([wb])
    return model

def loss_and_grads(model, loss_fn, inputs):
    with tf.GradientTape() as tape:
        loss = loss_fn(None, model(inputs))
    return loss, tape.gradient(loss, model.trainable_weights)

out = {}
one = build()
loss, grads = loss_and_grads(one, MatryoshkaContrastiveLoss(DIMS, T), [xa, xb])
out["single_loss"] = float(loss)
out["single_grads"] = [g.numpy().tolist() for g in grads]
# Outside a replica context the cross-replica loss is the plain one.
out["eager_cross_replica"] = float(CrossReplicaContrastiveLoss(DIMS, T)(None, one([xa, xb])))

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    mirrored = build()

def shard(context):
    i, n = context.replica_id_in_sync_group, context.num_replicas_in_sync
    size = BATCH // n
    return [tf.constant(xa[i * size:(i + 1) * size]), tf.constant(xb[i * size:(i + 1) * size])]

inputs = strategy.experimental_distribute_values_from_function(shard)
for name, loss_fn in [("cross_replica", CrossReplicaContrastiveLoss(DIMS, T)),
                      ("per_replica", MatryoshkaContrastiveLoss(DIMS, T))]:
    @tf.function
    def step(inputs):
        return strategy.run(lambda x: loss_and_grads(mirrored, loss_fn, x), args=(inputs,))
    loss, grads = step(inputs)
    # Keras scales each replica's loss by 1/N (keras.losses.Loss under tf.distribute): sum them.
    total = tf.distribute.ReduceOp.SUM
    out[name + "_loss"] = float(strategy.reduce(total, loss, axis=None))
    out[name + "_grads"] = [strategy.reduce(total, g, axis=None).numpy().tolist() for g in grads]

# model.fit: a few SGD steps under MirroredStrategy equal a single device's.
data = rng.normal(size=(64, 5)).astype("float32"), rng.normal(size=(64, 7)).astype("float32")
for name, scope, loss_cls in [("fit_single", tf.distribute.OneDeviceStrategy("/cpu:0"),
                               MatryoshkaContrastiveLoss),
                              ("fit_mirrored", strategy, CrossReplicaContrastiveLoss),
                              ("fit_per_replica", strategy, MatryoshkaContrastiveLoss)]:
    with scope.scope():
        model = build()
        model.compile(keras.optimizers.SGD(0.5), loss=loss_cls(DIMS, T))
    history = model.fit(list(data), None, batch_size=16, epochs=1, shuffle=False, verbose=0)
    out[name] = {"loss": history.history["loss"][-1],
                 "weights": [w.tolist() for w in model.get_weights()]}
print("RESULT" + json.dumps(out))
"""


def _log_softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _numpy_loss():
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(BATCH, 5)), rng.normal(size=(BATCH, 7))
    wa, wb = rng.normal(size=(5, 8)), rng.normal(size=(7, 8))
    a, b = xa.astype("float32") @ wa.astype("float32"), xb.astype("float32") @ wb.astype("float32")
    total = np.zeros(BATCH)
    idx = np.arange(BATCH)
    for m in DIMS:
        a_m = a[:, :m] / np.linalg.norm(a[:, :m], axis=1, keepdims=True)
        b_m = b[:, :m] / np.linalg.norm(b[:, :m], axis=1, keepdims=True)
        s = a_m @ b_m.T / TEMPERATURE
        total += 0.5 * (-_log_softmax(s, 1)[idx, idx] - _log_softmax(s, 0)[idx, idx])
    return total.mean()


@pytest.fixture(scope="module")
def result():
    proc = run_python(SCRIPT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT")[-1])


def test_loss_over_the_global_batch_equals_one_device_and_numpy(result):
    expected = _numpy_loss()
    assert result["single_loss"] == pytest.approx(expected, rel=1e-5)
    assert result["cross_replica_loss"] == pytest.approx(expected, rel=1e-5)
    assert result["eager_cross_replica"] == pytest.approx(expected, rel=1e-5)
    # The plain loss under MirroredStrategy has per-replica negatives: a different value.
    assert abs(result["per_replica_loss"] - expected) > 1e-3


def test_gradients_over_the_global_batch_equal_one_device(result):
    for single, mirrored, naive in zip(
        result["single_grads"],
        result["cross_replica_grads"],
        result["per_replica_grads"],
        strict=True,
    ):
        np.testing.assert_allclose(mirrored, single, rtol=1e-4, atol=1e-6)
        assert np.abs(np.array(naive) - np.array(single)).max() > 1e-4


def test_fit_under_mirrored_strategy_equals_one_device(result):
    single, mirrored = result["fit_single"], result["fit_mirrored"]
    assert mirrored["loss"] == pytest.approx(single["loss"], rel=1e-4)
    for a, b in zip(single["weights"], mirrored["weights"], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    naive = result["fit_per_replica"]
    assert abs(naive["loss"] - single["loss"]) > 1e-3


def test_serialization_and_plain_value():
    loss = CrossReplicaContrastiveLoss(DIMS, temperature=0.3, nesting_weights=[1, 2, 1])
    revived = run_serialization_test(loss)
    assert revived.name == "cross_replica_contrastive_loss" and revived.temperature == 0.3
    y_pred = np.random.default_rng(1).normal(size=(BATCH, 2, 8)).astype("float32")
    plain = MatryoshkaContrastiveLoss(DIMS, temperature=0.3, nesting_weights=[1, 2, 1])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loss(None, y_pred)),
        keras.ops.convert_to_numpy(plain(None, y_pred)),
        rtol=1e-6,
    )
