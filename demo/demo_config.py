"""The demo's configuration: sizes of every stage, with the `--quick` and `--full` presets."""

from __future__ import annotations

import dataclasses
from typing import Any

DATASETS = ("fashion_mnist", "cjk")


@dataclasses.dataclass
class DemoConfig:
    """Configuration of one `mrl demo` run.

    Args:
        dataset: `fashion_mnist` or `cjk` (the many-class benchmark).
        out: output folder (runs, SavedModels, index, report).
        quick: CI-sized preset (tiny subset, one epoch).
        full: the reproduction: also trains MRL-E and the fixed-feature (FF) baselines and
            sweeps adaptive retrieval over every (D_s, D_r) pair.
        service: run the HTTP service stage (start `mrl serve`, send requests, stop it).
        epochs: MRL (and MRL-E) epochs. ff_epochs: epochs of each FF model.
        d: embedding width. width, stem_stride, blocks: `small_resnet` options.
        batch_size: global batch size. learning_rate: AdamW peak learning rate.
        max_train: train subset (after the holdout). holdout: holdout examples (calibration).
        max_test: test subset (queries of every evaluation).
        eval_max_test: test queries of the per-prefix evaluation (1-NN, mAP@k, probe) and of
            of the cascade and retrieval measurements (the first ones of the test split);
            None = all.
        probe: run the linear probe. probe_epochs: its epochs.
        shortlist_dim: `D_s` of the demo's index. shortlist_size: `K`.
        service_queries: test images sent to the service (search and classify).
        cjk_classes, cjk_train_per_class, cjk_test_per_class: the many-class benchmark's size.
        seed: seeds everything.
    """

    dataset: str = "fashion_mnist"
    out: str = "runs/demo"
    quick: bool = False
    full: bool = False
    service: bool = True
    epochs: int = 2
    ff_epochs: int | None = None
    d: int = 128
    width: int = 16
    stem_stride: int = 2
    blocks: int = 1
    batch_size: int = 128
    learning_rate: float = 2e-3
    max_train: int | None = None
    holdout: int = 6000
    max_test: int | None = None
    eval_max_test: int | None = 1000
    probe: bool = True
    probe_epochs: int = 5
    shortlist_dim: int = 16
    shortlist_size: int = 200
    service_queries: int = 512
    cjk_classes: int = 1000
    cjk_train_per_class: int = 40
    cjk_test_per_class: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(
                f"Unknown demo dataset {self.dataset!r}. Expected one of {DATASETS} "
                "(`cjk` is the many-class benchmark)."
            )
        for name in ("epochs", "d", "width", "batch_size", "shortlist_dim", "shortlist_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected a positive int {name}. Received: {name}={value!r}")
        if self.d < 8 or self.d & (self.d - 1):
            raise ValueError(f"Expected d a power of two >= 8. Received: d={self.d}")
        if not 8 <= self.shortlist_dim < self.d:
            raise ValueError(
                f"Expected 8 <= shortlist_dim < d={self.d}. Received: shortlist_dim="
                f"{self.shortlist_dim}"
            )

    @property
    def mode(self) -> str:
        return ("full" if self.full else "demo") + ("-quick" if self.quick else "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Sizes per (dataset, preset). Measured on 2 shared CPU cores: see docs/REPRODUCTION.md.
PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("fashion_mnist", "demo"): {},
    ("fashion_mnist", "quick"): {
        "epochs": 1,
        "ff_epochs": 1,
        "d": 32,
        "width": 8,
        "batch_size": 32,
        "max_train": 4000,
        "holdout": 500,
        "max_test": 500,
        "eval_max_test": 400,  # fewer than the test split: the query-subset path is exercised
        "probe_epochs": 5,
        "shortlist_dim": 8,
        "shortlist_size": 100,
        "service_queries": 64,
    },
    ("fashion_mnist", "full"): {"epochs": 2, "ff_epochs": 2, "eval_max_test": 2000},
    ("cjk", "demo"): {"d": 128, "epochs": 8, "batch_size": 64, "cjk_train_per_class": 20,
                      "holdout": 2000, "probe": False},
    ("cjk", "quick"): {
        "epochs": 1,
        "ff_epochs": 1,
        "d": 32,
        "width": 8,
        "batch_size": 64,
        "cjk_classes": 100,
        "cjk_train_per_class": 20,
        "cjk_test_per_class": 5,
        "holdout": 200,
        "eval_max_test": None,
        "probe_epochs": 3,
        "shortlist_dim": 8,
        "shortlist_size": 100,
        "service_queries": 64,
    },
    ("cjk", "full"): {"ff_epochs": 8, "eval_max_test": 2000},
}  # fmt: skip


def make_config(
    dataset: str = "fashion_mnist", quick: bool = False, full: bool = False, **overrides: Any
) -> DemoConfig:
    """The preset for `dataset` (`--quick`, `--full`, or the default demo), then `overrides`.

    A `cjk` run is always a reproduction run (`full`): the many-class benchmark exists to show
    the baselines falling off at low dims.
    """
    if dataset not in DATASETS:
        raise ValueError(
            f"Unknown demo dataset {dataset!r}. Expected one of {DATASETS} "
            "(`cjk` is the many-class benchmark)."
        )
    full = full or dataset == "cjk"
    values: dict[str, Any] = {}
    values.update(PRESETS[(dataset, "demo")])
    if full:
        values.update(PRESETS[(dataset, "full")])
    if quick:
        values.update(PRESETS[(dataset, "quick")])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in overrides and "ff_epochs" not in overrides:
        overrides["ff_epochs"] = overrides["epochs"]  # baselines train as long as MRL
    values.update(overrides)
    return DemoConfig(dataset=dataset, quick=quick, full=full, **values)
