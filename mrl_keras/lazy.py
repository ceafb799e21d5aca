"""Lazy public namespaces (PEP 562) for the package `__init__` modules (standard library only).

`__getattr__, __dir__ = lazy_namespace(__name__, {"Name": "defining.module", ...}, __all__)`
imports a name's module the first time the name is used and caches it on the package, so
importing a package costs nothing until one of its names is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_namespace"]


def lazy_namespace(
    package: str, table: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Returns the module `__getattr__` and `__dir__` of a lazy package.

    Args:
        package: str. The package's `__name__`.
        table: name -> the module that defines it.
        public: the package's `__all__`.

    Returns:
        `(__getattr__, __dir__)`.
    """
    names = sorted(set(public))

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            vars(sys.modules[package])[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
