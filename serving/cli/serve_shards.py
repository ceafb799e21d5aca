"""`mrl serve --shards URL,URL,...`: the fan-out front over one `mrl serve` per index shard
(`serving/service/sharded_front.py`)."""

from __future__ import annotations

import sys

from mrl_keras.cli_parser import CommandError, Parser
from mrl_keras.serving.cli.common import listen_socket, read_token, run_command


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
    parser.add_argument("--timeout", type=float, default=5.0, help="default per-request deadline (s)")
    parser.add_argument("--max-body-bytes", type=int, default=32 << 20)
    parser.add_argument("--auth-token-file", help="bearer token required on /v1 and sent to the shards")
    parser.add_argument("--log-level", default="info")
    return parser


def _serve_front(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    import uvicorn

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
    port = sock.getsockname()[1]
    print(
        f"mrl serve: front over {len(front.urls)} shards on http://{args.host}:{port}",
        file=sys.stderr,
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_front_app(front), host=args.host, port=port, log_level=args.log_level)
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        front.close()
    return 0


def main(argv: list[str]) -> int:
    """`mrl serve --shards URL,URL,... [--port N] [--timeout S]`."""
    return run_command("serve", _serve_front, argv)
