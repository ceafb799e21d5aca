"""mrl_keras/atomic_publish.py: a directory appears complete or not at all."""

import os

import pytest

from mrl_keras import atomic_publish
from mrl_keras.atomic_publish import fsync_tree, make_temp_dir, process_alive, publish_directory


def _write(folder, name, text):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w") as f:
        f.write(text)


def test_publish_new_and_replace(tmp_path):
    target = tmp_path / "v"
    tmp = make_temp_dir(tmp_path, ".v.tmp-")
    _write(tmp, "a", "1")
    fsync_tree(tmp)
    publish_directory(tmp, target)
    assert (target / "a").read_text() == "1" and not os.path.exists(tmp)
    tmp = make_temp_dir(tmp_path, ".v.tmp-")
    _write(tmp, "b", "2")
    publish_directory(tmp, target)
    assert sorted(os.listdir(target)) == ["b"]
    assert sorted(os.listdir(tmp_path)) == ["v"]  # no temporary or old copy left


def test_replace_without_renameat2(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_publish, "exchange", lambda a, b: False)
    target = tmp_path / "v"
    _write(target, "old", "0")
    tmp = make_temp_dir(tmp_path, ".v.tmp-")
    _write(tmp, "new", "1")
    publish_directory(tmp, target)
    assert sorted(os.listdir(target)) == ["new"]
    assert sorted(os.listdir(tmp_path)) == ["v"]


def test_failed_rename_restores_the_old_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_publish, "exchange", lambda a, b: False)
    target = tmp_path / "v"
    _write(target, "old", "0")
    real_rename = os.rename
    calls = []

    def rename(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise OSError("disk full")
        return real_rename(a, b)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="disk full"):
        publish_directory(make_temp_dir(tmp_path, ".v.tmp-"), target)
    assert sorted(os.listdir(target)) == ["old"]


def test_process_alive():
    assert process_alive(os.getpid())
    assert not process_alive(2**22 + 12345)
