"""A TF Serving model config file (`--model_config_file=PATH`) for an exported base path.

`model_config_text(name, base_path, num_versions=2)` is the `ModelServerConfig` text proto
that makes stock TF Serving (and `mrl model-server --model-config-file`) keep the newest N
versions loaded (`model_version_policy { latest { num_versions: N } }`), or exactly
`versions` (`specific`), with optional `version_labels`. Standard library only: the text is
written by hand and checked against `model_server_config_pb2` by the tests.

Serving with it (docs/serving_backends.md)::

    docker run -p 8500:8500 -p 8501:8501 -v $PWD/models:/models tensorflow/serving \\
        --model_config_file=/models/models.config --model_config_file_poll_wait_seconds=60
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

__all__ = ["model_config_text", "write_model_config"]


def model_config_text(
    name: str,
    base_path: str,
    *,
    num_versions: int | None = 2,
    versions: Sequence[int] | None = None,
    labels: Mapping[str, int] | None = None,
) -> str:
    """The text proto of a one-model `ModelServerConfig`.

    Args:
        name: the model name clients use.
        base_path: the base path as the server sees it (e.g. `/models/NAME` in a container).
        num_versions: keep the newest N versions (`latest`). Ignored when `versions` is given.
        versions: serve exactly these versions (`specific`).
        labels: version labels, e.g. `{"stable": 1, "canary": 2}` (TF Serving requires a
            labelled version to be AVAILABLE).

    Raises:
        ValueError: empty name or base path, `num_versions < 1`, bad versions or labels.
    """
    if not name or not base_path:
        raise ValueError(
            f"Expected a model name and a base path. Received: name={name!r}, "
            f"base_path={base_path!r}"
        )
    if versions is not None:
        versions = sorted({int(v) for v in versions})
        if not versions or versions[0] < 0:
            raise ValueError(f"Expected versions >= 0. Received: versions={versions}")
        policy = "specific { " + " ".join(f"versions: {v}" for v in versions) + " }"
    else:
        if isinstance(num_versions, bool) or not isinstance(num_versions, int) or num_versions < 1:
            raise ValueError(f"Expected num_versions >= 1. Received: num_versions={num_versions!r}")
        policy = f"latest {{ num_versions: {num_versions} }}"
    lines = [
        "model_config_list {",
        "  config {",
        f"    name: {json.dumps(name)}",
        f"    base_path: {json.dumps(base_path)}",
        '    model_platform: "tensorflow"',
        f"    model_version_policy {{ {policy} }}",
    ]
    for label, version in sorted((labels or {}).items()):
        if not label or isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(
                f"Expected labels as non-empty names mapped to versions >= 0. Received: "
                f"{label!r}: {version!r}"
            )
        if versions is not None and version not in versions:
            raise ValueError(
                f"Label {label!r} names version {version}, which the specific policy "
                f"{versions} does not serve."
            )
        lines.append(f"    version_labels {{ key: {json.dumps(label)} value: {version} }}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def write_model_config(path: str | os.PathLike, text: str) -> str:
    """Writes `text` to `path` atomically (a temporary beside it, then a rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"The folder of {path!r} does not exist")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
