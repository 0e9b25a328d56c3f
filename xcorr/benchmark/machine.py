"""The machine: what this run can use, its thread pools, and its roofline (matmul, copy).

The matmul peak (GF/s) and the copy bandwidth (bytes read + written per second) are measured
in the same run as the cells, so a kernel's fraction of either is a ratio between two
measurements taken under the same load.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import platform
import timeit
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import BackendUnavailableError, __version__, _dispatch

DTYPES = ("float32", "float64")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


@dataclass
class Context:
    """What one run can use: its thread count and backends, and the devices found."""

    threads: int
    backends: Sequence[str]

    @functools.cached_property
    def torch_cuda(self) -> bool:
        """torch is installed and sees a CUDA device (torch is imported only when asked)."""
        if not installed("torch"):
            return False
        import torch

        return torch.cuda.is_available()

    @functools.cached_property
    def cupy(self) -> bool:
        """The CuPy backend can run here (a CUDA device and a working CuPy)."""
        try:
            _dispatch.load("cupy")
        except BackendUnavailableError:
            return False
        return True


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    """Versions of Python, xcorr and every framework and peer library (None: not installed)."""
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version(), "xcorr": __version__}
    for dist in ("numpy", "scipy", "numba", "jax", "jaxlib", "torch", "dask", "cupy-cuda12x",
                 "cupy-cuda13x", "opencv-python-headless", "opencv-python", "matplotlib"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def fix_threads(n: int, torch_used: bool, cv2_used: bool) -> dict[str, Any]:
    """Pin the thread pools we can pin to ``n`` threads; return what each one uses."""
    out: dict[str, Any] = {"os.cpu_count": os.cpu_count(), "requested": n,
                           "scipy.fft workers": n}
    if torch_used:
        import torch

        torch.set_num_threads(n)
        out["torch.get_num_threads"] = torch.get_num_threads()
        out["torch.get_num_interop_threads"] = torch.get_num_interop_threads()
    if installed("numba"):
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        out["numba.get_num_threads"] = numba.get_num_threads()
    if cv2_used:
        import cv2

        cv2.setNumThreads(n)  # OpenCV's pool, as many threads as xcorr's
        out["cv2.getNumThreads"] = cv2.getNumThreads()
    for var in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "XLA_FLAGS", "XCORR_SPIN_US"):
        out[var] = os.environ.get(var)
    out["note"] = ("XLA's CPU thread pool is not settable after start-up: JAX uses its default "
                   "(all cores); ndimage and correlate2d are single-threaded")
    return out


BUSY_HINT = ("on a busy machine, OpenMP threads that spin while waiting (torch's and Numba's "
             "pools, two OpenMP runtimes in one process) made torch calls 10-100x slower here; "
             "run on an idle machine, or set OMP_WAIT_POLICY=PASSIVE (and --threads 1)")


def busy(load: float) -> bool:
    """Whether a 1-minute load average means the cores are shared (timings unreliable)."""
    return load > 0.5 * (os.cpu_count() or 1)


def matmul_peak(n: int, torch_used: bool) -> dict[str, float]:
    """GF/s of an n×n matmul (best of 5), NumPy's BLAS and torch's: this machine's roofline."""
    peaks: dict[str, float] = {}
    rng = np.random.default_rng(1)
    for dtype in DTYPES:
        a = rng.standard_normal((n, n)).astype(dtype)
        cands = [min(timeit.repeat(lambda a=a: a @ a, number=1, repeat=5))]
        if torch_used:
            import torch

            t = torch.from_numpy(a)
            cands.append(min(timeit.repeat(lambda t=t: t @ t, number=1, repeat=5)))
        peaks[dtype] = 2 * n**3 / min(cands) / 1e9
    return peaks


def copy_bandwidth(nbytes: int, torch_used: bool) -> float:
    """Bytes per second (read + written) of copying ``nbytes`` between two arrays, best of 5.

    NumPy's copy is single-threaded, torch's ``copy_`` uses its thread pool: the faster one is
    the floor a memory-bound kernel can reach. ``nbytes`` should exceed the last-level cache.
    """
    src = np.ones(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    dst.fill(0.0)  # touch the pages before timing
    cands = [min(timeit.repeat(lambda: np.copyto(dst, src), number=1, repeat=5))]
    if torch_used:
        import torch

        ts, td = torch.from_numpy(src), torch.from_numpy(dst)
        cands.append(min(timeit.repeat(lambda: td.copy_(ts), number=1, repeat=5)))
    return 2 * src.nbytes / min(cands)


def fresh_copy_bandwidth(nbytes: int) -> float:
    """Bytes per second (read + written) of ``np.copy`` of ``nbytes``, best of 5: a copy into
    pages the system hands out anew, as every out-of-place result's are (NumPy asks for huge
    pages).  Beside :func:`copy_bandwidth`'s floor, it tells how much of a memory-bound
    kernel's distance to that floor is its fresh output's first touch, which no function
    that returns a new array avoids.
    """
    src = np.ones(nbytes // 8, dtype=np.float64)
    return 2 * src.nbytes / min(timeit.repeat(src.copy, number=1, repeat=5))
