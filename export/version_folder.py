"""Atomic version folders under a TF Serving model base path.

TF Serving polls `base_path` and loads any new integer folder it sees, so a version must appear
complete or not at all: it is written to a hidden temporary sibling (`.mrl-export-...`, skipped
by TF Serving because the name is not an integer) and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator

from mrl_keras.atomic_publish import make_temp_dir, process_alive, publish_directory
from mrl_keras.export.metadata import list_versions

TEMP_PREFIX = ".mrl-export-"


def next_version(base_path: str | os.PathLike) -> int:
    """Returns one more than the highest integer version under `base_path` (1 when none)."""
    versions = list_versions(base_path)
    return versions[-1] + 1 if versions else 1


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable(base_path: str | os.PathLike) -> None:
    """Raises `ValueError` unless `base_path` is (or can be created as) a writable folder."""
    base = os.path.abspath(os.fspath(base_path))
    existing = _nearest_existing(base)
    if not os.path.isdir(existing):
        raise ValueError(
            f"Cannot write to base path {base!r}: {existing!r} exists and is not a directory. "
            "Pass a directory for --model-base-path."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"Cannot write to base path {base!r}: {existing!r} is not writable. "
            "Pick another --model-base-path or fix its permissions."
        )


def resolve_version(base_path: str | os.PathLike, version: int | None, overwrite: bool) -> int:
    """Checks a requested version (or picks the next free one) before anything is written.

    Raises:
        TypeError: if `version` is not an int.
        ValueError: if `version` is negative, or exists and `overwrite` is false.
    """
    if version is None:
        return next_version(base_path)
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"Expected an integer version. Received: version={version!r}")
    if version < 0:
        raise ValueError(f"Expected a non-negative version. Received: version={version}")
    target = os.path.join(os.fspath(base_path), str(version))
    if os.path.exists(target) and not overwrite:
        raise ValueError(
            f"Version {version} already exists at {target!r}. Pass --overwrite (overwrite=True) "
            "to replace it, or leave the version out to write the next free one."
        )
    return version


def remove_stale_temporaries(base_path: str | os.PathLike) -> list[str]:
    """Removes temporary folders left by exports on this host whose process has died.

    Returns:
        The removed paths.
    """
    base = os.fspath(base_path)
    removed: list[str] = []
    if not os.path.isdir(base):
        return removed
    host = socket.gethostname()
    for name in os.listdir(base):
        if not name.startswith(TEMP_PREFIX):
            continue
        parts = name[len(TEMP_PREFIX) :].split("-")
        # .mrl-export-<host>-<pid>-<random>; host names may hold dashes.
        if len(parts) < 3 or not parts[-2].isdigit() or "-".join(parts[:-2]) != host:
            continue
        if not process_alive(int(parts[-2])):
            path = os.path.join(base, name)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_version_folder(
    base_path: str | os.PathLike, version: int, overwrite: bool = False
) -> Iterator[str]:
    """Yields a temporary folder; on success renames it to `base_path/<version>`.

    On any exception the temporary folder is removed (and `base_path` too, if this call created
    it and it is empty), so nothing half-written is left behind. A process killed mid-write
    leaves only the hidden temporary folder, which TF Serving ignores and the next export on
    this host removes.

    With `overwrite`, an existing version is replaced by `mrl_keras.atomic_publish`'s
    `publish_directory`: swapped in one step where the kernel can (`renameat2`), else renamed
    aside just before the rename, so it is absent for an instant but never half-written.
    """
    base = os.path.abspath(os.fspath(base_path))
    created_base = not os.path.exists(base)
    os.makedirs(base, exist_ok=True)
    remove_stale_temporaries(base)
    prefix = f"{TEMP_PREFIX}{socket.gethostname()}-{os.getpid()}-"
    temp = make_temp_dir(base, prefix)
    target = os.path.join(base, str(version))
    try:
        yield temp
        if os.path.exists(target) and not overwrite:
            raise FileExistsError(
                f"Version {version} appeared at {target!r} while exporting; not replacing it."
            )
        publish_directory(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if created_base:
            with contextlib.suppress(OSError):
                os.rmdir(base)
        raise
