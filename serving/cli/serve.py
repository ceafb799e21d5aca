"""`mrl serve`: the HTTP search/classify service over a model backend and an index."""

from __future__ import annotations

import signal
import sys
import threading

from mrl_keras.cli_parser import CommandError, Parser
from mrl_keras.serving.cli.common import (
    add_backend_flags,
    listen_socket,
    make_backend,
    read_token,
    run_command,
    serve_on_socket,
)


def _serve_parser() -> Parser:
    parser = Parser(
        prog="mrl serve",
        description="Run the HTTP search/classify service "
        "(POST /v1/search, /v1/classify; GET /healthz, /readyz, /metrics; "
        "POST /admin/reload or SIGHUP reloads the index).",
    )
    add_backend_flags(parser)
    parser.add_argument(
        "--index",
        required=True,
        help="index base path from `mrl index build --out BASE` (serves the newest version "
        "whose model version the backend has AVAILABLE, pinning every call to that model "
        "version, and switches to newer ones), or an un-versioned index directory",
    )
    parser.add_argument(
        "--index-poll-seconds",
        type=float,
        default=2.0,
        help="seconds between looks for a newer index version (0: only on SIGHUP and "
        "/admin/reload). Default: 2",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--auth-token-file", help="file holding a bearer token required on /v1, /admin and /metrics"
    )
    parser.add_argument("--max-body-bytes", type=int, default=32 << 20)
    parser.add_argument(
        "--max-request-batch",
        dest="max_batch_size",
        type=int,
        default=1024,
        help="the most instances one request may carry; larger ones get 413 (default 1024)",
    )
    parser.add_alias("--max-batch-size", "--max-request-batch")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="default per-request deadline in seconds"
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="threads for backend calls and searches"
    )
    parser.add_argument(
        "--allowed-hosts",
        default="",
        help="comma list of extra Host header names answered (always: localhost, 127.0.0.1, "
        "::1 and the bind address; '*': any). Other hosts get 421 (DNS rebinding)",
    )
    parser.add_argument(
        "--verify-interval",
        type=float,
        default=3600.0,
        help="seconds between background re-verifications of the served index's checksums "
        "(also on every reload; 0: only on reload). Default: 3600",
    )
    parser.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        help="serve an index built by another model version than the backend's",
    )
    parser.add_argument("--log-level", default="info")
    return parser


def _serve(argv: list[str]) -> int:
    args = _serve_parser().parse_args(argv)

    from mrl_keras.serving.service.app import create_app
    from mrl_keras.serving.service.search_service import SearchService, ServiceConfig

    for name, flag in (
        ("max_body_bytes", "--max-body-bytes"),
        ("max_batch_size", "--max-request-batch"),
        ("workers", "--workers"),
    ):
        if getattr(args, name) < 1:
            raise CommandError(f"{flag} must be >= 1")
    if args.timeout <= 0:
        raise CommandError("--timeout must be > 0")
    if not args.index_poll_seconds >= 0:
        raise CommandError("--index-poll-seconds must be >= 0")
    if not args.verify_interval >= 0:
        raise CommandError("--verify-interval must be >= 0 (seconds; 0: only on reload)")
    config = ServiceConfig(
        max_body_bytes=args.max_body_bytes,
        max_batch_size=args.max_batch_size,
        default_timeout=args.timeout,
        max_timeout=max(60.0, args.timeout),
        auth_token=read_token(args.auth_token_file),
        allow_version_mismatch=args.allow_version_mismatch,
        workers=args.workers,
        index_poll_s=args.index_poll_seconds,
        allowed_hosts=_allowed_hosts(args.allowed_hosts, args.host),
        verify_interval_s=args.verify_interval,
    )
    backend = make_backend(args, check=False)
    service = SearchService(backend, args.index, config)
    app = create_app(service)

    def on_sighup(signum, frame):
        def reload():
            try:
                result = service.reloader.submit().result()  # the one reload worker
                print(
                    f"mrl serve: reloaded index {result['index_version']}",
                    file=sys.stderr,
                    flush=True,
                )
            except Exception as e:  # keep serving the old index
                print(
                    f"mrl serve: reload failed, still serving {service.index.index_version}: {e}",
                    file=sys.stderr,
                    flush=True,
                )

        threading.Thread(target=reload, name="mrl-reload", daemon=True).start()

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_sighup)
    try:
        sock = listen_socket(args.host, args.port)
    except CommandError:
        service.close()
        backend.close()
        raise
    what = f"index {service.index.index_version} ({service.index.count} items)"
    serve_on_socket(app, sock, args, what, (service.close, backend.close))
    return 0


def _allowed_hosts(extra: str, bind_host: str) -> tuple[str, ...] | None:
    """The Host names `mrl serve` answers: loopback, the bind address, `--allowed-hosts`."""
    from mrl_keras.serving.service.request_guard import LOOPBACK_HOSTS, allowed_host_set

    names = [*LOOPBACK_HOSTS, bind_host, *(h.strip() for h in extra.split(",") if h.strip())]
    try:
        allowed = allowed_host_set(names)
    except ValueError as e:
        raise CommandError(f"--allowed-hosts: {e}") from e
    return None if allowed is None else tuple(sorted(allowed))


def main(argv: list[str]) -> int:
    """`mrl serve --model PATH --index DIR [--port N] [--host H] ...`."""
    if any(a == "--shards" or a.startswith("--shards=") for a in argv):  # the sharded front
        from mrl_keras.serving.cli import serve_shards

        return serve_shards.main(argv)
    from mrl_keras.serving.cli.serve_shards import index_flag
    from mrl_keras.serving.retrieval.sharded import is_sharded_index

    if index_flag(argv) and is_sharded_index(index_flag(argv)):  # all shards in this process
        from mrl_keras.serving.cli import serve_shards

        return serve_shards.main_local(argv)
    return run_command("serve", _serve, argv)
