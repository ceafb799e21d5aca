import json
import os

import numpy as np
import pytest

from mrl_keras.training import cjk

SMALL = dict(num_classes=24, image_size=16, train_per_class=3, test_per_class=2, fonts="small")


def test_small_font_set_is_installed():
    missing = [p for p in cjk.SMALL_FACES if not os.path.exists(os.path.join(cjk.FONT_ROOT, p))]
    assert not missing, f"run scripts/setup.sh (APT_PACKAGES installs the small CJK set): {missing}"


def test_same_seed_same_bytes_and_every_class_in_both_splits():
    a = cjk.build_cjk(**SMALL, seed=3, cache_dir="")
    b = cjk.build_cjk(**SMALL, seed=3, cache_dir="")
    for key in ("x_train", "y_train", "x_test", "y_test", "chars"):
        assert a[key].tobytes() == b[key].tobytes(), key
    assert a["x_train"].shape == (24 * 3, 16, 16) and a["x_train"].dtype == np.uint8
    assert a["x_test"].shape == (24 * 2, 16, 16)
    assert set(a["y_train"].tolist()) == set(range(24))
    assert set(a["y_test"].tolist()) == set(range(24))
    assert np.bincount(a["y_train"]).tolist() == [3] * 24
    # glyphs are drawn: every image has ink
    assert (a["x_train"].reshape(len(a["x_train"]), -1).max(1) > 100).all()
    c = cjk.build_cjk(**SMALL, seed=4, cache_dir="")
    assert c["x_train"].tobytes() != a["x_train"].tobytes()


def test_faces_split_train_test_disjoint_families():
    data = cjk.build_cjk(**SMALL, seed=0, cache_dir="")
    faces = json.loads(str(data["faces"]))
    train = {f["family"] for f in faces if f["split"] == "train"}
    test = {f["family"] for f in faces if f["split"] == "test"}
    assert train and test and not train & test


def test_characters_are_the_first_covered_gb2312_level1():
    chars = [str(c) for c in cjk.build_cjk(**SMALL, cache_dir="")["chars"]]
    assert chars == cjk.gb2312_level1()[:24]
    assert len(set(chars)) == 24


def test_cache_round_trip(tmp_path):
    first = cjk.build_cjk(**SMALL, cache_dir=str(tmp_path))
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    second = cjk.build_cjk(**SMALL, cache_dir=str(tmp_path))
    assert first["x_test"].tobytes() == second["x_test"].tobytes()


def test_errors():
    with pytest.raises(ValueError, match="font file not found.*setup_cjk.sh"):
        cjk.available_faces(["/nonexistent/font.ttf", "/nonexistent/other.ttf"])
    with pytest.raises(ValueError, match="num_classes <="):
        cjk.build_cjk(**{**SMALL, "num_classes": 10_000}, cache_dir="")
    with pytest.raises(ValueError, match="positive int train_per_class"):
        cjk.build_cjk(**{**SMALL, "train_per_class": 0}, cache_dir="")
