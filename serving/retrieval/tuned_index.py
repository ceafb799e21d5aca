"""Publishing a tuned index: the same files with search defaults in the manifest, as a new
index version.

`publish_tuned(index_dir, search_defaults, tuning)` writes a complete index directory whose
files are hard links of the tuned one's (copies across file systems; nothing is rewritten or
re-hashed) and whose sealed manifest carries `search_defaults` (what `AdaptiveRetriever.plan`
uses when a request names none), `tuning` (what was measured) and a new `index_version` (the
content hash of the files *and* the defaults, so two tunings of one build differ), with
`tuned_from` naming the version it came from. Where the index lives in a versioned base path
(`indexes/NAME/<integer version>/`), the result is the next integer version beside it and the
tuned version stays as it was; otherwise it replaces `out_dir` (default: the index directory
itself) atomically, like `build_index`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from mrl_keras.atomic_publish import fsync_tree, make_temp_dir, publish_directory
from mrl_keras.serving.retrieval.manifest import MANIFEST_NAME, read_manifest, seal_manifest

__all__ = ["next_version_dir", "publish_tuned"]


def next_version_dir(index_dir: Path) -> Path | None:
    """`base/<max + 1>` when `index_dir` is `base/<integer>` (a versioned layout), else None."""
    if not index_dir.name.isdigit():
        return None
    versions = [int(p.name) for p in index_dir.parent.iterdir() if p.name.isdigit() and p.is_dir()]
    return index_dir.parent / str(max(versions) + 1)


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
        index_dir: a published index directory.
        search_defaults: `{"shortlist_size", "leaves_to_search", "rerank_dim" | "funnel"}`
            (`TuneResult.search_defaults()`).
        tuning: what the tuner measured (`TuneResult.tuning_record()`), recorded as is.
        out_dir: where to publish. Default: the next integer version in a versioned layout,
            else `index_dir` itself (replaced atomically).

    Returns:
        The published directory.

    Raises:
        ValueError: unknown keys in `search_defaults`, or `index_dir` is not an index.
    """
    index_dir = Path(index_dir).absolute()
    allowed = {"shortlist_size", "leaves_to_search", "rerank_dim", "funnel"}
    if not isinstance(search_defaults, dict) or set(search_defaults) - allowed:
        raise ValueError(
            f"Expected search_defaults with keys among {sorted(allowed)}. Received: "
            f"{search_defaults!r}"
        )
    manifest = read_manifest(index_dir)
    if out_dir is not None:
        target = Path(out_dir).absolute()
    else:
        target = next_version_dir(index_dir) or index_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(make_temp_dir(target.parent, f".{target.name}.tmp-{os.getpid()}-"))
    try:
        for name in manifest["files"]:
            _link_or_copy(index_dir / name, tmp / name)
        defaults = json.loads(json.dumps(search_defaults))
        content = hashlib.sha256(
            json.dumps([manifest["files"], defaults], sort_keys=True).encode()
        ).hexdigest()
        new = dict(manifest)
        new.pop("manifest_sha256", None)
        new.update(
            index_version=content[:16],
            search_defaults=defaults,
            tuning=tuning or {},
            tuned_from=manifest["index_version"],
        )
        (tmp / MANIFEST_NAME).write_bytes(seal_manifest(new))
        fsync_tree(tmp)
        publish_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
