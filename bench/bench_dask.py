"""Dask backend on a local cluster: a 32768² float32 image (4 GiB) generated lazily.

Usage::

    python bench/bench_dask.py [--size 32768] [--chunk 4096] [--workers 2] [--memory-limit 2GiB]

For each kernel (3×3 and 11×11) it reports the wall time of ``corr2d(x, k, mode="same")``
reduced to a checksum (so the 4 GiB result is never gathered), the wall time of generating
``x`` alone, the peak resident memory of each worker (sampled every 0.1 s with psutil through
``client.run``) and the throughput against the NumPy backend on one in-memory 4096² slice
in this process.  The machine may be shared: the load average is printed alongside.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import psutil
from distributed import Client, LocalCluster

import xcorr


def _rss() -> int:
    return psutil.Process().memory_info().rss


class PeakSampler:
    """Max RSS per worker process, sampled in a background thread while a block runs."""

    def __init__(self, client: Client, every: float = 0.1) -> None:
        self.client, self.every = client, every
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for addr, rss in self.client.run(_rss).items():
                    self.peak[addr] = max(self.peak.get(addr, 0), rss)
            except Exception:  # a worker restarting mid-sample: keep sampling the others
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _warm_up(kernels: dict[int, np.ndarray]) -> None:
    for k in kernels.values():
        for method in ("direct", "fft"):
            xcorr.corr2d(np.ones((64, 64), np.float32), k, method=method)


def _timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32768)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GiB")
    ap.add_argument("--kernels", type=int, nargs="+", default=[3, 11])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dask.json")
    args = ap.parse_args()

    n, c = args.size, args.chunk
    rng = np.random.default_rng(0)
    kernels = {kk: rng.standard_normal((kk, kk)).astype(np.float32) for kk in args.kernels}
    result: dict = {"size": n, "chunk": c, "workers": args.workers,
                    "memory_limit": args.memory_limit, "load_before": os.getloadavg(),
                    "cpus": os.cpu_count(), "dask": dask.__version__, "runs": []}
    print(f"x: {n}x{n} float32 ({n * n * 4 / 2**30:.1f} GiB), chunks {c}x{c}; "
          f"{args.workers} workers x 1 thread, memory_limit {args.memory_limit}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    with (LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                       host="127.0.0.1", dashboard_address=None,
                       memory_limit=args.memory_limit) as cluster,
          Client(cluster) as client):
        # One-time costs kept out of the timings: importing xcorr, loading the cached Numba
        # loop and SciPy's FFT on every worker.
        client.run(_warm_up, kernels)
        x = da.random.default_rng(1).standard_normal((n, n), dtype=np.float32, chunks=c)
        base = max(client.run(_rss).values())
        with PeakSampler(client) as s:
            t0 = time.perf_counter()
            x.sum(dtype=np.float64).compute()
            gen = time.perf_counter() - t0
        result["generate_s"] = gen
        result["idle_rss_mib"] = base / 2**20
        print(f"generate + sum only: {gen:.1f} s, peak RSS/worker "
              f"{max(s.peak.values()) / 2**20:.0f} MiB (idle {base / 2**20:.0f} MiB)")

        for kk, k in kernels.items():
            out = xcorr.corr2d(x, k, mode="same")
            checksum = out.sum(dtype=np.float64)
            with PeakSampler(client) as s:
                t0 = time.perf_counter()
                value = float(checksum.compute())
                wall = time.perf_counter() - t0
            peaks = {a: v / 2**20 for a, v in s.peak.items()}
            run = {"k": kk, "wall_s": wall, "checksum": value,
                   "peak_rss_mib": sorted(peaks.values()),
                   "mpix_s": n * n / wall / 1e6,
                   "mpix_s_excl_generation": n * n / max(wall - gen, 1e-9) / 1e6}
            result["runs"].append(run)
            print(f"k{kk}: {wall:.1f} s wall ({run['mpix_s']:.0f} Mpix/s; "
                  f"{run['mpix_s_excl_generation']:.0f} Mpix/s after subtracting generation), "
                  f"peak RSS/worker {', '.join(f'{p:.0f}' for p in peaks.values())} MiB")

    # The NumPy backend on one in-memory slice, in this process (all cores).
    xs = da.random.default_rng(1).standard_normal((n, n), dtype=np.float32, chunks=c)[:c, :c]
    xs = xs.compute(scheduler="sync")
    for run in result["runs"]:
        k = kernels[run["k"]]
        xcorr.corr2d(xs, k, mode="same")  # warm-up (Numba compile / FFT plans)
        t = _timed(lambda k=k: xcorr.corr2d(xs, k, mode="same"), repeat=5)
        run["numpy_slice_s"] = t
        run["numpy_mpix_s"] = c * c / t / 1e6
        print(f"k{run['k']}: NumPy backend on a {c}x{c} slice: {t * 1e3:.0f} ms median of 5 "
              f"({run['numpy_mpix_s']:.0f} Mpix/s); cluster/NumPy throughput "
              f"{run['mpix_s'] / run['numpy_mpix_s']:.2f} "
              f"({run['mpix_s_excl_generation'] / run['numpy_mpix_s']:.2f} excl. generation)")
    result["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
