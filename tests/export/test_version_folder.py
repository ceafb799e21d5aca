"""export/version_folder.py: versions appear complete or not at all under a base path."""

import os
import socket

import pytest

from mrl_keras.export.version_folder import (
    TEMP_PREFIX,
    atomic_version_folder,
    check_writable,
    next_version,
    remove_stale_temporaries,
    resolve_version,
)


def _version(base, version, name="saved_model.pb", text="x"):
    with atomic_version_folder(base, version, overwrite=True) as tmp:
        with open(os.path.join(tmp, name), "w") as f:
            f.write(text)


def test_next_and_resolve_version(tmp_path):
    assert next_version(tmp_path) == 1
    _version(tmp_path, 3)
    assert next_version(tmp_path) == 4
    assert resolve_version(tmp_path, None, overwrite=False) == 4
    assert resolve_version(tmp_path, 3, overwrite=True) == 3
    with pytest.raises(ValueError, match="already exists"):
        resolve_version(tmp_path, 3, overwrite=False)
    with pytest.raises(TypeError, match="integer version"):
        resolve_version(tmp_path, "3", overwrite=False)
    with pytest.raises(ValueError, match="non-negative"):
        resolve_version(tmp_path, -1, overwrite=False)


def test_overwrite_replaces_the_whole_version(tmp_path):
    _version(tmp_path, 1, "a", "old")
    _version(tmp_path, 1, "b", "new")
    assert os.listdir(tmp_path / "1") == ["b"]
    assert sorted(os.listdir(tmp_path)) == ["1"]  # no temporary left


def test_failure_leaves_nothing(tmp_path):
    base = tmp_path / "models"
    with pytest.raises(RuntimeError):
        with atomic_version_folder(base, 1) as tmp:
            open(os.path.join(tmp, "half"), "w").close()
            raise RuntimeError("killed")
    assert not base.exists()


def test_version_appearing_meanwhile_is_not_replaced(tmp_path):
    with pytest.raises(FileExistsError, match="appeared"):
        with atomic_version_folder(tmp_path, 2) as tmp:
            open(os.path.join(tmp, "mine"), "w").close()
            os.mkdir(tmp_path / "2")
    assert os.listdir(tmp_path / "2") == []


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    host = socket.gethostname()
    dead = tmp_path / f"{TEMP_PREFIX}{host}-{2**22 + 7}-abc"
    alive = tmp_path / f"{TEMP_PREFIX}{host}-{os.getpid()}-abc"
    other_host = tmp_path / f"{TEMP_PREFIX}elsewhere-{2**22 + 7}-abc"
    for p in (dead, alive, other_host):
        p.mkdir()
    assert remove_stale_temporaries(tmp_path) == [str(dead)]
    assert alive.exists() and other_host.exists()


def test_check_writable(tmp_path):
    check_writable(tmp_path / "new" / "base")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        check_writable(tmp_path / "file" / "base")
