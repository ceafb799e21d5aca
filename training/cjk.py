"""A many-class offline benchmark: CJK characters rendered from Debian's CJK fonts.

Fashion-MNIST has 10 classes, so 8 dimensions already separate them and it cannot show what
MRL is for. This builder makes a dataset with 1,000 (up to about 2,300) classes where low
dimensions are a real bottleneck, from real packaged assets:

- classes: GB2312 level-1 characters (the 3,755 most frequent simplified characters, in GB2312
  order) that *every* selected face covers; the first `num_classes` of them;
- faces: one face per distinct design among the Debian CJK font packages (`FACES`, installed
  by `scripts/setup_cjk.sh`); faces are grouped into design families and whole families are
  assigned to train or test, so the test split measures generalisation to unseen fonts;
- images: `image_size` x `image_size` grayscale uint8, white glyph on black, each rendered with
  a random size, rotation and shift (the augmentation), `train_per_class` images per class from
  the train faces and `test_per_class` from the test faces.

Everything is drawn from one `numpy.random.default_rng(seed)`, so the same seed, fonts and
arguments give the same bytes. Results are cached as `.npz` under `cache_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FONT_ROOT = "/usr/share/fonts"

# (path under FONT_ROOT, face index in the file, design family, Debian package)
FACES: tuple[tuple[str, int, str, str], ...] = tuple(
    [
        (f"opentype/noto/NotoSansCJK-{w}.ttc", 2, "noto-sans", "fonts-noto-cjk-extra")
        for w in ("Thin", "Light", "DemiLight", "Regular", "Medium", "Bold", "Black")
    ]
    + [
        (f"opentype/noto/NotoSerifCJK-{w}.ttc", 2, "noto-serif", "fonts-noto-cjk-extra")
        for w in ("ExtraLight", "Light", "Regular", "Medium", "SemiBold", "Bold", "Black")
    ]
    + [
        ("truetype/arphic-gbsn00lp/gbsn00lp.ttf", 0, "arphic-ming", "fonts-arphic-gbsn00lp"),
        ("truetype/arphic-gkai00mp/gkai00mp.ttf", 0, "arphic-kai", "fonts-arphic-gkai00mp"),
        ("truetype/wqy/wqy-microhei.ttc", 0, "wqy", "fonts-wqy-microhei"),
        ("truetype/droid/DroidSansFallbackFull.ttf", 0, "droid", "fonts-droid-fallback"),
        ("truetype/arphic/uming.ttc", 0, "arphic-ming", "fonts-arphic-uming"),
        ("truetype/arphic/ukai.ttc", 0, "arphic-kai", "fonts-arphic-ukai"),
        ("truetype/arphic-bsmi00lp/bsmi00lp.ttf", 0, "arphic-ming", "fonts-arphic-bsmi00lp"),
        ("truetype/arphic-bkai00mp/bkai00mp.ttf", 0, "arphic-kai", "fonts-arphic-bkai00mp"),
        ("truetype/wqy/wqy-zenhei.ttc", 0, "wqy", "fonts-wqy-zenhei"),
        ("truetype/hanazono/HanaMinA.ttf", 0, "hanazono", "fonts-hanazono"),
        ("truetype/lxgw-wenkai/LXGWWenKai-Light.ttf", 0, "lxgw", "fonts-lxgw-wenkai"),
        ("truetype/lxgw-wenkai/LXGWWenKai-Regular.ttf", 0, "lxgw", "fonts-lxgw-wenkai"),
        ("truetype/lxgw-wenkai/LXGWWenKai-Bold.ttf", 0, "lxgw", "fonts-lxgw-wenkai"),
        ("opentype/ipafont-gothic/ipag.ttf", 0, "ipa-gothic", "fonts-ipafont-gothic"),
        ("opentype/ipaexfont-gothic/ipaexg.ttf", 0, "ipa-gothic", "fonts-ipaexfont-gothic"),
        ("opentype/ipafont-mincho/ipam.ttf", 0, "ipa-mincho", "fonts-ipafont-mincho"),
        ("opentype/ipaexfont-mincho/ipaexm.ttf", 0, "ipa-mincho", "fonts-ipaexfont-mincho"),
        ("truetype/vlgothic/VL-Gothic-Regular.ttf", 0, "vlgothic", "fonts-vlgothic"),
        ("truetype/umeplus/umeplus-gothic.ttf", 0, "umeplus", "fonts-umeplus"),
        ("truetype/motoya-l-cedar/MTLc3m.ttf", 0, "motoya", "fonts-motoya-l-cedar"),
        ("truetype/motoya-l-maruberi/MTLmr3m.ttf", 0, "motoya", "fonts-motoya-l-maruberi"),
    ]
)

# The small set CI installs (scripts/setup.sh): four faces, four families, full GB2312 level 1.
SMALL_FACES: tuple[str, ...] = (
    "truetype/arphic-gbsn00lp/gbsn00lp.ttf",
    "truetype/arphic-gkai00mp/gkai00mp.ttf",
    "truetype/wqy/wqy-microhei.ttc",
    "truetype/droid/DroidSansFallbackFull.ttf",
)

CACHE_FORMAT = 1


@dataclass(frozen=True)
class Face:
    path: str
    index: int
    family: str


def gb2312_level1() -> list[str]:
    """The 3,755 GB2312 level-1 characters in code order."""
    chars = []
    for hi in range(0xB0, 0xD8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    return chars


def available_faces(fonts: str | list[str] | None = None, font_root: str = FONT_ROOT) -> list[Face]:
    """Resolves the faces to render with.

    Args:
        fonts: `None` or `"all"` for every installed face of `FACES`, `"small"` for `SMALL_FACES`
            (the set CI installs), or a list of font paths (absolute or relative to `font_root`;
            `path:index` picks a face of a collection).
        font_root: where Debian installs fonts.

    Returns:
        The faces, in a fixed order.

    Raises:
        ValueError: when a named font file is missing or fewer than two faces are found.
    """
    known = {path: (index, family) for path, index, family, _ in FACES}
    if fonts is None or fonts == "all":
        faces = [
            Face(os.path.join(font_root, p), i, fam)
            for p, i, fam, _ in FACES
            if os.path.exists(os.path.join(font_root, p))
        ]
    else:
        names = SMALL_FACES if fonts == "small" else fonts
        if isinstance(names, str):
            names = [n for n in names.split(",") if n]
        faces = []
        for name in names:
            path, _, index = name.partition(":")
            rel = os.path.relpath(path, font_root) if os.path.isabs(path) else path
            full = path if os.path.isabs(path) else os.path.join(font_root, path)
            if not os.path.exists(full):
                raise ValueError(
                    f"CJK font file not found: {full}. Install the Debian font packages with "
                    "`bash scripts/setup_cjk.sh` (all faces) or `bash scripts/setup.sh` "
                    "(the small set), or pass existing font files."
                )
            default_index, family = known.get(rel, (0, Path(full).stem))
            faces.append(Face(full, int(index) if index else default_index, family))
    if len(faces) < 2:
        raise ValueError(
            f"The CJK benchmark needs at least 2 font faces (one for train, one for test); "
            f"found {len(faces)} under {font_root}. Run `bash scripts/setup_cjk.sh` to install "
            "the Debian CJK font packages."
        )
    return faces


def _coverage(face: Face) -> set[int]:
    from mrl_keras.optional import require

    TTFont = require("fontTools.ttLib", "The CJK glyph dataset").TTFont

    font = TTFont(face.path, fontNumber=face.index, lazy=True)
    try:
        return set(font.getBestCmap())
    finally:
        font.close()


def select_characters(faces: list[Face], num_classes: int) -> list[str]:
    """The first `num_classes` GB2312 level-1 characters that every face covers.

    Raises:
        ValueError: when the faces cover fewer characters than requested.
    """
    covered = [_coverage(f) for f in faces]
    chars = [c for c in gb2312_level1() if all(ord(c) in cov for cov in covered)]
    if num_classes > len(chars):
        raise ValueError(
            f"Expected num_classes <= {len(chars)}, the GB2312 level-1 characters all "
            f"{len(faces)} faces cover. Received: num_classes={num_classes}. Use fewer classes "
            "or fewer faces (e.g. only the Chinese ones)."
        )
    return chars[:num_classes]


def split_faces(faces: list[Face], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Assigns whole design families to test until `test_fraction` of the faces are there.

    Returns:
        (train face indices, test face indices) into `faces`.
    """
    families = sorted({f.family for f in faces})
    order = np.random.default_rng(seed).permutation(len(families))
    target = max(1, int(round(test_fraction * len(faces))))
    test_families: set[str] = set()
    count = 0
    for k in order:
        if count >= target:
            break
        members = sum(f.family == families[k] for f in faces)
        if count + members >= len(faces):
            continue
        test_families.add(families[k])
        count += members
    test = [i for i, f in enumerate(faces) if f.family in test_families]
    train = [i for i, f in enumerate(faces) if f.family not in test_families]
    if not test or not train:  # a single family: split its faces instead
        test, train = [len(faces) - 1], list(range(len(faces) - 1))
    return train, test


class _Renderer:
    def __init__(self, faces: list[Face], image_size: int):
        from PIL import ImageFont

        self._image_font = ImageFont
        self.faces = faces
        self.size = image_size
        self.canvas = 2 * image_size
        self._fonts: dict[tuple[int, int], object] = {}

    def font(self, face: int, px: int):
        key = (face, px)
        if key not in self._fonts:
            f = self.faces[face]
            self._fonts[key] = self._image_font.truetype(f.path, px, index=f.index)
        return self._fonts[key]

    def render(self, char: str, face: int, scale: float, angle: float, dx: float, dy: float):
        from PIL import Image, ImageDraw

        c = self.canvas
        font = self.font(face, max(4, int(round(scale * c))))
        img = Image.new("L", (c, c), 0)
        left, top, right, bottom = ImageDraw.Draw(img).textbbox((0, 0), char, font=font)
        x = (c - (right - left)) / 2 - left + dx * c
        y = (c - (bottom - top)) / 2 - top + dy * c
        ImageDraw.Draw(img).text((x, y), char, fill=255, font=font)
        if angle:
            img = img.rotate(angle, resample=Image.BILINEAR, fillcolor=0)
        return np.asarray(img.resize((self.size, self.size), Image.BOX), dtype=np.uint8)


def _render_split(renderer, chars, face_ids, per_class, rng):
    n = len(chars) * per_class
    x = np.zeros((n, renderer.size, renderer.size), dtype=np.uint8)
    y = np.zeros((n,), dtype=np.int32)
    k = 0
    for label, char in enumerate(chars):
        order = rng.permutation(len(face_ids))
        for j in range(per_class):
            face = face_ids[order[j % len(face_ids)]]
            scale = rng.uniform(0.62, 0.85)
            angle = rng.uniform(-10.0, 10.0)
            dx, dy = rng.uniform(-0.06, 0.06, size=2)
            x[k] = renderer.render(char, face, scale, angle, dx, dy)
            y[k] = label
            k += 1
    return x, y


def default_cache_dir() -> str:
    base = os.environ.get("MRL_DATA_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mrl_keras"
    )
    return os.path.join(base, "cjk")


def build_cjk(
    num_classes: int = 1000,
    image_size: int = 32,
    train_per_class: int = 40,
    test_per_class: int = 10,
    seed: int = 0,
    fonts: str | list[str] | None = None,
    test_fraction: float = 0.2,
    cache_dir: str | None = None,
    verbose: bool = False,
    class_offset: int = 0,
) -> dict[str, np.ndarray]:
    """Builds (or loads from cache) the many-class CJK benchmark.

    Args:
        num_classes: int. Number of characters (classes). Defaults to 1000.
        image_size: int. Side of the square grayscale images. Defaults to 32.
        train_per_class: int. Train images per class (train faces). Defaults to 40.
        test_per_class: int. Test images per class (unseen test faces). Defaults to 10.
        seed: int. Seeds the face split and every random choice. Defaults to 0.
        fonts: see `available_faces`. Defaults to every installed face of `FACES`.
        test_fraction: float. Share of faces kept for test. Defaults to 0.2.
        cache_dir: str. Where the `.npz` is cached. Defaults to `$MRL_DATA_DIR/cjk` or
            `~/.cache/mrl_keras/cjk`. `""` disables the cache.
        verbose: bool. Print progress.
        class_offset: int. Skip the first `class_offset` covered characters: with the same
            seed and fonts, `class_offset=1000` gives characters no 1,000-class model has seen
            (the novel classes of the few-shot evaluation), rendered from the same train and
            test faces. Labels start at 0. Defaults to 0.

    Returns:
        dict with `x_train` (n, s, s) uint8, `y_train` int32, `x_test`, `y_test`, `chars`
        (the class names), `faces` (JSON list of the faces and their split).

    Raises:
        ValueError: for bad arguments, missing fonts or too few covered characters.
    """
    for name, value in (
        ("num_classes", num_classes),
        ("image_size", image_size),
        ("train_per_class", train_per_class),
        ("test_per_class", test_per_class),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"Expected a positive int {name}. Received: {name}={value!r}")
    if isinstance(class_offset, bool) or not isinstance(class_offset, int) or class_offset < 0:
        raise ValueError(f"Expected an int class_offset >= 0. Received: {class_offset!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"Expected 0 < test_fraction < 1. Received: test_fraction={test_fraction}")
    faces = available_faces(fonts)
    train_ids, test_ids = split_faces(faces, test_fraction, seed)
    described = [
        {
            "path": f.path,
            "index": f.index,
            "family": f.family,
            "size": os.path.getsize(f.path),
            "split": "test" if i in test_ids else "train",
        }
        for i, f in enumerate(faces)
    ]
    key = json.dumps(
        [
            CACHE_FORMAT,
            num_classes,
            image_size,
            train_per_class,
            test_per_class,
            seed,
            test_fraction,
            described,
        ],
        sort_keys=True,
    )
    if class_offset:
        key += f"|offset={class_offset}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    cache_path = (
        os.path.join(
            cache_dir,
            f"cjk-{num_classes}c{f'+{class_offset}' if class_offset else ''}-{image_size}px-"
            f"{digest}.npz",
        )
        if cache_dir
        else ""
    )
    if cache_path and os.path.exists(cache_path):
        with np.load(cache_path) as data:
            return {k: data[k] for k in data.files}

    chars = select_characters(faces, class_offset + num_classes)[class_offset:]
    if verbose:
        print(
            f"[cjk] rendering {num_classes} classes x ({train_per_class} train from "
            f"{len(train_ids)} faces + {test_per_class} test from {len(test_ids)} faces)",
            flush=True,
        )
    rng = np.random.default_rng(seed)
    renderer = _Renderer(faces, image_size)
    x_train, y_train = _render_split(renderer, chars, train_ids, train_per_class, rng)
    x_test, y_test = _render_split(renderer, chars, test_ids, test_per_class, rng)
    result = {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "chars": np.array(chars),
        "faces": np.array(json.dumps(described)),
    }
    if cache_path:
        os.makedirs(cache_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".npz.tmp")
        os.close(fd)
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **result)
        os.replace(tmp, cache_path)
    return result
