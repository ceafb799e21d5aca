"""`mrl train` and `mrl evaluate`: parse flags into a config, pick a strategy, call the Python API."""

from __future__ import annotations

import argparse
import os

from mrl_keras.cli_parser import Parser, fail


def _dims(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from e


# The parser and exit convention of every `mrl` command (one line, exit status 2).
_Parser = Parser
_fail = fail


def train_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mrl train",
        description="Train an MRL, MRL-E or fixed-feature (ff) model. Rerunning the same command "
        "resumes a killed run from OUT/backup; --fresh starts over.",
    )
    p.add_argument(
        "--dataset",
        default="fashion_mnist",
        help="fashion_mnist, cjk (many-class benchmark) or a TFDS name",
    )
    p.add_argument("--data-dir", help="IDX folder, TFDS data dir or CJK cache folder")
    p.add_argument("--out", help="run directory (default runs/<dataset>_<mode>)")
    p.add_argument("--mode", default="mrl", choices=["mrl", "mrl-e", "ff"])
    p.add_argument(
        "--backbone", default="small_resnet", choices=["small_resnet", "resnet50", "vit"]
    )
    p.add_argument("--d", type=int, help="embedding width (small_resnet, vit)")
    p.add_argument(
        "--nesting-dims", dest="dims", type=_dims, help="nesting dims / ff widths, e.g. 8,16,32,64"
    )
    p.add_alias("--dims", "--nesting-dims")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--ff-epochs", type=int, help="epochs of each ff model (default --epochs)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size")
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument(
        "--warmup-epochs",
        type=float,
        help="epochs of linear learning-rate warmup before the cosine decay (default: the "
        "backbone's, 1; 0 disables it)",
    )
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--holdout", type=float, default=0.1, help="fraction (<1) or count")
    p.add_argument("--max-train", type=int)
    p.add_argument("--max-test", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--channels", type=int, choices=[1, 3])
    p.add_argument("--augment", default="none", choices=["none", "shift", "shift_flip"])
    p.add_argument("--mixed-precision", action="store_true")
    p.add_argument(
        "--strategy",
        default="auto",
        choices=["auto", "one_device", "mirrored", "multi_worker", "tpu"],
    )
    p.add_argument("--tpu", help="TPU name or address")
    p.add_argument("--init-from", help="a .keras model initialising matching layers")
    p.add_argument("--trainable-layers", type=int, help="train only the last N backbone layers")
    p.add_argument("--fresh", action="store_true", help="delete OUT's previous state first")
    p.add_argument("--width", type=int, help="small_resnet base width (default 32)")
    p.add_argument("--blocks", type=int, help="small_resnet blocks per stage (default 1)")
    p.add_argument("--stem-stride", type=int, help="small_resnet stem stride (default 1)")
    p.add_argument("--depth", type=int, help="vit layers (default 12)")
    p.add_argument("--heads", type=int, help="vit heads (default 12)")
    p.add_argument("--patch-size", type=int, help="vit patch size")
    p.add_argument("--weights", help="resnet50 weights file (default: random init)")
    p.add_argument("--cjk-classes", type=int, default=1000)
    p.add_argument("--cjk-train-per-class", type=int, default=40)
    p.add_argument("--cjk-test-per-class", type=int, default=10)
    p.add_argument("--cjk-image-size", type=int, default=32)
    p.add_argument("--cjk-fonts", help="'all' (default), 'small' or comma-separated font files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fit-verbosity",
        dest="verbose",
        default="auto",
        choices=["auto", "0", "1", "2"],
        help="Keras fit verbosity (auto: a bar on a terminal, one line per epoch in a log)",
    )
    p.add_alias("--verbose", "--fit-verbosity")
    return p


def train_main(argv: list[str]) -> int:
    args = train_parser().parse_args(argv)
    values = vars(args)
    if values["out"] is None:
        values["out"] = os.path.join("runs", f"{args.dataset}_{args.mode.replace('-', '_')}")
    if values["verbose"] != "auto":
        values["verbose"] = int(values["verbose"])
    holdout = values["holdout"]
    values["holdout"] = int(holdout) if holdout >= 1 else holdout
    try:
        from mrl_keras.training.strategy import select_strategy
        from mrl_keras.training.train import train
        from mrl_keras.training.train_config import TrainConfig

        config = TrainConfig.from_dict(values)
        strategy = select_strategy(config.strategy, config.tpu)
        train(config, strategy)
    except (ValueError, TypeError, OSError) as e:
        return _fail("mrl train", e)
    return 0


def evaluate_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mrl evaluate",
        description="Evaluate every prefix of trained models against the paper's baselines: "
        "head top-1, linear probe, 1-NN, mAP@k / P@k, FLOPs; JSON, markdown and PNG plots.",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[LABEL=]PATH",
        help="run directory or .keras file (repeatable), e.g. MRL-E=runs/x_mrl_e",
    )
    p.add_argument("--ff", help="ff run directory (FF baseline; source of SVD/random features)")
    p.add_argument("--dataset", help="default: the run's config.json")
    p.add_argument("--data-dir")
    p.add_argument("--out", help="output folder (default <first model>/evaluation)")
    p.add_argument("--dims", type=_dims)
    p.add_argument(
        "--all-dims",
        action="store_true",
        help="also every power of two and midpoint (interpolation, Figure 5)",
    )
    p.add_argument("--baselines", default="svd,random", help="svd,random or none")
    p.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    p.add_argument("--probe-epochs", type=int, default=10)
    p.add_argument("--max-train", type=int, help="subsample the database")
    p.add_argument("--max-test", type=int, help="subsample the queries")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--chunk-size", type=int, default=1024, help="queries per 1-NN chunk")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--robustness",
        help="corruptions of the test queries, comma-separated: noise, blur, stroke_thin, "
        "stroke_thick, occlusion, clean, or 'all'; a strength after '@' for noise (sigma), "
        "blur (window) and occlusion (fraction), e.g. noise@0.05,blur@2,occlusion@0.2",
    )
    p.add_argument(
        "--few-shot",
        type=_dims,
        help="shots per novel class, e.g. 1,5,10 (cjk: classes after the trained ones)",
    )
    p.add_argument("--novel-classes", type=int, default=500, help="novel classes of --few-shot")
    return p


def evaluate_main(argv: list[str]) -> int:
    args = evaluate_parser().parse_args(argv)
    models = []
    for spec in args.model:
        label, sep, path = spec.partition("=")
        models.append((label, path) if sep else ("", spec))
    baselines = tuple(b for b in args.baselines.split(",") if b and b != "none")
    unknown = set(baselines) - {"svd", "random"}
    if unknown:
        return _fail(
            "mrl evaluate",
            ValueError(f"Unknown baselines {sorted(unknown)}. Expected svd, random or none."),
        )
    robustness: tuple[str, ...] = ()
    if args.robustness:
        from mrl_keras.training.corruptions import CORRUPTIONS, parse_corruption

        names = [c.strip() for c in args.robustness.split(",") if c.strip()]
        robustness = ("clean", *CORRUPTIONS) if names == ["all"] else tuple(names)
        try:
            for name in robustness:
                parse_corruption(name)
        except ValueError as e:
            return _fail("mrl evaluate", ValueError(f"--robustness: {e}"))
    if args.few_shot and (min(args.few_shot) < 1 or args.novel_classes < 1):
        return _fail(
            "mrl evaluate",
            ValueError(
                "Expected positive --few-shot values and --novel-classes. Received: "
                f"--few-shot {','.join(map(str, args.few_shot))} --novel-classes "
                f"{args.novel_classes}"
            ),
        )
    first = models[0][1] if models else args.ff
    out = args.out or os.path.join(first if first and os.path.isdir(first) else ".", "evaluation")
    try:
        from mrl_keras.training.evaluate import evaluate
        from mrl_keras.training.report import markdown

        result = evaluate(
            models,
            ff=args.ff,
            dataset=args.dataset,
            dims=list(args.dims) if args.dims else None,
            all_dims=args.all_dims,
            baselines=baselines,
            probe=not args.no_probe,
            probe_epochs=args.probe_epochs,
            max_train=args.max_train,
            max_test=args.max_test,
            data_dir=args.data_dir,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            seed=args.seed,
            robustness=robustness,
            few_shot=tuple(args.few_shot or ()),
            novel_classes=args.novel_classes,
            out=out,
        )
    except (ValueError, TypeError, OSError) as e:
        return _fail("mrl evaluate", e)
    print(markdown(result))
    return 0
