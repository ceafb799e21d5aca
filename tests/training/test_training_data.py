import gzip
import struct

import numpy as np
import pytest

from mrl_keras.training import data as D


def write_idx(path, array):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_read_idx_round_trip(tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(str(tmp_path / "x.gz"), x)
    np.testing.assert_array_equal(D.read_idx(str(tmp_path / "x.gz")), x)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="Expected an IDX file"):
        D.read_idx(str(tmp_path / "bad"))


def test_fashion_mnist_offline_and_holdout(fashion_small):
    splits = fashion_small
    assert splits.input_shape == (28, 28, 1)
    assert (splits.num_train, splits.num_holdout, splits.num_test) == (512, 128, 128)
    assert splits.num_classes == 10 and splits.class_names[0] == "T-shirt/top"
    x, y = D.to_numpy(splits.train)
    assert x.shape == (512, 28, 28, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
    hx, _ = D.to_numpy(splits.holdout)
    # the holdout is carved from train: no image is in both
    train_keys = {a.tobytes() for a in (x * 255).astype(np.uint8)}
    assert not any(h.tobytes() in train_keys for h in (hx * 255).astype(np.uint8))
    raw = D.load_fashion_mnist()
    assert raw["x_train"].shape == (60000, 28, 28) and raw["y_test"].shape == (10000,)


def test_pipeline_batches_by_global_batch_and_is_seeded(fashion_small):
    ds = D.make_pipeline(
        fashion_small.train,
        64,
        num_replicas=2,
        shuffle=True,
        seed=1,
        drop_remainder=True,
        augment="shift",
        input_shape=(28, 28, 1),
    )
    batches = list(ds.take(3).as_numpy_iterator())
    assert all(b[0].shape == (64, 28, 28, 1) for b in batches)
    again = list(
        D.make_pipeline(
            fashion_small.train, 64, num_replicas=2, shuffle=True, seed=1, drop_remainder=True
        )
        .take(1)
        .as_numpy_iterator()
    )
    first = list(
        D.make_pipeline(
            fashion_small.train, 64, num_replicas=2, shuffle=True, seed=1, drop_remainder=True
        )
        .take(1)
        .as_numpy_iterator()
    )
    np.testing.assert_array_equal(again[0][1], first[0][1])
    with pytest.raises(ValueError, match="multiple of the 3 replicas"):
        D.make_pipeline(fashion_small.train, 64, num_replicas=3)
    with pytest.raises(ValueError, match="augment in"):
        D.make_pipeline(fashion_small.train, 64, augment="rotate")


def test_resize_and_rgb():
    splits = D.load_data(
        "fashion_mnist", holdout=8, max_train=16, max_test=8, image_size=32, channels=3
    )
    x, _ = D.to_numpy(splits.test)
    assert splits.input_shape == (32, 32, 3) and x.shape == (8, 32, 32, 3)


def test_cjk_through_load_data(tmp_path):
    splits = D.load_data(
        "cjk",
        data_dir=str(tmp_path),
        holdout=0.25,
        cjk=dict(num_classes=12, image_size=16, train_per_class=4, test_per_class=2, fonts="small"),
    )
    assert splits.num_classes == 12 and splits.input_shape == (16, 16, 1)
    assert (splits.num_train, splits.num_holdout, splits.num_test) == (36, 12, 24)
    assert len(splits.class_names) == 12


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'no_such_dataset_xyz'"):
        D.load_data("no_such_dataset_xyz")
    with pytest.raises(ValueError, match="Route 1, offline.*missing.*Route 2, TFDS"):
        D.load_fashion_mnist(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="holdout"):
        D.load_data("fashion_mnist", holdout=-1)


def test_offline_tfds_name_says_it_could_not_download(tmp_path):
    from mrl_keras.training.data import load_data

    with pytest.raises(ValueError, match=r"TFDS could not download 'mnist' \(no network\?\)"):
        load_data("mnist", data_dir=str(tmp_path / "tfds"))


def test_a_tfds_name_without_tensorflow_datasets_names_the_extra(monkeypatch):
    import sys

    from mrl_keras.training.data import load_data

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # a core-only install
    with pytest.raises(ValueError, match=r"pip install 'mrl-keras\[tfds\]'"):
        load_data("cifar10")
