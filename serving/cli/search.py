"""`mrl search`: one-off searches against a running service or directly against an index."""

from __future__ import annotations

import json

from mrl_keras.cli_parser import CommandError, Parser
from mrl_keras.serving.cli.common import (
    add_backend_flags,
    add_query_flags,
    make_backend,
    parse_funnel_flag,
    post,
    read_queries,
    run_command,
)


def _search(argv: list[str]) -> int:
    parser = Parser(
        prog="mrl search",
        description="One-off searches against a running "
        "service (--service) or directly against an index (--index, with a model "
        "for --inputs/--dataset).",
    )
    add_backend_flags(parser)
    add_query_flags(parser, embeddings=True)
    parser.add_argument("--index", help="index directory (direct search, no service)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--shortlist-size", type=int)
    parser.add_argument("--rerank-dim", type=int)
    parser.add_argument("--funnel", help="DIM:SIZE,... stages, e.g. 32:100,64:50,128:10")
    parser.add_argument(
        "--leaves-to-search",
        type=int,
        help="ScaNN leaves searched per query, 1..num_leaves (default: the index's "
        "num_leaves_to_search); fewer is faster, more gives better recall",
    )
    parser.add_argument(
        "--shortlist-reorder",
        type=int,
        help="candidates ScaNN re-scores exactly at D_s before keeping the shortlist, "
        "shortlist size..corpus size (default: the index's tuned value, else "
        "max(shortlist size, its reorder_num_neighbors)); fewer is faster",
    )
    parser.add_argument("--allow-version-mismatch", action="store_true")
    args = parser.parse_args(argv)
    if bool(args.service) == bool(args.index):
        raise CommandError("give one of --service URL or --index DIR")
    options = {
        "k": args.k,
        "shortlist_size": args.shortlist_size,
        "rerank_dim": args.rerank_dim,
        "funnel": parse_funnel_flag(args.funnel),
        "leaves_to_search": args.leaves_to_search,
        "shortlist_reorder": args.shortlist_reorder,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if args.service:
        kind, queries = read_queries(args)
        body = post(args, "/v1/search", {kind: queries.tolist(), **options})
        results = body["results"]
    else:
        from mrl_keras.serving.retrieval.index import AdaptiveIndex
        from mrl_keras.serving.retrieval.retriever import AdaptiveRetriever

        backend = make_backend(args, required=False)
        index = AdaptiveIndex.load(args.index)
        retriever = AdaptiveRetriever(
            index, backend, allow_version_mismatch=args.allow_version_mismatch
        )
        kind, queries = read_queries(args, backend.info() if backend else None)
        if kind == "embeddings":
            result = retriever.search_embeddings(queries, **options)
        elif backend is None:
            raise CommandError(
                "searching model inputs directly needs a model: --model or --tf-serving-*"
            )
        else:
            result = retriever.search(queries, **options)
        results = [
            {"ids": i, "scores": s}
            for i, s in zip(result.ids.tolist(), result.scores.tolist(), strict=True)
        ]
    for row in results:
        print(json.dumps(row))
    return 0


def main(argv: list[str]) -> int:
    """`mrl search (--service URL | --index DIR [--model PATH]) (--inputs F | --embeddings F | --dataset N)`."""
    return run_command("search", _search, argv)
