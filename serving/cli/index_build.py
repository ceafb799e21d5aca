"""`mrl index build`: embed a corpus (or read embeddings) and write an index directory."""

from __future__ import annotations

import sys
from pathlib import Path

from mrl_keras.cli_parser import CommandError, Parser
from mrl_keras.serving.cli.common import (
    DEFAULT_SHORTLIST_DIM,
    add_backend_flags,
    make_backend,
    run_command,
    scann_overrides,
)


def _index_parser() -> Parser:
    parser = Parser(prog="mrl index", description="Build an adaptive retrieval index.")
    sub = parser.add_subparsers(dest="action", metavar="build | tune")
    build = sub.add_parser(
        "build",
        help="embed a corpus and write an index directory",
        description="Embed a corpus (or read full embeddings) and write an index "
        "directory: ScaNN over z[:D_s], rerank store z[:D_r], manifest with checksums.",
    )
    add_backend_flags(build)
    build.add_argument(
        "--out",
        required=True,
        help="index base path: the build is published as OUT/<next integer version>/ "
        "(immutable, read-only). OUT/N publishes exactly version N. An existing un-versioned "
        "index folder is replaced atomically, as is OUT with --unversioned",
    )
    build.add_argument(
        "--keep",
        type=int,
        help="after publishing, remove versions older than the newest N that no process has "
        "loaded (default: keep all)",
    )
    build.add_argument(
        "--unversioned",
        action="store_true",
        help="write OUT itself (the legacy layout, replaced atomically) instead of a version",
    )
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="dataset name (fashion_mnist/mnist offline, else TFDS)")
    source.add_argument("--images", help="folder of images (ids = relative paths)")
    source.add_argument("--embeddings", help=".npy or .npz of full embeddings (npz may hold ids)")
    source.add_argument(
        "--embeddings-manifest",
        help="embeddings directory written by `mrl embed` (its manifest.json)",
    )
    build.add_argument(
        "--shards",
        type=int,
        help="with --embeddings-manifest: a sharded index of S shards, built in parallel",
    )
    build.add_argument(
        "--processes", type=int, help="index shards built at a time (default: --shards)"
    )
    build.add_argument("--split", default="test", help="dataset split (default: test)")
    build.add_argument("--data-dir", help="where the dataset's files are")
    build.add_argument("--limit", type=int, help="index only the first N items")
    build.add_argument("--ids", help="ids file: .npy or text, one per line")
    build.add_argument(
        "--shortlist-dim", type=int, help=f"D_s (default {DEFAULT_SHORTLIST_DIM}, or d if smaller)"
    )
    build.add_argument("--rerank-dim", type=int, help="D_r (default: d)")
    build.add_argument(
        "--store-dtype", choices=("float32", "float16", "bfloat16", "int8"), default="float32"
    )
    build.add_argument("--batch-size", type=int, default=256, help="embedding batch size")
    build.add_argument(
        "--scann",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a ScaNN setting, e.g. --scann num_leaves=2000 (repeatable)",
    )
    build.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _output_layout(out: Path, unversioned: bool) -> dict:
    """Where `--out` sends the build: a base path (next version), `BASE/N` (exactly version
    N), or an un-versioned folder (`--unversioned`, or an existing legacy index there)."""
    if (out / "manifest.json").is_file() and out.name.isdigit():
        from mrl_keras.serving.retrieval.manifest import read_manifest

        if read_manifest(out).get("version") is not None:
            raise CommandError(
                f"index version {out.name} exists already in {str(out.parent)!r} (published "
                "versions are immutable; --out the base path publishes the next one)",
                code=1,
            )
    if unversioned or (out / "manifest.json").is_file():
        if not unversioned:
            print(
                f"mrl index: {out} is an un-versioned index: replacing it in place (build into "
                "a base path, e.g. indexes/NAME, for immutable versions)",
                file=sys.stderr,
            )
        return {"out_dir": out, "versioned": False, "version": None}
    if out.name.isdigit() and not out.exists() and int(out.name) >= 1:
        return {"out_dir": out.parent, "versioned": True, "version": int(out.name)}
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {str(out)!r} exists and is not a folder")
    return {"out_dir": out, "versioned": True, "version": None}


def _index_build(argv: list[str]) -> int:
    from mrl_keras.serving.retrieval import corpus as _corpus
    from mrl_keras.serving.retrieval.index import build_index, load_embeddings_file, load_ids_file

    parser = _index_parser()
    args = parser.parse_args(argv)
    if args.action != "build":
        parser.print_usage(sys.stderr)
        raise CommandError("expected `mrl index build ...`")
    if args.embeddings_manifest:  # serving/cli/index_shards.py
        from mrl_keras.serving.cli.index_shards import build_from_embeddings_manifest

        return build_from_embeddings_manifest(args)
    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit must be >= 1, got {args.limit}")
    if args.keep is not None and args.keep < 1:
        raise CommandError(f"--keep must be >= 1, got {args.keep}")
    layout = _output_layout(Path(args.out), args.unversioned)
    if args.keep is not None and layout["versioned"] is False:
        raise CommandError("--keep needs a versioned --out (a base path), not an index folder")
    progress = not args.no_progress
    backend = make_backend(args, required=args.embeddings is None)
    model_name = args.model_name or (backend.model_name if backend else None)
    model_version = args.model_version
    ids = None
    if args.embeddings:
        embeddings, ids = load_embeddings_file(args.embeddings)
        if backend is not None:
            model_version = backend.info().version
    else:
        info = backend.info()
        model_version = info.version
        if args.dataset:
            images, _ = _corpus.load_dataset_split(args.dataset, args.split, args.data_dir)
            if args.limit:
                images = images[: args.limit]
            inputs = _corpus.to_model_inputs(images, info.input_shape)
        else:
            inputs, ids = _corpus.load_image_folder(args.images, info.input_shape)
        if args.limit:
            inputs = inputs[: args.limit]
            ids = None if ids is None else ids[: args.limit]
        embeddings = _corpus.embed_in_batches(
            backend, inputs, info.embedding_dim, args.batch_size, progress
        )
    if args.limit:
        embeddings = embeddings[: args.limit]
        ids = None if ids is None else ids[: args.limit]
    if args.ids:
        ids = load_ids_file(args.ids)
    d = int(embeddings.shape[1])
    shortlist_dim = args.shortlist_dim or min(DEFAULT_SHORTLIST_DIM, d)
    out = build_index(
        layout["out_dir"],
        embeddings,
        ids,
        shortlist_dim=shortlist_dim,
        rerank_dim=args.rerank_dim,
        store_dtype=args.store_dtype,
        model_name=model_name,
        model_version=model_version,
        scann_options=scann_overrides(args.scann),
        progress=progress,
        versioned=layout["versioned"],
        version=layout["version"],
        keep=args.keep,
    )
    from mrl_keras.serving.retrieval.index import read_manifest

    manifest = read_manifest(out)
    print(
        f"index {out}: {manifest['count']} items, d={manifest['embedding_dim']}, "
        f"D_s={manifest['shortlist_dim']}, D_r={manifest['rerank_dim']}, model {model_name!r} "
        f"version {model_version}, index_version {manifest['index_version']}"
    )
    return 0


def main(argv: list[str]) -> int:
    """`mrl index build ...` (and `mrl index tune ...`, in `index_tune.py`)."""
    if argv and argv[0] == "tune":
        from mrl_keras.serving.cli import index_tune

        return index_tune.main(argv[1:])
    return run_command("index", _index_build, argv)
