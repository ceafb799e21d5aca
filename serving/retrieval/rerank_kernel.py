"""A compiled gather-and-dot kernel for the rerank, built with the system C compiler on first use.

NumPy's gather (`np.take` of candidate rows) copies one random row at a time: each row is a
DRAM miss (~100-250 ns here) that the next row's copy does not overlap. The kernel walks the
flat candidate list of a whole batch of queries and, while it scores candidate `t`, prefetches
the first 256 bytes of candidate `t + far`'s slice into L2 (far ~ 64 KB of rows ahead, 6-64
candidates: the L2 streamer then fetches the rest of the row without holding the L1 fill
buffers) and every line of candidate `t + 1` into L1, so many misses are in flight (1.5x fewer
ns a 4 KB row than prefetching every line ~12 KB ahead: benchmarks/RESULTS.md); it widens bfloat16
(a shift) and int8 (a convert) in registers and accumulates the dot product (and the squared
norm when asked) without writing the gathered rows anywhere.

The C source is below; it is compiled once per machine into
`$XDG_CACHE_HOME/mrl_keras/kernels/` (`cc -O3 -march=native`) and loaded with ctypes. No
compiler, a failed build, or `MRL_RERANK_KERNEL=numpy` leave `available()` False and the
reranker on its NumPy path (same results up to float rounding).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

__all__ = ["available", "gather_dot"]

_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#define NEAR 1
#define BLOCK 4
#define FAR_BYTES 65536
#define FAR_LINES_BYTES 256

static inline float bf16(uint16_t u) { uint32_t w = ((uint32_t)u) << 16; float f; memcpy(&f, &w, 4); return f; }

/* Two prefetch distances: the first FAR_LINES_BYTES of candidate t + far go to L2 (prefetcht2;
   the L2 streamer follows the row from there, so a wide row does not hold the L1 fill buffers
   with one prefetch per line), and every line of candidate t + NEAR is pulled into L1
   (prefetcht0). far is ~FAR_BYTES of rows ahead (6..64 candidates). Candidates are scored a
   block of BLOCK at a time after the block's prefetches are issued. */
#define PREFETCH(T, tt, HINT, LIMIT)                                                       \
    do {                                                                                   \
        const char* p = (const char*)(store + rows[tt] * stride + start);                  \
        for (int64_t b = 0; b < (LIMIT); b += 64) __builtin_prefetch(p + b, 0, HINT);      \
    } while (0)

#define KERNEL(NAME, T, LOAD)                                                              \
void NAME(const T* store, int64_t stride, const int64_t* rows, int64_t n, int64_t k,       \
          const float* q, int64_t qstride, int64_t start, int64_t width,                    \
          const float* scales, float* dots, float* sumsq) {                                 \
    int64_t total = n * k, bytes = width * (int64_t)sizeof(T);                              \
    int64_t far = bytes > 0 ? FAR_BYTES / bytes : 64;                                       \
    int64_t head = bytes < FAR_LINES_BYTES ? bytes : FAR_LINES_BYTES;                       \
    if (far < 6) far = 6;                                                                   \
    if (far > 64) far = 64;                                                                 \
    for (int64_t t = 0; t < total && t < far; t++) PREFETCH(T, t, 1, head);                 \
    for (int64_t t0 = 0; t0 < total; t0 += BLOCK) {                                         \
        for (int64_t t = t0; t < t0 + BLOCK; t++) {                                         \
            if (t + far < total) PREFETCH(T, t + far, 1, head);                             \
            if (t + NEAR < total) PREFETCH(T, t + NEAR, 3, bytes);                          \
        }                                                                                   \
        for (int64_t t = t0; t < t0 + BLOCK && t < total; t++) {                            \
            const T* z = store + rows[t] * stride + start;                                  \
            const float* qq = q + (t / k) * qstride;                                        \
            float acc = 0.0f, ss = 0.0f;                                                    \
            if (sumsq) {                                                                    \
                for (int64_t j = 0; j < width; j++) {                                       \
                    float v = LOAD(z[j]);                                                   \
                    acc += qq[j] * v;                                                       \
                    float w = scales ? v * scales[j] : v;                                   \
                    ss += w * w;                                                            \
                }                                                                           \
                sumsq[t] = ss;                                                              \
            } else {                                                                        \
                for (int64_t j = 0; j < width; j++) acc += qq[j] * LOAD(z[j]);              \
            }                                                                               \
            dots[t] = acc;                                                                  \
        }                                                                                   \
    }                                                                                       \
}

#define ID(x) ((float)(x))
KERNEL(gather_dot_f32, float, ID)
KERNEL(gather_dot_bf16, uint16_t, bf16)
KERNEL(gather_dot_i8, int8_t, ID)
"""

_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-shared", "-fPIC"]
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_FUNCS = {
    np.dtype(np.float32): "gather_dot_f32",
    np.dtype(np.uint16): "gather_dot_bf16",
    np.dtype(np.int8): "gather_dot_i8",
}


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mrl_keras" / "kernels"


def _build() -> ctypes.CDLL | None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    key = hashlib.sha256((_SOURCE + " ".join(_FLAGS) + compiler).encode()).hexdigest()[:16]
    target = _cache_dir() / f"rerank_kernel_{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src, out = Path(tmp) / "k.c", Path(tmp) / "k.so"
            src.write_text(_SOURCE)
            done = subprocess.run(
                [compiler, *_FLAGS, str(src), "-o", str(out)],
                capture_output=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0 or not out.exists():
                return None
            os.replace(out, target)  # atomic: a concurrent loader sees all or nothing
    lib = ctypes.CDLL(str(target))
    for name in _FUNCS.values():
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
    return lib


def _library() -> ctypes.CDLL | None:
    global _lib, _tried
    if os.environ.get("MRL_RERANK_KERNEL", "").lower() == "numpy":
        return None
    if not _tried:
        with _lock:
            if not _tried:
                try:
                    _lib = _build()
                except (OSError, subprocess.SubprocessError):
                    _lib = None
                _tried = True
    return _lib


def available(dtype=None) -> bool:
    """Whether the compiled kernel is there (and handles `dtype`, when given)."""
    return _library() is not None and (dtype is None or np.dtype(dtype) in _FUNCS)


def gather_dot(
    store: np.ndarray,
    rows: np.ndarray,
    queries: np.ndarray,
    start: int,
    stop: int,
    want_sumsq: bool,
    scales: np.ndarray | None = None,
):
    """`(dots, sumsq | None)`, `(n, k)` float32: `<q[start:stop], z_r[start:stop]>` per candidate.

    Args:
        store: C-contiguous `(count, D)` float32, uint16 (bfloat16 bits) or int8 rows (e.g. a
            memory map).
        rows: `(n, k)` row numbers, each in `[0, count)` (not checked here: the caller's).
        queries: `(n, stop - start)` float32, the query columns scored; for int8 already
            multiplied by the scales of those columns.
        start, stop: the columns scored.
        want_sumsq: also return `||z_r[start:stop]||^2` (of `z * scales` for int8).
        scales: the int8 store's scales (used for `sumsq` only).
    """
    lib = _library()
    store = np.asarray(store)
    if lib is None or store.dtype not in _FUNCS or not store.flags.c_contiguous:
        raise ValueError("The compiled rerank kernel does not handle this store (see available()).")
    n, k = rows.shape
    width = stop - start
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.shape != (n, width):
        raise ValueError(f"Expected queries of shape {(n, width)}. Received: {q.shape}")
    dots = np.empty((n, k), np.float32)
    sumsq = np.empty((n, k), np.float32) if want_sumsq else None
    s = None if scales is None else np.ascontiguousarray(scales[start:stop], dtype=np.float32)
    getattr(lib, _FUNCS[store.dtype])(
        store.ctypes.data,
        store.shape[1],
        rows.ctypes.data,
        n,
        k,
        q.ctypes.data,
        width,
        start,
        width,
        None if s is None else s.ctypes.data,
        dots.ctypes.data,
        None if sumsq is None else sumsq.ctypes.data,
    )
    return dots, sumsq
