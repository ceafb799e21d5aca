"""serving/retrieval/index_versions.py: versioned index base paths (publish, resolve, leases,
retention)."""

import fcntl
import os
import stat

import numpy as np
import pytest

from mrl_keras.serving.retrieval import index_versions
from mrl_keras.serving.retrieval.index import AdaptiveIndex, IndexIntegrityError, build_index
from mrl_keras.serving.retrieval.manifest import read_manifest

EXACT = {"num_leaves": 1, "reorder_num_neighbors": 10_000}


def _x(seed, n=50, d=16):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _build(base, seed=0, **kwargs):
    kwargs.setdefault("versioned", True)
    return build_index(base, _x(seed), shortlist_dim=8, scann_options=EXACT, **kwargs)


def test_builds_publish_next_versions_read_only_with_build_ids(tmp_path):
    base = tmp_path / "indexes" / "toy"
    first = _build(base, 0, model_name="toy", model_version=3)
    second = _build(base, 0, model_name="toy", model_version=3)  # same content
    assert (first, second) == (base / "1", base / "2")
    assert index_versions.list_versions(base) == [1, 2]
    a, b = read_manifest(first), read_manifest(second)
    assert (a["version"], b["version"]) == (1, 2)
    assert a["build_id"] != b["build_id"] and a["content_sha256"] == b["content_sha256"]
    assert a["index_version"] == f"1-{a['build_id']}" != b["index_version"]
    assert (a["model_name"], a["model_version"]) == ("toy", 3)
    for root, dirs, files in os.walk(first):
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o444
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o555
    assert read_manifest(base)["version"] == 2  # a base path reads its newest version
    index = AdaptiveIndex.load(base)
    assert (index.version, index.index_version, index.path) == (2, b["index_version"], second)
    assert AdaptiveIndex.load(base, version=1).index_version == a["index_version"]
    with pytest.raises(IndexIntegrityError, match=r"versions \[1, 2\].*version=9"):
        AdaptiveIndex.load(base, version=9)


def test_explicit_version_is_never_replaced(tmp_path):
    base = tmp_path / "b"
    _build(base, 0, version=5)
    assert index_versions.list_versions(base) == [5]
    with pytest.raises(FileExistsError, match="immutable"):
        _build(base, 1, version=5)
    assert not [p for p in base.iterdir() if p.name.startswith(".build.tmp-")]
    assert _build(base, 1) == base / "6"
    with pytest.raises(ValueError, match="immutable"):  # nor replaced as an un-versioned index
        _build(base / "6", 2, versioned=False)


def test_versioned_build_refuses_a_legacy_index_and_bad_arguments(tmp_path):
    legacy = _build(tmp_path / "legacy", versioned=False)
    assert read_manifest(legacy)["version"] is None
    assert AdaptiveIndex.load(legacy).index_version == read_manifest(legacy)["build_id"]
    with pytest.raises(ValueError, match="un-versioned index itself"):
        _build(legacy)
    with pytest.raises(ValueError, match="keep"):
        _build(tmp_path / "x", keep=0)
    with pytest.raises(ValueError, match="versioned=True"):
        _build(tmp_path / "y", versioned=False, keep=2)
    with pytest.raises(ValueError, match="keep"):
        index_versions.retire_versions(tmp_path, 0)


def test_retention_keeps_the_newest_and_every_leased_version(tmp_path):
    base = tmp_path / "b"
    for seed in range(3):
        _build(base, seed)
    loaded = AdaptiveIndex.load(base, version=1)  # holds a lease on version 1
    removed, leased = index_versions.retire_versions(base, keep=1)
    assert (removed, leased) == ([2], [1])
    assert index_versions.list_versions(base) == [1, 3]
    np.testing.assert_array_equal(np.asarray(loaded.store), _x(0))  # still readable
    # The lease is a real flock: another descriptor cannot lock version 1 exclusively.
    fd = os.open(base / "1", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    loaded.close()
    _build(base, 4, keep=1)  # a build's own retention pass, now nothing holds version 1
    assert index_versions.list_versions(base) == [4]
    assert not [p for p in base.iterdir() if p.name.startswith(".retired-")]


def test_lease_notices_a_retired_folder(tmp_path):
    base = tmp_path / "b"
    _build(base, 0)
    _build(base, 1)
    lease = index_versions.IndexLease.acquire(base / "1")
    assert lease.still_at_path()
    os.rename(base / "1", base / "moved")  # what retention does while holding its lock
    assert not lease.still_at_path()
    assert lease.read_bytes("manifest.json")  # still reads the folder it holds
    lease.release()
    with pytest.raises(index_versions.LeaseLost):
        index_versions.IndexLease.acquire(base / "1")


def test_stale_temporaries_of_dead_builds_are_swept(tmp_path):
    base = tmp_path / "b"
    base.mkdir()
    dead = base / ".build.tmp-999999999-abc"
    dead.mkdir()
    (dead / "rerank.npy").write_bytes(b"x")
    mine = base / f".build.tmp-{os.getpid()}-abc"
    mine.mkdir()
    index_versions.remove_stale_build_temporaries(base)
    assert not dead.exists() and mine.exists()


def test_resolve_errors_name_what_exists(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither"):
        index_versions.resolve_index_dir(tmp_path)
    with pytest.raises(IndexIntegrityError, match="Not an index directory"):
        AdaptiveIndex.load(tmp_path / "missing")
