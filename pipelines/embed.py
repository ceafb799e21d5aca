"""The embedding pipeline: corpus -> `RunInference` -> embedding shards + manifest (`mrl embed`).

Stages (each element is `(id, model input)` and keeps its id to the end)::

    source (pipelines/sources.py)
      -> RunInference(KeyedModelHandler(MatryoshkaEmbedHandler))  embed_{dim}, one call per
                                                                  BatchElements batch
      -> key by shard: crc32(id) % num_shards                     deterministic
      -> GroupByKey -> WriteShardFn                               one shard in memory, written
                                                                  atomically under a name that
                                                                  depends on (shard, count) only
      -> CombineGlobally(ToList) -> manifest                      last, after every shard

A retried bundle rewrites the same shard file with the same bytes (rename over it), so the
output has every id exactly once whatever Beam retries. The DirectRunner here runs as Beam's
FnApiRunner (what DirectRunner falls back to for batch pipelines, without first trying to
download the Prism binary); every other runner name goes to Beam unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from mrl_keras.export.metadata import read_metadata
from mrl_keras.pipelines import sources
from mrl_keras.pipelines.inference import MatryoshkaEmbedHandler
from mrl_keras.serving.retrieval.embedding_shards import (
    EMBEDDING_DTYPES,
    MANIFEST_NAME,
    write_embeddings_manifest,
    write_shard,
)

__all__ = ["EmbedJob", "WriteShardFn", "build_embed_pipeline", "run_embed", "shard_of"]

SOURCE_KINDS = ("images", "tfrecords", "npy", "tfds")


def shard_of(ident: Any, num_shards: int) -> int:
    """The shard an id belongs to: crc32 of its text, mod `num_shards` (stable everywhere)."""
    return zlib.crc32(str(ident).encode("utf-8")) % num_shards


@dataclasses.dataclass
class EmbedJob:
    """What to embed, with which model version, into how many shards.

    Attributes:
        source_kind: one of "images", "tfrecords", "npy", "tfds".
        source: folder/glob/pattern, or "name[:split]" for tfds (split defaults to train).
        model_path: SavedModel base path; `model_version` pinned (default: the latest there).
        out_dir: the embeddings directory (`serving/retrieval/embedding_shards.py`).
        dim: the prefix written (`D_r`; default the model's d). Must be an exported dim.
        num_shards: output shards (files), e.g. a few per worker.
        dtype: "float32" or "bfloat16".
    """

    source_kind: str
    source: str
    model_path: str
    out_dir: str
    model_version: int | None = None
    dim: int | None = None
    num_shards: int = 16
    dtype: str = "float32"
    min_batch_size: int = 32
    max_batch_size: int = 256
    share_model: bool = False
    id_key: str = "id"
    image_key: str = "image"
    overwrite: bool = False
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def resolve(self) -> EmbedJob:
        """Checks the job and pins the model version and dim; raises ValueError naming the problem."""
        if self.source_kind not in SOURCE_KINDS:
            raise ValueError(f"Expected a source kind in {SOURCE_KINDS}. Received {self.source_kind!r}")
        if self.dtype not in EMBEDDING_DTYPES:
            raise ValueError(f"Expected dtype in {EMBEDDING_DTYPES}. Received {self.dtype!r}")
        if self.num_shards < 1:
            raise ValueError(f"Expected num_shards >= 1. Received {self.num_shards}")
        if not 1 <= self.min_batch_size <= self.max_batch_size:
            raise ValueError(
                "Expected 1 <= min_batch_size <= max_batch_size. Received "
                f"{self.min_batch_size}, {self.max_batch_size}"
            )
        path = self.model_path
        if self.model_version is not None:
            path = os.path.join(self.model_path, str(self.model_version))
        try:
            meta = read_metadata(path)
        except (FileNotFoundError, ValueError) as e:
            raise ValueError(f"Cannot read the model at {path!r}: {e}") from e
        if meta["version"] is None:
            raise ValueError(f"Expected a base path with integer versions. Received {self.model_path!r}")
        dims = tuple(meta["exported_dims"])
        dim = int(meta["embedding_dim"]) if self.dim is None else int(self.dim)
        if dim not in dims:
            raise ValueError(f"Expected dim to be one of the exported dims {dims}. Received {dim}")
        out = Path(self.out_dir)
        if (out / MANIFEST_NAME).exists() and not self.overwrite:
            raise ValueError(f"{out / MANIFEST_NAME} exists: pass overwrite to replace that job's output.")
        return dataclasses.replace(
            self,
            model_path=str(Path(meta["path"]).parent),
            model_version=int(meta["version"]),
            dim=dim,
            metadata=meta,
        )


class WriteShardFn(beam.DoFn):
    """Writes one grouped shard `(shard, [(id, embedding), ...])` and emits its manifest entry."""

    def __init__(self, out_dir: str, num_shards: int, dtype: str):
        self.out_dir, self.num_shards, self.dtype = out_dir, num_shards, dtype

    def process(self, element):
        shard, rows = element
        rows = list(rows)
        ids = np.asarray([r[0] for r in rows])
        embeddings = np.stack([np.asarray(r[1], dtype=np.float32) for r in rows])
        yield write_shard(self.out_dir, int(shard), self.num_shards, ids, embeddings, self.dtype)


def _source(job: EmbedJob) -> beam.PTransform:
    shape = job.metadata["input"]["shape"]
    if job.source_kind == "images":
        return sources.ImageFiles(job.source, shape)
    if job.source_kind == "tfrecords":
        return sources.TFRecordImages(job.source, shape, job.id_key, job.image_key)
    if job.source_kind == "npy":
        return sources.NpyShards(job.source)
    name, _, split = job.source.partition(":")
    return sources.DatasetSplit(name, split or "train", shape)


def build_embed_pipeline(
    pipeline: beam.Pipeline, job: EmbedJob, write_fn: type[WriteShardFn] = WriteShardFn
) -> None:
    """Adds the embedding job's stages to `pipeline` (`job` already `resolve()`d)."""
    num_shards, out_dir = job.num_shards, job.out_dir
    handler = KeyedModelHandler(
        MatryoshkaEmbedHandler(
            job.model_path,
            int(job.model_version),
            int(job.dim),
            min_batch_size=job.min_batch_size,
            max_batch_size=job.max_batch_size,
            share_model=job.share_model,
        )
    )
    meta = job.metadata
    source = f"{job.source_kind}:{job.source}"
    (
        pipeline
        | "Read" >> _source(job)
        | "Embed" >> RunInference(handler)
        | "KeyByShard" >> beam.Map(lambda kv: (shard_of(kv[0], num_shards), (kv[0], kv[1].inference)))
        | "GroupShards" >> beam.GroupByKey()
        | "WriteShards" >> beam.ParDo(write_fn(out_dir, num_shards, job.dtype))
        | "AllShards" >> beam.combiners.ToList()
        | "WriteManifest"
        >> beam.Map(
            lambda entries: write_embeddings_manifest(
                out_dir,
                entries,
                num_shards=num_shards,
                dtype=job.dtype,
                model_name=meta["model_name"],
                model_version=int(job.model_version),
                source=source,
            )
        )
    )


def _runner(options: PipelineOptions):
    name = options.view_as(StandardOptions).runner
    if name not in (None, "DirectRunner", "direct"):
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    )
    return fn_runner.FnApiRunner(provision_info=info)


def run_embed(
    job: EmbedJob, beam_args: list[str] | None = None, write_fn: type[WriteShardFn] = WriteShardFn
) -> dict[str, Any]:
    """Runs the job with Beam pipeline options `beam_args` (e.g. `["--runner", "DirectRunner",
    "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]`); returns the
    manifest written. Raises ValueError for a bad job."""
    from mrl_keras.serving.retrieval.embedding_shards import read_embeddings_manifest

    job = job.resolve()
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # the old job's shards are no longer listed
    for stale in list(out.glob("embeddings-*.npy")) + list(out.glob("ids-*.npy")):
        stale.unlink()
    options = PipelineOptions(list(beam_args or []))
    with beam.Pipeline(runner=_runner(options), options=options) as p:
        build_embed_pipeline(p, job, write_fn)
    if not (out / MANIFEST_NAME).is_file():
        raise ValueError(f"The pipeline finished without writing {out / MANIFEST_NAME}.")
    return read_embeddings_manifest(out, verify=False)
