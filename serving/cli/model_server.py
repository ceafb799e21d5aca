"""`mrl model-server`: run the development TF-Serving-compatible model server (`ModelServer`).

Production should use `tensorflow/serving`; see `mrl_keras.serving.model_server`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from mrl_keras.cli_parser import Parser
from mrl_keras.serving.model_server.server import ModelServer


def import_tensorflow_without_keras() -> None:
    """Imports TensorFlow without the Keras it loads eagerly.

    `import tensorflow` imports `keras.src.optimizers` (so that Keras optimizers register with
    the SavedModel loader), which imports all of Keras and, through its visualization module,
    matplotlib: about a fifth of the dev server's start (measured in benchmarks/RESULTS.md,
    "Chaos: failures"). The server loads SavedModels with `tf.saved_model.load`, which needs
    none of it. TensorFlow skips that import on an ImportError, so the module is marked
    missing for the duration of the import, then unmarked: a later `import keras` works.
    """
    if "tensorflow" in sys.modules or "keras.src.optimizers" in sys.modules:
        return
    sys.modules["keras.src.optimizers"] = None  # type: ignore[assignment]
    try:
        import tensorflow  # noqa: F401
    finally:
        if sys.modules.get("keras.src.optimizers", 0) is None:
            del sys.modules["keras.src.optimizers"]


def _parse_labels(values: list[str]) -> dict[str, int]:
    labels = {}
    for item in values:
        label, sep, version = item.partition("=")
        if not sep or not label or not version.isdigit():
            raise ValueError(f"Expected --version-label LABEL=VERSION. Received: {item!r}")
        labels[label] = int(version)
    return labels


def _server_files(args: argparse.Namespace):
    """(BatchingParameters or None, MonitoringConfig or None) from the flags."""
    from mrl_keras.serving.model_server import server_files

    batching = None
    if args.batching_parameters_file:
        batching = server_files.read_batching_parameters(args.batching_parameters_file)
    elif args.enable_batching:
        batching = server_files.BatchingParameters()
    monitoring = None
    if args.monitoring_config_file:
        monitoring = server_files.read_monitoring_config(args.monitoring_config_file)
    return batching, monitoring


def build_parser() -> Parser:
    parser = Parser(
        prog="mrl model-server",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Development model server speaking TensorFlow Serving's gRPC and REST protocol,\n"
            "for SavedModels exported by mrl-keras (laptops, CI, tests).\n\n"
            "PRODUCTION SHOULD USE tensorflow/serving:\n"
            "  docker run -p 8500:8500 -p 8501:8501 \\\n"
            "    -v $PWD/models/NAME:/models/NAME -e MODEL_NAME=NAME tensorflow/serving"
        ),
    )
    parser.add_argument(
        "--model-base-path",
        "--model_base_path",
        help="folder holding integer version folders (base/1/, base/2/, ...)",
    )
    parser.add_argument(
        "--model-config-file",
        "--model_config_file",
        help="a TF Serving model config file (ModelServerConfig text proto, as `mrl export "
        "--write-model-config` writes): name, base_path, model_version_policy (latest N, "
        "specific, all) and version_labels of the one model to serve, instead of "
        "--model-base-path/--model-name/--num-versions/--version-label",
    )
    parser.add_argument(
        "--model-name",
        "--model_name",
        default="default",
        help="name clients use (TF Serving's MODEL_NAME). Default: default",
    )
    parser.add_argument("--port", type=int, default=8500, help="gRPC port. Default: 8500")
    parser.add_argument(
        "--rest-api-port",
        "--rest_api_port",
        type=int,
        default=8501,
        help="REST port; 0 disables REST, as in TF Serving. Default: 8501",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind. Default: 127.0.0.1 (use 0.0.0.0 to expose)",
    )
    parser.add_argument(
        "--file-system-poll-wait-seconds",
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="seconds between scans of the base path. Default: 1",
    )
    parser.add_argument(
        "--num-versions",
        type=int,
        default=1,
        help="serve the newest N versions (TF Serving's latest{N}). Default: 1",
    )
    parser.add_argument(
        "--version-label",
        action="append",
        default=[],
        metavar="LABEL=VERSION",
        help="map a version label to a version (repeatable)",
    )
    parser.add_argument(
        "--max-request-batch",
        dest="max_batch_size",
        type=int,
        default=None,
        help="reject requests with a larger batch (INVALID_ARGUMENT); server-side batching, "
        "which splits and queues, is --batching-parameters-file",
    )
    parser.add_alias("--max-batch-size", "--max-request-batch")
    parser.add_alias("--max_batch_size", "--max-request-batch")
    parser.add_argument(
        "--enable-batching",
        "--enable_batching",
        action="store_true",
        help="server-side batching as TF Serving's: requests are split into chunks of at most "
        "max_batch_size rows and queued, and queued chunks run together (TF Serving's defaults "
        "unless --batching-parameters-file)",
    )
    parser.add_argument(
        "--batching-parameters-file",
        "--batching_parameters_file",
        metavar="PATH",
        help="TF Serving's BatchingParameters text proto (as `mrl export "
        "--batching-parameters-file` writes); implies --enable-batching",
    )
    parser.add_argument(
        "--monitoring-config-file",
        "--monitoring_config_file",
        metavar="PATH",
        help="TF Serving's MonitoringConfig text proto: Prometheus metrics on the REST port at "
        "prometheus_config.path",
    )
    parser.add_argument(
        "--inject-latency-ms",
        type=float,
        default=0.0,
        help="testing only: delay every Predict by this many milliseconds",
    )
    parser.add_argument("--grpc-workers", type=int, default=16, help="gRPC worker threads")
    parser.add_argument(
        "--wait-for-model-seconds",
        type=float,
        default=60.0,
        help="exit non-zero if no version is AVAILABLE by then. Default: 60",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `mrl model-server`."""
    args = build_parser().parse_args(argv)
    prog = "mrl model-server"
    policy = None
    if args.model_config_file:
        if args.model_base_path or args.version_label:
            print(
                f"{prog}: give --model-config-file or --model-base-path/--version-label, not both.",
                file=sys.stderr,
            )
            return 2
        from mrl_keras.serving.model_server.model_config import read_model_config

        try:
            model = read_model_config(args.model_config_file)
        except ValueError as e:
            print(f"{prog}: {e}", file=sys.stderr)
            return 2
        args.model_base_path, args.model_name = model.base_path, model.name
        policy = model.policy
        args.version_label = [f"{k}={v}" for k, v in model.version_labels.items()]
    elif not args.model_base_path:
        print(
            f"{prog}: --model-base-path (or --model-config-file) is required (see --help)",
            file=sys.stderr,
        )
        return 2
    if not os.path.isdir(args.model_base_path):
        print(
            f"{prog}: --model-base-path {args.model_base_path!r} is not a folder.", file=sys.stderr
        )
        return 2
    for flag, value in (("--port", args.port), ("--rest-api-port", args.rest_api_port)):
        if not 0 <= value <= 65535:
            print(f"{prog}: expected {flag} in 0..65535. Received: {value}", file=sys.stderr)
            return 2
    if args.port == 0 and args.rest_api_port == 0:
        print(f"{prog}: both --port and --rest-api-port are 0: nothing to serve.", file=sys.stderr)
        return 2
    try:
        batching, monitoring = _server_files(args)
        labels = _parse_labels(args.version_label)
        server = ModelServer(
            args.model_base_path,
            args.model_name,
            port=args.port or None,
            rest_api_port=args.rest_api_port or None,
            host=args.host,
            poll_interval_s=args.file_system_poll_wait_seconds,
            num_versions=args.num_versions,
            version_labels=labels,
            version_policy=policy,
            max_batch_size=args.max_batch_size,
            latency_s=args.inject_latency_ms / 1000.0,
            grpc_workers=args.grpc_workers,
            batching=batching,
            monitoring=monitoring,
        )
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import_tensorflow_without_keras()
    try:
        server.start(wait_for_model_s=args.wait_for_model_seconds)
    except (OSError, TimeoutError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    parts = []
    if server.grpc_port:
        parts.append(f"gRPC {server.grpc_address}")
    if server.rest_port:
        parts.append(f"REST {server.rest_url}")
    print(
        f"{prog}: serving {args.model_name!r} from {args.model_base_path} on "
        f"{', '.join(parts)} (development server; production: tensorflow/serving)",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
