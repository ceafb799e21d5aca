"""`mrl classify`: cascade classification through a model backend or a running service."""

from __future__ import annotations

import json

from mrl_keras.cli_parser import Parser
from mrl_keras.serving.cli.common import (
    add_backend_flags,
    add_query_flags,
    make_backend,
    post,
    read_queries,
    run_command,
)


def _classify(argv: list[str]) -> int:
    parser = Parser(
        prog="mrl classify",
        description="Cascade classification: prints "
        "class, score and the prefix dims used per example.",
    )
    add_backend_flags(parser)
    add_query_flags(parser, embeddings=False)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    if args.service:
        _, inputs = read_queries(args)
        predictions = post(args, "/v1/classify", {"instances": inputs.tolist()})["predictions"]
    else:
        from mrl_keras.serving.backends.cascade_client import CascadeClassifier

        backend = make_backend(args)
        _, inputs = read_queries(args, backend.info())
        predictions = CascadeClassifier(backend).classify(inputs).predictions()
    for p in predictions:
        if args.json:
            print(json.dumps(p))
        else:
            label = f"\t{p['label']}" if p.get("label") else ""
            print(f"class={p['class']}\tscore={p['score']:.4f}\tdims_used={p['dims_used']}{label}")
    return 0


def main(argv: list[str]) -> int:
    """`mrl classify (--model PATH | --tf-serving-* | --service URL) (--inputs F | --dataset N)`."""
    return run_command("classify", _classify, argv)
