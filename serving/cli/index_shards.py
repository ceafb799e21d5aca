"""`mrl index build --embeddings-manifest DIR [--shards S]`: an index from `mrl embed`'s output.

With `--shards S` (S >= 1) a sharded index (`serving/retrieval/sharded.py`): S index shards
built in parallel processes, published as the next version `OUT/<N>/` of the base path `OUT`
(all shards together; `--unversioned`, or an existing sharded index at OUT: replaced in place);
without it one index over all embedding shards.
"""

from __future__ import annotations

import sys

from mrl_keras.cli_parser import CommandError
from mrl_keras.serving.cli.common import DEFAULT_SHORTLIST_DIM, scann_overrides


def build_from_embeddings_manifest(args) -> int:
    """The `--embeddings-manifest` branch of `mrl index build` (args from its parser)."""
    import numpy as np

    from mrl_keras.serving.retrieval.embedding_shards import iter_shards, read_embeddings_manifest
    from mrl_keras.serving.retrieval.sharded import build_sharded_index

    if args.shards is not None and args.shards < 1:
        raise CommandError(f"--shards must be >= 1, got {args.shards}")
    if getattr(args, "processes", None) is not None and args.processes < 1:
        raise CommandError(f"--processes must be >= 1, got {args.processes}")
    for flag in ("limit", "ids", "data_dir"):
        if getattr(args, flag, None):
            raise CommandError(
                f"--{flag.replace('_', '-')} does not apply to --embeddings-manifest"
            )
    manifest = read_embeddings_manifest(
        args.embeddings_manifest, model_version=args.model_version, verify=args.shards is None
    )
    d = int(manifest["dim"])
    shortlist_dim = args.shortlist_dim or min(DEFAULT_SHORTLIST_DIM, d)
    from pathlib import Path

    out_path = Path(args.out)
    # the layout of `mrl index build`: a base path receiving the next version, unless told
    # --unversioned or OUT is an (un-versioned) index already
    versioned = not (getattr(args, "unversioned", False) or (out_path / "manifest.json").is_file())
    if args.shards is None:
        from mrl_keras.serving.retrieval.index import build_index

        parts = list(iter_shards(args.embeddings_manifest, manifest))
        out = build_index(
            args.out,
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[0] for p in parts]),
            shortlist_dim=shortlist_dim,
            rerank_dim=args.rerank_dim,
            store_dtype=args.store_dtype,
            model_name=manifest["model_name"],
            model_version=manifest["model_version"],
            scann_options=scann_overrides(args.scann),
            progress=not args.no_progress,
            versioned=versioned,
        )
        print(f"index {out}: {manifest['count']} items from {len(parts)} embedding shards")
        return 0
    print(
        f"mrl index: building {args.shards} index shards from {manifest['count']} embeddings in "
        f"{len(manifest['shards'])} embedding shards ...",
        file=sys.stderr,
        flush=True,
    )
    out = build_sharded_index(
        args.out,
        args.embeddings_manifest,
        shards=args.shards,
        shortlist_dim=shortlist_dim,
        rerank_dim=args.rerank_dim,
        store_dtype=args.store_dtype,
        scann_options=scann_overrides(args.scann),
        model_version=args.model_version,
        processes=getattr(args, "processes", None),
        versioned=versioned,
    )
    print(
        f"sharded index {out}: {manifest['count']} items in {args.shards} shards, d={d}, "
        f"D_s={shortlist_dim}, model {manifest['model_name']!r} version {manifest['model_version']}"
    )
    return 0
