"""The corpus sources on Beam's DirectRunner (in memory): image folders, globs and TFRecords."""

import io

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from mrl_keras.pipelines import sources

SHAPE = (None, 28, 28, 1)


def _png(pixels):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _save(element, out):
    import pickle
    import uuid

    with open(f"{out}/{uuid.uuid4().hex}.pkl", "wb") as f:
        pickle.dump(element, f)


def _collect(transform, out):
    """The (id, input) elements a source produces (written to files by the pipeline's DoFn,
    which runs on a pickled copy, so it cannot append to a list here)."""
    import pickle

    out.mkdir(exist_ok=True)
    with beam.Pipeline("DirectRunner") as p:
        _ = p | transform | beam.Map(_save, str(out))
    elements = [pickle.loads(f.read_bytes()) for f in out.iterdir()]
    for f in out.iterdir():
        f.unlink()
    return elements


def test_decode_image_scales_and_resizes(fm_images):
    _, raw = fm_images
    x = sources.decode_image(_png(raw[0]), SHAPE)
    np.testing.assert_allclose(x[..., 0], raw[0] / 255.0, atol=1e-7)
    assert sources.decode_image(_png(raw[0]), (None, 14, 14)).shape == (14, 14)
    with pytest.raises(ValueError, match="image model"):
        sources.decode_image(_png(raw[0]), (None, 10))


def test_image_folder_ids_are_relative_paths(tmp_path, fm_images):
    _, raw = fm_images
    (tmp_path / "a" / "b").mkdir(parents=True)
    names = ["top.png", "a/one.png", "a/b/two.png"]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(_png(raw[i]))
    (tmp_path / "notes.txt").write_text("not an image")
    got = dict(_collect(sources.ImageFiles(str(tmp_path), SHAPE), tmp_path.parent / "got1"))
    assert sorted(got) == sorted(names)
    for i, name in enumerate(names):
        np.testing.assert_allclose(got[name][..., 0], raw[i] / 255.0, atol=1e-7)
    assert sorted(dict(_collect(sources.ImageFiles(str(tmp_path / "a" / "*.png"), SHAPE), tmp_path.parent / "got2"))) == ["one.png"]


def test_tfrecord_examples_with_string_and_int_ids(tmp_path, fm_images):
    import tensorflow as tf

    _, raw = fm_images
    path = str(tmp_path / "corpus.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(5):
            ident = tf.train.Feature(int64_list=tf.train.Int64List(value=[100 + i])) if i % 2 else \
                tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"s{i}".encode()]))
            example = tf.train.Example(features=tf.train.Features(feature={
                "id": ident,
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png(raw[i])])),
            }))
            writer.write(example.SerializeToString())
    got = dict(_collect(sources.TFRecordImages(path, SHAPE), tmp_path / "got"))
    assert sorted(got, key=str) == sorted(["s0", 101, "s2", 103, "s4"], key=str)
    np.testing.assert_allclose(got[103][..., 0], raw[3] / 255.0, atol=1e-7)
    with pytest.raises(Exception, match="no feature 'label'"):
        _collect(sources.TFRecordImages(path, SHAPE, id_key="label"), tmp_path / "got")


def test_npy_shards_without_ids_files_use_file_and_row(tmp_path):
    np.save(tmp_path / "batch.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    with beam.Pipeline("DirectRunner") as p:
        ids = p | sources.NpyShards(str(tmp_path / "*.npy")) | beam.Map(lambda kv: kv[0])
        assert_that(ids, equal_to(["batch:0", "batch:1", "batch:2"]))
    with pytest.raises(ValueError, match="No .npy files"):
        sources.NpyShards(str(tmp_path / "none*.npy"))


def test_dataset_split_reads_fashion_mnist_offline():
    rows = sources._split_rows(("fashion_mnist", "test", SHAPE))
    first = next(rows)
    assert first[0] == "fashion_mnist/test/0" and first[1].shape == (28, 28, 1)
    small = next(sources._split_rows(("fashion_mnist", "test", (None, 14, 14))))
    assert small[1].shape == (14, 14) and 0.0 <= small[1].min() <= small[1].max() <= 1.0
