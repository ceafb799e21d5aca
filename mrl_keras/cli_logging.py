"""What the `mrl` command lets TensorFlow, ScaNN and absl print (standard library only).

Every command imports TensorFlow late (after its flags are parsed), so the dispatcher sets the
logging up before any of it loads (`configure`):

- `TF_CPP_MIN_LOG_LEVEL=2` (TF's C++ INFO and WARNING lines off) unless the user set it (to a
  non-empty value);
  `mrl --verbose` sets `0` instead.
- TF's CUDA platform logs `failed call to cuInit` at ERROR level on every machine without an
  NVIDIA driver (XLA's `cuda_platform.cc`; no setting turns it off short of
  `TF_CPP_MIN_LOG_LEVEL=3`, which hides every C++ error). On a machine with no NVIDIA device
  node, right after `import tensorflow` the GPU platform is probed once
  (`tf.config.list_physical_devices`) with stderr captured, and every captured line but that
  one is written back.
- ScaNN logs its builds (`partitioner_factory_base.cc`, `kmeans_tree_partitioner_utils.h`) with
  absl's C++ logging, which reads no environment variable: right after ScaNN's extension loads,
  `absl::SetMinLogLevel(kError)` is called on the copy of absl linked into it.
- Python's absl logging (TensorFlow's Python side) stays at WARNING (INFO with `--verbose`).

Each hook runs once, on the import that loads the module, so a command that never imports
TensorFlow pays nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.abc
import importlib.util
import mmap
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "CUINIT_LINE",
    "configure",
    "has_nvidia_device",
    "quiet_scann_extension",
    "without_lines",
]

TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"
CUINIT_LINE = re.compile(r"failed call to cuInit")
SCANN_EXTENSION = "scann_pybind"  # scann_ops_pybind puts its folder on sys.path
_ABSL_SET_MIN_LOG_LEVEL = re.compile(rb"_ZN4absl\w*?14SetMinLogLevelENS0_18LogSeverityAtLeastE")
_ABSL_ERROR = 2  # absl::LogSeverityAtLeast::kError
_NVIDIA_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


def has_nvidia_device() -> bool:
    """Whether the machine shows an NVIDIA device node (or WSL's GPU node) to this process."""
    return any(os.path.exists(node) for node in _NVIDIA_NODES)


@contextlib.contextmanager
def without_lines(pattern: re.Pattern[str]) -> Iterator[None]:
    """Captures file descriptor 2 (C++ writes there too) and writes back the lines that do not
    match `pattern` when the block ends, also when it raises."""
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = "".join(
                line for line in text.splitlines(keepends=True) if not pattern.search(line)
            )
            if kept:
                os.write(2, kept.encode("utf-8"))


def quiet_scann_extension(path: str, level: int = _ABSL_ERROR) -> bool:
    """Calls `absl::SetMinLogLevel(level)` in the ScaNN extension at `path`; False when the
    library exports no such function (another ScaNN build): its logs then stay as they are."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found = _ABSL_SET_MIN_LOG_LEVEL.search(data)
            symbol = found.group(0).decode("ascii") if found else None
        if symbol is None:
            return False
        function = getattr(ctypes.CDLL(path), symbol)
    except (OSError, AttributeError, ValueError):
        return False
    function.argtypes = [ctypes.c_int]
    function.restype = None
    function(level)
    return True


class _Loader(importlib.abc.Loader):
    """Delegates to the module's own loader, then calls `after(module)`."""

    def __init__(self, loader: Any, after: Callable[[Any], None]):
        self.loader = loader
        self.after = after

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        self.after(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self.loader, name)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `after(module)` once, when module `name` is first imported."""

    def __init__(self, name: str, after: Callable[[Any], None]):
        self.name = name
        self.after = after

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # one shot; the other finders find the module
        spec = importlib.util.find_spec(fullname) if path is None else _find(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, self.after)
        return spec


def _find(fullname: str, path):
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find(fullname, path) if find else None
        if spec is not None:
            return spec
    return None


def _after_import(name: str, after: Callable[[Any], None]) -> None:
    if name in sys.modules or any(
        isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path
    ):
        return
    sys.meta_path.insert(0, _AfterImport(name, after))


def _tensorflow_loaded(verbose: bool) -> Callable[[Any], None]:
    def after(tf) -> None:
        if not verbose and not has_nvidia_device():
            with contextlib.suppress(Exception), without_lines(CUINIT_LINE):
                tf.config.list_physical_devices()
        with contextlib.suppress(Exception):
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)

    return after


def _scann_loaded(module) -> None:
    path = getattr(module, "__file__", None)
    if path:
        quiet_scann_extension(path)


def configure(verbose: bool = False) -> None:
    """Sets up the logging of a command before TensorFlow or ScaNN load (see the module doc).

    Args:
        verbose: bool. Keep the INFO logs of TensorFlow, ScaNN and absl. Defaults to `False`.
    """
    if not os.environ.get(TF_LOG_ENV):  # unset or empty: the user did not choose
        os.environ[TF_LOG_ENV] = "0" if verbose else "2"
    if "tensorflow" in sys.modules:
        return
    _after_import("tensorflow", _tensorflow_loaded(verbose))
    if not verbose:
        _after_import(SCANN_EXTENSION, _scann_loaded)
