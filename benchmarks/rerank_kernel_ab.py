"""The rerank kernel of this checkout against the one of an earlier commit, in one process.

Both kernels score the same 1,000 queries x 100 uniformly random candidates of a `--n` x `--d`
bfloat16 store (a DRAM miss per row at this size), alternating for `--rounds` rounds; prints the
median ns per row of the bare kernel (`gather_dot`) and of the whole `PrefixReranker.rerank` to
the top 10 at D_r = d, by CPU time. The earlier kernel's module is read with `git show`.

    python -m benchmarks.rerank_kernel_ab --against 7182ab8 --d 512 --n 1000000
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import mrl_keras.serving.retrieval.rerank as rerank_mod  # noqa: E402
from mrl_keras.serving.retrieval import rerank_kernel  # noqa: E402
from mrl_keras.serving.retrieval.rerank import PrefixReranker  # noqa: E402
from mrl_keras.serving.retrieval.store_codecs import to_bfloat16_bits  # noqa: E402

MODULE = "serving/retrieval/rerank_kernel.py"


def load_kernel_at(rev: str):
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        ["git", "show", f"{rev}:{MODULE}"], cwd=root, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"--against {rev!r}: git show failed: {done.stderr.strip()}")
    path = Path(tempfile.mkdtemp()) / "rerank_kernel_earlier.py"
    path.write_text(done.stdout)
    spec = importlib.util.spec_from_file_location("rerank_kernel_earlier", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.available(np.uint16):
        raise SystemExit(f"the kernel of {rev} does not build here")
    return module


def generated_store(n: int, d: int) -> np.ndarray:
    """`(n, d)` bfloat16 bits of random unit rows, in anonymous memory."""
    x = np.random.default_rng(0).standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return to_bfloat16_bits(x)


def index_store(path: Path) -> np.ndarray:
    """The rerank store of the index at `path`, memory-mapped (bfloat16 stores only)."""
    from mrl_keras.serving import AdaptiveIndex

    try:
        index = AdaptiveIndex.load(path, verify=False)
    except (OSError, ValueError) as e:
        raise SystemExit(f"--index {path}: {e}") from None
    store = np.asarray(index.store)
    if store.dtype != np.uint16:
        raise SystemExit(
            f"--index {path}: its store is {index.manifest.get('store_dtype', store.dtype)}; "
            "this benchmark compares bfloat16 kernels"
        )
    return store


def measure(kernels: dict, store: np.ndarray, rounds: int) -> dict[str, dict[str, float]]:
    n, d = store.shape
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1000, d), dtype=np.float32)
    rows = rng.integers(0, n, (1000, 100))
    valid, norms = np.ones(rows.shape, bool), np.ones((n, 1), np.float32)
    times: dict[str, dict[str, list[float]]] = {k: {"kernel": [], "rerank": []} for k in kernels}
    saved = rerank_mod.rerank_kernel
    try:
        for _ in range(rounds):
            for name, module in kernels.items():
                c0 = time.process_time()
                module.gather_dot(store, rows, q, 0, d, False)
                times[name]["kernel"].append(time.process_time() - c0)
                rerank_mod.rerank_kernel = module
                r = PrefixReranker(store, norms, (d,), use_kernel=True)
                c0 = time.process_time()
                r.rerank(q, rows, valid, [(d, 10)])
                times[name]["rerank"].append(time.process_time() - c0)
    finally:
        rerank_mod.rerank_kernel = saved
    return {
        name: {part: float(np.median(v)) / rows.size * 1e9 for part, v in parts.items()}
        for name, parts in times.items()
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rerank_kernel_ab", description=__doc__)
    p.add_argument("--against", default="7182ab8", help="the earlier commit")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--index", type=Path, default=None, help="score this index's store instead")
    args = p.parse_args(argv)
    if args.n < 200 or args.d < 2 or args.rounds < 1:
        p.error("--n must be >= 200, --d >= 2 and --rounds >= 1")
    if not rerank_kernel.available(np.uint16):
        p.error("the compiled kernel is not available here (no C compiler)")
    kernels = {args.against: load_kernel_at(args.against), "this checkout": rerank_kernel}
    if args.index is not None:
        store = index_store(args.index)
        where = f"memory-mapped from {args.index}"
    else:
        store = generated_store(args.n, args.d)
        where = "generated, in anonymous memory"
    n, d = store.shape
    res = measure(kernels, store, args.rounds)
    base = res[args.against]
    print(f"bfloat16 store {n:,} x {d} ({d * 2} bytes a row, {where}), median of {args.rounds}")
    print("| kernel | gather_dot ns/row | GB/s | rerank ns/row | vs earlier (rerank) |")
    print("|---|---|---|---|---|")
    for name, r in res.items():
        print(
            f"| {name} | {r['kernel']:.0f} | {d * 2 / r['kernel']:.1f} | {r['rerank']:.0f} | "
            f"{base['rerank'] / r['rerank']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
