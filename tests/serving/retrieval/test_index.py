"""Tests for serving/index.py: build, manifest, checksums, atomic publication, version checks."""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from retrieval_testing import bfloat16_round

from mrl_keras.serving.retrieval import store_codecs, store_writer
from mrl_keras.serving.retrieval.index import (
    AdaptiveIndex,
    IndexIntegrityError,
    ModelVersionMismatchError,
    build_index,
    default_scann_options,
    load_embeddings_file,
    read_manifest,
)
from mrl_keras.serving.retrieval.retriever import AdaptiveRetriever

EXACT = {"num_leaves": 1, "reorder_num_neighbors": 10_000}


def _corpus(n=2000, d=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    x = _corpus()
    out = tmp_path_factory.mktemp("index") / "idx"
    build_index(out, x, shortlist_dim=8, model_name="toy", model_version=7, scann_options=EXACT)
    return out, x


def test_manifest_contents(built):
    out, x = built
    manifest = read_manifest(out)
    assert manifest["format_version"] == 1
    assert (manifest["model_name"], manifest["model_version"]) == ("toy", 7)
    assert (manifest["embedding_dim"], manifest["shortlist_dim"], manifest["rerank_dim"]) == (
        32,
        8,
        32,
    )
    assert manifest["count"] == len(x)
    assert manifest["scann"]["num_leaves"] == 1
    assert manifest["created_at"].endswith("+00:00")
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json"}
    assert {"rerank.npy", "ids.npy", "prefix_norms.npy", "scann/scann_assets.pbtxt"} <= files
    assert all(len(h) == 64 for h in manifest["files"].values())


def test_round_trip_same_results(built, tmp_path):
    out, x = built
    index = AdaptiveIndex.load(out)
    assert isinstance(index.store, np.memmap) or isinstance(index.store.base, np.memmap)
    np.testing.assert_array_equal(np.asarray(index.store), x)
    q = _corpus(16, 32, seed=1)
    first = AdaptiveRetriever(index).search_embeddings(q, k=5)
    # A copy of the directory elsewhere loads too (ScaNN assets use relative paths).
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(out), str(copy)], check=True)
    second = AdaptiveRetriever(AdaptiveIndex.load(copy)).search_embeddings(q, k=5)
    np.testing.assert_array_equal(first.ids, second.ids)
    np.testing.assert_allclose(first.scores, second.scores)
    assert first.index_version == second.index_version == index.index_version


_NUMPY_STORE_DTYPE = {"float32": "float32", "float16": "float16", "bfloat16": "uint16"}


def test_bfloat16_store_scores_and_round_trip(tmp_path):
    x = _corpus(500, 32, seed=3)
    build_index(tmp_path / "b", x, shortlist_dim=8, store_dtype="bfloat16", scann_options=EXACT)
    assert read_manifest(tmp_path / "b")["store_dtype"] == "bfloat16"
    xb = bfloat16_round(x)
    index = AdaptiveIndex.load(tmp_path / "b")
    assert index.store_dtype == "bfloat16"
    assert index.store.dtype == np.uint16
    np.testing.assert_array_equal(
        np.asarray(index.store), (xb.view(np.uint32) >> 16).astype(np.uint16)
    )
    # Prefix norms are those of the stored (rounded) values.
    for column, m in enumerate(index.prefix_norm_dims):
        np.testing.assert_allclose(
            index.prefix_norms[:, column], np.linalg.norm(xb[:, :m], axis=1), rtol=1e-6
        )
    q = _corpus(16, 32, seed=4) * 2.5
    result = AdaptiveRetriever(index).search_embeddings(q, k=10, shortlist_size=500)
    expected = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
        xb / np.linalg.norm(xb, axis=1, keepdims=True)
    ).T
    top = np.argsort(-expected, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(result.ids, top)
    np.testing.assert_allclose(
        result.scores, np.take_along_axis(expected, top, axis=1), rtol=1e-5, atol=1e-6
    )
    # A copy elsewhere loads and answers identically.
    subprocess.run(["cp", "-r", str(tmp_path / "b"), str(tmp_path / "c")], check=True)
    again = AdaptiveRetriever(AdaptiveIndex.load(tmp_path / "c")).search_embeddings(
        q, k=10, shortlist_size=500
    )
    np.testing.assert_array_equal(again.ids, result.ids)
    np.testing.assert_array_equal(again.scores, result.scores)


@pytest.mark.parametrize("store_dtype", ["float32", "float16", "bfloat16"])
def test_string_ids_and_store_dtype(tmp_path, store_dtype):
    x = _corpus(300, 16)
    ids = np.asarray([f"doc-{i}" for i in range(300)])
    build_index(
        tmp_path / "i", x, ids, shortlist_dim=4, store_dtype=store_dtype, scann_options=EXACT
    )
    index = AdaptiveIndex.load(tmp_path / "i")
    assert index.store.dtype == np.dtype(_NUMPY_STORE_DTYPE[store_dtype])
    assert index.store_dtype == read_manifest(tmp_path / "i")["store_dtype"] == store_dtype
    result = AdaptiveRetriever(index).search_embeddings(x[:3], k=1, shortlist_size=300)
    assert result.ids.tolist() == [["doc-0"], ["doc-1"], ["doc-2"]]
    np.testing.assert_allclose(result.scores, 1.0, atol=2e-3)


def test_every_flipped_byte_is_detected(built, tmp_path):
    out, _ = built
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    for name in names:
        copy = tmp_path / name.replace("/", "_")
        subprocess.run(["cp", "-r", str(out), str(copy)], check=True)
        target = copy / name
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
        with pytest.raises(IndexIntegrityError):
            AdaptiveIndex.load(copy)


def test_missing_file_and_format_version(built, tmp_path):
    out, _ = built
    copy = tmp_path / "c"
    subprocess.run(["cp", "-r", str(out), str(copy)], check=True)
    (copy / "ids.npy").unlink()
    with pytest.raises(IndexIntegrityError, match="missing ids.npy"):
        AdaptiveIndex.load(copy)
    with pytest.raises(IndexIntegrityError, match="no manifest.json"):
        AdaptiveIndex.load(tmp_path)


def test_model_version_mismatch_names_both(built):
    out, _ = built
    with pytest.raises(ModelVersionMismatchError, match="version 7.*serves version 8"):
        AdaptiveIndex.load(out, model_version=8)
    assert AdaptiveIndex.load(out, model_version=8, allow_version_mismatch=True).model_version == 7
    assert AdaptiveIndex.load(out, model_version=7).model_version == 7


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"shortlist_dim": 0}, ValueError, "1 <= shortlist_dim"),
        ({"shortlist_dim": 8, "rerank_dim": 4}, ValueError, "shortlist_dim <= rerank_dim"),
        ({"shortlist_dim": 8, "rerank_dim": 64}, ValueError, "rerank_dim <= d"),
        ({"shortlist_dim": 8.0}, TypeError, "int shortlist_dim"),
        ({"shortlist_dim": 8, "store_dtype": "int4"}, ValueError, "store_dtype"),
        ({"shortlist_dim": 8, "scann_options": {"leaves": 3}}, ValueError, "Unknown ScaNN option"),
        ({"shortlist_dim": 8, "scann_options": {"num_leaves": 0}}, ValueError, "positive int"),
        (
            {"shortlist_dim": 8, "scann_options": {"reorder_dtype": "float16"}},
            ValueError,
            r"Expected reorder_dtype in \('float32', 'bfloat16', 'int8'\). Received: 'float16'",
        ),
    ],
)
def test_build_rejects_bad_arguments(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        build_index(tmp_path / "i", _corpus(100), **kwargs)
    assert not (tmp_path / "i").exists()


def test_build_rejects_bad_data(tmp_path):
    x = _corpus(100)
    with pytest.raises(ValueError, match="shape"):
        build_index(tmp_path / "i", x[0], shortlist_dim=4)
    with pytest.raises(ValueError, match="unique ids"):
        build_index(tmp_path / "i", x, np.zeros(100, np.int64), shortlist_dim=4)
    with pytest.raises(ValueError, match=r"ids of shape \(100,\)"):
        build_index(tmp_path / "i", x, np.arange(5), shortlist_dim=4)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        build_index(tmp_path / "i", bad, shortlist_dim=4)
    # beyond the shortlist prefix: found by the store pass while ScaNN builds in a thread
    bad = x.copy()
    bad[97, 20] = np.inf
    with pytest.raises(ValueError, match=r"finite embeddings. Received NaN or Inf in rows 0\.\.99"):
        build_index(tmp_path / "i", bad, shortlist_dim=4)
    assert not (tmp_path / "i").exists()
    assert not list(tmp_path.glob(".i.tmp-*"))


def test_defaults_scale_with_count():
    small, large = default_scann_options(5_000, 16), default_scann_options(1_000_000, 16)
    assert small["num_leaves"] == 1
    assert large["num_leaves"] == 2000 and large["num_leaves_to_search"] == 200
    assert large["training_sample_size"] == 200_000
    assert default_scann_options(200_000, 32)["num_leaves"] == 894  # 2 sqrt(N), rounded


def test_default_dims_per_block_and_reorder():
    assert default_scann_options(1_000_000, 32)["dims_per_block"] == 1
    assert default_scann_options(1_000_000, 64)["dims_per_block"] == 1
    assert default_scann_options(1_000_000, 128)["dims_per_block"] == 2
    options = default_scann_options(1_000_000, 32, shortlist_size=150)
    assert options["reorder_num_neighbors"] == 150 and options["reorder_dtype"] == "float32"


@pytest.mark.parametrize("reorder_dtype", ["bfloat16", "int8"])
def test_compact_reorder_keeps_the_exact_neighbours(tmp_path, reorder_dtype):
    """A bfloat16/int8 shortlist reorder is recorded and still finds the NumPy exact top-10
    (single leaf, every point reordered) up to near-ties, with approximately cosine scores."""
    x, q = _corpus(3000, 32), _corpus(20, 32, seed=1)
    out = build_index(
        tmp_path / "i",
        x,
        shortlist_dim=32,
        scann_options=dict(EXACT, reorder_dtype=reorder_dtype),
    )
    index = AdaptiveIndex.load(out)
    assert index.scann_options["reorder_dtype"] == reorder_dtype
    assert read_manifest(out)["scann"]["reorder_dtype"] == reorder_dtype
    rows, scores = index.shortlist(q, 10)
    exact = q @ x.T
    want = np.argsort(-exact, axis=1)[:, :10]
    overlap = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(rows, want, strict=True)])
    assert overlap >= 0.9
    tol = 0.01 if reorder_dtype == "bfloat16" else 0.05
    np.testing.assert_allclose(scores, np.take_along_axis(exact, rows, axis=1), atol=tol)


def test_search_threads(built):
    out, x = built
    index = AdaptiveIndex.load(out)
    q = _corpus(100, x.shape[1], seed=2)[:, :8]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    default = index.shortlist(q, 10)
    for threads in (1, 2):
        index.set_search_threads(threads)
        assert index.search_threads == threads
        rows, scores = index.shortlist(q, 10)
        np.testing.assert_array_equal(rows, default[0])
        np.testing.assert_allclose(scores, default[1], rtol=1e-6)
    index.set_search_threads(None)
    assert index.search_threads is None
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"threads to be None or an int >= 1. Received"):
            index.set_search_threads(bad)


def test_embeddings_files(tmp_path):
    x = _corpus(50, 8)
    np.save(tmp_path / "e.npy", x)
    np.savez(tmp_path / "e.npz", embeddings=x, ids=np.arange(50) + 100)
    e, ids = load_embeddings_file(tmp_path / "e.npy")
    assert ids is None and np.array_equal(e, x)
    e, ids = load_embeddings_file(tmp_path / "e.npz")
    assert ids.tolist()[:2] == [100, 101] and np.array_equal(e, x)
    with pytest.raises(ValueError, match="not found"):
        load_embeddings_file(tmp_path / "nope.npy")


def test_rebuild_replaces_atomically(built, tmp_path):
    out = tmp_path / "idx"
    build_index(out, _corpus(200, 16), shortlist_dim=4, scann_options=EXACT, model_version=1)
    first = AdaptiveIndex.load(out)
    build_index(
        out, _corpus(300, 16, seed=3), shortlist_dim=4, scann_options=EXACT, model_version=2
    )
    second = AdaptiveIndex.load(out)
    assert (first.count, second.count) == (200, 300)
    assert second.model_version == 2
    # The first index keeps working from its mapped (now unlinked) files.
    assert first.store.shape == (200, 16) and np.isfinite(np.asarray(first.store)).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_killed_build_leaves_previous_index_intact(tmp_path):
    out = tmp_path / "idx"
    build_index(out, _corpus(500, 16), shortlist_dim=4, scann_options=EXACT, model_version=1)
    before = json.loads((out / "manifest.json").read_text())
    script = textwrap.dedent(
        f"""
        import numpy as np
        # the index modules alone (numpy + scann): the serving namespace is lazy
        from mrl_keras.serving.retrieval.index import build_index
        x = np.random.default_rng(0).standard_normal((400_000, 64)).astype(np.float32)
        build_index({str(out)!r}, x, shortlist_dim=16, model_version=2)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            temporaries = list(tmp_path.glob(".idx.tmp-*"))
            if temporaries and (temporaries[0] / "rerank.npy").exists():
                time.sleep(0.2)
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the build finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    index = AdaptiveIndex.load(out)
    assert index.model_version == 1 and index.manifest["index_version"] == before["index_version"]
    assert list(tmp_path.glob(".idx.tmp-*"))  # the dead build's leftovers ...
    build_index(out, _corpus(100, 16), shortlist_dim=4, scann_options=EXACT, model_version=3)
    assert not list(tmp_path.glob(".idx.tmp-*"))  # ... are swept by the next build
    assert AdaptiveIndex.load(out).model_version == 3


@pytest.mark.parametrize("store_dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("rerank_dim, norm_dims", [(None, None), (80, (5, 24, 64, 80))])
def test_store_norms_and_checksums_match_independent_computation(
    tmp_path, monkeypatch, store_dtype, rerank_dim, norm_dims
):
    # Small chunks and blocks so that the build crosses chunk and (partial) block boundaries.
    monkeypatch.setattr(store_writer, "CHUNK_ROWS", 1000)
    monkeypatch.setattr(store_writer, "BLOCK_BYTES", 96 * 4 * 37)
    x = _corpus(2500, 96, seed=5) * 3.0
    build_index(
        tmp_path / "i",
        x,
        shortlist_dim=24,  # not a power of two
        rerank_dim=rerank_dim,
        store_dtype=store_dtype,
        prefix_norm_dims=norm_dims,
        scann_options=EXACT,
    )
    manifest = read_manifest(tmp_path / "i")
    prefix = np.ascontiguousarray(x[:, : manifest["rerank_dim"]])
    if store_dtype == "bfloat16":
        expected = store_codecs.to_bfloat16_bits(prefix)
        widened = bfloat16_round(prefix)
    else:
        expected = prefix.astype(store_dtype)
        widened = expected.astype(np.float32)
    # The store is byte for byte what np.save writes for the expected array.
    buffer = io.BytesIO()
    np.save(buffer, expected)
    assert (tmp_path / "i" / "rerank.npy").read_bytes() == buffer.getvalue()
    index = AdaptiveIndex.load(tmp_path / "i")
    assert 24 in index.prefix_norm_dims and manifest["rerank_dim"] in index.prefix_norm_dims
    for column, m in enumerate(index.prefix_norm_dims):
        np.testing.assert_allclose(
            index.prefix_norms[:, column], np.linalg.norm(widened[:, :m], axis=1), rtol=1e-6
        )
    for name, digest in manifest["files"].items():
        assert digest == hashlib.sha256((tmp_path / "i" / name).read_bytes()).hexdigest(), name


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_loads_during_concurrent_builds_never_mix(tmp_path, versioned):
    """A loop of builds (alternating corpora A as model v1 and B as v2) beside a loop of loads:
    every load returns one build whole, none fails (no spurious checksum error)."""
    import threading

    from retrieval_testing import classify_load, race_corpora

    corpora = race_corpora()
    out = tmp_path / ("base" if versioned else "idx")
    options = dict(shortlist_dim=8, scann_options=EXACT, versioned=versioned)
    if versioned:
        options["keep"] = 2
    build_index(out, corpora[1][0], corpora[1][1], model_version=1, **options)
    stop, builds, errors = threading.Event(), [0], []

    def builder():
        try:
            while not stop.is_set() and builds[0] < 400:
                v = 2 if builds[0] % 2 == 0 else 1
                build_index(out, corpora[v][0], corpora[v][1], model_version=v, **options)
                builds[0] += 1
        except Exception as e:  # surfaces in the main thread's assertion
            errors.append(e)

    thread = threading.Thread(target=builder)
    thread.start()
    outcomes = {"ok": 0, "mixed": 0}
    load_errors = []
    try:
        deadline = time.monotonic() + 20
        while (sum(outcomes.values()) < 150 or builds[0] < 6) and time.monotonic() < deadline:
            try:
                index = AdaptiveIndex.load(out)
            except IndexIntegrityError as e:
                load_errors.append(str(e))
                continue
            outcomes[classify_load(index, corpora)] += 1
            index.close()
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert builds[0] >= 6, "too few builds ran beside the loads to test anything"
    assert outcomes["mixed"] == 0 and not load_errors, (outcomes, load_errors[:3])
    if versioned:
        assert len([p for p in out.iterdir() if p.name.isdigit()]) <= 3
