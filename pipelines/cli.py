"""`mrl embed`: run the embedding pipeline (pipelines/embed.py) on a Beam runner.

Flags this command does not know are Beam pipeline options, passed to Beam unchanged:
`--runner DirectRunner --direct_num_workers 2 --direct_running_mode multi_processing` here;
`--runner DataflowRunner --project P --region R --temp_location gs://...`, `--runner
FlinkRunner --flink_master host:8081` or `--runner SparkRunner --spark_master_url spark://...`
on a cluster (docs/scale.md).

With a flag of client mode instead (`--service`, `--inputs`, `--dimensions`, ...), `mrl embed`
embeds a small batch through a running service or a model backend and prints the embeddings
(serving/cli/embed_client.py); mixing the two modes' flags is a usage error. `--help` shows both.
"""

from __future__ import annotations

import sys

from mrl_keras.cli_parser import CommandError, Parser, fail


def _parser() -> Parser:
    parser = Parser(
        prog="mrl embed",
        description="Embed a corpus into embedding shards with Apache Beam (RunInference over "
        "the exported SavedModel). Unknown flags are Beam pipeline options (--runner ...).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="image folder or glob (ids: relative paths)")
    source.add_argument("--tfrecords", help="glob of TFRecord files of tf.train.Example images")
    source.add_argument("--npy", help="glob of .npy files of model inputs (ids: NAME.ids.npy)")
    source.add_argument("--tfds", help="TFDS dataset NAME[:SPLIT] (split defaults to train)")
    parser.add_argument("--model", required=True, help="SavedModel base path (from `mrl export`)")
    parser.add_argument("--model-version", type=int, help="version to pin (default: the latest)")
    parser.add_argument("--out", required=True, help="output embeddings directory")
    parser.add_argument("--dim", type=int, help="prefix written, D_r (default: the model's d)")
    parser.add_argument("--shards", type=int, default=16, help="output shards (default 16)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--min-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=256)
    parser.add_argument(
        "--share-model",
        action="store_true",
        help="one model per machine shared by the worker processes",
    )
    parser.add_argument("--id-key", default="id", help="TFRecord feature holding the id")
    parser.add_argument("--image-key", default="image", help="TFRecord feature holding the image")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished job's output")
    return parser


def _embed(argv: list[str]) -> int:
    args, beam_args = _parser().parse_known_args(argv)
    for arg in beam_args:  # Beam's options are --snake_case; a --dashed one is a typo of ours
        if arg.startswith("-") and ("-" in arg.lstrip("-").split("=")[0] or not arg.startswith("--")):
            raise CommandError(
                f"unknown flag {arg} (Beam pipeline options are spelt with underscores, "
                "e.g. --direct_num_workers)"
            )
    from mrl_keras.pipelines.embed import EmbedJob, run_embed

    kind = next(k for k in ("images", "tfrecords", "npy", "tfds") if getattr(args, k))
    job = EmbedJob(
        source_kind=kind,
        source=getattr(args, kind),
        model_path=args.model,
        model_version=args.model_version,
        out_dir=args.out,
        dim=args.dim,
        num_shards=args.shards,
        dtype=args.dtype,
        min_batch_size=args.min_batch_size,
        max_batch_size=args.max_batch_size,
        share_model=args.share_model,
        id_key=args.id_key,
        image_key=args.image_key,
        overwrite=args.overwrite,
    )
    job = job.resolve()
    print(
        f"mrl embed: {kind} {job.source} -> {args.out} ({job.num_shards} shards, dim {job.dim}, "
        f"model {job.metadata['model_name']} v{job.model_version}, beam {' '.join(beam_args) or '(defaults)'})",
        file=sys.stderr,
        flush=True,
    )
    manifest = run_embed(job, beam_args)
    print(
        f"mrl embed: wrote {manifest['count']} embeddings in {len(manifest['shards'])} shards to "
        f"{args.out}/manifest.json",
        file=sys.stderr,
    )
    return 0


def _client_mode(argv: list[str]) -> bool:
    """Whether `argv` is client mode (serving/cli/embed_client.py: `--service`, `--inputs`, ...).

    A flag of client mode that the Beam command lacks selects it; with a flag only the Beam
    command has, that is a usage error naming both. The flags both have (`--model`,
    `--model-version`, `--out`, `--help`) select nothing.
    """
    from mrl_keras.serving.cli.embed_client import client_flags

    beam = set(_parser()._option_string_actions)
    client = client_flags()
    given = [arg.split("=", 1)[0] for arg in argv if arg.startswith("-")]
    client_only = list(dict.fromkeys(flag for flag in given if flag in client - beam))
    beam_only = list(dict.fromkeys(flag for flag in given if flag in beam - client))
    if client_only and beam_only:
        raise CommandError(
            f"{', '.join(client_only)} embed a batch through a service or a model backend and "
            f"{', '.join(beam_only)} run the Beam pipeline over a corpus; give the flags of one mode"
        )
    return bool(client_only)


def _help(argv: list[str]) -> bool:
    if not any(arg in ("-h", "--help") for arg in argv):
        return False
    from mrl_keras.serving.cli.embed_client import parser as client_parser

    print(_parser().format_help())
    print("Client mode (no Beam) is chosen by a flag below that the Beam command lacks:\n")
    print(client_parser().format_help(), end="")
    return True


def main(argv: list[str]) -> int:
    """`mrl embed (--images|--tfrecords|--npy|--tfds) SRC --model PATH --out DIR [beam options]`,
    or client mode, `mrl embed (--service URL | --model PATH) --inputs FILE [--dimensions M]`
    (serving/cli/embed_client.py)."""
    try:
        if _client_mode(argv):
            from mrl_keras.serving.cli.embed_client import main as client_main

            return client_main(argv)
        if _help(argv):
            return 0
        return _embed(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    except CommandError as e:
        return fail("mrl embed", e, e.code)
    except (ValueError, TypeError, OSError) as e:
        print(f"mrl embed: {e}", file=sys.stderr)
        return 1
