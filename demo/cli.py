"""`mrl demo`: parse flags into a `DemoConfig` and run the pipeline."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from mrl_keras.cli_parser import Parser

DESCRIPTION = """\
Run the whole life of a Matryoshka model on this machine: train an MRL model on Fashion-MNIST,
evaluate every prefix, calibrate the cascade on the holdout, export a versioned SavedModel,
build the adaptive index over the train set, start the HTTP service on a free loopback port,
send it real search and classify requests, and write a report (report.md, report.html,
report.json and plots mirroring the paper's Figures 2, 3, 5, 6, 7 and 8).

  mrl demo                      # the main job, about 5 minutes on 2 CPU cores
  mrl demo --quick              # CI-sized: tiny subset, one epoch
  mrl demo --full               # reproduction: also MRL-E, FF baselines, every (D_s, D_r)
  mrl demo --dataset cjk        # reproduction on the many-class CJK benchmark
"""


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="mrl demo",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        default="fashion_mnist",
        choices=["fashion_mnist", "cjk"],
        help="fashion_mnist (default) or cjk, the many-class benchmark (implies --full)",
    )
    p.add_argument("--quick", action="store_true", help="CI-sized run: tiny subset, one epoch")
    p.add_argument(
        "--full",
        action="store_true",
        help="reproduction: also train MRL-E and FF baselines, sweep every (D_s, D_r)",
    )
    p.add_argument("--out", help="output folder (default runs/demo-<dataset>-<mode>)")
    p.add_argument("--epochs", type=int, help="MRL and MRL-E epochs (default per preset)")
    p.add_argument("--ff-epochs", type=int, help="epochs of each FF model")
    p.add_argument("--d", type=int, help="embedding width, a power of two")
    p.add_argument("--width", type=int, help="small_resnet base width")
    p.add_argument("--max-train", type=int, help="use at most this many train images")
    p.add_argument("--max-test", type=int, help="use at most this many test images")
    p.add_argument("--shortlist-dim", type=int, help="D_s of the demo's index")
    p.add_argument("--seed", type=int, help="seed of data order, holdout and initialisation")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="retrain from scratch instead of resuming runs in --out",
    )
    p.add_argument(
        "--no-service",
        action="store_true",
        help="skip the HTTP service stage (reproduction runs only; recorded as "
        "skipped in the report)",
    )
    p.add_argument(
        "--render",
        metavar="REPORT_DIR",
        help="only re-render report.md, report.html and plots from REPORT_DIR/report.json",
    )
    return p  # fmt: skip


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.render:
        return _render(args.render)
    from mrl_keras.demo.demo_config import make_config

    full = args.full or args.dataset == "cjk"
    mode = ("full" if full else "demo") + ("-quick" if args.quick else "")
    out = args.out or os.path.join("runs", f"demo-{args.dataset}-{mode}")
    try:
        config = make_config(
            args.dataset,
            quick=args.quick,
            full=full,
            out=out,
            epochs=args.epochs,
            ff_epochs=args.ff_epochs,
            d=args.d,
            width=args.width,
            max_train=args.max_train,
            max_test=args.max_test,
            shortlist_dim=args.shortlist_dim,
            seed=args.seed,
            service=not args.no_service,
        )
    except (ValueError, TypeError) as e:
        print(f"mrl demo: {e}", file=sys.stderr)
        return 2
    from mrl_keras.demo.pipeline import run_demo

    command = "mrl demo" + ("" if not argv else " " + shlex.join(argv))
    return run_demo(config, command=command, fresh=args.fresh)


def _render(path: str) -> int:
    from mrl_keras.demo.pipeline import load_report
    from mrl_keras.demo.report import write_report

    try:
        results = load_report(path)
    except (OSError, ValueError) as e:
        print(f"mrl demo: cannot read {path}/report.json: {e}", file=sys.stderr)
        return 2
    out = path if os.path.isdir(path) else os.path.dirname(path) or "."
    paths = write_report(results, out)
    print(f"[mrl demo] wrote {paths['markdown']} and {paths['html']}")
    return 0
