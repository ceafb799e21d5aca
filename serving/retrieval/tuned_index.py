"""Publishing a tuned index: the same files with search defaults in the manifest, as a new
index version.

`publish_tuned(index_dir, search_defaults, tuning)` writes a complete index directory whose
files are hard links of the tuned one's (copies across file systems; nothing is rewritten or
re-hashed) and whose sealed manifest carries `search_defaults` (what `AdaptiveRetriever.plan`
uses when a request names none), `tuning` (what was measured) and a new `index_version` (the
content hash of the files *and* the defaults, so two tunings of one build differ), with
`tuned_from` naming the version it came from. Where the index lives in a versioned base path
(`indexes/NAME/<integer version>/`, `index_versions.py`; the base path itself is accepted and
means its newest version), the result is published as the next integer version there, under
the base's publish lock and read-only, and the tuned version stays as it was; otherwise it
replaces `out_dir` (default: the index directory itself) atomically, like a legacy build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from mrl_keras.atomic_publish import make_temp_dir
from mrl_keras.serving.retrieval import index_versions
from mrl_keras.serving.retrieval.manifest import (
    MANIFEST_NAME,
    IndexIntegrityError,
    read_manifest,
    seal_manifest,
)

__all__ = ["publish_derived", "publish_tuned", "versioned_base"]


def versioned_base(index_dir: Path) -> Path | None:
    """The versioned base path `index_dir` belongs to (`base/<integer>`), else None."""
    if index_dir.name.isdigit() and index_versions.is_versioned_base(index_dir.parent):
        return index_dir.parent
    return None


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def publish_tuned(
    index_dir: str | os.PathLike,
    search_defaults: dict[str, Any],
    tuning: dict[str, Any] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> Path:
    """Publishes `index_dir` with `search_defaults` in its manifest as a new index version.

    Args:
        index_dir: a published index directory, or a versioned base path (its newest version).
        search_defaults: `{"shortlist_size", "leaves_to_search", "rerank_dim" | "funnel",
            "shortlist_dim", "shortlist_reorder"}` (`TuneResult.search_defaults()`;
            `shortlist_reorder` only where the tuner chose a reorder count of its own).
        tuning: what the tuner measured (`TuneResult.tuning_record()`), recorded as is.
        out_dir: where to publish (a plain directory, replaced atomically). Default: the next
            integer version in a versioned layout, else `index_dir` itself.

    Returns:
        The published directory.

    Raises:
        ValueError: unknown keys in `search_defaults`, or `index_dir` is not an index.
    """
    allowed = {
        "shortlist_size",
        "leaves_to_search",
        "rerank_dim",
        "funnel",
        "shortlist_dim",
        "shortlist_reorder",
    }
    if not isinstance(search_defaults, dict) or set(search_defaults) - allowed:
        raise ValueError(
            f"Expected search_defaults with keys among {sorted(allowed)}. Received: "
            f"{search_defaults!r}"
        )
    defaults = json.loads(json.dumps(search_defaults))
    return publish_derived(
        index_dir, {"search_defaults": defaults, "tuning": tuning or {}}, out_dir=out_dir
    )


def publish_derived(
    index_dir: str | os.PathLike,
    updates: dict[str, Any],
    *,
    extra_root: Path | None = None,
    extra_files: dict[str, str] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> Path:
    """Publishes the files of `index_dir` (hard links), plus `extra_files` (relative name ->
    sha256, copied from `extra_root`), with `updates` merged into its manifest, as a new
    version (see the module docstring for where it goes)."""
    try:
        index_dir, _ = index_versions.resolve_index_dir(Path(index_dir).absolute())
    except FileNotFoundError as e:
        raise IndexIntegrityError(f"Not an index directory: {e}") from e
    manifest = read_manifest(index_dir)
    base = versioned_base(index_dir) if out_dir is None else None
    target = index_dir if out_dir is None else Path(out_dir).absolute()
    parent = base if base is not None else target.parent
    parent.mkdir(parents=True, exist_ok=True)
    prefix = index_versions.BUILD_TMP_PREFIX if base is not None else f".{target.name}.tmp-"
    tmp = Path(make_temp_dir(parent, f"{prefix}{os.getpid()}-"))
    try:
        for name in manifest["files"]:
            _link_or_copy(index_dir / name, tmp / name)
        files = dict(manifest["files"])
        for name, digest in (extra_files or {}).items():
            _link_or_copy(Path(extra_root) / name, tmp / name)
            files[name] = digest
        content = hashlib.sha256(
            json.dumps([files, updates], sort_keys=True, default=str).encode()
        ).hexdigest()
        build_id = index_versions.new_build_id()
        new = dict(manifest)
        new.pop("manifest_sha256", None)
        new.pop("version", None)
        new.update(updates)
        new.update(
            files=files,
            index_version=content[:16] if base is None else build_id,
            build_id=build_id,
            tuned_from=manifest["index_version"],
        )

        def seal(version: int | None) -> None:
            if version is not None:
                new.update(version=version, index_version=f"{version}-{build_id}")
            (tmp / MANIFEST_NAME).write_bytes(seal_manifest(new))

        if base is not None:
            target = index_versions.publish_build(base, tmp, seal, versioned=True)
        else:
            index_versions.publish_build(target, tmp, seal, versioned=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
