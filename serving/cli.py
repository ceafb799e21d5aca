"""`mrl index build`, `mrl serve`, `mrl search` and `mrl classify` (each `fn(argv) -> int`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

_DEFAULT_SHORTLIST_DIM = 16


class _Exit(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _add_backend_flags(parser: argparse.ArgumentParser, required: bool = False) -> None:
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


def _make_backend(args, *, check: bool = True, required: bool = True):
    from mrl_keras.serving.local_model import LocalModel
    from mrl_keras.serving.tf_serving_grpc import TFServingGrpc
    from mrl_keras.serving.tf_serving_rest import TFServingRest

    chosen = [f for f in (args.model, args.tf_serving_grpc, args.tf_serving_rest) if f]
    if len(chosen) > 1:
        raise _Exit(2, "give one of --model, --tf-serving-grpc, --tf-serving-rest")
    if not chosen:
        if required:
            raise _Exit(
                2,
                "a model is needed: pass --model PATH, --tf-serving-grpc HOST:PORT or --tf-serving-rest URL",
            )
        return None
    if args.model:
        if not Path(args.model).exists():
            raise _Exit(2, f"--model {args.model!r} does not exist")
        return LocalModel(args.model, args.model_version, model_name=args.model_name)
    if not args.model_name:
        raise _Exit(2, "--model-name is required with --tf-serving-grpc/--tf-serving-rest")
    if args.tf_serving_grpc:
        return TFServingGrpc(args.tf_serving_grpc, args.model_name, args.model_version, check=check)
    return TFServingRest(args.tf_serving_rest, args.model_name, args.model_version, check=check)


def _run(name: str, fn, argv: list[str]) -> int:
    from mrl_keras.serving.errors import BackendError
    from mrl_keras.serving.index import IndexIntegrityError

    try:
        return fn(argv)
    except SystemExit as e:  # argparse: usage error (2) or --help (0), message already printed
        return e.code if isinstance(e.code, int) else 2
    except _Exit as e:
        print(f"mrl {name}: {e}", file=sys.stderr)
        return e.code
    except BackendError as e:
        print(f"mrl {name}: backend error: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, IndexIntegrityError, OSError) as e:
        print(f"mrl {name}: {e}", file=sys.stderr)
        return 1


def _scann_overrides(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise _Exit(2, f"expected --scann KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


# -- mrl index build ---------------------------------------------------------------------
def _index_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrl index", description="Build an adaptive retrieval index."
    )
    sub = parser.add_subparsers(dest="action", metavar="build")
    build = sub.add_parser(
        "build",
        help="embed a corpus and write an index directory",
        description="Embed a corpus (or read full embeddings) and write an index "
        "directory: ScaNN over z[:D_s], rerank store z[:D_r], manifest with checksums.",
    )
    _add_backend_flags(build)
    build.add_argument("--out", required=True, help="index directory (replaced atomically)")
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="dataset name (fashion_mnist/mnist offline, else TFDS)")
    source.add_argument("--images", help="folder of images (ids = relative paths)")
    source.add_argument("--embeddings", help=".npy or .npz of full embeddings (npz may hold ids)")
    build.add_argument("--split", default="test", help="dataset split (default: test)")
    build.add_argument("--data-dir", help="where the dataset's files are")
    build.add_argument("--limit", type=int, help="index only the first N items")
    build.add_argument("--ids", help="ids file: .npy or text, one per line")
    build.add_argument(
        "--shortlist-dim", type=int, help=f"D_s (default {_DEFAULT_SHORTLIST_DIM}, or d if smaller)"
    )
    build.add_argument("--rerank-dim", type=int, help="D_r (default: d)")
    build.add_argument(
        "--store-dtype", choices=("float32", "float16", "bfloat16"), default="float32"
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


def _index_build(argv: list[str]) -> int:
    from mrl_keras.serving import _corpus
    from mrl_keras.serving.index import build_index, load_embeddings_file, load_ids_file

    parser = _index_parser()
    args = parser.parse_args(argv)
    if args.action != "build":
        parser.print_usage(sys.stderr)
        raise _Exit(2, "expected `mrl index build ...`")
    if args.limit is not None and args.limit < 1:
        raise _Exit(2, f"--limit must be >= 1, got {args.limit}")
    progress = not args.no_progress
    backend = _make_backend(args, required=args.embeddings is None)
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
    shortlist_dim = args.shortlist_dim or min(_DEFAULT_SHORTLIST_DIM, d)
    out = build_index(
        args.out,
        embeddings,
        ids,
        shortlist_dim=shortlist_dim,
        rerank_dim=args.rerank_dim,
        store_dtype=args.store_dtype,
        model_name=model_name,
        model_version=model_version,
        scann_options=_scann_overrides(args.scann),
        progress=progress,
    )
    from mrl_keras.serving.index import read_manifest

    manifest = read_manifest(out)
    print(
        f"index {out}: {manifest['count']} items, d={manifest['embedding_dim']}, "
        f"D_s={manifest['shortlist_dim']}, D_r={manifest['rerank_dim']}, model {model_name!r} "
        f"version {model_version}, index_version {manifest['index_version']}"
    )
    return 0


def index_main(argv: list[str]) -> int:
    """`mrl index build ...`."""
    return _run("index", _index_build, argv)


# -- mrl serve ---------------------------------------------------------------------------
def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrl serve",
        description="Run the HTTP search/classify service "
        "(POST /v1/search, /v1/classify; GET /healthz, /readyz, /metrics; "
        "POST /admin/reload or SIGHUP reloads the index).",
    )
    _add_backend_flags(parser)
    parser.add_argument("--index", required=True, help="index directory from `mrl index build`")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--auth-token-file", help="file holding a bearer token required on /v1, /admin and /metrics"
    )
    parser.add_argument("--max-body-bytes", type=int, default=32 << 20)
    parser.add_argument("--max-batch-size", type=int, default=1024)
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="default per-request deadline in seconds"
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="threads for backend calls and searches"
    )
    parser.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        help="serve an index built by another model version than the backend's",
    )
    parser.add_argument("--log-level", default="info")
    return parser


def _read_token(path: str | None) -> str | None:
    if path is None:
        return None
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise _Exit(2, f"--auth-token-file {path!r} is empty")
    return token


def _serve(argv: list[str]) -> int:
    args = _serve_parser().parse_args(argv)

    import uvicorn

    from mrl_keras.serving.service import SearchService, ServiceConfig, create_app

    for name in ("max_body_bytes", "max_batch_size", "workers"):
        if getattr(args, name) < 1:
            raise _Exit(2, f"--{name.replace('_', '-')} must be >= 1")
    if args.timeout <= 0:
        raise _Exit(2, "--timeout must be > 0")
    config = ServiceConfig(
        max_body_bytes=args.max_body_bytes,
        max_batch_size=args.max_batch_size,
        default_timeout=args.timeout,
        max_timeout=max(60.0, args.timeout),
        auth_token=_read_token(args.auth_token_file),
        allow_version_mismatch=args.allow_version_mismatch,
        workers=args.workers,
    )
    backend = _make_backend(args, check=False)
    service = SearchService(backend, args.index, config)
    app = create_app(service)

    def on_sighup(signum, frame):
        def reload():
            try:
                result = service.reload()
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
    print(
        f"mrl serve: index {service.index.index_version} ({service.index.count} items) on "
        f"http://{args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)
    )
    try:
        server.run()
    finally:
        service.close()
        backend.close()
    return 0


def serve_main(argv: list[str]) -> int:
    """`mrl serve --model PATH --index DIR [--port N] [--host H] ...`."""
    return _run("serve", _serve, argv)


# -- mrl search / mrl classify -------------------------------------------------------------
def _add_query_flags(parser: argparse.ArgumentParser, embeddings: bool) -> None:
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


def _parse_rows(text: str) -> list[int]:
    rows: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-")
                rows.extend(range(int(a), int(b) + 1))
            else:
                rows.append(int(part))
    except ValueError as e:
        raise _Exit(2, f"--rows expects e.g. 0,5,7 or 0-9, got {text!r}") from e
    return rows


def _read_array(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise _Exit(2, f"file not found: {path!r}")
    if p.suffix == ".json":
        return np.asarray(json.loads(p.read_text()), dtype=np.float32)
    return np.load(p, allow_pickle=False)


def _queries(args, backend_info=None) -> tuple[str, np.ndarray]:
    from mrl_keras.serving import _corpus

    given = [k for k in ("inputs", "embeddings", "dataset") if getattr(args, k, None)]
    if len(given) != 1:
        raise _Exit(2, "give exactly one of --inputs, --embeddings, --dataset")
    if args.dataset:
        images, _ = _corpus.load_dataset_split(args.dataset, args.split, args.data_dir)
        rows = _parse_rows(args.rows)
        if max(rows) >= len(images) or min(rows) < 0:
            raise _Exit(2, f"--rows must be within 0..{len(images) - 1}")
        shape = backend_info.input_shape if backend_info is not None else (None, *images.shape[1:])
        return "instances", _corpus.to_model_inputs(images[rows], shape)
    kind = given[0]
    return ("instances" if kind == "inputs" else kind), _read_array(getattr(args, kind))


def _post(args, route: str, body: dict[str, Any]) -> dict[str, Any]:
    import requests

    headers = {}
    token = _read_token(args.auth_token_file)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = requests.post(
            args.service.rstrip("/") + route, json=body, headers=headers, timeout=args.timeout
        )
    except requests.RequestException as e:
        raise _Exit(1, f"cannot reach {args.service}: {e}") from e
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": response.text[:200]}
    if response.status_code != 200:
        raise _Exit(1, f"HTTP {response.status_code}: {payload.get('error', payload)}")
    return payload


def _parse_funnel(text: str | None):
    if text is None:
        return None
    try:
        return [[int(x) for x in stage.split(":")] for stage in text.split(",")]
    except ValueError as e:
        raise _Exit(2, f"--funnel expects DIM:SIZE,DIM:SIZE,..., got {text!r}") from e


def _search(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mrl search",
        description="One-off searches against a running "
        "service (--service) or directly against an index (--index, with a model "
        "for --inputs/--dataset).",
    )
    _add_backend_flags(parser)
    _add_query_flags(parser, embeddings=True)
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
    parser.add_argument("--allow-version-mismatch", action="store_true")
    args = parser.parse_args(argv)
    if bool(args.service) == bool(args.index):
        raise _Exit(2, "give one of --service URL or --index DIR")
    options = {
        "k": args.k,
        "shortlist_size": args.shortlist_size,
        "rerank_dim": args.rerank_dim,
        "funnel": _parse_funnel(args.funnel),
        "leaves_to_search": args.leaves_to_search,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if args.service:
        kind, queries = _queries(args)
        body = _post(args, "/v1/search", {kind: queries.tolist(), **options})
        results = body["results"]
    else:
        from mrl_keras.serving.index import AdaptiveIndex
        from mrl_keras.serving.retriever import AdaptiveRetriever

        backend = _make_backend(args, required=False)
        index = AdaptiveIndex.load(args.index)
        retriever = AdaptiveRetriever(
            index, backend, allow_version_mismatch=args.allow_version_mismatch
        )
        kind, queries = _queries(args, backend.info() if backend else None)
        if kind == "embeddings":
            result = retriever.search_embeddings(queries, **options)
        elif backend is None:
            raise _Exit(
                2, "searching model inputs directly needs a model: --model or --tf-serving-*"
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


def search_main(argv: list[str]) -> int:
    """`mrl search (--service URL | --index DIR [--model PATH]) (--inputs F | --embeddings F | --dataset N)`."""
    return _run("search", _search, argv)


def _classify(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mrl classify",
        description="Cascade classification: prints "
        "class, score and the prefix dims used per example.",
    )
    _add_backend_flags(parser)
    _add_query_flags(parser, embeddings=False)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    if args.service:
        _, inputs = _queries(args)
        predictions = _post(args, "/v1/classify", {"instances": inputs.tolist()})["predictions"]
    else:
        from mrl_keras.serving.cascade_client import CascadeClassifier

        backend = _make_backend(args)
        _, inputs = _queries(args, backend.info())
        predictions = CascadeClassifier(backend).classify(inputs).predictions()
    for p in predictions:
        if args.json:
            print(json.dumps(p))
        else:
            label = f"\t{p['label']}" if p.get("label") else ""
            print(f"class={p['class']}\tscore={p['score']:.4f}\tdims_used={p['dims_used']}{label}")
    return 0


def classify_main(argv: list[str]) -> int:
    """`mrl classify (--model PATH | --tf-serving-* | --service URL) (--inputs F | --dataset N)`."""
    return _run("classify", _classify, argv)
