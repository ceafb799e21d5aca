"""Atomic publishing of a directory (standard library only), for the SavedModel version folders
of `mrl_keras.export` and the index directories of `mrl_keras.serving`.

A directory is written complete in a hidden temporary sibling, flushed to disk, then moved into
place with one rename, so a reader (TF Serving polling a base path, a service reloading an
index) or a killed writer never sees half of it. Replacing an existing directory swaps the two
atomically with `renameat2(RENAME_EXCHANGE)` on Linux; elsewhere the old one is renamed aside
first, leaving a short window where the path is absent (but never half-written).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
import uuid

__all__ = [
    "exchange",
    "fsync_tree",
    "make_temp_dir",
    "process_alive",
    "publish_directory",
    "publish_new_directory",
]

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> str:
    """Creates and returns a new empty directory `parent/<prefix><12 random hex digits>`.

    `os.mkdir` honours the umask (`tempfile.mkdtemp` would make it 0700, unreadable by a TF
    Serving process running as another user once renamed into place).
    """
    while True:
        path = os.path.join(os.fspath(parent), prefix + secrets.token_hex(6))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (a temporary's writer still running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """Flushes every file and directory under `root` to disk."""
    for dirpath, _, filenames in os.walk(os.fspath(root)):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(dirpath)


def _renameat2(a: str | os.PathLike, b: str | os.PathLike, flags: int) -> bool:
    """renameat2(a, b, flags); False when the kernel or libc lacks it (or the flag)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), flags)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), os.fspath(b))
    raise OSError(err, os.strerror(err), os.fspath(b))


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Atomically swaps two paths with renameat2(RENAME_EXCHANGE); False when unsupported."""
    return _renameat2(a, b, _RENAME_EXCHANGE)


def publish_new_directory(tmp_dir: str | os.PathLike, target: str | os.PathLike) -> None:
    """Moves the complete directory `tmp_dir` to a `target` that must not exist yet.

    Never replaces anything (an immutable version folder stays as published):
    `renameat2(RENAME_NOREPLACE)` where the kernel has it, else a plain rename after an
    existence check (a rename onto an existing non-empty directory fails on POSIX anyway).
    The parent directory is flushed afterwards.

    Raises:
        FileExistsError: `target` exists (`tmp_dir` is left in place for the caller).
    """
    tmp_dir, target = os.fspath(tmp_dir), os.fspath(target)
    if not _renameat2(tmp_dir, target, _RENAME_NOREPLACE):
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "already published", target)
        os.rename(tmp_dir, target)
    _fsync_dir(os.path.dirname(os.path.abspath(target)))


def publish_directory(tmp_dir: str | os.PathLike, target: str | os.PathLike) -> None:
    """Moves the complete directory `tmp_dir` to `target` (its sibling) atomically.

    A new `target` is one rename. An existing one is swapped with `tmp_dir` in one step where
    the kernel can (`renameat2`), else renamed aside (`.<name>.old-<pid>-<random>`) just before
    the rename; the previous content is deleted either way. The parent directory is flushed
    afterwards, so the rename survives a crash.

    Raises:
        OSError: the renames failed (`tmp_dir` is left in place for the caller to remove).
    """
    tmp_dir, target = os.fspath(tmp_dir), os.fspath(target)
    if not os.path.exists(target):
        os.rename(tmp_dir, target)
    elif exchange(tmp_dir, target):
        shutil.rmtree(tmp_dir, ignore_errors=True)  # tmp_dir now holds the previous content
    else:
        parent, name = os.path.split(target)
        old = os.path.join(parent, f".{name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        try:
            os.rename(tmp_dir, target)
        except OSError:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(os.path.dirname(os.path.abspath(target)))
