"""Short GPU benchmark: xcorr's CuPy/torch/JAX backends against each framework's own kernel.

Run by ``bench/gpu_check.sh``; on its own::

    python bench/gpu_bench.py [--sizes 1024 4096] [--kernels 3 11 31] [--budget-s 150] [--out F]
    python bench/gpu_bench.py --dry-run     # tiny sizes on the CPU: checks the script itself

For each float32 image n×n and kernel k×k it times (median of synchronised calls, after
warm-up) ``xcorr.corr2d`` with ``method="auto"`` (and CuPy's ``direct``/``fft``) against
cuDNN ``F.conv2d``, ``lax.conv_general_dilated`` and ``cupyx.scipy.signal.correlate2d``,
and reports each result's error against a float64 host reference (max |error| / max |ref|):
TF32 shows up there (torch's cuDNN default and JAX's default precision may use it).
Without any GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with CuPy/torch

import numpy as np  # noqa: E402

import xcorr  # noqa: E402
from xcorr._interop import host_copy  # noqa: E402


def _frameworks(dry_run: bool) -> dict[str, Any]:
    """Which GPU frameworks are usable: name -> (module, device) or a reason string."""
    found: dict[str, Any] = {}
    try:
        import cupy

        found["cupy"] = (cupy, 0) if cupy.is_available() and not dry_run else (
            "dry run" if dry_run else "cupy.is_available() is False")
    except Exception as exc:
        found["cupy"] = f"cupy: {type(exc).__name__}: {exc}"
    try:
        import torch

        if torch.cuda.is_available():
            found["torch"] = (torch, "cuda")
        else:
            found["torch"] = (torch, "cpu") if dry_run else "torch.cuda.is_available() is False"
    except Exception as exc:
        found["torch"] = f"torch: {type(exc).__name__}: {exc}"
    try:
        import jax

        try:
            found["jax"] = (jax, jax.devices("gpu")[0])
        except RuntimeError:
            found["jax"] = (jax, jax.devices("cpu")[0]) if dry_run else "no JAX GPU device"
    except Exception as exc:
        found["jax"] = f"jax: {type(exc).__name__}: {exc}"
    return found


def _median_ms(fn: Callable[[], Any], sync: Callable[[Any], None], repeat: int,
               budget_s: float) -> tuple[float, Any]:
    out = fn()
    sync(out)  # warm-up: compilation, cuFFT plans, cuDNN algorithm choice
    out = fn()
    sync(out)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeat and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        out = fn()
        sync(out)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, out


def _cases(fw: dict[str, Any], x: np.ndarray, k: np.ndarray) -> list[tuple[str, Any, Any]]:
    """(label, zero-argument callable, sync) for every implementation that can run."""
    cases: list[tuple[str, Any, Any]] = []
    if isinstance(fw.get("cupy"), tuple):
        cp = fw["cupy"][0]
        import cupyx.scipy.signal  # explicit submodule import (cupy #8336)

        xc, kc = cp.asarray(x), cp.asarray(k)

        def cp_sync(_out: Any) -> None:
            cp.cuda.get_current_stream().synchronize()

        for m in ("auto", "direct", "fft"):
            cases.append((f"xcorr cupy {m}",
                          lambda m=m: xcorr.corr2d(xc, kc, method=m), cp_sync))
        cases.append(("cupyx.scipy.signal.correlate2d",
                      lambda: cupyx.scipy.signal.correlate2d(xc, kc, mode="valid"), cp_sync))
    if isinstance(fw.get("torch"), tuple):
        torch, tdev = fw["torch"]
        import torch.nn.functional as F

        xt = torch.from_numpy(x).to(tdev)
        kt = torch.from_numpy(k).to(tdev)
        x4, k4 = xt[None, None], kt[None, None]
        # Its own name: a closure reads the variable at call time, and the JAX section below
        # rebinds ``dev`` (the first GPU run timed F.conv2d unsynchronised because of that).
        on_cuda = tdev == "cuda"

        def t_sync(_out: Any) -> None:
            if on_cuda:
                torch.cuda.synchronize()

        def conv(tf32: bool) -> Any:
            # The flag is the benchmark's to flip (never the library's); restored at once.
            old = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = tf32
            try:
                return F.conv2d(x4, k4)
            finally:
                torch.backends.cudnn.allow_tf32 = old

        cases.append(("xcorr torch auto", lambda: xcorr.corr2d(xt, kt), t_sync))
        for m in ("direct", "fft", "native"):  # what auto chose from, to check the cost model
            cases.append((f"xcorr torch {m}", lambda m=m: xcorr.corr2d(xt, kt, method=m), t_sync))
        cases.append(("F.conv2d (cuDNN, TF32 allowed)", lambda: conv(True)[0, 0], t_sync))
        cases.append(("F.conv2d (cuDNN, TF32 off)", lambda: conv(False)[0, 0], t_sync))
    if isinstance(fw.get("jax"), tuple):
        jax, dev = fw["jax"]
        from jax import lax

        xj, kj = jax.device_put(x, dev), jax.device_put(k, dev)

        def j_sync(out: Any) -> None:
            out.block_until_ready()

        def lax_conv(precision: Any) -> Callable[[Any, Any], Any]:
            @jax.jit
            def f(a: Any, b: Any) -> Any:
                return lax.conv_general_dilated(a[None, None], b[None, None], (1, 1), "VALID",
                                                precision=precision)[0, 0]
            return f

        jit_xcorr = jax.jit(lambda a, b: xcorr.corr2d(a, b))
        default, highest = lax_conv(None), lax_conv(lax.Precision.HIGHEST)
        cases.append(("xcorr jax auto", lambda: xcorr.corr2d(xj, kj), j_sync))
        cases.append(("xcorr jax auto under jit", lambda: jit_xcorr(xj, kj), j_sync))
        for m in ("direct", "fft", "native"):
            cases.append((f"xcorr jax {m}", lambda m=m: xcorr.corr2d(xj, kj, method=m), j_sync))
        cases.append(("lax.conv (default precision)", lambda: default(xj, kj), j_sync))
        cases.append(("lax.conv (HIGHEST)", lambda: highest(xj, kj), j_sync))
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--kernels", type=int, nargs="+", default=[3, 11, 31])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=150.0,
                    help="stop starting new cases after this many seconds in total")
    ap.add_argument("--out", type=Path, default=None, help="write the table (markdown) here")
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny sizes, torch/JAX on the CPU, no CuPy: checks the script runs")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.sizes, args.kernels, args.repeat = [64, 96], [3, 5], 3

    fw = _frameworks(args.dry_run)
    status = {n: (f"{v[0].__name__} {v[0].__version__} on {v[1]}" if isinstance(v, tuple)
                  else f"unavailable: {v}") for n, v in fw.items()}
    for n, s in status.items():
        print(f"{n}: {s}")
    if not any(isinstance(v, tuple) for v in fw.values()):
        print("no GPU framework can run here: nothing to benchmark")
        if args.out:
            args.out.write_text("no GPU framework available\n\n" + json.dumps(status, indent=2))
        return 0

    rng = np.random.default_rng(0)
    rows: list[tuple[int, int, str, str, str]] = []
    t_start = time.perf_counter()
    per_case = max(0.5, args.budget_s / (len(args.sizes) * len(args.kernels) * 18))
    for n in args.sizes:
        for kk in args.kernels:
            x = rng.standard_normal((n, n)).astype(np.float32)
            k = rng.standard_normal((kk, kk)).astype(np.float32)
            ref = xcorr.corr2d(x.astype(np.float64), k.astype(np.float64), backend="numpy",
                               method="fft" if kk > 7 else "direct")
            scale = float(np.abs(ref).max())
            for label, fn, sync in _cases(fw, x, k):
                if time.perf_counter() - t_start > args.budget_s:
                    rows.append((n, kk, label, "skipped", "time budget spent"))
                    continue
                try:
                    ms, out = _median_ms(fn, sync, args.repeat, per_case)
                    err = float(np.abs(host_copy(out).astype(np.float64) - ref).max()) / scale
                    rows.append((n, kk, label, f"{ms:.3f}", f"{err:.1e}"))
                except Exception as exc:  # report and go on: one failure must not hide the rest
                    rows.append((n, kk, label, "error", f"{type(exc).__name__}: {exc}"[:80]))

    lines = ["| n | k | implementation | median ms | max rel. error vs float64 |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {kk} | {label} | {ms} | {err} |" for n, kk, label, ms, err in rows]
    header = "\n".join(f"- {n}: {s}" for n, s in status.items())
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"{header}\n\n{table}\n")
        keys = ("n", "k", "impl", "median_ms", "error")
        records = [dict(zip(keys, r, strict=True)) for r in rows]
        args.out.with_suffix(".json").write_text(json.dumps(
            {"frameworks": status, "rows": records}, indent=1))
        print(f"wrote {args.out}")
    return 1 if any(r[3] == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
