"""Recall cap of each rerank store dtype: rerank the exact full-d top-100 with the store's
decoded values and compare the top 10 with the exact float32 top 10 (only the store's precision
can lose anything). Real CJK embeddings (the first 200,000 of `benchmarks/cjk_corpus.py`'s
corpus, when it is cached) and the generator family (`--n` x `--d`, `--classes`).

    python -m benchmarks.store_recall                                   # 20,000 x 256, 500 classes
    python -m benchmarks.store_recall --n 200000 --d 2048 --classes 1000 --no-cjk
    python -m benchmarks.store_recall --cjk-model /work/runs/cjk1000_d2048/s0/mrl/model.keras \
        --cjk-only                                             # the d = 2048 real corpus
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks import cjk_corpus, synthetic
from benchmarks.common import DEFAULT_CACHE
from benchmarks.contenders import exact_topk
from mrl_keras.serving.retrieval.rerank import PrefixReranker
from mrl_keras.serving.retrieval.store_codecs import from_bfloat16_bits, to_bfloat16_bits
from mrl_keras.serving.retrieval.store_int8 import decode_rows, encode_int8, int8_scales


def check(name, db, q):
    gt = exact_topk(db, q, 10)
    cand = exact_topk(db, q, 100)  # the exact top-100 at full d: only the store's precision matters
    out = [name]
    for kind in ("float32", "bfloat16", "int8"):
        if kind == "float32":
            st, sc, dec = db, None, db
        elif kind == "bfloat16":
            st = to_bfloat16_bits(db)
            sc = None
            dec = from_bfloat16_bits(st)
        else:
            sc = int8_scales(db, db.shape[1])
            st = encode_int8(db, sc)
            dec = decode_rows(st, sc)
        norms = np.linalg.norm(dec, axis=1, keepdims=True).astype(np.float32)
        r = PrefixReranker(st, norms, (db.shape[1],), scales=sc)
        rows, scores, _ = r.rerank(q, cand, np.ones(cand.shape, bool), [(db.shape[1], 10)])
        rec = np.mean(
            [len(set(a) & set(b)) / 10 for a, b in zip(rows.tolist(), gt.tolist(), strict=True)]
        )
        out.append(f"{kind} {rec:.4f}")
    print(" | ".join(out), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.store_recall", description=__doc__)
    p.add_argument("--n", type=int, default=20_000, help="family: rows")
    p.add_argument("--d", type=int, default=256, help="family: dimension")
    p.add_argument("--classes", type=int, default=500, help="family: classes")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--no-cjk", action="store_true", help="skip the real CJK embeddings")
    p.add_argument("--cjk-only", action="store_true", help="only the real CJK embeddings")
    p.add_argument(
        "--cjk-model",
        type=Path,
        default=cjk_corpus.DEFAULT_MODEL,
        help="the model whose cached CJK corpus to read (default: cjk_corpus.DEFAULT_MODEL)",
    )
    args = p.parse_args(argv)
    if args.no_cjk and args.cjk_only:
        p.error("--no-cjk and --cjk-only exclude each other")
    if min(args.n, args.d, args.classes, args.queries) < 1 or args.n < 100:
        p.error("--n must be >= 100 and --d, --classes, --queries >= 1")
    if not args.no_cjk:
        try:
            db, _labels, q, _ql, _st = cjk_corpus.load_corpus(DEFAULT_CACHE, 1100, args.cjk_model)
        except (FileNotFoundError, OSError, ValueError) as e:
            print(f"CJK real: not cached here ({e}); build it with benchmarks.cjk_corpus")
        else:
            sub = np.ascontiguousarray(db[:200000])
            check(f"CJK real {len(sub) // 1000}k x {sub.shape[1]}", sub, q[:500])
    if args.cjk_only:
        return 0
    shape = f"{args.n:,} x {args.d}"
    for noise in (0.8, 1.6):
        for a in (0.6, 1.2, 2.0):
            x, _ = synthetic.generate(args.n, args.d, args.classes, alpha=a, noise=noise)
            qq, _ = synthetic.generate(
                args.queries,
                args.d,
                args.classes,
                alpha=a,
                noise=noise,
                stream=synthetic.QUERY_STREAM,
            )
            check(f"family alpha={a} noise={noise} {shape}", x, qq)
    return 0


if __name__ == "__main__":
    sys.exit(main())
