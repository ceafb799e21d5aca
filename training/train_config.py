"""The training configuration: every flag of `mrl train`, as a plain dataclass."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

# Fields that may change between a killed run and its restart without changing the run.
RESTART_FIELDS = ("fresh", "verbose", "strategy", "tpu", "out")


@dataclasses.dataclass
class TrainConfig:
    """Configuration of one training run (`mrl_keras.training.train(config)`).

    Args:
        dataset: `fashion_mnist`, `cjk` or a TFDS name.
        out: run directory (see docs/INTERFACES.md for its layout).
        mode: `mrl`, `mrl-e` or `ff`.
        backbone: `small_resnet`, `resnet50` or `vit`.
        d: embedding width (configurable backbones); default per backbone.
        dims: nesting dims of the head (mrl, mrl-e) or the widths of the ff models; default
            halving d to 8 (12 for the ViT).
        epochs, batch_size (global, over all replicas), learning_rate, weight_decay: optimisation
            (AdamW with a linear warmup, then cosine decay).
        warmup_epochs: epochs of linear learning-rate warmup from 0 to `learning_rate` before the
            cosine decay (fractions allowed; 0 disables it). Default `None`: the backbone's
            default (`mrl_keras.training.backbones.DEFAULT_WARMUP_EPOCHS`, one epoch).
        steps_per_epoch: cap the steps of an epoch (short runs); default the whole train split.
        holdout: fraction or count of train examples kept out (validation, `holdout.npz`).
        max_train, max_test: subset sizes. image_size, channels: resize / grey to RGB.
        augment: `none`, `shift` or `shift_flip`.
        mixed_precision: bfloat16 on CPU/TPU, float16 on GPU; logits and loss stay float32.
        strategy: `auto`, `one_device`, `mirrored`, `multi_worker`, `tpu`. tpu: TPU name.
        init_from: a `.keras` model whose matching layers initialise the new model.
        trainable_layers: with init_from, train only the last N backbone layers (+ head).
        fresh: delete the run directory's previous state and start over.
        ff_epochs: epochs of each ff model (default `epochs`).
        width, blocks, stem_stride: small_resnet options. depth, heads, patch_size: vit.
        weights: resnet50 weights file (default random init).
        cjk_classes, cjk_train_per_class, cjk_test_per_class, cjk_image_size, cjk_fonts:
            the many-class benchmark's builder arguments.
        seed: seeds data order, holdout, initialisation.
        verbose: Keras fit verbosity (`auto`, 0, 1, 2).
    """

    dataset: str = "fashion_mnist"
    out: str = "runs/fashion_mnist_mrl"
    mode: str = "mrl"
    backbone: str = "small_resnet"
    d: int | None = None
    dims: tuple[int, ...] | None = None
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float | None = None
    steps_per_epoch: int | None = None
    data_dir: str | None = None
    holdout: float = 0.1
    max_train: int | None = None
    max_test: int | None = None
    image_size: int | None = None
    channels: int | None = None
    augment: str = "none"
    mixed_precision: bool = False
    strategy: str = "auto"
    tpu: str | None = None
    init_from: str | None = None
    trainable_layers: int | None = None
    fresh: bool = False
    ff_epochs: int | None = None
    width: int | None = None
    blocks: int | None = None
    stem_stride: int | None = None
    depth: int | None = None
    heads: int | None = None
    patch_size: int | None = None
    weights: str | None = None
    cjk_classes: int = 1000
    cjk_train_per_class: int = 40
    cjk_test_per_class: int = 10
    cjk_image_size: int = 32
    cjk_fonts: str | None = None
    seed: int = 0
    verbose: Any = "auto"

    def __post_init__(self):
        if self.dims is not None:
            self.dims = tuple(int(m) for m in self.dims)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected a positive int {name}. Received: {name}={value!r}")
        if self.warmup_epochs is not None and (
            isinstance(self.warmup_epochs, bool)
            or not isinstance(self.warmup_epochs, (int, float))
            or not 0 <= self.warmup_epochs <= 1e6
        ):
            raise ValueError(
                "Expected warmup_epochs >= 0 (0 disables the warmup). Received: "
                f"warmup_epochs={self.warmup_epochs!r}"
            )
        if self.mode not in ("mrl", "mrl-e", "ff"):
            raise ValueError(f"Unknown mode {self.mode!r}. Expected one of ('mrl', 'mrl-e', 'ff').")
        if self.trainable_layers is not None and self.init_from is None:
            raise ValueError("--trainable-layers needs --init-from (a pretrained model to tune).")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["dims"] = list(self.dims) if self.dims else None
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"Unknown training config keys {unknown}. Expected some of {sorted(names)}."
            )
        return cls(**values)

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def run_key(self) -> dict[str, Any]:
        """The fields that define the run (a restart must not change them)."""
        return {k: v for k, v in self.to_dict().items() if k not in RESTART_FIELDS}

    def cjk_options(self) -> dict[str, Any]:
        return {
            "num_classes": self.cjk_classes,
            "train_per_class": self.cjk_train_per_class,
            "test_per_class": self.cjk_test_per_class,
            "image_size": self.cjk_image_size,
            "seed": self.seed,
            "fonts": self.cjk_fonts,
        }

    def backbone_options(self) -> dict[str, Any]:
        keys = ("width", "blocks", "stem_stride", "depth", "heads", "patch_size", "weights")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
