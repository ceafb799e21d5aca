"""`mrl embed --inputs F`: embeddings of a small batch at prefix size `m`, through a running
service (`--service URL`, `POST /v1/embed`) or directly through a model backend (`--model`,
`--tf-serving-grpc`, `--tf-serving-rest`: `ModelBackend.embed`).

`mrl embed` with a corpus flag (`--images`, `--tfrecords`, `--npy`, `--tfds`) is the Apache Beam
pipeline instead; pipelines/cli.py owns the command and hands over here when a flag of this
mode is given (`CLIENT_FLAGS`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mrl_keras.cli_parser import CommandError, Parser
from mrl_keras.serving.cli.common import (
    add_backend_flags,
    add_query_flags,
    make_backend,
    post,
    read_array,
    read_queries,
    run_command,
)

__all__ = ["client_flags", "main", "parser"]

_FILE_SUFFIXES = (".npy", ".json")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1. Received: {text!r}")
    return value


def parser() -> Parser:
    """The flags of `mrl embed` in client mode (no Beam)."""
    p = Parser(
        prog="mrl embed",
        usage="mrl embed (--service URL | --model PATH | --tf-serving-grpc HOST:PORT |\n"
        "                  --tf-serving-rest URL --model-name NAME)\n"
        "                 (--inputs FILE | --dataset NAME) [--dimensions M]\n"
        "                 [--out FILE.npy|FILE.json]",
        description="Client mode: embeddings of a small batch of model inputs at prefix size "
        "M (z[:M], re-normalised to unit length), through a running `mrl serve` (--service, "
        "POST /v1/embed) or directly through a model backend. Prints "
        '{"embeddings": [[...]], "dimensions": M, "model_version": V} as one JSON line, or '
        "writes the embeddings to --out.",
    )
    add_backend_flags(p)
    add_query_flags(p, embeddings=False)
    p.add_argument(
        "--dimensions",
        type=_positive_int,
        metavar="M",
        help="prefix size, 1..d (default: the model's embedding dim d)",
    )
    p.add_argument(
        "--out",
        help="write the embeddings to FILE.npy (float32 (n, M)) or FILE.json (the service's "
        "answer) instead of printing them",
    )
    return p


def client_flags() -> set[str]:
    """Every option string of client mode, e.g. `"--service"`."""
    return set(parser()._option_string_actions)


def _read_inputs(args, info) -> np.ndarray:
    if args.inputs and args.dataset:
        raise CommandError("give one of --inputs FILE or --dataset NAME")
    if args.dataset:
        return read_queries(args, info)[1]
    if not args.inputs:
        raise CommandError("give --inputs FILE (.npy or .json) or --dataset NAME")
    if not args.inputs.endswith(_FILE_SUFFIXES):
        raise CommandError(f"--inputs must be a .npy or .json file. Received: {args.inputs!r}")
    try:
        x = read_array(args.inputs)
    except (ValueError, OSError) as e:
        raise CommandError(f"cannot read --inputs {args.inputs!r} as a numeric array: {e}") from e
    if x.ndim < 2 or len(x) == 0:
        raise CommandError(
            f"--inputs {args.inputs!r} must hold a non-empty batch (n, ...) of model inputs. "
            f"Received: shape {x.shape}"
        )
    return x


def _check_against_model(x: np.ndarray, m: int | None, info, source: str) -> int:
    d = int(info.embedding_dim)
    if m is not None and not 1 <= m <= d:
        raise CommandError(
            f"--dimensions must be in 1..{d} (the model's embedding dim). Received: {m}"
        )
    shape = info.input_shape
    if shape is not None and (
        x.ndim != len(shape)
        or any(
            want is not None and want != got
            for want, got in zip(shape[1:], x.shape[1:], strict=True)
        )
    ):
        expected = "(n, " + ", ".join("?" if s is None else str(s) for s in shape[1:]) + ")"
        raise CommandError(f"{source} has shape {x.shape}; the model takes {expected}")
    return d if m is None else m


def _from_service(args, x: np.ndarray) -> dict[str, Any]:
    body: dict[str, Any] = {"instances": x.tolist()}
    if args.dimensions is not None:
        body["dimensions"] = args.dimensions
    answer = post(args, "/v1/embed", body)
    embeddings = answer.get("embeddings") if isinstance(answer, dict) else None
    try:
        z = np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError):
        z = np.zeros((0,), np.float32)
    if embeddings is None or z.ndim != 2 or len(z) != len(x):
        raise CommandError(
            f"{args.service} did not answer {len(x)} embeddings (is it a `mrl serve`?). "
            f"Received: {' '.join(str(answer)[:200].split())}",
            code=1,
        )
    return {
        "embeddings": z,
        "dimensions": answer.get("dimensions", z.shape[1]),
        "model_version": answer.get("model_version"),
    }


def _from_backend(args) -> dict[str, Any]:
    with make_backend(args) as backend:
        info = backend.info()
        x = _read_inputs(args, info)
        source = f"--inputs {args.inputs!r}" if args.inputs else f"--dataset {args.dataset!r}"
        m = _check_against_model(x, args.dimensions, info, source)
        result = backend.embed(x, m, timeout=args.timeout)
    return {
        "embeddings": result.embeddings,
        "dimensions": m,
        "model_version": result.served_version,
    }


def _write(out: str, result: dict[str, Any]) -> None:
    z = np.asarray(result["embeddings"], dtype=np.float32)
    if out.endswith(".npy"):
        np.save(out, z)
    else:
        Path(out).write_text(json.dumps({**result, "embeddings": z.astype(float).tolist()}))
    print(
        f"mrl embed: wrote {len(z)} embeddings (dimensions {result['dimensions']}, model version "
        f"{result['model_version']}) to {out}",
        file=sys.stderr,
    )


def _embed(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    backend_flags = [
        flag
        for flag, value in (
            ("--model", args.model),
            ("--tf-serving-grpc", args.tf_serving_grpc),
            ("--tf-serving-rest", args.tf_serving_rest),
        )
        if value
    ]
    pins = [
        f
        for f, v in (("--model-name", args.model_name), ("--model-version", args.model_version))
        if v is not None
    ]
    if args.service and backend_flags + pins:
        raise CommandError(
            f"give --service URL or a model backend, not both. Received: --service and "
            f"{', '.join(backend_flags + pins)}"
        )
    if not args.service and not backend_flags:
        raise CommandError(
            "give --service URL (a running `mrl serve`) or a model backend: --model PATH, "
            "--tf-serving-grpc HOST:PORT or --tf-serving-rest URL"
        )
    if args.out is not None and not args.out.endswith(_FILE_SUFFIXES):
        raise CommandError(
            "--out must name a .npy or .json file here (a Beam output directory needs "
            f"--images/--tfrecords/--npy/--tfds). Received: --out {args.out!r}"
        )
    if args.service:
        result = _from_service(args, _read_inputs(args, None))
    else:
        result = _from_backend(args)
    if args.out is not None:
        _write(args.out, result)
    else:
        z = np.asarray(result["embeddings"], dtype=np.float32)
        print(json.dumps({**result, "embeddings": z.astype(float).tolist()}))
    return 0


def main(argv: list[str]) -> int:
    """`mrl embed (--service URL | --model PATH | --tf-serving-*) (--inputs F | --dataset N) [--dimensions M]`."""
    return run_command("embed", _embed, argv)
