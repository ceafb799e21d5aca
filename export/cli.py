"""`mrl export`: a trained Matryoshka model as a versioned SavedModel for TF Serving."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from mrl_keras.cli_parser import Parser


def _parser() -> Parser:
    p = Parser(
        prog="mrl export",
        description=(
            "Export a trained Matryoshka model as BASE_PATH/<version>/, a SavedModel that "
            "TF Serving loads: embed_{m} for every prefix, classify_{m} and classify_cascade "
            "for models with a MatryoshkaHead, assets/matryoshka.json and warmup requests."
        ),
    )
    p.add_argument(
        "--model",
        required=True,
        help="the trained model: a .keras file, or a training run's folder (its model.keras)",
    )
    p.add_argument(
        "--model-base-path",
        dest="base_path",
        required=True,
        help="model base path TF Serving watches (its --model_base_path)",
    )
    p.add_alias("--base-path", "--model-base-path")
    p.add_argument(
        "--model-version",
        dest="version",
        type=int,
        help="version folder (default: the next free one)",
    )
    p.add_alias("--version", "--model-version")
    p.add_argument("--extra-dims", default="", help="further embed_{m} dims, e.g. 24,96")
    p.add_argument("--nesting-dims", default="", help="prefixes of a model without a head")
    p.add_argument(
        "--no-normalize", action="store_true", help="export raw prefixes, not L2-normalised ones"
    )
    p.add_argument(
        "--calibrate-on",
        metavar="HOLDOUT_NPZ",
        help="learn cascade thresholds on a holdout .npz with arrays x and y (RUN/holdout.npz)",
    )
    p.add_argument(
        "--target-accuracy",
        type=float,
        help="calibration accuracy floor (default: full-dim accuracy - 0.005)",
    )
    p.add_argument(
        "--max-expected-dim",
        type=float,
        help="calibrate for the best accuracy within this expected dimension instead",
    )
    p.add_argument(
        "--thresholds", help="cascade thresholds, one per nesting dim, e.g. 0.9,0.9,0.8,0"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument(
        "--bytes-signatures",
        action="store_true",
        help="add *_bytes signatures taking encoded JPEG/PNG strings (input image_bytes)",
    )
    p.add_argument(
        "--bytes-scale",
        type=float,
        default=1.0 / 255.0,
        help="factor on decoded pixel values for *_bytes signatures (default 1/255)",
    )
    p.add_argument("--model-name", help="model name (default: the base path's folder name)")
    p.add_argument(
        "--class-names", help="comma-separated class names, or a .txt (one per line)/.json file"
    )
    p.add_argument("--embedding-layer", default="embedding", help="name of the embedding layer")
    p.add_argument("--head-layer", default="matryoshka_head", help="name of the head layer")
    p.add_argument("--no-warmup", action="store_true", help="skip the warmup requests file")
    p.add_argument("--no-verify", action="store_true", help="skip reloading and running the export")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    serving = p.add_argument_group("TF Serving server files (docs/serving_backends.md)")
    serving.add_argument(
        "--batching-parameters-file",
        metavar="PATH",
        help="also write TF Serving's batching parameters, tuned to the exported model's "
        "latency measured here at --batch-sizes (for --enable_batching "
        "--batching_parameters_file=PATH)",
    )
    serving.add_argument(
        "--batch-sizes",
        default=",".join(str(b) for b in (1, 4, 16, 64, 256)),
        help="batch sizes whose latency is measured for the batching parameters "
        "(default 1,4,16,64,256)",
    )
    serving.add_argument(
        "--monitoring-config-file",
        metavar="PATH",
        help="also write a monitoring config turning on Prometheus metrics at "
        "/monitoring/prometheus/metrics (for --monitoring_config_file=PATH)",
    )
    serving.add_argument(
        "--write-model-config",
        metavar="PATH",
        help="also write a TF Serving model config file (for --model_config_file=PATH) keeping "
        "the newest --num-versions versions loaded, with --version-label labels",
    )
    serving.add_argument(
        "--num-versions",
        type=int,
        default=2,
        help="with --write-model-config: model_version_policy { latest { num_versions: N } } "
        "(default 2: the rollover keeps the old version while the new index is built)",
    )
    serving.add_argument(
        "--version-label",
        action="append",
        default=[],
        metavar="LABEL=VERSION",
        help="with --write-model-config: a version label (repeatable)",
    )
    serving.add_argument(
        "--model-config-base-path",
        metavar="PATH",
        help="with --write-model-config: the base path as the server sees it, e.g. "
        "/models/NAME in a container (default: --model-base-path, absolute)",
    )
    return p


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} expects comma-separated ints. Received: {text!r}") from None


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} expects comma-separated numbers. Received: {text!r}") from None


def _class_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as f:
            if text.endswith(".json"):
                names = json.load(f)
                if not isinstance(names, list):
                    raise ValueError(f"--class-names: expected a JSON list in {text!r}")
                return [str(n) for n in names]
            return [line.strip() for line in f if line.strip()]
    return [n.strip() for n in text.split(",")]


def _load_holdout(path: str) -> tuple[Any, Any]:
    import numpy as np

    if not os.path.isfile(path):
        raise ValueError(f"--calibrate-on: no such file {path!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data or "y" not in data:
                raise ValueError(
                    f"--calibrate-on: expected arrays 'x' and 'y' in {path!r}. "
                    f"Found: {sorted(data.files)}"
                )
            return data["x"], data["y"]
    except (OSError, EOFError) as e:
        raise ValueError(f"--calibrate-on: cannot read {path!r} as .npz ({e})") from e


def _model_file(path: str) -> str:
    """`--model` as a `.keras` file: a training run's folder stands for its `model.keras`.

    (Keras' `load_model` on a folder fails with "cannot access local variable 'weights_store'".)
    """
    if not os.path.exists(path):
        raise ValueError(f"--model: no such file {path!r}")
    if not os.path.isdir(path):
        return path
    candidate = os.path.join(path, "model.keras")
    if os.path.isfile(candidate):
        return candidate
    found = sorted(
        os.path.join(path, name, "model.keras")
        for name in os.listdir(path)
        if os.path.isfile(os.path.join(path, name, "model.keras"))
    )
    hint = f"; it holds {', '.join(found[:4])}" if found else ""
    raise ValueError(
        f"--model: the folder {path!r} has no model.keras (pass a .keras file or a training "
        f"run's folder{hint})"
    )


def _register_keras_hub() -> bool:
    """Imports keras-hub (the `text` extra) if installed and not yet imported; True if that
    registered new Keras objects, so loading again may succeed."""
    import importlib.util

    if "keras_hub" in sys.modules or importlib.util.find_spec("keras_hub") is None:
        return False
    import keras_hub  # noqa: F401

    return True


def _say(message: str) -> None:
    print(f"mrl export: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Runs `mrl export`; returns the exit status (0 on success)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, TypeError, OSError, ImportError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"mrl export: error: {message}", file=sys.stderr)
        return 1
    except Exception as e:  # TensorFlow errors and anything unforeseen: still one line
        message = " ".join(str(e).split())
        print(f"mrl export: error: {type(e).__name__}: {message}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    extra_dims = _ints(args.extra_dims, "--extra-dims")
    nesting = _ints(args.nesting_dims, "--nesting-dims") or None
    thresholds = _floats(args.thresholds, "--thresholds") if args.thresholds else None
    if thresholds is not None and args.calibrate_on:
        raise ValueError("give either --thresholds or --calibrate-on, not both")
    if (args.target_accuracy is not None or args.max_expected_dim is not None) and not (
        args.calibrate_on
    ):
        raise ValueError("--target-accuracy and --max-expected-dim need --calibrate-on")
    batch_sizes = _ints(args.batch_sizes, "--batch-sizes")
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"--batch-sizes expects sizes >= 1. Received: {args.batch_sizes!r}")
    if args.num_versions < 1:
        raise ValueError(f"--num-versions must be >= 1. Received: {args.num_versions}")
    args.version_labels = {}
    for item in args.version_label:
        label, sep, version = item.partition("=")
        if not sep or not label or not version.isdigit():
            raise ValueError(f"Expected --version-label LABEL=VERSION. Received: {item!r}")
        args.version_labels[label] = int(version)
    if (args.version_label or args.model_config_base_path) and not args.write_model_config:
        raise ValueError("--version-label and --model-config-base-path need --write-model-config")
    for flag, path in (
        ("--batching-parameters-file", args.batching_parameters_file),
        ("--monitoring-config-file", args.monitoring_config_file),
        ("--write-model-config", args.write_model_config),
    ):
        if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ValueError(f"{flag}: the folder of {path!r} does not exist")
    model_path = _model_file(args.model)
    class_names = _class_names(args.class_names)
    holdout = _load_holdout(args.calibrate_on) if args.calibrate_on else None

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"SavedModel export needs the TensorFlow Keras backend, not "
            f"{keras.backend.backend()!r}. Run with KERAS_BACKEND=tensorflow."
        )
    import mrl_keras
    from mrl_keras.export.saved_model import export_saved_model

    mrl_keras.register_keras_objects()  # the .keras file holds a MatryoshkaHead

    _say(f"loading {model_path}")
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as e:  # Keras raises many types for unreadable files
        if not _register_keras_hub():
            raise ValueError(f"cannot load --model {model_path!r}: {e}") from e
        try:  # a keras-hub text encoder (docs/text.md): its layers register on import
            model = keras.saving.load_model(model_path, compile=False)
        except Exception as e2:
            raise ValueError(f"cannot load --model {model_path!r}: {e2}") from e2
    if holdout is not None:
        _say(f"calibrating the cascade on {len(holdout[1])} holdout examples")
    _say(f"writing a SavedModel under {args.base_path}")
    result = export_saved_model(
        model,
        args.base_path,
        args.version,
        extra_dims=extra_dims,
        normalize=not args.no_normalize,
        nesting_dims=nesting,
        cascade_thresholds=thresholds,
        calibration_data=holdout,
        target_accuracy=args.target_accuracy,
        max_expected_dim=args.max_expected_dim,
        bytes_signatures=args.bytes_signatures,
        bytes_scale=args.bytes_scale,
        model_name=args.model_name,
        class_names=class_names,
        embedding_layer=args.embedding_layer,
        head_layer=args.head_layer,
        overwrite=args.overwrite,
        warmup=not args.no_warmup,
        verify=not args.no_verify,
    )
    if result.calibration is not None:
        c = result.calibration
        _say(
            f"cascade thresholds {[round(t, 4) for t in c.thresholds]}: accuracy {c.accuracy:.4f} "
            f"(full dim {c.full_dim_accuracy:.4f}) at expected dim {c.expected_dim:.1f}"
        )
    elif result.metadata["cascade"] is not None and thresholds is None:
        holdout_hint = os.path.join(os.path.dirname(model_path), "holdout.npz")
        hint = f" (e.g. --calibrate-on {holdout_hint})" if os.path.isfile(holdout_hint) else ""
        _say(f"cascade uses uncalibrated default thresholds; pass --calibrate-on{hint}")
    server_files = _write_server_files(args, result.path, batch_sizes)
    if args.json:
        print(
            json.dumps(
                {
                    "path": result.path,
                    "version": result.version,
                    "metadata": result.metadata,
                    "server_files": server_files,
                }
            )
        )
    else:
        print(f"exported version {result.version} to {result.path}")
        print(
            f"signatures: {', '.join(result.signatures)} (serving_default = embed_"
            f"{result.metadata['embedding_dim']})"
        )
    return 0


def _write_server_files(
    args: argparse.Namespace, version_dir: str, batch_sizes: tuple[int, ...]
) -> dict[str, str]:
    from mrl_keras.export import serving_files

    written = {}
    if args.batching_parameters_file:
        _say(f"measuring serving_default at batch sizes {list(batch_sizes)}")
        latency = serving_files.measure_batch_latency(version_dir, batch_sizes)
        choice = serving_files.choose_batching(latency)
        serving_files.write_text_file(
            args.batching_parameters_file, serving_files.batching_parameters_text(choice)
        )
        _say(
            f"batching parameters: max_batch_size {choice.max_batch_size}, "
            f"batch_timeout_micros {choice.batch_timeout_micros} -> "
            f"{args.batching_parameters_file}"
        )
        written["batching_parameters"] = args.batching_parameters_file
    if args.monitoring_config_file:
        serving_files.write_text_file(
            args.monitoring_config_file, serving_files.monitoring_config_text()
        )
        written["monitoring_config"] = args.monitoring_config_file
    if args.write_model_config:
        from mrl_keras.export.model_config import model_config_text, write_model_config

        base = os.path.abspath(args.base_path)
        name = args.model_name or os.path.basename(os.path.normpath(base))
        text = model_config_text(
            name,
            args.model_config_base_path or base,
            num_versions=args.num_versions,
            labels=args.version_labels,
        )
        written["model_config"] = write_model_config(args.write_model_config, text)
        _say(f"model config ({name!r}, newest {args.num_versions}) -> {args.write_model_config}")
    return written
