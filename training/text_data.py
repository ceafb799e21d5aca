"""An offline text-pair task: Debian packages' short descriptions against their long ones.

Every Debian package has a one-line synopsis and a long description (`Description-en` in the
archive's `Translation-en` index, which `apt-get update` fetches when languages are enabled).
A pair is (synopsis, long description); the id is the package name. Retrieval of the matching
long description from its synopsis, recall@k per prefix dim, is the text counterpart of the
image benchmarks. Packages whose long description is shared with another package (e.g.
`foo` and `foo-data`, same first 40 words) and packages with a synopsis already seen are kept
once, so every query has one right answer.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import subprocess

import numpy as np

APT_LISTS = "/var/lib/apt/lists"
APT_HELPER = "/usr/lib/apt/apt-helper"


@dataclasses.dataclass(frozen=True)
class TextPairs:
    """Paired texts with ids: `short[i]` describes the same package as `long[i]`."""

    ids: list[str]
    short: list[str]
    long: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray | list[int]) -> TextPairs:
        return TextPairs(
            [self.ids[i] for i in index],
            [self.short[i] for i in index],
            [self.long[i] for i in index],
        )

    def split(self, test: int, seed: int = 0) -> tuple[TextPairs, TextPairs]:
        """(train, test) with `test` pairs held out at random."""
        if not 0 < test < len(self):
            raise ValueError(f"Expected 0 < test < {len(self)}. Received: test={test}")
        order = np.random.default_rng(seed).permutation(len(self))
        return self.take(order[test:]), self.take(order[:test])


def translation_files(lists_dir: str = APT_LISTS) -> list[str]:
    """The apt `Translation-en` indexes on this machine (compressed as apt stores them)."""
    return sorted(glob.glob(os.path.join(lists_dir, "*_i18n_Translation-en*")))


def fetch_translations() -> None:
    """Runs `apt-get update` with English descriptions enabled (Debian's archive only).

    Raises:
        RuntimeError: when not root or `apt-get` fails.
    """
    if os.geteuid() != 0:
        raise RuntimeError(
            "No Debian Translation-en index in /var/lib/apt/lists. Run as root: "
            "apt-get update -o Acquire::Languages=en"
        )
    proc = subprocess.run(
        ["apt-get", "update", "-qq", "-o", "Acquire::Languages=en"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not translation_files():
        raise RuntimeError(f"apt-get update -o Acquire::Languages=en failed: {proc.stderr[-500:]}")


def _read_index(path: str) -> str:
    # apt-helper decompresses whatever apt stored (.lz4, .gz, .xz or plain).
    if os.path.exists(APT_HELPER):
        return subprocess.run(
            [APT_HELPER, "cat-file", path], check=True, capture_output=True, text=True
        ).stdout
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def parse_translations(text: str) -> dict[str, tuple[str, str]]:
    """Maps package name -> (synopsis, long description) from a `Translation-en` text."""
    out: dict[str, tuple[str, str]] = {}
    for record in text.split("\n\n"):
        name, short, lines, in_description = None, None, [], False
        for line in record.split("\n"):
            if line.startswith("Package: "):
                name = line[len("Package: ") :].strip()
                in_description = False
            elif line.startswith("Description-en: "):
                short = line[len("Description-en: ") :].strip()
                in_description = True
            elif in_description and line.startswith(" "):
                body = line.strip()
                lines.append("" if body == "." else body)
            else:
                in_description = False
        if name and short and lines:
            out[name] = (short, " ".join(x for x in lines if x))
    return out


def load_debian_descriptions(
    max_pairs: int | None = None,
    min_long_words: int = 8,
    seed: int = 0,
    fetch: bool = True,
) -> TextPairs:
    """Loads (synopsis, long description) pairs of Debian packages, offline.

    Args:
        max_pairs: int or `None`. Keep at most this many pairs (a random subset). Defaults to
            `None` (all, about 40,000 on Debian 12 main after de-duplication).
        min_long_words: int. Drop long descriptions shorter than this. Defaults to `8`.
        seed: int. For the subset. Defaults to `0`.
        fetch: bool. Whether to run `apt-get update -o Acquire::Languages=en` when no index is
            present (root only). Defaults to `True`.

    Returns:
        `TextPairs`, sorted by package name before sub-sampling (deterministic).

    Raises:
        RuntimeError: when no `Translation-en` index is present and none can be fetched.
    """
    files = translation_files()
    if not files and fetch:
        fetch_translations()
        files = translation_files()
    if not files:
        raise RuntimeError(
            "No Debian Translation-en index in /var/lib/apt/lists; run "
            "apt-get update -o Acquire::Languages=en"
        )
    entries: dict[str, tuple[str, str]] = {}
    for path in files:
        entries.update(parse_translations(_read_index(path)))
    seen_long, seen_short = set(), set()
    ids, short, long = [], [], []
    for name in sorted(entries):
        s, body = entries[name]
        # What a model with a short context sees: the first 40 words (`foo` and `foo-data`
        # often differ only in a last sentence).
        key = " ".join(body.lower().split()[:40])
        if len(body.split()) < min_long_words or key in seen_long or s.lower() in seen_short:
            continue
        seen_long.add(key)
        seen_short.add(s.lower())
        ids.append(name)
        short.append(s)
        long.append(body)
    pairs = TextPairs(ids, short, long)
    if max_pairs is not None and max_pairs < len(pairs):
        index = np.sort(np.random.default_rng(seed).permutation(len(pairs))[:max_pairs])
        pairs = pairs.take(index)
    return pairs
