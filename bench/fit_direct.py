"""Fit the ``direct`` and ``native`` constants of a backend's cost model (``Cost`` in _methods).

    python bench/fit_direct.py numpy|torch|jax [--reps 7] [--quadratic]

Times the backend's own ``corr2d_valid`` (what ``auto`` chooses between) by method over
images 16²-1024², batches of 1 and 8, kernels 1-15, float32 and float64, as *wall time*
with the backend's default threads (what a user waits for; the FFT constants of
``fit_fft.py`` are scaled to the same unit), min of ``--reps``.  Then non-negative least
squares on relative error::

    direct   t = tap · B·Ho·Wo·kh·kw + out · B·Ho·Wo + tap_call · kh·kw + c
    native   t = native_tap · B·Ho·Wo·kh·kw + native_out · B·Ho·Wo + native_fixed

(``c``, the call's own overhead, is the same for every method, so ``Cost`` leaves it out;
``--quadratic`` adds ``tap2 · B·Ho·Wo·(kh·kw)²`` to direct, for XLA's fused loop, whose cost
per tap grows with the taps it fuses)
and, for per-image kernels (a batch of 8 images, 8 kernels), ``native_group_tap`` with the
other native constants held.  JAX runs each method under ``jax.jit`` as JAX code does.
Prints the constants to paste into ``COSTS`` in ``xcorr/backends/_<name>.py``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from scipy.optimize import nnls

SIZES = ((16, 1), (28, 1), (64, 1), (28, 8), (64, 8), (256, 1), (256, 8), (512, 1), (1024, 1),
         (2048, 1))
KERNELS = (1, 3, 5, 7, 11, 15)


def wall_ns(f: Callable[[], Any], reps: int) -> float:
    f()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best * 1e9


def runner(name: str) -> tuple[Callable[[np.ndarray], Any], Callable[..., Any], tuple[str, ...]]:
    """(to_backend, run(x, k, method), methods)."""
    if name == "numpy":
        from xcorr.backends import _numpy as nb
        return np.asarray, nb.corr2d_valid, ("direct",)
    if name == "torch":
        import torch

        from xcorr.backends import _torch as tb
        return torch.from_numpy, tb.corr2d_valid, ("direct", "native")
    import jax
    import jax.numpy as jnp

    from xcorr.backends import _jax as jb
    jax.config.update("jax_enable_x64", True)  # this script's own process only
    jitted = jax.jit(jb.corr2d_valid, static_argnames="method")
    return (jnp.asarray, lambda x, k, method: jitted(x, k, method=method).block_until_ready(),
            ("direct", "native"))


def measure(name: str, reps: int) -> list[dict]:
    conv, run, methods = runner(name)
    rng = np.random.default_rng(0)
    rows = []
    for dt in ("float32", "float64"):
        for n, batch in SIZES:
            x = conv(rng.standard_normal((batch, n, n) if batch > 1 else (n, n)).astype(dt))
            for kk in KERNELS:
                if kk > n:
                    continue
                shapes = [((kk, kk), False)] + ([((batch, kk, kk), True)] if batch > 1 else [])
                for kshape, grouped in shapes:
                    k = conv(rng.standard_normal(kshape).astype(dt))
                    for m in methods:
                        if grouped and m != "native":
                            continue
                        rows.append(dict(dt=dt, n=n, batch=batch, k=kk, method=m,
                                         grouped=grouped,
                                         t=wall_ns(partial(run, x, k, method=m), reps)))
            print(dt, n, batch, flush=True)
    return rows


def _terms(r: dict) -> tuple[float, float]:
    ho = r["n"] - r["k"] + 1
    outs = r["batch"] * ho * ho
    return outs * r["k"] ** 2, outs


def fit(rows: list[dict], quadratic: bool = False) -> None:
    for dt in ("float32", "float64"):
        d = [r for r in rows if r["dt"] == dt and r["method"] == "direct"]
        cols = [[*_terms(r), r["k"] ** 2, 1.0] + ([_terms(r)[0] * r["k"] ** 2] if quadratic
                                                  else []) for r in d]
        a = np.array(cols) / np.array([[r["t"]] for r in d])
        coef, _ = nnls(a, np.ones(len(d)))
        tap, out, tap_call, c = coef[:4]
        err = np.abs(a @ coef - 1)
        tap2 = f" tap2={coef[4]:.4g}" if quadratic else ""
        print(f"{dt} direct: tap={tap:.4g} out={out:.4g} tap_call={tap_call:.4g}{tap2} "
              f"(call overhead {c:.4g} ns; median |rel err| {np.median(err):.2f})")
        nat = [r for r in rows if r["dt"] == dt and r["method"] == "native"]
        plain = [r for r in nat if not r["grouped"]]
        if not plain:
            continue
        a = np.array([[*_terms(r), 1.0] for r in plain]) / np.array([[r["t"]] for r in plain])
        (ntap, nout, nfix), _ = nnls(a, np.ones(len(plain)))
        err = np.abs(a @ [ntap, nout, nfix] - 1)
        grouped = [r for r in nat if r["grouped"]]
        gtap = float("nan")
        if grouped:  # native_group_tap with native_out and native_fixed held
            taps = np.array([_terms(r)[0] for r in grouped])
            rest = np.array([r["t"] - _terms(r)[1] * nout - nfix for r in grouped])
            gtap = float(np.median(rest / taps))
        print(f"{dt} native: native_tap={ntap:.4g} native_out={nout:.4g} "
              f"native_fixed={nfix:.4g} native_group_tap={gtap:.4g} "
              f"(median |rel err| {np.median(err):.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("backend", choices=("numpy", "torch", "jax"))
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--quadratic", action="store_true",
                   help="fit a tap2 term (cost per tap growing with the taps)")
    args = p.parse_args()
    fit(measure(args.backend, args.reps), args.quadratic)


if __name__ == "__main__":
    main()
