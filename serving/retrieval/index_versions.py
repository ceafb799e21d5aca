"""Versioned index base paths (`indexes/NAME/<integer version>/`, the layout of a TF Serving
model base path): resolving a version, publishing the next one, leases and retention.

- **Publishing.** A build writes its files into a hidden temporary inside the base path, then,
  holding an exclusive `flock` on `base/.publish.lock`, takes the next integer version (one
  more than the largest integer name there), seals its manifest with it, makes every file
  read-only (files 0444, folders 0555) and renames the temporary to `base/<version>` with
  `renameat2(RENAME_NOREPLACE)`: a published version is never replaced or edited.
- **Leases.** A loader opens the version folder (`O_RDONLY | O_DIRECTORY`), takes a shared
  `flock` on that descriptor and keeps it open as long as the loaded index lives; it then reads
  only through that descriptor (`openat`, `/proc/self/fd/N/...`). The lease is the open,
  share-locked directory descriptor: it dies with the process, so a killed service never
  leaves a stale lease.
- **Retention.** `retire_versions(base, keep)` removes versions older than the newest `keep`,
  each only after taking an exclusive, non-blocking `flock` on its folder; a version some
  process has loaded (a shared lock held) is skipped and reported. The folder is renamed to a
  hidden name while the exclusive lock is held, so a loader that resolved it just before finds
  it gone (its inode no longer at the path) and resolves again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from mrl_keras.atomic_publish import (
    fsync_tree,
    process_alive,
    publish_directory,
    publish_new_directory,
)

__all__ = [
    "BUILD_TMP_PREFIX",
    "IndexLease",
    "LeaseLost",
    "PUBLISH_LOCK_NAME",
    "is_versioned_base",
    "list_versions",
    "make_read_only",
    "new_build_id",
    "publish_version",
    "remove_stale_build_temporaries",
    "resolve_index_dir",
    "retire_versions",
]

PUBLISH_LOCK_NAME = ".publish.lock"
BUILD_TMP_PREFIX = ".build.tmp-"
_RETIRED_PREFIX = ".retired-"
_MANIFEST = "manifest.json"


class LeaseLost(OSError):
    """The version folder was retired or replaced between resolving and leasing it."""


def new_build_id() -> str:
    """A fresh 12-hex-digit build id (two builds of the same content differ)."""
    return secrets.token_hex(6)


def list_versions(base: str | os.PathLike) -> list[int]:
    """Integer-named folders of `base` holding a `manifest.json`, ascending."""
    try:
        names = os.listdir(base)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        int(n) for n in names if n.isdigit() and os.path.isfile(os.path.join(base, n, _MANIFEST))
    )


def is_versioned_base(path: str | os.PathLike) -> bool:
    """True for a base path (no manifest of its own, or none yet: a new or empty folder)."""
    return not os.path.isfile(os.path.join(path, _MANIFEST))


def resolve_index_dir(path: str | os.PathLike, version: int | None = None) -> tuple[Path, bool]:
    """`(index folder, versioned)` for a base path (newest or `version`) or an index folder.

    An index folder (it holds `manifest.json`) is returned as is: a legacy un-versioned index,
    or one version folder given directly.

    Raises:
        FileNotFoundError: no index there, or not that version (naming what exists).
    """
    path = Path(path)
    if (path / _MANIFEST).is_file():
        if version is not None and not (path.name.isdigit() and int(path.name) == version):
            raise FileNotFoundError(
                f"Expected index version {version} but {str(path)!r} is an index folder of its "
                "own. Pass the base path (the folder holding the numbered versions)."
            )
        return path, path.name.isdigit() and (path.parent / PUBLISH_LOCK_NAME).exists()
    versions = list_versions(path)
    if not versions:
        raise FileNotFoundError(
            f"Expected an index folder (with {_MANIFEST}) or an index base path with integer "
            f"version folders (base/1/{_MANIFEST}, ...). Received: {str(path)!r}, which has "
            "neither. Build one with `mrl index build --out BASE`."
        )
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise FileNotFoundError(
            f"Expected one of the index versions {versions} in {str(path)!r}. Received: "
            f"version={version}"
        )
    return path / str(version), True


class IndexLease:
    """A shared `flock` on an open index folder descriptor (see the module docstring).

    Attributes: `path` (the folder), `fd` (its descriptor: read through it, `openat` style).
    """

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    @classmethod
    def acquire(cls, path: str | os.PathLike) -> IndexLease:
        """Opens `path`, share-locks it, and checks that `path` still names that folder.

        Raises:
            LeaseLost: the folder was retired or swapped away meanwhile (resolve again).
        """
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError as e:
            raise LeaseLost(errno.ENOENT, f"index folder vanished: {path}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            os.close(fd)
            raise
        lease = cls(path, fd)
        if not lease.still_at_path():
            lease.release()
            raise LeaseLost(errno.ESTALE, f"index folder was replaced or retired: {path}")
        return lease

    def still_at_path(self) -> bool:
        """Whether `path` still names the folder this lease holds (not retired, not swapped)."""
        if self.fd < 0:
            return False
        try:
            a, b = os.fstat(self.fd), os.stat(self.path)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def open_path(self, name: str = "") -> str:
        """A path that reaches `name` inside the leased folder itself, whatever happens to the
        folder's name (`/proc/self/fd/N/name` on Linux; the folder's path elsewhere)."""
        root = f"/proc/self/fd/{self.fd}"
        if not os.path.isdir(root):
            root = os.fspath(self.path)
        return os.path.join(root, name) if name else root

    def read_bytes(self, name: str) -> bytes:
        """The bytes of `name` (relative, may hold `/`) read through the folder descriptor."""
        fd = os.open(name, os.O_RDONLY, dir_fd=self.fd)
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def open_file(self, name: str):
        """`name` opened for reading (binary) through the folder descriptor."""
        return os.fdopen(os.open(name, os.O_RDONLY, dir_fd=self.fd), "rb")

    def release(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)  # closing the last descriptor drops the flock

    def __del__(self):
        with contextlib.suppress(Exception):
            self.release()


def make_read_only(root: str | os.PathLike) -> None:
    """Files 0444 and folders 0555 under `root` (`root` itself last)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o444)
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o555)
    os.chmod(root, 0o555)


def _make_writable(root: str | os.PathLike) -> None:
    for dirpath, _dirnames, _ in os.walk(root):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP)
    with contextlib.suppress(OSError):
        os.chmod(root, stat.S_IRWXU)


def _remove_tree(root: str | os.PathLike) -> None:
    _make_writable(root)
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _publish_lock(base: Path) -> Iterator[None]:
    fd = os.open(base / PUBLISH_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_stale_build_temporaries(base: str | os.PathLike) -> None:
    """Removes build temporaries and retired folders left in `base` by killed processes."""
    base = Path(base)
    if not base.is_dir():
        return
    for entry in base.iterdir():
        for prefix in (BUILD_TMP_PREFIX, _RETIRED_PREFIX):
            if entry.name.startswith(prefix):
                try:
                    pid = int(entry.name[len(prefix) :].split("-")[0])
                except ValueError:
                    continue
                if not process_alive(pid):
                    _remove_tree(entry)


def publish_version(
    base: str | os.PathLike,
    tmp_dir: str | os.PathLike,
    seal: Callable[[int], None],
    version: int | None = None,
) -> tuple[Path, int]:
    """Publishes the complete folder `tmp_dir` (inside `base`) as the next integer version.

    Args:
        base: the base path.
        tmp_dir: the build's temporary folder, everything but the manifest written.
        seal: `seal(version)` writes the manifest into `tmp_dir` once the version is known
            (called with the publish lock held).
        version: publish exactly this version instead of the next (it must not exist).

    Returns:
        `(base/<version>, version)`.

    Raises:
        FileExistsError: that version exists already (published versions are immutable).
    """
    base = Path(base)
    with _publish_lock(base):
        if version is None:
            taken = [int(n) for n in os.listdir(base) if n.isdigit()]
            version = max(taken, default=0) + 1
        elif (base / str(version)).exists():
            raise FileExistsError(
                errno.EEXIST,
                f"index version {version} exists already in {str(base)!r} (published versions "
                "are immutable; omit the version to publish the next one)",
                str(base / str(version)),
            )
        seal(version)
        fsync_tree(tmp_dir)
        make_read_only(tmp_dir)
        target = base / str(version)
        try:
            publish_new_directory(tmp_dir, target)
        except BaseException:
            _make_writable(tmp_dir)
            raise
    return target, version


def publish_build(
    out: str | os.PathLike,
    tmp_dir: str | os.PathLike,
    seal: Callable[[int | None], None],
    *,
    versioned: bool,
    version: int | None = None,
) -> Path:
    """Publishes a finished build folder either way an index is written.

    Args:
        out: the index base path (`versioned`) or the index folder itself.
        tmp_dir: the build's temporary folder, everything but the manifest written.
        seal: `seal(version)` writes the manifest into `tmp_dir`; called with the version
            number (`versioned`, see `publish_version`) or `None`.
        versioned: publish as the next integer version of `out` (or as `version`), else
            replace the folder `out` atomically (`publish_directory`).
        version: with `versioned`, publish exactly this version.

    Returns:
        The published folder.
    """
    if versioned:
        return publish_version(out, tmp_dir, seal, version)[0]
    seal(None)
    fsync_tree(tmp_dir)
    publish_directory(tmp_dir, out)
    return Path(out)


def retire_versions(base: str | os.PathLike, keep: int) -> tuple[list[int], list[int]]:
    """Removes the versions of `base` older than the newest `keep`, except leased ones.

    Args:
        base: the index base path.
        keep: int >= 1. How many of the newest versions stay.

    Returns:
        `(removed versions, versions kept because a process has them loaded)`.

    Raises:
        ValueError: `keep < 1`.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"Expected keep to be an int >= 1. Received: keep={keep!r}")
    base = Path(base)
    removed, leased = [], []
    for version in list_versions(base)[:-keep]:
        path = base / str(version)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                leased.append(version)
                continue
            aside = base / f"{_RETIRED_PREFIX}{os.getpid()}-{version}-{secrets.token_hex(4)}"
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue
        finally:
            os.close(fd)
        _remove_tree(aside)
        removed.append(version)
    return removed, leased
