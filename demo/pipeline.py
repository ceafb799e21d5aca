"""The demo pipeline: the whole life of a Matryoshka model on one machine.

train -> evaluate every prefix -> calibrate the cascade on the holdout -> export a versioned
SavedModel -> build the adaptive index over the train set -> measure adaptive retrieval ->
start the HTTP service and send it real requests -> write the report. `--full` also trains the
MRL-E and fixed-feature baselines and sweeps every (D_s, D_r) pair (the paper's experiments).

Over 400 lines because it is one `Pipeline` whose stages share its state (runs, model,
holdout, export, index); each stage is a method a few dozen lines long.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from typing import Any

import numpy as np

from mrl_keras.demo.demo_config import DemoConfig
from mrl_keras.demo.progress import Progress, StageError

REPORT_FORMAT_VERSION = 1


def stage_names(config: DemoConfig) -> list[str]:
    names = ["data", "train"]
    if config.full:
        names.append("baselines")
    names += ["evaluate", "calibrate", "export", "index", "retrieval", "service", "report"]
    return names


def _embed(backend, x: np.ndarray, dim: int, batch: int = 1024) -> np.ndarray:
    parts = [backend.embed(x[i : i + batch], dim).embeddings for i in range(0, len(x), batch)]
    return np.concatenate(parts).astype(np.float32)


def _cascade(backend, x: np.ndarray, batch: int = 1024):
    classes, dims_used = [], []
    for i in range(0, len(x), batch):
        result = backend.classify_cascade(x[i : i + batch])
        classes.append(np.asarray(result.classes))
        dims_used.append(np.asarray(result.dims_used))
    return np.concatenate(classes), np.concatenate(dims_used)


def _train_config(config: DemoConfig, mode: str, out: str, epochs: int, fresh: bool):
    from mrl_keras.training import TrainConfig

    return TrainConfig(
        dataset=config.dataset,
        out=out,
        mode=mode,
        backbone="small_resnet",
        d=config.d,
        epochs=epochs,
        ff_epochs=config.ff_epochs if mode == "ff" else None,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        holdout=config.holdout,
        max_train=config.max_train,
        max_test=config.max_test,
        width=config.width,
        blocks=config.blocks,
        stem_stride=config.stem_stride,
        cjk_classes=config.cjk_classes,
        cjk_train_per_class=config.cjk_train_per_class,
        cjk_test_per_class=config.cjk_test_per_class,
        seed=config.seed,
        verbose=0,
        fresh=fresh,
    )


def _evaluation_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    keep = ("method", "dim", "head_top1", "linear_probe_top1", "1nn_top1", "mAP@10", "P@10",
            "flops_per_query", "source")  # fmt: skip
    return [{k: r[k] for k in keep if k in r} for r in result["rows"]]


class DemoRun:
    """One run of the demo: holds the data, paths and results between stages.

    Args:
        config: a `DemoConfig`.
        command: the command line, recorded in the report.
        fresh: start the training runs over instead of resuming them.
    """

    def __init__(self, config: DemoConfig, command: str = "mrl demo", fresh: bool = False):
        self.config = config
        self.command = command
        self.fresh = fresh
        self.out = os.path.abspath(config.out)
        self.progress = Progress(stage_names(config))
        self.paths = {
            "out": self.out,
            "runs": os.path.join(self.out, "runs"),
            "model": os.path.join(self.out, "models", f"{config.dataset}_mrl"),
            "index": os.path.join(self.out, "index"),
            "report": os.path.join(self.out, "report"),
        }
        self.results: dict[str, Any] = {
            "format_version": REPORT_FORMAT_VERSION,
            "command": command,
            "mode": config.mode,
            "dataset": config.dataset,
            "config": config.to_dict(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "paths": {},
        }

    # -- stages ---------------------------------------------------------------------------

    def stage_data(self) -> None:
        from mrl_keras.training import load_data
        from mrl_keras.training.data import to_numpy

        c = self.config
        cjk = {
            "num_classes": c.cjk_classes,
            "train_per_class": c.cjk_train_per_class,
            "test_per_class": c.cjk_test_per_class,
            "image_size": 32,
            "seed": c.seed,
            "fonts": None,
        }
        self.splits = load_data(
            c.dataset,
            holdout=c.holdout,
            seed=c.seed,
            max_train=c.max_train,
            max_test=c.max_test,
            cjk=cjk,
        )
        s = self.splits
        self.x_train, self.y_train = to_numpy(s.train)
        self.x_test, self.y_test = to_numpy(s.test)
        self.results["data"] = {
            "name": s.name,
            "num_train": s.num_train,
            "num_holdout": s.num_holdout,
            "num_test": s.num_test,
            "num_classes": s.num_classes,
            "input_shape": list(s.input_shape),
        }
        self.progress.log(
            f"{s.name}: {s.num_train} train, {s.num_holdout} holdout, {s.num_test} test, "
            f"{s.num_classes} classes, images {s.input_shape}"
        )

    def stage_train(self) -> None:
        from mrl_keras.training import train

        c = self.config
        run_dir = os.path.join(self.paths["runs"], "mrl")
        summary = train(_train_config(c, "mrl", run_dir, c.epochs, self.fresh), data=self.splits)
        self.dims = [int(m) for m in summary["nesting_dims"]]
        self.runs = {"MRL": run_dir}
        self.results["training"] = {"MRL": self._train_summary(summary)}
        self.results["nesting_dims"] = self.dims
        self.results["paths"]["mrl_run"] = run_dir

    def stage_baselines(self) -> None:
        from mrl_keras.training import train

        c = self.config
        mrl_e = os.path.join(self.paths["runs"], "mrl_e")
        summary = train(_train_config(c, "mrl-e", mrl_e, c.epochs, self.fresh), data=self.splits)
        self.runs["MRL-E"] = mrl_e
        self.results["training"]["MRL-E"] = self._train_summary(summary)
        ff = os.path.join(self.paths["runs"], "ff")
        config = _train_config(c, "ff", ff, c.epochs, self.fresh)
        config.dims = tuple(self.dims)
        summary = train(config, data=self.splits)
        self.ff_dir = ff
        self.results["training"]["FF"] = {
            "accuracy": summary["accuracy"],
            "train_seconds": round(sum(r["train_seconds"] for r in summary["runs"].values()), 1),
            "epochs": c.ff_epochs or c.epochs,
        }
        self.results["paths"].update({"mrl_e_run": mrl_e, "ff_run": ff})

    @staticmethod
    def _train_summary(summary: dict[str, Any]) -> dict[str, Any]:
        return {
            "accuracy": summary["accuracy"],
            "train_seconds": summary["train_seconds"],
            "epochs": summary["epochs"],
            "steps": summary["steps"],
        }

    def stage_evaluate(self) -> None:
        from mrl_keras.training import evaluate

        c = self.config
        splits = self.splits
        if c.eval_max_test and c.eval_max_test < splits.num_test:
            splits = dataclasses.replace(
                splits, test=splits.test.take(c.eval_max_test), num_test=c.eval_max_test
            )
        result = evaluate(
            dict(self.runs),
            ff=getattr(self, "ff_dir", None),
            data=splits,
            all_dims=True,
            probe=c.probe,
            probe_epochs=c.probe_epochs,
            seed=c.seed,
            out=os.path.join(self.out, "evaluation"),
        )
        self.results["evaluation"] = {
            "num_train": result["num_train"],
            "num_test": result["num_test"],
            "dims": result["dims"],
            "seconds": result["seconds"],
            "rows": _evaluation_rows(result),
        }

    def stage_calibrate(self) -> None:
        import keras

        import mrl_keras
        from mrl_keras.demo.cascade_eval import cascade_curve
        from mrl_keras.export import head_probabilities

        mrl_keras.register_keras_objects()  # the .keras file holds a MatryoshkaHead
        run_dir = self.runs["MRL"]
        self.model = keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False)
        with np.load(os.path.join(run_dir, "holdout.npz")) as holdout:
            self.x_hold, self.y_hold = holdout["x"], holdout["y"].astype(np.int64)
        hold_probs = head_probabilities(self.model, self.x_hold)
        # The queries of the evaluation stage, so the cascade and the FF heads share test images.
        q = self.config.eval_max_test or len(self.x_test)
        self.x_q, self.y_q = self.x_test[:q], self.y_test[:q]
        self.test_probs = head_probabilities(self.model, self.x_q)
        curve = cascade_curve(hold_probs, self.y_hold, self.test_probs, self.y_q, self.dims)
        self.results["cascade"] = {"holdout_size": int(len(self.y_hold)), **curve}

    def stage_export(self) -> None:
        from mrl_keras.demo.cascade_eval import cascade_on
        from mrl_keras.export import export_saved_model
        from mrl_keras.serving import LocalModel

        exported = export_saved_model(
            self.model,
            self.paths["model"],
            calibration_data=(self.x_hold, self.y_hold),
            model_name=f"{self.config.dataset}_mrl",
            class_names=self.splits.class_names,
        )
        self.exported = exported
        self.progress.log(f"exported version {exported.version} to {exported.path}")
        calibration = exported.calibration.to_dict()
        self.backend = LocalModel(self.paths["model"])
        classes, dims_used = _cascade(self.backend, self.x_q)
        reference = cascade_on(self.test_probs, self.y_q, calibration["thresholds"], self.dims)
        self.results["cascade"]["calibration"] = {
            k: calibration[k]
            for k in ("thresholds", "expected_dim", "accuracy", "full_dim_accuracy",
                      "target_accuracy", "dim_fractions", "search", "confidence",
                      "accuracy_lower_bound", "cv_accuracy", "cv_full_dim_accuracy",
                      "cv_expected_dim", "cv_folds")
        }  # fmt: skip
        self.results["cascade"]["test"] = {
            "accuracy": float(np.mean(classes == self.y_q)),
            "expected_dim": float(np.mean(dims_used)),
            "full_dim_accuracy": float(np.mean(self.test_probs[:, -1].argmax(-1) == self.y_q)),
            "numpy_reference_accuracy": reference["accuracy"],
            "num_test": int(len(self.y_q)),
            "dim_fractions": {str(m): float(np.mean(dims_used == m)) for m in self.dims},
        }
        self.results["export"] = {
            "path": exported.path,
            "version": exported.version,
            "signatures": list(exported.signatures),
        }
        self.results["paths"]["saved_model"] = exported.path

    def stage_index(self) -> None:
        from mrl_keras.serving import build_index

        c = self.config
        info = self.backend.info()
        self.d = int(info.embedding_dim)
        self.z_train = _embed(self.backend, self.x_train, self.d)
        self.z_test = _embed(self.backend, self.x_test, self.d)
        build_index(
            self.paths["index"],
            self.z_train,
            shortlist_dim=c.shortlist_dim,
            model_name=info.name,
            model_version=info.version,
        )
        self.results["index"] = {
            "path": self.paths["index"],
            "count": int(len(self.z_train)),
            "shortlist_dim": c.shortlist_dim,
            "rerank_dim": self.d,
            "model_version": int(info.version),
        }
        self.results["paths"]["index"] = self.paths["index"]

    def stage_retrieval(self) -> None:
        from mrl_keras.demo.retrieval_eval import measure_retrieval

        c = self.config
        shortlist_dims = [m for m in self.dims if m < self.d] if c.full else [c.shortlist_dim]
        q = c.eval_max_test or len(self.z_test)
        self.results["retrieval"] = measure_retrieval(
            self.z_train,
            self.y_train,
            self.z_test[:q],
            self.y_test[:q],
            self.dims,
            os.path.join(self.out, "retrieval_tmp"),
            shortlist_dims,
            shortlist_size=c.shortlist_size,
            log=self.progress.log,
        )
        self.results["retrieval"]["demo_shortlist_dim"] = c.shortlist_dim

    def stage_service(self) -> None:
        from mrl_keras.demo.service_run import exercise_service

        self.results["service"] = exercise_service(self)

    # -- driver ---------------------------------------------------------------------------

    def run(self) -> int:
        """Runs every stage; returns the exit status (0 when every stage succeeded)."""
        c = self.config
        os.makedirs(self.out, exist_ok=True)
        p = self.progress
        p.log(
            f"{c.mode} on {c.dataset}: writing to {self.out} "
            f"({len(p.stages)} stages; --quick is the CI-sized run)"
        )
        plan = [
            ("data", "load the dataset and carve the holdout split", self.stage_data),
            ("train", f"train an MRL model ({c.epochs} epoch(s), d={c.d})", self.stage_train),
            ("baselines", "train MRL-E and the fixed-feature (FF) baselines", self.stage_baselines),
            ("evaluate", "evaluate every prefix (head, linear probe, 1-NN, mAP@10) and "
                         "the SVD / random-feature baselines", self.stage_evaluate),
            ("calibrate", "learn the cascade thresholds on the holdout set", self.stage_calibrate),
            ("export", "export a versioned SavedModel with per-prefix signatures",
             self.stage_export),
            ("index", "embed the train set and build the adaptive index", self.stage_index),
            ("retrieval", "adaptive retrieval and funnel vs single-shot search",
             self.stage_retrieval),
            ("service", "start the HTTP service and send it search and classify requests",
             self.stage_service),
        ]  # fmt: skip
        failed: StageError | None = None
        for name, what, fn in plan:
            if name not in p.stages:
                continue
            if name == "service" and not c.service:
                p.skip("service", "--no-service")
                self.results["service"] = {"status": "skipped", "reason": "--no-service"}
                continue
            try:
                with p.stage(name, what):
                    fn()
            except StageError as e:
                failed = e
                p.log(f"FAILED {e}")
                break
        self.results["stages"] = {
            name: {"status": p.status[name], "seconds": p.timings.get(name)} for name in p.stages
        }
        self.results["total_seconds"] = round(p.elapsed(), 1)
        self.results["status"] = "failed" if failed else "ok"
        if failed:
            self.results["failure"] = {"stage": failed.stage, "reason": failed.reason}
        with p.stage("report", "write report.md, report.html, report.json and the plots"):
            self._write_report()
        self._print_summary()
        return 1 if failed else 0

    def _write_report(self) -> None:
        from mrl_keras.demo.report import write_report

        self.results["paths"]["report"] = self.paths["report"]
        self.results["stages"]["report"] = {"status": "ok", "seconds": None}
        write_report(self.results, self.paths["report"])

    def _print_summary(self) -> None:
        from mrl_keras.demo.report import summary_lines

        print("", flush=True)
        for line in summary_lines(self.results):
            print(line, flush=True)


def run_demo(config: DemoConfig, command: str = "mrl demo", fresh: bool = False) -> int:
    """Runs the demo described by `config`; returns the exit status (non-zero on failure)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t0 = time.time()
    status = DemoRun(config, command=command, fresh=fresh).run()
    print(f"[mrl demo] finished with status {status} in {time.time() - t0:.0f}s", flush=True)
    return status


def load_report(path: str) -> dict[str, Any]:
    """Reads a `report.json` (a report directory or the file)."""
    if os.path.isdir(path):
        path = os.path.join(path, "report.json")
    with open(path) as f:
        return json.load(f)
