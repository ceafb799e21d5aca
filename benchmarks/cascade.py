"""The cascade (MRL-AC, paper section 4.2.1) on trained runs: thresholds calibrated on each
run's holdout (`RUN/holdout.npz`, train fonts), applied to the test split (unseen fonts for
CJK), at several accuracy targets, against the full-dimension head on the same test images.

    python -m benchmarks.cascade --runs /work/runs/cjk1000/s0/mrl,/work/runs/cjk1000/s1/mrl \
        --drops 0.5,1,2 --out benchmarks/results/cascade_cjk.json

Prints one table: per target (full-dim holdout accuracy minus `drop` points), the mean and
spread over runs of the test accuracy, the test full-dim accuracy, the expected dimension and
`d / expected dim`. Quality, not speed: no timings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def _load(run: str):
    import keras

    import mrl_keras
    from mrl_keras.training.data import to_numpy
    from mrl_keras.training.evaluate import resolve_model_path
    from mrl_keras.training.train import load_splits
    from mrl_keras.training.train_config import TrainConfig

    model_path, config_path = resolve_model_path(run)
    if config_path is None:
        raise ValueError(f"{run}: no config.json next to the model")
    config = TrainConfig.load(config_path)
    mrl_keras.register_keras_objects()  # the .keras file holds a MatryoshkaHead
    model = keras.saving.load_model(model_path, compile=False)
    with np.load(os.path.join(os.path.dirname(model_path), "holdout.npz")) as h:
        x_hold, y_hold = h["x"], h["y"].astype(np.int64)
    x_test, y_test = to_numpy(load_splits(config).test)
    return model, x_hold, y_hold, x_test, y_test.astype(np.int64)


def measure(run: str, drops: list[float], confidence: float | None) -> dict:
    from mrl_keras.cascade import calibrate_cascade, cascade_predict
    from mrl_keras.export.model_parts import head_probabilities

    model, x_hold, y_hold, x_test, y_test = _load(run)
    dims = tuple(int(m) for m in model.get_layer("matryoshka_head").nesting_dims)
    p_hold = head_probabilities(model, x_hold)
    p_test = head_probabilities(model, x_test)
    full_hold = float(np.mean(p_hold[:, -1].argmax(-1) == y_hold))
    full_test = float(np.mean(p_test[:, -1].argmax(-1) == y_test))
    rows = []
    for drop in drops:
        cal = calibrate_cascade(
            p_hold, y_hold, dims, target_accuracy=max(0.0, full_hold - drop / 100),
            confidence=confidence,
        )  # fmt: skip
        pred = cascade_predict(p_test, cal.thresholds, dims)
        rows.append({
            "drop_points": drop,
            "thresholds": list(cal.thresholds),
            "holdout_accuracy": cal.accuracy,
            "holdout_lower_bound": cal.accuracy_lower_bound,
            "holdout_expected_dim": cal.expected_dim,
            "cv_accuracy": cal.cv_accuracy,
            "cv_expected_dim": cal.cv_expected_dim,
            "test_accuracy": float(np.mean(pred.classes == y_test)),
            "test_full_dim_accuracy": full_test,
            "test_expected_dim": float(np.mean(pred.dims_used)),
            "test_dim_fractions": {str(m): float(np.mean(pred.dims_used == m)) for m in dims},
        })  # fmt: skip
    return {"run": run, "dims": list(dims), "num_holdout": len(y_hold), "num_test": len(y_test),
            "holdout_full_dim_accuracy": full_hold, "rows": rows}  # fmt: skip


def _mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def table(results: list[dict]) -> str:
    d = results[0]["dims"][-1]
    lines = [
        f"| target (holdout full-dim - x points) | test accuracy (%) | test full-dim (%) | "
        f"test - full (points) | expected dim | d / expected dim (d = {d}) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for i, row in enumerate(results[0]["rows"]):
        per = [r["rows"][i] for r in results]
        acc = [100 * p["test_accuracy"] for p in per]
        full = [100 * p["test_full_dim_accuracy"] for p in per]
        diff = [a - f for a, f in zip(acc, full, strict=True)]
        dim = [p["test_expected_dim"] for p in per]
        ratio = [d / e for e in dim]
        lines.append(
            f"| {row['drop_points']:g} | {_mean_sd(acc)} | {_mean_sd(full)} | {_mean_sd(diff)} | "
            f"{_mean_sd(dim)} | {_mean_sd(ratio)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.cascade", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--runs", required=True, help="comma-separated MRL run directories")
    p.add_argument("--drops", default="0.5,1,2", help="accuracy targets: points below full-dim")
    p.add_argument("--confidence", type=float, default=0.95, help="0 for none (exact optimum)")
    p.add_argument("--out", help="JSON file for the results")
    args = p.parse_args(argv)
    try:
        drops = [float(v) for v in args.drops.split(",") if v.strip()]
    except ValueError:
        print(
            f"{p.prog}: --drops expects comma-separated numbers, got {args.drops!r}",
            file=sys.stderr,
        )
        return 2
    start = time.time()
    confidence = args.confidence or None
    results = [measure(run, drops, confidence) for run in args.runs.split(",") if run]
    print(table(results))
    print(f"\n{len(results)} runs, confidence {confidence}, {time.time() - start:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"confidence": confidence, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
