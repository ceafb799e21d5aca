"""`mrl index tune`: find the cheapest search config of an index meeting a recall target, and
publish it as the index's defaults (a new index version)."""

from __future__ import annotations

import os
import sys

from mrl_keras.cli_parser import CommandError, Parser
from mrl_keras.serving.cli.common import read_array, run_command


def _parser() -> Parser:
    parser = Parser(
        prog="mrl index tune",
        description="Measure a grid of search configs (shortlist size K, rerank dim D_r or the "
        "paper's funnel, ScaNN leaves) of an index on held-out queries against exact search, "
        "print the Pareto front, and publish the cheapest config whose recall@k lower "
        "confidence bound meets the target as the index's search defaults (a new index "
        "version: the next integer version in an indexes/NAME/<version>/ layout, else the "
        "directory replaced atomically, or --out).",
    )
    parser.add_argument("index", help="index directory (from `mrl index build`)")
    parser.add_argument("--target-recall", type=float, default=0.95, help="recall@k target")
    parser.add_argument("--k", type=int, default=10, help="results per query (default 10)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--queries", help=".npy/.json of query embeddings (n, >= D_r)")
    source.add_argument("--sample", type=int, help="sample N corpus rows as queries (default 1000)")
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="one-sided confidence of the bound"
    )
    parser.add_argument(
        "--heldout-fraction", type=float, default=0.5, help="queries kept to check the choice"
    )
    parser.add_argument(
        "--heldout-checks",
        type=int,
        default=16,
        help="configs meeting the bound checked on the held-out queries, cheapest first; the "
        "first reaching the target there is chosen (default 16)",
    )
    parser.add_argument(
        "--cost",
        choices=("cpu", "bytes"),
        default="cpu",
        help="cpu: measured CPU time per query on one thread; bytes: modelled bytes touched",
    )
    parser.add_argument(
        "--add-shortlists",
        metavar="DIMS",
        help="first publish ScaNN shortlists over z[:m] for these dims (e.g. 16,64) sharing the "
        "store, then tune over every shortlist dim",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="publish here instead (default: see above)")
    parser.add_argument("--dry-run", action="store_true", help="measure and print, publish nothing")
    parser.add_argument("--no-verify", action="store_true", help="skip the checksum pass on load")
    return parser


def _tune(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if not os.path.isdir(args.index):
        raise CommandError(f"index directory not found: {args.index!r}")
    if not 0.0 < args.target_recall <= 1.0:
        raise CommandError(f"--target-recall must be in (0, 1], got {args.target_recall}")
    if not 0.0 < args.confidence < 1.0:
        raise CommandError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.sample is not None and args.sample < 4:
        raise CommandError(f"--sample must be >= 4, got {args.sample}")
    if args.k < 1 or args.repeats < 1:
        raise CommandError("--k and --repeats must be >= 1")
    if args.heldout_checks < 1:
        raise CommandError(f"--heldout-checks must be >= 1, got {args.heldout_checks}")
    queries = read_array(args.queries) if args.queries else None
    from mrl_keras.serving.retrieval.index import AdaptiveIndex
    from mrl_keras.serving.retrieval.tuned_index import publish_tuned

    source = args.index
    if args.add_shortlists:
        from mrl_keras.serving.retrieval.shortlists import add_shortlists

        try:
            dims = [int(x) for x in args.add_shortlists.split(",") if x.strip()]
        except ValueError as e:
            raise CommandError(
                f"--add-shortlists expects e.g. 16,64, got {args.add_shortlists!r}"
            ) from e
        source = add_shortlists(args.index, dims, out_dir=args.out)
        print(f"added shortlists {dims}: {source}")
    index = AdaptiveIndex.load(source, verify=not args.no_verify)

    def progress(done: int, text: str) -> None:
        print(f"  [{done}] {text}", file=sys.stderr)

    result = index.tune(
        queries,
        sample=None if queries is not None else (args.sample or 1000),
        target_recall=args.target_recall,
        k=args.k,
        confidence=args.confidence,
        heldout_fraction=args.heldout_fraction,
        heldout_checks=args.heldout_checks,
        cost=args.cost,
        repeats=args.repeats,
        seed=args.seed,
        progress=progress,
    )
    print(result.render())
    if result.chosen is None:
        raise CommandError(result.render().splitlines()[-1] + "; nothing published", code=1)
    if args.dry_run:
        print("dry run: nothing published")
        return 0
    out = publish_tuned(source, result.search_defaults(), result.tuning_record(), out_dir=args.out)
    from mrl_keras.serving.retrieval.manifest import read_manifest

    manifest = read_manifest(out)
    print(
        f"published {out}: index_version {manifest['index_version']} (tuned from "
        f"{manifest['tuned_from']}), search_defaults {manifest['search_defaults']}"
    )
    return 0


def main(argv: list[str]) -> int:
    """`mrl index tune INDEX ...`."""
    return run_command("index tune", _tune, argv)
