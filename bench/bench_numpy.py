"""NumPy-backend targets of the foundation issue and of issue 13 (a script, not a test).

    python bench/bench_numpy.py              # everything below
    python bench/bench_numpy.py --quick      # the targets, and the grid at 256² and 1024² only
    python bench/bench_numpy.py --no-grid    # the targets only
    NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/bench_numpy.py --cpu
        # one core each, CPU time instead of wall time: a busy machine preempts the
        # threads of every peer at random, but each one's CPU time per call stays put

Prints Markdown tables, every time the best of repeats in one process, peers timed in
turn, a few rounds (see ``best_ms``):

1. The targets: the pure-NumPy fallback against ``scipy.signal.correlate2d`` (≥ 10× at
   1024² k3); the compiled direct loop at 1024² k7 float32 against the float32 matmul peak
   of the same process (≥ 50%), at 4096² k3 against the copy-bandwidth floor (bytes in +
   out over ``np.copyto``'s bandwidth, ≤ 1.3×); float64 1024² k3 against the JAX backend's
   jitted direct (≤ 1.2×); the peak extra memory of a 4096² 3×3 correlation (≤ 2× the
   output).
2. The grid: the direct kernel against the previous direct loop (kept below as the
   baseline) and ``cv2.filter2D`` (valid part of its output, same thread count), float32 and
   float64, kernels 3-15, in ms and GF/s (2·Ho·Wo·kh·kw flops).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import time
import tracemalloc
from collections.abc import Callable, Iterator

import numpy as np
import scipy
from scipy import ndimage, signal

import xcorr
from xcorr import _numba
from xcorr.backends._numpy import _batches, _direct, _in_shares

OK = {True: "pass", False: "MISS"}
REPEAT = 7  # samples per function and round (--repeat)
CLOCK = time.perf_counter  # time.process_time with --cpu
PAUSE_S = 0.2  # before timing a function: other libraries' spinning threads go to sleep


def best_ms(fns: dict[str, Callable[[], object]], repeat: int | None = None,
            budget_s: float = 0.002, rounds: int = 3) -> dict[str, float]:
    """Best time per call (ms) of each function.

    Each function is timed in turn, ``rounds`` times round, ``repeat`` short samples each
    (a sample runs enough calls to take about ``budget_s``; on a busy machine some samples
    run without being preempted), after a pause: the thread pools of BLAS, OpenMP and
    OpenCV spin for a while after a call, and would steal the cores from the next one.
    """
    inner = {}
    for name, fn in fns.items():
        t = CLOCK()
        fn()  # warm-up: compilation, caches
        inner[name] = max(1, int(budget_s / max(CLOCK() - t, 1e-7)))
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(PAUSE_S)
            fn()
            for _ in range(repeat or REPEAT):
                t = CLOCK()
                for _ in range(inner[name]):
                    fn()
                best[name] = min(best[name], (CLOCK() - t) / inner[name] * 1e3)
    return best


def peak_extra(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def threads() -> int:
    if importlib.util.find_spec("numba"):
        import numba

        return numba.config.NUMBA_NUM_THREADS
    return os.cpu_count() or 1


# -- the direct loop before issue 13, as the baseline ---------------------------------------


def previous_loop() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The direct loop xcorr shipped before issue 13 (every tap reloads and stores the output
    row), with its parallel/serial split; not cached, so each variant is what it says."""
    import numba

    def corr_valid(x, k, out):  # x (B, H, W), k (kh, kw), out (B, Ho, Wo) zero-filled
        nb, ho, wo = out.shape
        kh, kw = k.shape
        for r in numba.prange(nb * ho):
            b = r // ho
            i = r - b * ho
            row = out[b, i]
            for a in range(kh):
                src = x[b, i + a]
                for c in range(kw):
                    tap = k[a, c]
                    for j in range(wo):
                        row[j] += src[j + c] * tap

    parallel = numba.njit(parallel=True, nogil=True)(corr_valid)
    serial = numba.njit(nogil=True)(corr_valid)

    def run(x: np.ndarray, k: np.ndarray) -> np.ndarray:
        kh, kw = k.shape
        out = np.zeros((1, x.shape[0] - kh + 1, x.shape[1] - kw + 1), x.dtype)
        (parallel if out.size * k.size >= 1 << 18 else serial)(x[None], k, out)
        return out[0]

    return run


def cv2_valid() -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    if importlib.util.find_spec("cv2") is None:
        return None
    import cv2

    cv2.setNumThreads(threads())

    def run(x: np.ndarray, k: np.ndarray) -> np.ndarray:
        kh, kw = k.shape
        y = cv2.filter2D(x, -1, k)  # same size, anchor at the centre: crop to the valid part
        return y[kh // 2:kh // 2 + x.shape[0] - kh + 1, kw // 2:kw // 2 + x.shape[1] - kw + 1]

    return run


# -- the targets ------------------------------------------------------------------------------


def fallback_rows() -> list[str]:
    """The pure-NumPy path (no Numba) against SciPy, as the foundation issue set it."""
    saved, _numba.DISABLED = _numba.DISABLED, True
    try:
        rng = np.random.default_rng(0)
        rows = []
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((1024, 1024)).astype(dtype)
            k3 = rng.standard_normal((3, 3)).astype(dtype)
            np.testing.assert_allclose(xcorr.corr2d(x, k3, method="direct"),
                                       signal.correlate2d(x, k3, "valid"), rtol=1e-4, atol=1e-4)
            t = best_ms({"ours": lambda x=x, k3=k3: xcorr.corr2d(x, k3, method="direct"),
                         "c2d": lambda x=x, k3=k3: signal.correlate2d(x, k3, "valid"),
                         "ndi": lambda x=x, k3=k3: ndimage.correlate(x, k3)})
            ratio = t["c2d"] / t["ours"]
            rows.append(f"| pure NumPy {np.dtype(dtype).name} 1024² k3 | {t['ours']:.2f} ms | "
                        f"`correlate2d` {t['c2d']:.1f} ms: {ratio:.1f}× (≥ 10×: "
                        f"{OK[ratio >= 10]}); `ndimage.correlate` {t['ndi']:.2f} ms |")
        return rows
    finally:
        _numba.DISABLED = saved


def compiled_rows() -> list[str]:
    """Matmul peak, copy floor, JAX, memory: the compiled loop's targets."""
    rng = np.random.default_rng(1)
    rows = []
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    x = rng.standard_normal((1024, 1024), dtype=np.float32)
    k7 = rng.standard_normal((7, 7), dtype=np.float32)
    t = best_ms({"dot": lambda: np.dot(a, a), "k7": lambda: _direct(x, k7)})
    peak, ours = 2 * 2048**3 / t["dot"] / 1e6, 2 * 1018**2 * 49 / t["k7"] / 1e6
    rows.append(f"| float32 1024² k7 direct | {t['k7']:.3f} ms, {ours:.0f} GF/s | matmul peak "
                f"{peak:.0f} GF/s (`np.dot` 2048²): {ours / peak:.0%} (≥ 50%: "
                f"{OK[ours >= peak / 2]}) |")

    big = rng.standard_normal((4096, 4096), dtype=np.float32)
    k3 = rng.standard_normal((3, 3), dtype=np.float32)
    src, dst = rng.standard_normal(1 << 25, dtype=np.float32), np.empty(1 << 25, np.float32)
    x3, k33, xi, ki, _ = _batches(big, k3)
    loop, rows_per_block = _numba.kernel()(3, 3, big.dtype)
    out = np.ones((1, 4094, 4094), np.float32)  # written before: no page faults left
    args = (x3, k33, xi, ki, out, np.float32(0))
    t = best_ms({"copy": lambda: np.copyto(dst, src), "k3": lambda: _direct(big, k3),
                 "loop": lambda: _in_shares(loop, args, -(-4094 // rows_per_block), True),
                 "fresh": lambda: np.ones((4094, 4094), np.float32)})
    bandwidth = 2 * src.nbytes / t["copy"] / 1e6  # GB/s, read + write
    floor = (big.nbytes + out.nbytes) / bandwidth / 1e6
    rows.append(f"| float32 4096² k3 direct | {t['k3']:.2f} ms | copy floor {floor:.2f} ms "
                f"(`np.copyto` {bandwidth:.1f} GB/s): {t['k3'] / floor:.2f}× (≤ 1.3×: "
                f"{OK[t['k3'] <= 1.3 * floor]}); the loop alone into a written output "
                f"{t['loop']:.2f} ms ({t['loop'] / floor:.2f}×); a new output's page faults "
                f"(`np.ones`) {t['fresh']:.2f} ms |")

    out_bytes = 4094 * 4094 * 4
    peak_bytes = peak_extra(lambda: _direct(big, k3))
    rows.append(f"| float32 4096² k3 memory | {peak_bytes / 2**20:.0f} MiB peak | output "
                f"{out_bytes / 2**20:.0f} MiB: {peak_bytes / out_bytes:.2f}× (≤ 2×: "
                f"{OK[peak_bytes <= 2 * out_bytes]}) |")
    rows += jax_rows(rng)
    return rows


def jax_rows(rng: np.random.Generator) -> list[str]:
    if importlib.util.find_spec("jax") is None:
        return ["| float64 1024² k3 | - | JAX not installed |"]
    import jax

    jax.config.update("jax_enable_x64", True)  # this script's own process
    import jax.numpy as jnp

    x = rng.standard_normal((1024, 1024))
    k3 = rng.standard_normal((3, 3))
    xj, kj = jnp.asarray(x), jnp.asarray(k3)
    f = jax.jit(lambda a, b: xcorr.corr2d(a, b, method="direct"))
    np.testing.assert_allclose(np.asarray(f(xj, kj)), _direct(x, k3), rtol=1e-12, atol=1e-12)
    t = best_ms({"jax": lambda: f(xj, kj).block_until_ready(), "ours": lambda: _direct(x, k3)})
    return [f"| float64 1024² k3 direct | {t['ours']:.3f} ms | JAX jitted direct "
            f"{t['jax']:.3f} ms: {t['ours'] / t['jax']:.2f}× (≤ 1.2×: "
            f"{OK[t['ours'] <= 1.2 * t['jax']]}) |"]


# -- the grid ---------------------------------------------------------------------------------


def grid_rows(sizes: list[int], kernels: list[int]) -> Iterator[str]:
    old, cv = previous_loop(), cv2_valid()
    rng = np.random.default_rng(2)
    for n in sizes:
        for kk in kernels:
            for dtype in ("float32", "float64"):
                x = rng.standard_normal((n, n)).astype(dtype)
                k = rng.standard_normal((kk, kk)).astype(dtype)
                new = _direct(x, k)
                np.testing.assert_array_equal(new, old(x, k))  # same bits as before
                fns = {"new": lambda x=x, k=k: _direct(x, k), "old": lambda x=x, k=k: old(x, k)}
                if cv is not None:
                    np.testing.assert_allclose(cv(x, k), new, rtol=1e-3, atol=1e-3 * kk)
                    fns["cv2"] = lambda x=x, k=k: cv(x, k)
                t = best_ms(fns)
                flops = 2 * (n - kk + 1) ** 2 * kk * kk / 1e6
                cells = [f"{t[m]:.3f} ms, {flops / t[m]:.0f}" for m in fns]
                cells.append(f"{t['cv2'] / t['new']:.2f}" if "cv2" in t else "- | -")
                yield f"| {n}² | {kk} | {dtype} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="grid at 256² and 1024² only")
    parser.add_argument("--no-grid", action="store_true", help="the targets only")
    parser.add_argument("--cpu", action="store_true",
                        help="time CPU seconds of the process, not wall seconds (one thread)")
    parser.add_argument("--repeat", type=int, default=REPEAT,
                        help=f"samples per timing, best taken (default {REPEAT})")
    args = parser.parse_args()
    globals()["REPEAT"] = args.repeat
    if args.cpu:
        if threads() != 1 or os.environ.get("OPENBLAS_NUM_THREADS") != "1":
            parser.error("--cpu needs NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 in the "
                         "environment (one thread for every peer)")
        globals()["CLOCK"] = time.process_time
        import numba  # noqa: F401 - loaded: the fallback's thread count follows Numba's
    print(f"# NumPy backend — {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores ({threads()} threads), NumPy {np.__version__}, "
          f"SciPy {scipy.__version__}; {'CPU' if args.cpu else 'wall'} time\n")
    print("| case | xcorr | against the target |\n|---|---|---|")
    rows = fallback_rows()
    if _numba.kernel() is not None:
        rows += compiled_rows()
    print("\n".join(rows))
    if _numba.kernel() is None or args.no_grid:
        return
    print("\n| image | k | dtype | xcorr direct (ms, GF/s) | previous loop | `cv2.filter2D` | "
          "cv2 / xcorr |\n|---|---|---|---|---|---|---|")
    sizes = [256, 1024] if args.quick else [256, 1024, 4096]
    for row in grid_rows(sizes, [3, 5, 7, 11, 15]):
        print(row, flush=True)


if __name__ == "__main__":
    main()
