"""JAX-backend targets of issue 3 (a script, not a test).

    python bench/bench_jax.py             # the full grid, about 3-5 minutes on 2 cores
    python bench/bench_jax.py --quick     # 256² and 1024² only

Prints Markdown tables: steady-state time per method (median of repeats via timeit, after a
warm-up, every call ending in ``block_until_ready``), the first call of each method apart
(tracing + XLA compilation + one run), and the targets: ``auto`` at least 10× faster than
``lax.conv`` ("native") at 1024² float32 k3 and k31, and ``auto`` within 1.2× of the fastest
method in every cell.  Steady times include xcorr's Python dispatch and, for ``auto``/``fft``,
the finiteness check: that is what a caller pays.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import timeit
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import numpy as np

# float64 cells need JAX's 64-bit mode: the user's switch, and this script is the user.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import xcorr  # noqa: E402
from xcorr import _methods  # noqa: E402
from xcorr.backends import _jax as be  # noqa: E402

SIZES = (256, 1024, 4096)
KERNELS = (3, 11, 31)
DTYPES = (jnp.float32, jnp.float64)
METHODS = ("direct", "fft", "native", "auto")
# lax.conv in float64 takes ~0.9 s at 1024² k31 here, so ~14 s a call at 4096²: not timed.
SKIP = {("native", 4096, 31, "float64")}
BUDGET_S = 1.0  # steady-state rounds per cell: about 4 s, between 3 and 7 rounds


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    y = fn().block_until_ready()
    return time.perf_counter() - t0, y


def measure(fns: dict[str, Callable[[], Any]]
            ) -> tuple[dict[str, float], dict[str, float], int, dict[str, np.ndarray]]:
    """First call and median steady state (seconds) of each function, the rounds, the results.

    The steady-state repeats go round-robin over the methods, so a change in the load of
    the (shared) machine hits every method of a cell alike.
    """
    first, out = {}, {}
    for m, fn in fns.items():
        first[m], y = timed(fn)
        out[m] = np.asarray(y, np.float64)
        del y
    once = {m: timed(fn)[0] for m, fn in fns.items()}  # warm-up, and it sizes the repeats
    repeat = int(min(7, max(3, 4 * BUDGET_S // sum(once.values()))))
    # sub-millisecond calls are timed in loops of ~20 ms, so one sample is not one time slice
    number = {m: max(1, int(0.02 // t)) for m, t in once.items()}
    times = {m: [] for m in fns}
    for _ in range(repeat):
        for m, fn in fns.items():
            t = timeit.timeit(lambda fn=fn: fn().block_until_ready(), number=number[m])
            times[m].append(t / number[m])
    return first, {m: float(np.median(t)) for m, t in times.items()}, repeat, out


def main() -> None:
    sizes = SIZES[:2] if "--quick" in sys.argv else SIZES
    print(f"# JAX backend — {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"JAX {jax.__version__} on {jax.devices()[0].platform}, load "
          f"{os.getloadavg()[0]:.1f} at start\n")
    rng = np.random.default_rng(0)
    steady_rows, first_rows, misses = [], [], []
    fast = {}
    for n in sizes:
        for kk in KERNELS:
            for dtype in DTYPES:
                x = jnp.asarray(rng.standard_normal((n, n)), dtype)
                k = jnp.asarray(rng.standard_normal((kk, kk)), dtype)
                pick = _methods.choose(be.costs(), x.shape, k.shape, x.dtype.itemsize, False)
                name = jnp.dtype(dtype).name
                fns = {m: partial(xcorr.corr2d, x, k, method=m) for m in METHODS
                       if (m, n, kk, name) not in SKIP}
                first, steady, repeat, outs = measure(fns)
                for m in fns:  # a fast wrong answer is a failure
                    np.testing.assert_allclose(outs[m], outs["direct"], rtol=1e-3,
                                               atol=1e-3 * kk, err_msg=m)
                del outs
                best = min(t for m, t in steady.items() if m != "auto")
                ratio = steady["auto"] / best
                pick_ratio = steady[pick] / best
                if ratio > 1.2:
                    why = ("the pick is the fastest method: timing noise" if pick_ratio == 1
                           else f"the pick {pick} is {pick_ratio:.2f}× the fastest")
                    misses.append(f"{n}² k{kk} {name}: auto {ratio:.2f}× ({why})")
                fast[n, kk, name] = {m: t * 1e3 for m, t in steady.items()}
                cells = " | ".join(f"{steady[m] * 1e3:.2f}" if m in steady else "skipped"
                                   for m in METHODS)
                steady_rows.append(f"| {n}² | {kk} | {name} | {cells} | {pick} | {ratio:.2f} "
                                   f"| {pick_ratio:.2f} | {repeat} |")
                first_rows.append(f"| {n}² | {kk} | {name} | "
                                  + " | ".join(f"{first[m] * 1e3:.0f}" if m in first else "—"
                                               for m in METHODS) + " |")
                print(steady_rows[-1], file=sys.stderr, flush=True)  # progress
    print("## Steady state, ms (median of n rounds)\n")
    print("| size | k | dtype | direct | fft | native (lax.conv) | auto | auto picks "
          "| auto / fastest | pick / fastest | n |\n|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(steady_rows))
    if SKIP:
        print("\nnative skipped where lax.conv is pathological: "
              + ", ".join(f"{n}² k{kk} {name}" for _, n, kk, name in sorted(SKIP)))
    print("\n## First call (trace + compile + run), ms; auto reuses the compiled kernels\n")
    print("| size | k | dtype | direct | fft | native | auto |\n|---|---|---|---|---|---|---|")
    print("\n".join(first_rows))
    print("\n## Targets\n")
    for kk in (3, 31):
        s = fast[1024, kk, "float32"]
        speedup = s["native"] / s["auto"]
        verdict = "pass" if speedup >= 10 else "MISS"
        print(f"- 1024² k{kk} float32: auto {s['auto']:.2f} ms vs lax.conv {s['native']:.1f} ms"
              f" = {speedup:.0f}× (≥10×: {verdict})")
    print("- auto within 1.2× of the fastest method in every cell: "
          + ("pass" if not misses else "MISS in " + "; ".join(misses)))
    print(f"\n(load {os.getloadavg()[0]:.1f} at the end; the machine is shared, so expect "
          "±20% between runs)")


if __name__ == "__main__":
    main()
