"""`mrl serve --shards URL,URL,...`: the fan-out front over one `mrl serve` per index shard
(`serving/service/sharded_front.py`)."""

from __future__ import annotations

import sys

from mrl_keras.cli_parser import CommandError, Parser
from mrl_keras.serving.cli.common import listen_socket, read_token, run_command, serve_on_socket


def _parser() -> Parser:
    parser = Parser(
        prog="mrl serve",
        description="Fan-out front of a sharded index: POST /v1/search goes to every shard "
        "service, the answers are merged exactly; 503 naming a missing shard, or partial "
        'results flagged as such when a request says "allow_partial": true.',
    )
    parser.add_argument("--shards", required=True, help="comma-separated shard service URLs")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="default per-request deadline (s)"
    )
    parser.add_argument("--max-body-bytes", type=int, default=32 << 20)
    parser.add_argument(
        "--auth-token-file", help="bearer token required on /v1 and sent to the shards"
    )
    parser.add_argument("--log-level", default="info")
    return parser


def _serve_front(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from mrl_keras.serving.service.sharded_front import FrontConfig, ShardedFront, create_front_app

    if args.timeout <= 0:
        raise CommandError("--timeout must be > 0")
    if args.max_body_bytes < 1:
        raise CommandError("--max-body-bytes must be >= 1")
    config = FrontConfig(
        timeout=args.timeout,
        max_timeout=max(60.0, args.timeout),
        max_body_bytes=args.max_body_bytes,
        auth_token=read_token(args.auth_token_file),
    )
    try:
        front = ShardedFront(args.shards.split(","), config)
    except ValueError as e:
        raise CommandError(str(e)) from e
    try:
        sock = listen_socket(args.host, args.port)  # a port in use fails before the line below
    except CommandError:
        front.close()
        raise
    what = f"front over {len(front.urls)} shards"
    serve_on_socket(create_front_app(front), sock, args, what, (front.close,))
    return 0


def main(argv: list[str]) -> int:
    """`mrl serve --shards URL,URL,... [--port N] [--timeout S]`."""
    return run_command("serve", _serve_front, argv)


def _local_parser() -> Parser:
    from mrl_keras.serving.cli.common import add_backend_flags

    parser = Parser(
        prog="mrl serve",
        description="Serve a whole sharded index in one process: every shard loaded and searched "
        "on its own thread, results merged exactly (POST /v1/search; GET /healthz, /readyz).",
    )
    add_backend_flags(parser)
    parser.add_argument(
        "--index", required=True, help="sharded index (or a versioned base path of them)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-body-bytes", type=int, default=32 << 20)
    parser.add_argument("--max-request-batch", type=int, default=1024)
    parser.add_argument(
        "--verify",
        choices=("fast", "full", "none"),
        default="fast",
        help="load-time checks (fast: sizes and manifests, chunk hashes in the background)",
    )
    parser.add_argument("--log-level", default="info")
    return parser


def _serve_local(argv: list[str]) -> int:
    args = _local_parser().parse_args(argv)
    from mrl_keras.serving.cli.common import make_backend
    from mrl_keras.serving.retrieval.sharded import ShardedIndex, ShardedRetriever
    from mrl_keras.serving.service.sharded_local import create_sharded_app

    for name in ("max_body_bytes", "max_request_batch"):
        if getattr(args, name) < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be >= 1")
    sock = listen_socket(args.host, args.port)
    backend = make_backend(args, check=False)
    index = ShardedIndex.load(args.index, verify=args.verify, model_version=backend.info().version)
    if args.verify == "fast":

        def on_error(e: Exception) -> None:
            print(f"mrl serve: background verification failed: {e}", file=sys.stderr, flush=True)

        index.verify_in_background(on_error)
    retriever = ShardedRetriever(index, backend)
    app = create_sharded_app(
        retriever, max_body_bytes=args.max_body_bytes, max_batch=args.max_request_batch
    )
    what = f"sharded index {index.index_version} ({index.count} items in {len(index.shards)} shards, one process)"
    serve_on_socket(app, sock, args, what, (retriever.close, backend.close))
    return 0


def index_flag(argv: list[str]) -> str | None:
    """The value of `--index` in `argv`, if any."""
    for i, a in enumerate(argv):
        if a == "--index" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--index="):
            return a.split("=", 1)[1]
    return None


def main_local(argv: list[str]) -> int:
    """`mrl serve --model PATH --index SHARDED_INDEX [--port N]` (all shards in this process)."""
    return run_command("serve", _serve_local, argv)
