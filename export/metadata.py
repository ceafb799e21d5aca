"""`assets/matryoshka.json`: what an exported Matryoshka SavedModel holds, for its clients.

Standard library only, so the serving side (and anything else) can read it without TensorFlow.
The format is pinned in `docs/INTERFACES.md` ("SavedModel metadata", format_version 1).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from typing import Any

FORMAT_VERSION = 1
METADATA_DIR = "assets"
METADATA_FILE = "matryoshka.json"
REQUIRED_KEYS = (
    "format_version",
    "model_name",
    "embedding_dim",
    "nesting_dims",
    "exported_dims",
    "num_classes",
    "class_names",
    "normalized",
    "cascade",
    "input",
    "signatures",
)


def metadata_path(version_dir: str | os.PathLike) -> str:
    """Returns the path of the metadata file inside a SavedModel version folder."""
    return os.path.join(os.fspath(version_dir), METADATA_DIR, METADATA_FILE)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _increasing_ints(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(_is_int(v) and v > 0 for v in value)
        and all(b > a for a, b in zip(value, value[1:], strict=False))
    )


def validate_metadata(metadata: Any, source: str = "metadata") -> dict[str, Any]:
    """Checks a metadata dict against format_version 1 and returns it.

    Args:
        metadata: the parsed JSON object.
        source: str. Where it came from, for error messages.

    Returns:
        `metadata`, unchanged.

    Raises:
        ValueError: naming the first field that is missing or malformed.
    """

    def fail(what: str) -> None:
        raise ValueError(f"Invalid Matryoshka metadata in {source}: {what}")

    if not isinstance(metadata, dict):
        fail(f"expected a JSON object, received {type(metadata).__name__}")
    version = metadata.get("format_version")
    if not _is_int(version):
        fail(f"expected an integer format_version, received {version!r}")
    if version > FORMAT_VERSION:
        fail(
            f"format_version {version} is newer than this reader ({FORMAT_VERSION}); "
            "upgrade mrl-keras"
        )
    if version < 1:
        fail(f"expected format_version >= 1, received {version}")
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        fail(f"missing key(s) {missing}")
    if not isinstance(metadata["model_name"], str) or not metadata["model_name"]:
        fail(f"expected a non-empty string model_name, received {metadata['model_name']!r}")
    d = metadata["embedding_dim"]
    if not _is_int(d) or d < 1:
        fail(f"expected a positive integer embedding_dim, received {d!r}")
    for key in ("nesting_dims", "exported_dims"):
        dims = metadata[key]
        if not _increasing_ints(dims):
            fail(f"expected {key} to be strictly increasing positive ints, received {dims!r}")
        if dims[-1] > d:
            fail(f"{key} {dims} do not fit embedding_dim={d}")
    if d not in metadata["exported_dims"]:
        fail(f"exported_dims {metadata['exported_dims']} must include embedding_dim={d}")
    num_classes = metadata["num_classes"]
    if num_classes is not None and (not _is_int(num_classes) or num_classes < 1):
        fail(f"expected num_classes to be null or a positive int, received {num_classes!r}")
    names = metadata["class_names"]
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            fail("expected class_names to be null or a list of strings")
        if num_classes is None or len(names) != num_classes:
            fail(f"expected {num_classes} class_names, received {len(names)}")
    if not isinstance(metadata["normalized"], bool):
        fail(f"expected a boolean normalized, received {metadata['normalized']!r}")
    cascade = metadata["cascade"]
    if cascade is not None:
        if num_classes is None:
            fail("a cascade needs num_classes")
        if not isinstance(cascade, dict):
            fail(f"expected cascade to be null or an object, received {cascade!r}")
        dims, thresholds = cascade.get("dims"), cascade.get("thresholds")
        if not _increasing_ints(dims) or not set(dims) <= set(metadata["nesting_dims"]):
            fail(f"expected cascade.dims to be increasing nesting dims, received {dims!r}")
        if (
            not isinstance(thresholds, list)
            or len(thresholds) != len(dims)
            or not all(_is_number(t) and math.isfinite(t) for t in thresholds)
        ):
            fail(f"expected one finite threshold per cascade dim, received {thresholds!r}")
    spec = metadata["input"]
    if not isinstance(spec, dict):
        fail(f"expected input to be an object, received {spec!r}")
    if not isinstance(spec.get("name"), str) or not isinstance(spec.get("dtype"), str):
        fail(f"expected input.name and input.dtype strings, received {spec!r}")
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(s is None or (_is_int(s) and s >= 0) for s in shape)
    ):
        fail(f"expected input.shape to be a list of ints or nulls, received {shape!r}")
    signatures = metadata["signatures"]
    if not isinstance(signatures, list) or not all(isinstance(s, str) for s in signatures):
        fail(f"expected signatures to be a list of strings, received {signatures!r}")
    expected = [f"embed_{m}" for m in metadata["exported_dims"]]
    if cascade is not None:
        expected.append("classify_cascade")
    absent = [s for s in expected if s not in signatures]
    if absent:
        fail(f"signatures lack {absent}")
    return metadata


def write_metadata(version_dir: str | os.PathLike, metadata: dict[str, Any]) -> str:
    """Validates `metadata` and writes it to `version_dir/assets/matryoshka.json`.

    Returns:
        The path of the written file.
    """
    validate_metadata(metadata, source="the metadata being written")
    path = metadata_path(version_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2)
        f.write("\n")
    return path


def list_versions(base_path: str | os.PathLike) -> list[int]:
    """Returns the integer version folders under a model base path, ascending.

    Folders whose name is not a non-negative integer are skipped, as TF Serving does.
    """
    base = os.fspath(base_path)
    if not os.path.isdir(base):
        return []
    versions = []
    for name in os.listdir(base):
        if name.isdigit() and os.path.isdir(os.path.join(base, name)):
            versions.append(int(name))
    return sorted(versions)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Reads and validates the metadata of an exported Matryoshka SavedModel.

    Args:
        path: the JSON file itself, a version folder (`base/3`), or a model base path (`base`,
            whose highest integer version is read, as TF Serving's default policy serves).

    Returns:
        The metadata dict, plus `"version"` (int, or `None` when the file is not inside an
        integer version folder) and `"path"` (the version folder).

    Raises:
        FileNotFoundError: if there is no metadata at `path`.
        ValueError: if the file is not valid JSON or not valid format_version 1 metadata.

    Example:

    >>> meta = read_metadata("models/fashion_mnist")
    >>> meta["exported_dims"], meta["cascade"]["thresholds"]
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        file_path = path
        version_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    elif os.path.isfile(metadata_path(path)):
        file_path = metadata_path(path)
        version_dir = path
    elif os.path.isdir(path):
        versions = list_versions(path)
        if not versions:
            raise FileNotFoundError(
                f"No Matryoshka metadata at {path!r}: it is neither a SavedModel version folder "
                "with assets/matryoshka.json nor a base path with integer version folders."
            )
        version_dir = os.path.join(path, str(versions[-1]))
        file_path = metadata_path(version_dir)
        if not os.path.isfile(file_path):
            raise FileNotFoundError(
                f"No Matryoshka metadata in the latest version {version_dir!r}: expected "
                f"{METADATA_DIR}/{METADATA_FILE}. Was it exported with `mrl export`?"
            )
    else:
        raise FileNotFoundError(f"No such file or directory: {path!r}")
    try:
        with open(file_path, encoding="utf-8") as f:
            metadata = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"Invalid Matryoshka metadata in {file_path}: not JSON ({e})") from e
    validate_metadata(metadata, source=file_path)
    name = os.path.basename(os.path.normpath(version_dir))
    metadata = dict(metadata)
    metadata["version"] = int(name) if name.isdigit() else None
    metadata["path"] = version_dir
    return metadata
