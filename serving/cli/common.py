"""Flags and helpers shared by the serving commands: the model backend flags, the query flags,
reading query files, calling a running service, and the exit convention (`run_command`: usage
errors exit 2 with one line, backend and input errors exit 1 with one line, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mrl_keras.cli_parser import CommandError

__all__ = [
    "DEFAULT_SHORTLIST_DIM",
    "add_backend_flags",
    "add_query_flags",
    "make_backend",
    "parse_funnel_flag",
    "parse_rows",
    "post",
    "read_array",
    "read_queries",
    "read_token",
    "run_command",
    "scann_overrides",
]

DEFAULT_SHORTLIST_DIM = 16


def add_backend_flags(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_argument_group("model backend (one of)")
    group.add_argument(
        "--model", help="SavedModel base path (or version folder) run in-process (LocalModel)"
    )
    group.add_argument(
        "--tf-serving-grpc",
        metavar="HOST:PORT",
        help="a TF Serving gRPC endpoint, e.g. 127.0.0.1:8500",
    )
    group.add_argument(
        "--tf-serving-rest",
        metavar="URL",
        help="a TF Serving REST endpoint, e.g. http://127.0.0.1:8501",
    )
    group.add_argument(
        "--model-name", help="model name on TF Serving (default: the --model folder's name)"
    )
    group.add_argument("--model-version", type=int, help="pin this model version")
    parser.set_defaults(_backend_required=required)


def make_backend(args, *, check: bool = True, required: bool = True):
    from mrl_keras.serving.backends.local_model import LocalModel
    from mrl_keras.serving.backends.tf_serving_grpc import TFServingGrpc
    from mrl_keras.serving.backends.tf_serving_rest import TFServingRest

    chosen = [f for f in (args.model, args.tf_serving_grpc, args.tf_serving_rest) if f]
    if len(chosen) > 1:
        raise CommandError("give one of --model, --tf-serving-grpc, --tf-serving-rest")
    if not chosen:
        if required:
            raise CommandError(
                "a model is needed: pass --model PATH, --tf-serving-grpc HOST:PORT or --tf-serving-rest URL",
            )
        return None
    if args.model:
        if not Path(args.model).exists():
            raise CommandError(f"--model {args.model!r} does not exist")
        return LocalModel(args.model, args.model_version, model_name=args.model_name)
    if not args.model_name:
        raise CommandError("--model-name is required with --tf-serving-grpc/--tf-serving-rest")
    if args.tf_serving_grpc:
        return TFServingGrpc(args.tf_serving_grpc, args.model_name, args.model_version, check=check)
    return TFServingRest(args.tf_serving_rest, args.model_name, args.model_version, check=check)


def run_command(name: str, fn, argv: list[str]) -> int:
    from mrl_keras.serving.backends.errors import BackendError
    from mrl_keras.serving.retrieval.index import IndexIntegrityError

    try:
        return fn(argv)
    except SystemExit as e:  # argparse: usage error (2) or --help (0), message already printed
        return e.code if isinstance(e.code, int) else 2
    except CommandError as e:
        print(f"mrl {name}: {e}", file=sys.stderr)
        return e.code
    except BackendError as e:
        print(f"mrl {name}: backend error: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, IndexIntegrityError, OSError) as e:
        print(f"mrl {name}: {e}", file=sys.stderr)
        return 1


def scann_overrides(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise CommandError(f"expected --scann KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def read_token(path: str | None) -> str | None:
    if path is None:
        return None
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise CommandError(f"--auth-token-file {path!r} is empty")
    return token


def add_query_flags(parser: argparse.ArgumentParser, embeddings: bool) -> None:
    group = parser.add_argument_group("queries (one of)")
    group.add_argument("--inputs", help=".npy (or .json) batch of model inputs")
    if embeddings:
        group.add_argument("--embeddings", help=".npy (or .json) batch of query embeddings")
    group.add_argument("--dataset", help="take queries from a dataset split (with --rows)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir")
    parser.add_argument("--rows", default="0", help="dataset rows, e.g. 0,5,7 or 0-9 (default 0)")
    parser.add_argument(
        "--service", metavar="URL", help="a running `mrl serve`, e.g. http://127.0.0.1:8080"
    )
    parser.add_argument("--auth-token-file", help="bearer token for --service")
    parser.add_argument("--timeout", type=float, default=30.0)


def parse_rows(text: str) -> list[int]:
    rows: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-")
                rows.extend(range(int(a), int(b) + 1))
            else:
                rows.append(int(part))
    except ValueError as e:
        raise CommandError(f"--rows expects e.g. 0,5,7 or 0-9, got {text!r}") from e
    return rows


def read_array(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise CommandError(f"file not found: {path!r}")
    if p.suffix == ".json":
        return np.asarray(json.loads(p.read_text()), dtype=np.float32)
    return np.load(p, allow_pickle=False)


def read_queries(args, backend_info=None) -> tuple[str, np.ndarray]:
    from mrl_keras.serving.retrieval import corpus as _corpus

    given = [k for k in ("inputs", "embeddings", "dataset") if getattr(args, k, None)]
    if len(given) != 1:
        raise CommandError("give exactly one of --inputs, --embeddings, --dataset")
    if args.dataset:
        images, _ = _corpus.load_dataset_split(args.dataset, args.split, args.data_dir)
        rows = parse_rows(args.rows)
        if max(rows) >= len(images) or min(rows) < 0:
            raise CommandError(f"--rows must be within 0..{len(images) - 1}")
        shape = backend_info.input_shape if backend_info is not None else (None, *images.shape[1:])
        return "instances", _corpus.to_model_inputs(images[rows], shape)
    kind = given[0]
    return ("instances" if kind == "inputs" else kind), read_array(getattr(args, kind))


def post(args, route: str, body: dict[str, Any]) -> dict[str, Any]:
    import requests

    headers = {}
    token = read_token(args.auth_token_file)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = requests.post(
            args.service.rstrip("/") + route, json=body, headers=headers, timeout=args.timeout
        )
    except requests.RequestException as e:
        raise CommandError(f"cannot reach {args.service}: {e}", code=1) from e
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": " ".join(response.text[:200].split())}  # one line
    if response.status_code != 200:
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        raise CommandError(f"HTTP {response.status_code}: {error}", code=1)
    return payload


def parse_funnel_flag(text: str | None):
    if text is None:
        return None
    try:
        return [[int(x) for x in stage.split(":")] for stage in text.split(",")]
    except ValueError as e:
        raise CommandError(f"--funnel expects DIM:SIZE,DIM:SIZE,..., got {text!r}") from e


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening socket, bound before a server says it is up (hand it to uvicorn as
    `server.run(sockets=[sock])`): a port in use is a one-line error and exit status 1, not a
    log line after the announcement."""
    if not 0 <= port <= 65535:
        raise CommandError(f"--port must be in 0..65535. Received: {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise CommandError(
            f"cannot listen on {host}:{port}: {e.strerror or e} (another server on that "
            "port? choose another with --port)",
            code=1,
        ) from e
    sock.set_inheritable(True)
    return sock


def serve_on_socket(app, sock: socket.socket, args, what: str, closers=()) -> None:
    """Announces `mrl serve: <what> on http://HOST:PORT` and runs `app` with uvicorn on the
    listening `sock` (from `listen_socket`) until it stops; then closes the socket and calls
    each of `closers`, in order.

    Args:
        app: the ASGI app.
        sock: the bound, listening socket.
        args: the parsed flags; `host` and `log_level` are used.
        what: what is served, for the announcement.
        closers: callables run after the server stops (also when it fails).
    """
    import uvicorn

    port = sock.getsockname()[1]
    print(f"mrl serve: {what} on http://{args.host}:{port}", file=sys.stderr, flush=True)
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=port, log_level=args.log_level)
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for close in closers:
            close()
