"""The embedding pipeline on Beam's DirectRunner (two worker processes) and Beam's retries."""

import numpy as np
import pytest

from mrl_keras.pipelines.embed import EmbedJob, WriteShardFn, run_embed, shard_of
from mrl_keras.serving.retrieval.embedding_shards import iter_shards, read_embeddings_manifest

MULTI = ["--runner", "DirectRunner", "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]


def _npy_corpus(tmp_path, images, n, files):
    for i, part in enumerate(np.array_split(np.arange(n), files)):
        np.save(tmp_path / f"part{i}.npy", images[part])
        np.save(tmp_path / f"part{i}.ids.npy", np.array([f"img{j:05d}" for j in part]))
    return str(tmp_path / "part*.npy")


def _check_output(out, backend, images, n, version=1):
    manifest = read_embeddings_manifest(out, model_version=version)  # checksums, no duplicate ids
    assert manifest["count"] == n and manifest["model_version"] == version
    seen = []
    for ids, emb in iter_shards(out, manifest):
        rows = np.array([int(i[3:]) for i in ids])
        np.testing.assert_allclose(emb, backend.embed(images[rows], 64).embeddings, atol=1e-5)
        seen += ids.tolist()
    assert sorted(seen) == [f"img{j:05d}" for j in range(n)]  # every id exactly once
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    return manifest


def test_pipeline_on_two_worker_processes(tmp_path, fm_model, fm_images):
    base, backend = fm_model
    images, _ = fm_images
    n = 3000
    pattern = _npy_corpus(tmp_path, images, n, files=4)
    out = tmp_path / "out"
    job = EmbedJob("npy", pattern, base, str(out), num_shards=8, max_batch_size=128)
    manifest = run_embed(job, MULTI)
    _check_output(out, backend, images, n)
    for entry in manifest["shards"]:  # ids are where shard_of puts them
        ids = np.load(out / entry["ids"])
        assert {shard_of(i, 8) for i in ids.tolist()} == {entry["shard"]}
    # a re-run into the same folder needs overwrite, then gives the same shards
    with pytest.raises(ValueError, match="overwrite"):
        run_embed(job, MULTI)


class FailOnceWriteShardFn(WriteShardFn):
    """Writes its shard, then fails the first time it sees shard 0 (a marker file remembers)."""

    marker = None

    def process(self, element):
        results = list(super().process(element))
        if element[0] == 0 and not self.marker.exists():
            self.marker.write_text("failed once")
            (self.marker.parent / "out" / ".embeddings-00000-of-00004.npy.tmp-1").write_bytes(b"half")
            raise RuntimeError("injected failure after writing shard 0")
        yield from results


def test_failed_bundle_is_retried_without_duplicates(tmp_path, fm_model, fm_images):
    base, backend = fm_model
    images, _ = fm_images
    n = 400
    pattern = _npy_corpus(tmp_path, images, n, files=2)
    FailOnceWriteShardFn.marker = tmp_path / "marker"
    out = tmp_path / "out"
    job = EmbedJob("npy", pattern, base, str(out), num_shards=4)
    # The bundle-based DirectRunner retries a failed bundle (up to 4 attempts), like Dataflow.
    run_embed(job, ["--runner", "BundleBasedDirectRunner"], write_fn=FailOnceWriteShardFn)
    assert FailOnceWriteShardFn.marker.exists()
    (out / ".embeddings-00000-of-00004.npy.tmp-1").unlink()  # what a killed writer leaves
    _check_output(out, backend, images, n)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"source_kind": "csv"}, "source kind"),
        ({"dtype": "float16"}, "dtype"),
        ({"num_shards": 0}, "num_shards"),
        ({"min_batch_size": 64, "max_batch_size": 8}, "min_batch_size"),
        ({"dim": 12}, "exported dims"),
        ({"model_version": 7}, "Cannot read the model"),
        ({"model_path": "/nonexistent"}, "Cannot read the model"),
    ],
)
def test_bad_jobs_are_refused(tmp_path, fm_model, changes, match):
    base, _ = fm_model
    job = dict(source_kind="npy", source="x*.npy", model_path=base, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match=match):
        EmbedJob(**dict(job, **changes)).resolve()
