"""What importing a package, or asking a command for `--help`, loads: in a fresh interpreter,
so the suite's own imports cannot hide a heavy one.

The public namespaces are lazy (module `__getattr__`), the metadata reader is standard-library
only, the index modules need NumPy (ScaNN on first use), and `mrl <command> --help` parses
flags before anything heavy is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("keras", "tensorflow", "fastapi", "grpc", "scann", "prometheus_client", "uvicorn")

_PROBE = """
import json, sys
try:
    {statement}
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def loaded_after(statement: str) -> set[str]:
    """The heavy modules loaded in a fresh interpreter after running `statement`."""
    code = _PROBE.format(statement=statement, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "statement, allowed",
    [
        ("import mrl_keras", set()),
        ("import mrl_keras.export", set()),
        ("import mrl_keras.export.metadata", set()),
        ("import mrl_keras.training", set()),
        ("import mrl_keras.demo", set()),
        ("import mrl_keras.pipelines", set()),
        ("import mrl_keras.serving", set()),
        ("import mrl_keras.serving.retrieval.index", set()),
        ("import mrl_keras.retrieval_metrics", set()),
        ("import mrl_keras.cli_parser", set()),
    ],
)
def test_import_is_light(statement, allowed):
    assert loaded_after(statement) <= allowed


def _help_argvs() -> list[list[str]]:
    from mrl_keras.cli import SUBCOMMANDS

    argvs = [["--help"], ["--verbose", "--help"]]
    for name in SUBCOMMANDS:
        argvs.append([name, "--help"])
        if name == "index":
            argvs += [["index", "build", "--help"], ["index", "tune", "--help"]]
    return argvs


@pytest.mark.parametrize("argv", _help_argvs(), ids=" ".join)
def test_command_help_is_light_and_silent(argv):
    """Every `--help` loads nothing heavy, exits 0 and prints nothing to stderr, with the
    user's environment free of TF_CPP_MIN_LOG_LEVEL (the suite's conftest sets it)."""
    statement = f"from mrl_keras.cli import main; sys.exit(main({argv!r}))"
    code = _PROBE.format(statement=statement, heavy=HEAVY).replace(
        "except SystemExit:\n    pass", "except SystemExit as e:\n    assert not e.code, e.code"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout.strip().splitlines()[-1])) == set()
    assert "usage:" in done.stdout
    assert done.stderr == ""


def test_keras_objects_register_on_demand():
    statement = (
        "import mrl_keras; assert 'keras' not in sys.modules; "
        "mrl_keras.register_keras_objects(); import keras; "
        "assert keras.saving.get_registered_object('mrl_keras>MatryoshkaHead') is not None"
    )
    assert "keras" in loaded_after(statement)


@pytest.mark.parametrize(
    "package",
    [
        "mrl_keras",
        "mrl_keras.training",
        "mrl_keras.export",
        "mrl_keras.serving",
        "mrl_keras.demo",
        "mrl_keras.pipelines",
    ],
)
def test_every_public_name_resolves(package):
    import importlib

    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(set(module.__all__)), "duplicates in __all__"
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert set(module.__all__) <= set(dir(module))
