"""The `mrl` command: a thin dispatcher to each package's own entry point.

Subcommand modules are imported lazily, so a subcommand pays only for what it uses; `mrl --help`
and `mrl <command> --help` load neither Keras nor TensorFlow (tests/test_import_weight.py
pins that). Each entry point is `main(argv: list[str]) -> int` and parses its own flags (so
`mrl train --help` is owned by the training package).
"""

from __future__ import annotations

import importlib
import sys

from mrl_keras import cli_logging
from mrl_keras.version import __version__

# name -> (module, function, one-line summary)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("mrl_keras.training.cli", "train_main", "Train an MRL, MRL-E or fixed-feature model."),
    "evaluate": ("mrl_keras.training.cli", "evaluate_main", "Evaluate every prefix of a trained model (head, linear probe, 1-NN, mAP@k) and baselines."),
    "export": ("mrl_keras.export.cli", "main", "Export a trained model as a versioned SavedModel for TF Serving."),
    "embed": ("mrl_keras.pipelines.cli", "main", "Embed a corpus into embedding shards with Apache Beam (DirectRunner, Dataflow, Flink, Spark), or a few inputs through a service or a model (--inputs FILE)."),
    "index": ("mrl_keras.serving.cli.index_build", "main", "Build (`mrl index build`) or auto-tune (`mrl index tune`) an adaptive retrieval index."),
    "serve": ("mrl_keras.serving.cli.serve", "main", "Run the HTTP search/classify service."),
    "search": ("mrl_keras.serving.cli.search", "main", "Run one-off searches against a service or an index."),
    "classify": ("mrl_keras.serving.cli.classify", "main", "Classify inputs with the cascade classifier."),
    "model-server": ("mrl_keras.serving.cli.model_server", "main", "Development TF-Serving-compatible model server (production: use the TF Serving image)."),
    "demo": ("mrl_keras.demo.cli", "main", "Run the whole life of a Matryoshka model end to end."),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [
        "usage: mrl [--help] [--version] [--verbose] <command> [<args>]",
        "",
        "Matryoshka Representation Learning for Keras 3 / TensorFlow.",
        "",
        "commands:",
    ]
    for name, (_, _, summary) in SUBCOMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {summary}")
    lines += [
        "",
        "--verbose (before the command) keeps TensorFlow's, ScaNN's and absl's INFO logs.",
        "Run `mrl <command> --help` for the flags of one command.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):
        verbose, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"mrl-keras {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(
            f"mrl: unknown command {name!r}. Expected one of: {', '.join(SUBCOMMANDS)}. "
            "Run `mrl --help`.",
            file=sys.stderr,
        )
        return 2
    module_name, function_name, _ = SUBCOMMANDS[name]
    cli_logging.configure(verbose)
    try:
        module = importlib.import_module(module_name)
        entry = getattr(module, function_name)
    except (ImportError, AttributeError) as e:
        print(f"mrl {name}: this command is not available in this installation ({e}).", file=sys.stderr)
        return 2
    try:
        return int(entry(rest) or 0)
    except KeyboardInterrupt:
        print(f"mrl {name}: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
