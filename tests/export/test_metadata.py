"""`assets/matryoshka.json`: writer, reader and validation (standard library only)."""

import copy
import json
import subprocess
import sys

import pytest

from mrl_keras.export.metadata import (
    metadata_path,
    read_metadata,
    validate_metadata,
    write_metadata,
)

GOOD = {
    "format_version": 1,
    "model_name": "fashion_mnist",
    "embedding_dim": 64,
    "nesting_dims": [8, 16, 32, 64],
    "exported_dims": [8, 16, 24, 32, 64],
    "num_classes": 10,
    "class_names": None,
    "normalized": True,
    "cascade": {"dims": [8, 16, 32, 64], "thresholds": [0.9, 0.9, 0.9, 0.0]},
    "input": {"name": "inputs", "shape": [None, 28, 28, 1], "dtype": "float32"},
    "signatures": [
        *[f"embed_{m}" for m in (8, 16, 24, 32, 64)],
        *[f"classify_{m}" for m in (8, 16, 32, 64)],
        "classify_cascade",
    ],
}


def test_round_trip_from_file_version_folder_and_base_path(tmp_path):
    base = tmp_path / "fashion_mnist"
    write_metadata(base / "1", {**GOOD, "model_name": "old"})
    path = write_metadata(base / "2", GOOD)
    (base / "not_a_version").mkdir()
    for where in (path, base / "2", base):
        meta = read_metadata(where)
        assert meta["version"] == 2
        assert meta["model_name"] == "fashion_mnist"
        assert meta["cascade"]["thresholds"] == [0.9, 0.9, 0.9, 0.0]
    assert read_metadata(base / "1")["model_name"] == "old"


@pytest.mark.parametrize(
    "change, match",
    [
        ({"format_version": 2}, "newer than this reader"),
        ({"format_version": "1"}, "format_version"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"nesting_dims": [16, 8]}, "nesting_dims"),
        ({"nesting_dims": [8, 128]}, "do not fit"),
        ({"exported_dims": [8, 16]}, "must include embedding_dim"),
        ({"num_classes": 0}, "num_classes"),
        ({"class_names": ["a", "b"]}, "class_names"),
        ({"normalized": "yes"}, "normalized"),
        ({"cascade": {"dims": [8, 16], "thresholds": [0.9]}}, "threshold"),
        ({"cascade": {"dims": [8, 12], "thresholds": [0.9, 0]}}, "cascade.dims"),
        ({"input": {"name": "inputs", "shape": "28x28", "dtype": "float32"}}, "input.shape"),
        ({"signatures": ["embed_8"]}, "signatures lack"),
    ],
)
def test_validation_names_the_bad_field(change, match):
    bad = {**copy.deepcopy(GOOD), **change}
    with pytest.raises(ValueError, match=match):
        validate_metadata(bad)


def test_missing_key_and_bad_json(tmp_path):
    bad = dict(GOOD)
    del bad["cascade"]
    with pytest.raises(ValueError, match="missing key"):
        validate_metadata(bad)
    path = metadata_path(tmp_path / "3")
    (tmp_path / "3" / "assets").mkdir(parents=True)
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        read_metadata(tmp_path / "3")
    with open(path, "w") as f:
        json.dump(bad, f)
    with pytest.raises(ValueError, match=r"missing key.*cascade"):
        read_metadata(tmp_path)


def test_no_metadata(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file"):
        read_metadata(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="integer version"):
        read_metadata(tmp_path)
    (tmp_path / "5").mkdir()
    with pytest.raises(FileNotFoundError, match="latest version"):
        read_metadata(tmp_path)


def test_reader_imports_only_the_standard_library(tmp_path):
    write_metadata(tmp_path / "1", GOOD)
    code = (
        "import sys, importlib.util\n"
        "spec = importlib.util.spec_from_file_location('metadata', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert module.read_metadata(sys.argv[2])['embedding_dim'] == 64\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'tensorflow', 'keras', 'mrl_keras')]\n"
        "assert not heavy, heavy\n"
    )
    import mrl_keras.export.metadata as module

    subprocess.run([sys.executable, "-c", code, module.__file__, str(tmp_path)], check=True)
