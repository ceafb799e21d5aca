"""ns per reranked row: the NumPy gather against the compiled kernel, per store dtype.

A store of `--n` random unit rows of `--d` dims (float32, bfloat16 bits, int8 with per-dimension
scales), 1,000 queries x 100 candidates drawn uniformly (each a DRAM miss at this size),
`PrefixReranker.rerank` to the top 10 at D_r = d/2 and d, best CPU time of 3 passes, with
`use_kernel=False` (NumPy `take` + matmul, blocked over queries) and `True` (the prefetching
C kernel of `serving/retrieval/rerank_kernel.py`). Both must keep the same rows.

    python -m benchmarks.rerank_gather --n 1000000 --d 512
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from mrl_keras.serving.retrieval import rerank_kernel  # noqa: E402
from mrl_keras.serving.retrieval.rerank import PrefixReranker  # noqa: E402
from mrl_keras.serving.retrieval.store_codecs import to_bfloat16_bits  # noqa: E402
from mrl_keras.serving.retrieval.store_int8 import encode_int8, int8_scales  # noqa: E402


def measure(n: int, d: int, queries: int = 1000, candidates: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((queries, d), dtype=np.float32)
    rows = rng.integers(0, n, (queries, candidates))
    valid = np.ones(rows.shape, bool)
    norms = np.ones((n, 1), np.float32)
    scales = int8_scales(x, d)
    stores = {
        "float32": (x, None),
        "bfloat16": (to_bfloat16_bits(x), None),
        "int8": (encode_int8(x, scales), scales),
    }
    out = []
    for name, (store, s) in stores.items():
        for dim in (d // 2, d):
            ns, kept = [], []
            for kernel in (False, True):
                r = PrefixReranker(store, norms, (d,), scales=s, use_kernel=kernel)
                best = float("inf")
                for _ in range(3):
                    c0 = time.process_time()
                    res = r.rerank(q, rows, valid, [(dim, 10)])
                    best = min(best, time.process_time() - c0)
                ns.append(best / rows.size * 1e9)
                kept.append(np.sort(res[0], axis=1))
            out.append(
                {
                    "store": name,
                    "D_r": dim,
                    "numpy_ns_per_row": ns[0],
                    "kernel_ns_per_row": ns[1],
                    "same_rows": bool(np.array_equal(*kept)),
                    "bytes_per_row": dim * store.dtype.itemsize,
                }
            )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rerank_gather", description=__doc__)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=512)
    args = p.parse_args(argv)
    if args.n < 200 or args.d < 2:
        p.error("--n must be >= 200 and --d >= 2")
    if not rerank_kernel.available():
        print("the compiled kernel is not available here (no C compiler): NumPy only")
    print("| store | D_r | bytes/row | NumPy ns/row | kernel ns/row | speed-up | same rows |")
    print("|---|---|---|---|---|---|---|")
    for r in measure(args.n, args.d):
        print(
            f"| {r['store']} | {r['D_r']} | {r['bytes_per_row']} | {r['numpy_ns_per_row']:.0f} | "
            f"{r['kernel_ns_per_row']:.0f} | {r['numpy_ns_per_row'] / r['kernel_ns_per_row']:.1f}x"
            f" | {r['same_rows']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
