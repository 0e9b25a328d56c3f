"""NumPy-backend targets of the foundation issue (a script, not a test).

    python bench/bench_numpy.py            # Numba path if installed, then the pure-NumPy path

Prints a Markdown table: median of repeats (timeit) of xcorr against SciPy on the same float32
input, and the peak extra memory of a 4096² 3×3 correlation (tracemalloc).
"""

from __future__ import annotations

import os
import platform
import timeit
import tracemalloc

import numpy as np
import scipy
from scipy import ndimage, signal

import xcorr
from xcorr import _numba


def median_ms(fn, repeat: int = 7) -> float:
    fn()  # warm-up (and Numba compile)
    return float(np.median(timeit.repeat(fn, number=1, repeat=repeat))) * 1e3


def peak_extra(fn) -> int:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def run(label: str) -> list[str]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1024, 1024), dtype=np.float32)
    k3 = rng.standard_normal((3, 3), dtype=np.float32)
    k31 = rng.standard_normal((31, 31), dtype=np.float32)
    np.testing.assert_allclose(xcorr.corr2d(x, k3), signal.correlate2d(x, k3, "valid"),
                               rtol=1e-4, atol=1e-4)  # a fast wrong answer is a failure
    np.testing.assert_allclose(xcorr.corr2d(x, k31), signal.correlate2d(x, k31, "valid"),
                               rtol=1e-3, atol=1e-3)
    ours3 = median_ms(lambda: xcorr.corr2d(x, k3))
    c2d = median_ms(lambda: signal.correlate2d(x, k3, "valid"), 3)
    ndi = median_ms(lambda: ndimage.correlate(x, k3))
    ours31 = median_ms(lambda: xcorr.corr2d(x, k31))
    fftc = median_ms(lambda: signal.fftconvolve(x, k31[::-1, ::-1], "valid"))
    big = rng.standard_normal((4096, 4096), dtype=np.float32)
    out_bytes = 4094 * 4094 * 4
    peak = peak_extra(lambda: xcorr.corr2d(big, k3))
    ok = {True: "pass", False: "MISS"}
    return [
        f"| {label} | 1024² k3 | {ours3:.2f} ms | correlate2d {c2d:.1f} ms: {c2d / ours3:.0f}× "
        f"(≥10×: {ok[c2d / ours3 >= 10]}); ndimage {ndi:.2f} ms: {ndi / ours3:.1f}× "
        f"(≥1×: {ok[ndi / ours3 >= 1]}) |",
        f"| {label} | 1024² k31 | {ours31:.2f} ms | fftconvolve {fftc:.2f} ms: ratio "
        f"{ours31 / fftc:.2f} (≤1.2: {ok[ours31 / fftc <= 1.2]}) |",
        f"| {label} | 4096² k3 memory | {peak / 2**20:.0f} MiB peak | output "
        f"{out_bytes / 2**20:.0f} MiB: {peak / out_bytes:.2f}× "
        f"(≤2×: {ok[peak <= 2 * out_bytes]}) |",
    ]


def main() -> None:
    print(f"# NumPy backend — {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, NumPy {np.__version__}, SciPy {scipy.__version__}\n")
    print("| path | case | xcorr auto | against the peer |\n|---|---|---|---|")
    rows = []
    if _numba.kernel() is not None:
        rows += run("numba")
    _numba.DISABLED = True
    rows += run("pure NumPy")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
