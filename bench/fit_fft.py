"""Fit the ``fft`` and ``overlap`` constants of a backend's cost model (``Cost`` in _methods).

    python bench/fit_fft.py numpy|torch|jax [--reps 3] [--scale 0.5]

Times the whole-image FFT and overlap-save at forced tile sizes over 256²-4096² (and 8×128²),
kernels 5-41, tiles 16-512, float32 and float64, as *single-thread CPU time* (process_time,
min of ``--reps``): on a machine shared with other jobs that is what stays repeatable, where
wall clocks vary 2-3× and two threads stall small FFTs for milliseconds.  Then least squares
on relative error::

    fft      t - fixed      = point · B·N·log2(N)
    overlap  t - tile_fixed = tile_point · P·log2(n) + tile_pix · P     (P = n · B·tiles)

and prints the constants times ``--scale`` (0.5 for NumPy, whose FFTs run on two workers like
its direct loop; 1 for torch, whose direct constants are single-thread, and JAX, whose CPU
FFT is single-threaded).  The fixed parts come from 8²-64² calls.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from math import log2
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

SIZES = ((128, 8), (256, 1), (512, 1), (1024, 1), (2048, 1), (4096, 1))  # (side, batch)
KERNELS = (5, 11, 21, 41)
TILES = (16, 32, 64, 128, 256, 512)


def cpu_ns(f, reps: int) -> float:
    f()
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        f()
        best = min(best, time.process_time() - t0)
    return best * 1e9


def runners(name: str):
    """(to_backend, fft(x, k), overlap(x, k, tile)) on one thread."""
    from xcorr._fft import fft_valid, overlap_valid, tiles_by_reshape

    if name == "numpy":
        import scipy.fft as fft

        from xcorr.backends import _numpy as nb

        def rfft2(a, s):
            return fft.fft(fft.rfft(a, s[1], axis=-1, workers=1), s[0], axis=-2, workers=1,
                           overwrite_x=True)

        def irfft2(a, s):
            return fft.irfft(fft.ifft(a, s[0], axis=-2, workers=1, overwrite_x=True), s[1],
                             axis=-1, workers=1)

        return (np.asarray,
                lambda x, k: np.ascontiguousarray(fft_valid(x, k, rfft2, irfft2, nb._mul_conj)),
                lambda x, k, t: np.ascontiguousarray(
                    overlap_valid(x, k, t, rfft2, irfft2, nb._tiles, nb._mul_conj)))
    if name == "torch":
        import torch

        from xcorr.backends import _torch as tb
        torch.set_num_threads(1)
        return (torch.from_numpy, lambda x, k: tb.corr2d_valid(x, k, "fft"),
                lambda x, k, t: overlap_valid(x, k, t, tb.rfft2, tb.irfft2, tb._tiles,
                                              tb._mul_conj).contiguous())
    import jax
    import jax.numpy as jnp

    from xcorr.backends import _jax as jb
    jax.config.update("jax_enable_x64", True)
    tiles = partial(tiles_by_reshape, pad=jb.pad, concat=jnp.concatenate)
    jf = jax.jit(lambda x, k: fft_valid(x, k, jnp.fft.rfft2, jnp.fft.irfft2))
    jo = jax.jit(lambda x, k, t: overlap_valid(x, k, t, jnp.fft.rfft2, jnp.fft.irfft2, tiles),
                 static_argnums=2)
    return (jnp.asarray, lambda x, k: jf(x, k).block_until_ready(),
            lambda x, k, t: jo(x, k, t).block_until_ready())


def measure(name: str, reps: int) -> tuple[list[dict], dict]:
    conv, run_fft, run_ov = runners(name)
    rng = np.random.default_rng(0)
    rows, fixed = [], {}
    for dt in ("float32", "float64"):
        small = [conv(rng.random((n, n)).astype(dt)) for n in (8, 16, 32, 64)]
        k3 = conv(rng.random((3, 3)).astype(dt))
        fixed[dt] = (min(cpu_ns(partial(run_fft, x, k3), 20) for x in small),
                     min(cpu_ns(partial(run_ov, x, k3, tuple(x.shape)), 20) for x in small))
        for n, batch in SIZES:
            shape = (n, n) if batch == 1 else (batch, n, n)
            x = conv(rng.standard_normal(shape).astype(dt))
            for kk in KERNELS:
                k = conv(rng.standard_normal((kk, kk)).astype(dt))
                rows.append(dict(dt=dt, n=n, batch=batch, k=kk, b=0,
                                 t=cpu_ns(partial(run_fft, x, k), reps)))
                for b in TILES:
                    if 2 * (kk - 1) <= b < n:
                        rows.append(dict(dt=dt, n=n, batch=batch, k=kk, b=b,
                                         t=cpu_ns(partial(run_ov, x, k, (b, b)), reps)))
                print(dt, n, kk, [round(r["t"] / 1e6, 2) for r in rows[-7:]
                                  if r["n"] == n and r["k"] == kk], flush=True)
    return rows, fixed


def fit(rows: list[dict], fixed: dict, scale: float) -> None:
    from xcorr._methods import fft_len

    for dt in ("float32", "float64"):
        ffix, ofix = fixed[dt]
        f = [r for r in rows if r["dt"] == dt and r["b"] == 0]
        a = np.array([r["batch"] * fft_len(r["n"]) ** 2 * log2(fft_len(r["n"]) ** 2) / r["t"]
                      for r in f])
        y = np.array([1 - ffix / r["t"] for r in f])
        point = float(a @ y / (a @ a))
        o = [r for r in rows if r["dt"] == dt and r["b"]]
        cols, yo = [], []
        for r in o:
            n, k, b = r["n"], r["k"], r["b"]
            p = r["batch"] * (-(-(n - k + 1) // (b - k + 1))) ** 2 * b * b
            cols.append([p * log2(b * b) / r["t"], p / r["t"]])
            yo.append(1 - ofix / r["t"])
        (tp, tx), _ = nnls(np.array(cols), np.array(yo))
        err = np.abs(np.array(cols) @ [tp, tx] / np.array(yo) - 1)
        print(f"{dt}: point={point * scale:.3f}, fixed={ffix * scale:.0f}, "
              f"tile_point={tp * scale:.3f}, tile_pix={tx * scale:.2f}, "
              f"tile_fixed={ofix * scale:.0f}  (overlap fit: median error {np.median(err):.0%}, "
              f"max {err.max():.0%})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("backend", choices=("numpy", "torch", "jax"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scale", type=float, default=None,
                    help="CPU time to model units (default 0.5 numpy, 1 torch/jax)")
    args = ap.parse_args()
    if args.backend == "jax":  # one XLA thread, before jax is imported
        os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    rows, fixed = measure(args.backend, args.reps)
    fit(rows, fixed, args.scale if args.scale is not None else
        (0.5 if args.backend == "numpy" else 1.0))


if __name__ == "__main__":
    main()
