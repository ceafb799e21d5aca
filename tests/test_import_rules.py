"""The direction of imports between the packages (docs/ARCHITECTURE.md), checked on the source.

An AST walk over every module's `import` statements, function-level ones included: the core
modules of `mrl_keras` import none of training, export, serving or demo; training imports
neither export nor serving; export imports neither serving nor training; serving never imports
training, and of export only the metadata format (`mrl_keras.export.metadata`, standard library
only); the Beam pipelines import serving and export's metadata format, and nothing imports
them; nothing outside demo imports demo, and nothing outside benchmarks imports benchmarks.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# folder -> the name its modules are imported under
PACKAGES = {
    "mrl_keras": "mrl_keras",
    "training": "mrl_keras.training",
    "export": "mrl_keras.export",
    "serving": "mrl_keras.serving",
    "demo": "mrl_keras.demo",
    "pipelines": "mrl_keras.pipelines",
    "benchmarks": "benchmarks",
}

# folder -> packages its modules must not import
FORBIDDEN = {
    "mrl_keras": {"training", "export", "serving", "demo", "pipelines", "benchmarks"},
    "training": {"export", "serving", "demo", "pipelines", "benchmarks"},
    "export": {"training", "serving", "demo", "pipelines", "benchmarks"},
    "serving": {"training", "demo", "pipelines", "benchmarks"},
    "pipelines": {"training", "demo", "benchmarks"},
    "demo": {"benchmarks"},
    "benchmarks": {"demo"},
}


def package_of(module: str) -> str | None:
    """The folder (key of PACKAGES) that defines `module`, or None for third-party modules."""
    if module == "benchmarks" or module.startswith("benchmarks."):
        return "benchmarks"
    for folder, name in PACKAGES.items():
        if folder in ("mrl_keras", "benchmarks"):
            continue
        if module == name or module.startswith(name + "."):
            return folder
    if module == "mrl_keras" or module.startswith("mrl_keras."):
        return "mrl_keras"
    return None


def imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from mrl_keras import training` imports the subpackage
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def modules_of(folder: str) -> list[pathlib.Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_point_one_way(folder):
    assert modules_of(folder), f"no modules found under {folder}/"
    bad = []
    for path in modules_of(folder):
        for lineno, module in imported_modules(path):
            target = package_of(module)
            if target in FORBIDDEN[folder]:
                bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {module}")
    assert not bad, "imports against the package rules:\n" + "\n".join(bad)


@pytest.mark.parametrize("folder", ["serving", "pipelines"])
def test_serving_reads_only_the_metadata_format_of_export(folder):
    bad = []
    for path in modules_of(folder):
        for lineno, module in imported_modules(path):
            if package_of(module) != "export":
                continue
            if module not in ("mrl_keras.export", "mrl_keras.export.metadata") and not (
                module.startswith("mrl_keras.export.metadata.")
            ):
                bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {module}")
    assert not bad, f"{folder} may import only mrl_keras.export.metadata:\n" + "\n".join(bad)


def test_metadata_format_is_standard_library_only():
    import sys

    allowed = set(sys.stdlib_module_names) | {"__future__"}
    modules = [m for _, m in imported_modules(ROOT / "export" / "metadata.py")]
    assert {m.split(".")[0] for m in modules} <= allowed, modules


def test_package_of():
    assert package_of("mrl_keras.serving.retrieval.retriever") == "serving"
    assert package_of("mrl_keras.nesting") == "mrl_keras"
    assert package_of("mrl_keras") == "mrl_keras"
    assert package_of("benchmarks.synthetic") == "benchmarks"
    assert package_of("numpy") is None
