"""Cross-backend benchmark: every backend and method against the usual peers, on the same inputs.

    xcorr bench [--quick] [--backends NAME ...] [--out DIR]      # or: python bench/run.py ...

Grid: images of {256², 1024², 4096²} × kernels {3, 11, 31} × {float32, float64}, a batched case
(8, 512, 512), the seed's training loop (10 epochs on the 6×8 edge image) and the dispatch
overhead on that image.  Peers: the seed's double loop (256² k3 only), ``scipy.signal.
correlate2d``, ``scipy.signal.correlate(method="auto")``, ``scipy.ndimage.correlate``,
``torch.nn.functional.conv2d``, ``jax.lax.conv_general_dilated`` and, on a GPU,
``cupyx.scipy.signal.correlate2d`` and cuDNN through torch.

How the clock is kept honest:

- every implementation's first call is timed on its own (JAX compiles then) and its result is
  checked against a float64 NumPy reference *before* any timing: a wrong value or dtype is
  recorded as a failure and never timed;
- one more untimed warm-up for cheap calls, then ``timeit`` repeats (several loops per repeat
  for sub-millisecond calls); we report the median and the interquartile range;
- each timed call ends with the framework's synchronisation (``block_until_ready``,
  ``torch.cuda.synchronize``, the CuPy stream, Dask's ``compute``), so asynchronous dispatch
  cannot stop the clock early;
- thread counts are fixed (torch, Numba, SciPy FFT workers) and recorded with the machine,
  the versions, the date and the load average before and after (the noise you should expect);
- a cell whose extrapolated time (from the same implementation at the previous size) exceeds
  ``--max-call`` seconds is skipped with that estimate, so the full run stays short.

Peak memory per case is measured on one extra call: ``tracemalloc``'s peak, which sees
NumPy-allocated buffers (NumPy, Numba, SciPy, the seed loop and Dask's NumPy chunks, input
conversions excluded), and on CUDA torch's ``max_memory_allocated`` above what the inputs hold.
Torch on CPU, XLA and CuPy allocate where neither can see, so their memory is reported as
``None`` rather than as a misleading number (a process-wide ``ru_maxrss`` is not per case; it is
recorded once, in the metadata).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import resource
import sys
import time
import timeit
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import BACKENDS, BackendUnavailableError, __version__, _dispatch, _methods, corr2d
from ._interop import host_copy
from .reference import corr2d as seed_loop

SIZES = (256, 1024, 4096)
KERNELS = (3, 11, 31)
DTYPES = ("float32", "float64")
BATCH = (8, 512, 512)
QUICK_SIZES, QUICK_KERNELS, QUICK_DTYPES, QUICK_BATCH = (64, 128), (3, 11), ("float32",), (
    4, 64, 64)
EPOCHS = 10

# Peer labels (the row names, and the "× peer" columns of the table).
LOOP = "seed loop"
C2D = "scipy correlate2d"
CORR = "scipy correlate"
NDI = "scipy ndimage"
FCONV = "torch F.conv2d"
LAXCONV = "jax lax.conv"
CUPYX = "cupyx correlate2d"
CUDNN = "torch cuDNN"
PEERS = (LOOP, C2D, CORR, NDI, FCONV, LAXCONV, CUPYX, CUDNN)
# short names for --peers
PEER_KEYS = {"loop": LOOP, "correlate2d": C2D, "correlate": CORR, "ndimage": NDI,
             "conv2d": FCONV, "lax": LAXCONV, "cupyx": CUPYX, "cudnn": CUDNN}


@dataclass(frozen=True)
class Cell:
    """One input configuration: ``shape`` is (B, H, W) (B=1 for a single image)."""

    case: str  # "grid" or "batched"
    shape: tuple[int, int, int]
    k: int
    dtype: str

    @property
    def x_shape(self) -> tuple[int, ...]:
        return self.shape if self.case == "batched" else self.shape[1:]

    @property
    def outputs(self) -> int:
        b, h, w = self.shape
        return b * (h - self.k + 1) * (w - self.k + 1)

    @property
    def flops(self) -> int:
        return 2 * self.outputs * self.k * self.k

    def label(self) -> str:
        b, h, w = self.shape
        size = f"{b}×{h}×{w}" if self.case == "batched" else f"{h}²"
        return f"{size} k{self.k} {self.dtype}"


@dataclass
class Impl:
    """One row of the benchmark: how to build a synchronised zero-argument call for a cell."""

    label: str
    group: str  # a backend name, or "peer"
    method: str | None
    build: Callable[[np.ndarray, np.ndarray], Callable[[], Any]]
    uses_jax: bool = False  # float64 cells run inside ``jax.enable_x64``
    # runs the call once and returns its peak memory in bytes, where that is measurable
    memory: Callable[[Callable[[], Any]], int] | None = None
    applies: Callable[[Cell], str | None] = lambda cell: None  # a reason to skip, or None


@dataclass
class Options:
    threads: int
    max_call: float
    target: float  # seconds of timing per case
    min_repeat: int
    max_repeat: int
    min_loop: float  # seconds per timeit loop group, for tiny calls


# -- helpers --------------------------------------------------------------------------------


def _sync(name: str) -> Callable[[Any], Any]:
    """The function that waits for a result of backend ``name`` (and returns it)."""
    if name == "jax":
        import jax

        return jax.block_until_ready
    if name == "torch":
        import torch

        def wait(r: Any) -> Any:
            if r.is_cuda:
                torch.cuda.synchronize(r.device)
            return r

        return wait
    if name == "cupy":
        import cupy

        def wait_stream(r: Any) -> Any:
            cupy.cuda.get_current_stream().synchronize()
            return r

        return wait_stream
    if name == "dask":
        return lambda r: r.compute()  # lazy: the work happens here
    return lambda r: r


@contextlib.contextmanager
def _precision(dtype: str, uses_jax: bool) -> Iterator[None]:
    """JAX float64 needs x64; switch it on for this block only (the user's setting elsewhere)."""
    if uses_jax and dtype == "float64":
        from ._compat import jax_x64

        with jax_x64(True):
            yield
    else:
        yield


def verify(got: Any, ref: np.ndarray, dtype: str) -> tuple[bool, float | None, str | None]:
    """Check a result against the float64 reference: shape, dtype, and a normwise error.

    The bound ``1e4 · eps · max|ref|`` admits FFT round-off (which scales with the norms of
    the whole image, not the local window) and rejects any real mistake (a flipped kernel or
    an off-by-one window gives errors of the order of ``max|ref|``).
    """
    got = np.asarray(got)
    if got.shape != ref.shape:
        return False, None, f"shape {got.shape}, expected {ref.shape}"
    if got.dtype != np.dtype(dtype):
        return False, None, f"dtype {got.dtype}, expected {dtype}"
    scale = float(np.max(np.abs(ref))) or 1.0
    err = float(np.max(np.abs(got.astype(np.float64) - ref))) / scale
    tol = 1e4 * float(np.finfo(dtype).eps)
    if not err <= tol:  # also catches NaN (stored as None: JSON has no NaN)
        return False, err if math.isfinite(err) else None, f"relative error {err:.3g} > {tol:.3g}"
    return True, err, None


def _fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def host_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes that ``tracemalloc`` sees during one call (NumPy's allocator reports to it)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def cuda_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes of torch's CUDA caching allocator during one call."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    return torch.cuda.max_memory_allocated() - before


def _memory(name: str, device: str | None) -> Callable[[Callable[[], Any]], int] | None:
    """How to measure a backend's peak memory, or None where nothing per call is measurable."""
    if name in ("numpy", "dask"):
        return host_peak
    if name == "torch" and device == "cuda":
        return cuda_peak
    return None  # torch CPU and XLA allocate outside tracemalloc; CuPy's pool has no peak


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version(), "xcorr": __version__}
    for dist in ("numpy", "scipy", "numba", "jax", "jaxlib", "torch", "dask", "cupy-cuda12x",
                 "cupy-cuda13x", "matplotlib"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def _usable(name: str) -> bool:
    try:
        _dispatch.load(name)
    except BackendUnavailableError:
        return False
    return True


def _torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def fix_threads(n: int, torch_used: bool) -> dict[str, Any]:
    """Pin the thread pools we can pin to ``n`` threads; return what each one uses."""
    out: dict[str, Any] = {"os.cpu_count": os.cpu_count(), "requested": n,
                           "scipy.fft workers": n}
    if torch_used:
        import torch

        torch.set_num_threads(n)
        out["torch.get_num_threads"] = torch.get_num_threads()
        out["torch.get_num_interop_threads"] = torch.get_num_interop_threads()
    if _installed("numba"):
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        out["numba.get_num_threads"] = numba.get_num_threads()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS"):
        out[var] = os.environ.get(var)
    out["note"] = ("XLA's CPU thread pool is not settable after start-up: JAX uses its default "
                   "(all cores); ndimage and correlate2d are single-threaded")
    return out


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


# -- the implementations ----------------------------------------------------------------------


def _valid_shape(x: np.ndarray, k: np.ndarray) -> tuple[int, ...]:
    return (*x.shape[:-2], x.shape[-2] - k.shape[0] + 1, x.shape[-1] - k.shape[1] + 1)


def backend_impls(name: str, device: str | None = None) -> list[Impl]:
    """``xcorr.corr2d`` on backend ``name`` for each of its methods and "auto"."""
    be = _dispatch.load(name)
    wait = _sync(name)
    label = name if device is None else f"{name}[{device}]"

    def builder(method: str) -> Callable[[np.ndarray, np.ndarray], Callable[[], Any]]:
        def build(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
            xb, kb = be.asarray(x), be.asarray(k)  # conversion stays outside the clock
            if device is not None:
                xb, kb = xb.to(device), kb.to(device)
            return lambda: wait(corr2d(xb, kb, method=method))
        return build

    return [Impl(f"{label}/{method}", name, method, builder(method), uses_jax=name == "jax",
                 memory=_memory(name, device)) for method in (*be.METHODS, "auto")]


def peer_impls(wanted: set[str], threads: int, gpu_torch: bool, gpu_cupy: bool
               ) -> tuple[list[Impl], list[str]]:
    """The ``wanted`` peers that are installed, and notes on the wanted ones that are not."""
    notes: list[str] = []
    impls: list[Impl] = []

    def missing(label: str, why: str) -> None:
        if label in wanted:
            notes.append(f"{label}: skipped, {why}")

    def loop_applies(cell: Cell) -> str | None:
        if cell.case != "grid" or cell.shape[1] > 256 or cell.k != 3:
            return "pure-Python loop: run at ≤256² with k3 only"
        return None

    impls.append(Impl(LOOP, "peer", None, lambda x, k: lambda: seed_loop(x, k),
                      memory=host_peak, applies=loop_applies))

    def two_d(cell: Cell) -> str | None:
        return "2-D only" if cell.case == "batched" else None

    if _installed("scipy"):
        import scipy.fft
        from scipy import ndimage, signal

        impls.append(Impl(C2D, "peer", None,
                          lambda x, k: lambda: signal.correlate2d(x, k, mode="valid"),
                          memory=host_peak, applies=two_d))

        def build_corr(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
            def call() -> Any:
                with scipy.fft.set_workers(threads):  # the FFT threads xcorr's FFT has
                    return signal.correlate(x, k, mode="valid", method="auto")
            return call

        impls.append(Impl(CORR, "peer", None, build_corr, memory=host_peak, applies=two_d))

        def build_ndi(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
            kh, kw = k.shape
            ho, wo = _valid_shape(x, k)
            # ndimage computes the 'same'-size output centred at k//2; its valid part is this.
            return lambda: ndimage.correlate(x, k, mode="constant")[kh // 2:kh // 2 + ho,
                                                                    kw // 2:kw // 2 + wo]

        impls.append(Impl(NDI, "peer", None, build_ndi, memory=host_peak, applies=two_d))
    else:
        for label in (C2D, CORR, NDI):
            missing(label, "SciPy is not installed")

    if _installed("torch"):
        impls.append(Impl(FCONV, "peer", None, _build_fconv(None)))
        if gpu_torch:
            impls.append(Impl(CUDNN, "peer", None, _build_fconv("cuda"), memory=cuda_peak))
        else:
            missing(CUDNN, "no CUDA device here")
    else:
        missing(FCONV, "torch is not installed")

    if _installed("jax"):
        impls.append(Impl(LAXCONV, "peer", None, _build_laxconv, uses_jax=True))
    else:
        missing(LAXCONV, "JAX is not installed")

    if gpu_cupy:
        impls.append(Impl(CUPYX, "peer", None, _build_cupyx, applies=two_d))
    else:
        missing(CUPYX, "no usable CUDA device for CuPy here")
    return [i for i in impls if i.label in wanted], notes



def _build_fconv(device: str | None) -> Callable[[np.ndarray, np.ndarray], Callable[[], Any]]:
    def build(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
        import torch
        import torch.nn.functional as F

        out_shape = _valid_shape(x, k)
        xt = torch.from_numpy(np.ascontiguousarray(x)).reshape(-1, 1, *x.shape[-2:])
        kt = torch.from_numpy(np.ascontiguousarray(k))[None, None]
        if device is None:
            def call() -> Any:
                with torch.no_grad():
                    return F.conv2d(xt, kt).reshape(out_shape)
            return call
        xt, kt = xt.to(device), kt.to(device)

        def call_cuda() -> Any:
            # IEEE float32: TF32 would change the result (pytorch #107514).
            with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
                r = F.conv2d(xt, kt).reshape(out_shape)
            torch.cuda.synchronize()
            return r
        return call_cuda
    return build


def _build_laxconv(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    out_shape = _valid_shape(x, k)

    @jax.jit
    def conv(a: Any, w: Any) -> Any:
        a = a.reshape(-1, 1, *a.shape[-2:])
        y = lax.conv_general_dilated(a, w[None, None], (1, 1), "VALID",
                                     precision=lax.Precision.HIGHEST)
        return y.reshape(out_shape)

    xj, kj = jnp.asarray(x), jnp.asarray(k)
    return lambda: conv(xj, kj).block_until_ready()


def _build_cupyx(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
    import cupy
    import cupyx.scipy.signal as cs  # an explicit submodule import (cupy #8336)

    xc, kc = cupy.asarray(x), cupy.asarray(k)

    def call() -> Any:
        r = cs.correlate2d(xc, kc, mode="valid")
        cupy.cuda.get_current_stream().synchronize()
        return r
    return call


# -- measuring one case -----------------------------------------------------------------------


def _record(impl: Impl, cell: Cell) -> dict[str, Any]:
    return {"case": cell.case, "shape": list(cell.shape), "k": cell.k, "dtype": cell.dtype,
            "impl": impl.label, "group": impl.group, "method": impl.method, "status": None,
            "reason": None, "verified": False, "rel_err": None, "first_call_s": None,
            "median_s": None, "q1_s": None, "q3_s": None, "iqr_s": None, "repeats": 0,
            "loops": 0, "times_s": [], "gflops": None, "peak_fraction": None,
            "peak_mem_bytes": None, "estimate_s": None}


def time_call(fn: Callable[[], Any], first: float, opts: Options) -> dict[str, Any]:
    """Warm up, then ``timeit`` repeats of ``fn``: per-call median, quartiles and raw times.

    A call slower than ``opts.max_call`` is timed once (its record says ``repeats: 1``).
    """
    steady = first
    if first < 0.25:  # a second warm-up is cheap and settles caches and allocators
        t0 = time.perf_counter()
        fn()
        steady = time.perf_counter() - t0
    steady = max(steady, 1e-7)
    loops = max(1, math.ceil(opts.min_loop / steady))
    repeats = int(min(opts.max_repeat, max(opts.min_repeat if steady < 0.5 else 3,
                                           round(opts.target / (steady * loops)))))
    if steady > opts.max_call:  # slower than predicted (e.g. threads starved on a busy
        repeats = 1             # machine): one timed call keeps the run's length bounded
    times = [t / loops for t in timeit.Timer(fn).repeat(repeat=repeats, number=loops)]
    q1, med, q3 = (float(v) for v in np.percentile(times, [25, 50, 75]))
    return {"median_s": med, "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1, "repeats": repeats,
            "loops": loops, "times_s": times}


def measure(impl: Impl, cell: Cell, x: np.ndarray, k: np.ndarray, ref: np.ndarray,
            opts: Options, estimate: float | None, peaks: dict[str, float],
            source: str | None = None) -> dict[str, Any]:
    """Verify, then time, one implementation on one cell; never raises.

    ``estimate`` (seconds per call, extrapolated from ``source``) above ``opts.max_call``
    skips the cell.
    """
    rec = _record(impl, cell)
    reason = impl.applies(cell)
    if reason is None and estimate is not None and estimate > opts.max_call:
        reason = (f"would take ~{estimate:.2g} s per call (extrapolated from "
                  f"{source or 'the previous size'})")
        rec["estimate_s"] = estimate
    if reason is not None:
        rec.update(status="skipped", reason=reason)
        return rec
    try:
        with _precision(cell.dtype, impl.uses_jax):
            fn = impl.build(x, k)
            t0 = time.perf_counter()
            out = fn()
            rec["first_call_s"] = time.perf_counter() - t0
            ok, err, why = verify(host_copy(out), ref, cell.dtype)
            rec.update(verified=ok, rel_err=err)
            if not ok:
                rec.update(status="failed", reason=f"wrong result, not timed: {why}")
                return rec
            del out
            rec.update(time_call(fn, rec["first_call_s"], opts))
            if impl.memory is not None:
                rec["peak_mem_bytes"] = impl.memory(fn)
    except Exception as exc:  # a benchmark reports a crash and goes on
        tracemalloc.stop()
        rec.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:300])
        return rec
    rec["status"] = "ok"
    rec["gflops"] = cell.flops / rec["median_s"] / 1e9
    if cell.dtype in peaks:
        rec["peak_fraction"] = rec["gflops"] / peaks[cell.dtype]
    return rec


def reference(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The float64 direct result of xcorr's NumPy backend (exact products, one rounding each)."""
    be = _dispatch.load("numpy")
    return be.corr2d_valid(x.astype(np.float64), k.astype(np.float64), "direct")


# -- the run ----------------------------------------------------------------------------------


def _cells(sizes: Sequence[int], kernels: Sequence[int], dtypes: Sequence[str],
           batch: tuple[int, int, int]) -> list[Cell]:
    cells = [Cell("grid", (1, n, n), kk, dt) for dt in dtypes for kk in kernels for n in sizes
             if kk <= n]
    cells += [Cell("batched", batch, kk, "float32") for kk in kernels if kk <= batch[1]]
    return cells


def run_grid(impls: list[Impl], cells: list[Cell], opts: Options, peaks: dict[str, float],
             log: TextIO) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    records = []
    # (impl, case, k, dtype) -> (outputs, seconds, size) at the last size tried.  The estimate
    # scales the *fastest* repeat by the number of outputs: the minimum is the least disturbed
    # by a busy machine, and fixed per-call costs make the linear scaling an overestimate.
    last: dict[tuple[str, str, int, str], tuple[int, float, str]] = {}
    for cell in cells:
        x = rng.standard_normal(cell.x_shape).astype(cell.dtype)
        k = rng.standard_normal((cell.k, cell.k)).astype(cell.dtype)
        ref = reference(x, k)
        for impl in impls:
            key = (impl.label, cell.case, cell.k, cell.dtype)
            estimate = source = None
            if key in last:
                outputs, seconds, source = last[key]
                estimate = seconds * cell.outputs / outputs
            rec = measure(impl, cell, x, k, ref, opts, estimate, peaks, source)
            size = f"{cell.shape[1]}²"
            if rec["status"] == "ok":
                fastest = min(rec["times_s"])
                last[key] = (cell.outputs, fastest, f"{_fmt_time(fastest)} at {size}")
            elif rec["estimate_s"] is not None:
                last[key] = (cell.outputs, rec["estimate_s"],
                             f"~{_fmt_time(rec['estimate_s'])} at {size}")
            records.append(rec)
            shown = _fmt_time(rec["median_s"]) if rec["status"] == "ok" else rec["status"]
            print(f"  {cell.label():<22} {impl.label:<20} {shown}", file=log, flush=True)
    return records


def run_dispatch(names: Sequence[str], opts: Options) -> list[dict[str, Any]]:
    """``corr2d`` on the seed's 6×8 image against the backend kernel it ends up calling."""
    x = np.ones((6, 8), dtype=np.float32)
    x[:, 2:6] = 0
    k = np.array([[1.0, -1.0]], dtype=np.float32)
    ref = reference(x, k)
    out = []
    for name in names:
        be = _dispatch.load(name)
        wait = _sync(name)
        rec: dict[str, Any] = {"backend": name, "status": "ok", "reason": None}
        try:
            xb, kb = be.promote(be.asarray(x), be.asarray(k))
            method = _methods.choose(be.costs(), tuple(xb.shape), tuple(kb.shape),
                                     xb.dtype.itemsize, False)
            for what, fn in _dispatch_calls(be, wait, xb, kb, method).items():
                t0 = time.perf_counter()
                got = fn()
                first = time.perf_counter() - t0
                ok, _, why = verify(host_copy(got), ref, "float32")
                if not ok:
                    raise ValueError(f"{what}: wrong result: {why}")
                rec[what] = time_call(fn, first, opts)
            rec["method"] = method
            rec["ratio"] = rec["api"]["median_s"] / rec["kernel"]["median_s"]
        except Exception as exc:
            rec.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:300])
        out.append(rec)
    return out


def _dispatch_calls(be: Any, wait: Callable[[Any], Any], xb: Any, kb: Any, method: str
                    ) -> dict[str, Callable[[], Any]]:
    """The public call and the backend kernel it ends in, on the same prepared arrays."""
    return {"api": lambda: wait(corr2d(xb, kb)),
            "kernel": lambda: wait(be.corr2d_valid(xb, kb, method))}


def run_training(names: Sequence[str], opts: Options) -> tuple[list[dict[str, Any]], str | None]:
    """The seed's loop (10 epochs, 1×2 kernel, lr 0.03) per backend via ``learn_kernel``."""
    try:
        from .train import learn_kernel
    except ImportError as exc:
        return [], f"training loop skipped: xcorr.train.learn_kernel is missing ({exc})"
    x = np.ones((6, 8), dtype=np.float32)
    x[:, 2:6] = 0
    y = reference(x, np.array([[1.0, -1.0]])).astype(np.float32)

    def once(name: str) -> np.ndarray:
        res = learn_kernel(x, y, (1, 2), backend=name, lr=3e-2, epochs=EPOCHS, seed=0)
        return host_copy(res.kernel)  # waits for the device

    out = []
    truth = None
    for name in ("numpy", *[n for n in names if n != "numpy"]):
        rec: dict[str, Any] = {"backend": name, "epochs": EPOCHS, "status": "ok",
                               "reason": None}
        try:
            t0 = time.perf_counter()
            kernel = once(name)
            rec["first_call_s"] = time.perf_counter() - t0
            if truth is None:
                truth = kernel.astype(np.float64)
            ok, err, why = verify(kernel, truth, "float32")
            rec.update(verified=ok, rel_err=err, kernel=kernel.tolist())
            if not ok:
                rec.update(status="failed", reason=f"differs from NumPy's trajectory: {why}")
            else:
                rec.update(time_call(lambda name=name: once(name), rec["first_call_s"], opts))
        except Exception as exc:
            rec.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:300])
        if name in names:
            out.append(rec)
    return out, None


# -- targets ----------------------------------------------------------------------------------


def _index(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    return {(r["case"], tuple(r["shape"]), r["k"], r["dtype"], r["impl"]): r for r in records}


def _time_of(rec: dict[str, Any] | None) -> tuple[float | None, bool]:
    """(seconds, estimated?) of a record: its median, or the estimate it was skipped with."""
    if rec is None:
        return None, False
    if rec["status"] == "ok":
        return rec["median_s"], False
    return rec["estimate_s"], rec["estimate_s"] is not None


def targets(records: list[dict[str, Any]], dispatch: list[dict[str, Any]]
            ) -> list[dict[str, str]]:
    """The issue's targets as rows ``{target, subject, measured, result}``."""
    rows: list[dict[str, str]] = []
    idx = _index(records)
    backends = sorted({r["group"] for r in records if r["group"] != "peer"})

    def add(target: str, subject: str, measured: str, ok: bool | None) -> None:
        result = "n/a" if ok is None else ("pass" if ok else "MISS")
        rows.append({"target": target, "subject": subject, "measured": measured,
                     "result": result})

    # 1. auto within 1.2x of the backend's fastest method, in every cell
    for name in backends:
        worst, misses, cells = 0.0, [], 0
        for r in records:
            if r["group"] != name or r["method"] != "auto" or r["status"] != "ok":
                continue
            prefix = r["impl"].rsplit("/", 1)[0]
            best = [o["median_s"] for o in records
                    if o["impl"].startswith(prefix + "/") and o["method"] != "auto"
                    and o["status"] == "ok" and o["case"] == r["case"]
                    and o["shape"] == r["shape"] and o["k"] == r["k"]
                    and o["dtype"] == r["dtype"]]
            if not best:
                continue
            ratio = r["median_s"] / min(best)
            r["auto_over_best"] = ratio
            cells += 1
            worst = max(worst, ratio)
            if ratio > 1.2:
                misses.append(f"{Cell(r['case'], tuple(r['shape']), r['k'], r['dtype']).label()}"
                              f" ({ratio:.2f}×)")
        measured = f"worst {worst:.2f}× over {cells} cells" + (
            "; misses: " + ", ".join(misses) if misses else "")
        add("auto ≤ 1.2× fastest method", name, measured, None if not cells else not misses)

    # 2. JAX and torch auto >= 10x faster than their native conv at 1024² k3 and k31
    for name in ("jax", "torch"):
        if name not in backends:
            continue
        for dtype in DTYPES:
            for kk in (3, 31):
                key = ("grid", (1, 1024, 1024), kk, dtype)
                auto, _ = _time_of(idx.get((*key, f"{name}/auto")))
                native, est = _time_of(idx.get((*key, f"{name}/native")))
                if auto is None or native is None:
                    continue
                speed = native / auto
                add("auto ≥ 10× native conv", f"{name} 1024² k{kk} {dtype}",
                    f"{speed:.1f}×" + (" (native estimated, skipped)" if est else ""),
                    speed >= 10)

    # 3. NumPy vs SciPy at 1024²
    for dtype in DTYPES:
        key = ("grid", (1, 1024, 1024), 3, dtype)
        ours, _ = _time_of(idx.get((*key, "numpy/auto")))
        peer, est = _time_of(idx.get((*key, C2D)))
        if ours is not None and peer is not None:
            add("NumPy ≥ 10× correlate2d", f"1024² k3 {dtype}",
                f"{peer / ours:.1f}×" + (" (peer estimated)" if est else ""), peer / ours >= 10)
        key = ("grid", (1, 1024, 1024), 31, dtype)
        ours, _ = _time_of(idx.get((*key, "numpy/auto")))
        peer = idx.get((*key, CORR))
        if ours is not None and peer is not None and peer["status"] == "ok":
            ratio = ours / peer["median_s"]
            add("NumPy ≤ 1.2× SciPy FFT", f"1024² k31 {dtype}",
                f"{ratio:.2f}× scipy.signal.correlate (auto)", ratio <= 1.2)

    # 4. batched: each backend's auto no slower than F.conv2d / lax.conv
    for name in backends:
        for r in records:
            if r["case"] != "batched" or r["impl"] != f"{name}/auto" or r["status"] != "ok":
                continue
            for peer in (FCONV, LAXCONV):
                p = idx.get(("batched", tuple(r["shape"]), r["k"], r["dtype"], peer))
                if p is None or p["status"] != "ok":
                    continue
                ratio = r["median_s"] / p["median_s"]
                add("batched ≤ 1× peer", f"{name} k{r['k']} vs {peer}",
                    f"{ratio:.3g}× its time", ratio <= 1.0)

    # 5. dispatch overhead
    for d in dispatch:
        if d["status"] == "ok":
            add("dispatch ≤ 2× kernel", f"{d['backend']} 6×8 ({d['method']})",
                f"{d['ratio']:.2f}× ({_fmt_time(d['api']['median_s'])} vs "
                f"{_fmt_time(d['kernel']['median_s'])})", d["ratio"] <= 2.0)
        else:
            add("dispatch ≤ 2× kernel", d["backend"], d["reason"] or "failed", False)
    return rows


# -- reporting --------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    meta, records = result["meta"], result["records"]
    peers = [p for p in PEERS if any(r["impl"] == p for r in records)]
    idx = _index(records)
    out = [f"# xcorr benchmark, {meta['date']}", ""]
    th = meta["threads"]
    out += [f"- machine: {meta['cpu']} ({th['os.cpu_count']} logical CPUs), "
            f"{meta['platform']}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v),
            "- threads: " + ", ".join(f"{k}={v}" for k, v in th.items() if k != "note")
            + f" ({th['note']})",
            f"- matmul peak measured here: float32 {meta['peak_gflops']['float32']:.0f} GF/s, "
            f"float64 {meta['peak_gflops']['float64']:.0f} GF/s (matmul, best of 5; "
            f"{'512²: a rough figure' if meta['quick'] else '2048²'})",
            f"- load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}; "
            f"wall time {meta['wall_s']:.0f} s; command: `{meta['command']}`",
            "- times: median of timeit repeats (IQR = spread between quartiles); first call "
            "(JAX compiles there) apart; every timed result was first checked against a "
            "float64 NumPy reference. Memory: peak of one call, tracemalloc (NumPy-allocated "
            "buffers) or torch.cuda.max_memory_allocated; — where not measurable. "
            "`× peer` = peer's time / this time (> 1: faster than the peer).", ""]
    if meta["loadavg_before"][0] > 0.5 * th["os.cpu_count"]:
        out += [f"**Noise warning:** the machine was busy (load {meta['loadavg_before'][0]:.1f} "
                f"on {th['os.cpu_count']} CPUs); treat ratios as rough.", ""]
    if any((r["peak_fraction"] or 0) > 1 for r in records):
        out += ["**Peak warning:** some cases exceed 100 % of the matmul peak measured in this "
                "run, so that measurement was disturbed; read % peak as relative only.", ""]

    out += ["## Targets", "", "| target | subject | measured | result |", "|---|---|---|---|"]
    out += [f"| {t['target']} | {t['subject']} | {t['measured']} | {t['result']} |"
            for t in result["targets"]]
    if not result["targets"]:
        out.append("| — | no target cell is in this grid | — | n/a |")

    # headline: float32 at the size nearest 1024², auto of each backend and the peers
    grid = [r for r in records if r["case"] == "grid" and r["dtype"] == "float32"]
    if grid:
        sizes = sorted({r["shape"][1] for r in grid})
        size = min(sizes, key=lambda n: abs(math.log(n / 1024)))
        ks = sorted({r["k"] for r in grid})
        rows = [r["impl"] for r in grid if r["method"] == "auto"] + peers
        out += ["", f"## Headline: float32, {size}² image (median time)", "",
                "| implementation | " + " | ".join(f"k{kk}" for kk in ks) + " |",
                "|---|" + "---|" * len(ks)]
        for label in dict.fromkeys(rows):
            cells = []
            for kk in ks:
                r = idx.get(("grid", (1, size, size), kk, "float32", label))
                cells.append(_short(r))
            out.append(f"| {label} | " + " | ".join(cells) + " |")

    out += ["", "## All cases", "",
            "| case | implementation | median | IQR | first call | GF/s | % peak | memory | "
            "auto/best | " + " | ".join(f"× {p}" for p in peers) + " |",
            "|---|---|---|---|---|---|---|---|---|" + "---|" * len(peers)]
    for r in records:
        cell = Cell(r["case"], tuple(r["shape"]), r["k"], r["dtype"])
        if r["status"] != "ok":
            out.append(f"| {cell.label()} | {r['impl']} | {r['status']}: {r['reason']} |"
                       + " |" * (7 + len(peers)))
            continue
        ratios = []
        for p in peers:
            pr = idx.get((r["case"], tuple(r["shape"]), r["k"], r["dtype"], p))
            ratios.append(f"{pr['median_s'] / r['median_s']:.3g}"
                          if pr and pr["status"] == "ok" else "—")
        mem = (f"{r['peak_mem_bytes'] / 2**20:.1f} MiB" if r["peak_mem_bytes"] is not None
               else "—")
        ab = f"{r['auto_over_best']:.2f}" if r.get("auto_over_best") is not None else ""
        pf = f"{100 * r['peak_fraction']:.1f}" if r["peak_fraction"] is not None else "—"
        iqr = _fmt_time(r["iqr_s"]) if r["repeats"] > 1 else "timed once"
        out.append(f"| {cell.label()} | {r['impl']} | {_fmt_time(r['median_s'])} | "
                   f"{iqr} | {_fmt_time(r['first_call_s'])} | "
                   f"{r['gflops']:.3g} | {pf} | {mem} | {ab} | " + " | ".join(ratios) + " |")

    out += ["", f"## Training loop ({EPOCHS} epochs, seed's 6×8 image, 1×2 kernel, float32)",
            ""]
    if result["training"]:
        out += ["| backend | first call | median | IQR | learned kernel |", "|---|---|---|---|---|"]
        for t in result["training"]:
            if t["status"] == "ok":
                out.append(f"| {t['backend']} | {_fmt_time(t['first_call_s'])} | "
                           f"{_fmt_time(t['median_s'])} | {_fmt_time(t['iqr_s'])} | "
                           f"{np.round(t['kernel'], 4).tolist()} |")
            else:
                out.append(f"| {t['backend']} | {t['status']}: {t['reason']} | | | |")
    out += ["", "## Dispatch overhead (seed's 6×8 image, [[1, -1]], float32)", "",
            "| backend | corr2d | backend kernel | ratio |", "|---|---|---|---|"]
    for d in result["dispatch"]:
        if d["status"] == "ok":
            out.append(f"| {d['backend']} | {_fmt_time(d['api']['median_s'])} | "
                       f"{_fmt_time(d['kernel']['median_s'])} ({d['method']}) | "
                       f"{d['ratio']:.2f} |")
        else:
            out.append(f"| {d['backend']} | {d['status']}: {d['reason']} | | |")
    if meta["notes"]:
        out += ["", "## Notes", ""] + [f"- {n}" for n in meta["notes"]]
    return "\n".join(out) + "\n"


def _short(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    if r["status"] == "ok":
        return _fmt_time(r["median_s"])
    if r["estimate_s"] is not None:
        return f"skipped (~{r['estimate_s']:.1g} s)"
    return r["status"]


_COLORS = {"numpy": "C0", "jax": "C1", "torch": "C2", "cupy": "C3", "dask": "C4"}
_METHOD_STYLE = {"direct": ("-", "s", 1.2), "fft": ("--", "^", 1.2), "native": ("-.", "v", 1.2),
                 "auto": ("-", "o", 2.6)}
_PEER_COLORS = dict(zip(PEERS, ("0.3", "C5", "C6", "C7", "C8", "C9", "k", "C3"), strict=True))


def _style(label: str) -> dict[str, Any]:
    """Colour by backend (each peer its own), line and marker by method; peers dotted."""
    if label in _PEER_COLORS:
        return {"color": _PEER_COLORS[label], "ls": ":", "marker": "x", "lw": 1.5}
    backend, method = label.rsplit("/", 1)
    ls, marker, lw = _METHOD_STYLE.get(method, ("-", "d", 1.2))
    return {"color": _COLORS.get(backend.split("[")[0], "k"), "ls": ls, "marker": marker,
            "lw": lw, "alpha": 1.0 if method == "auto" else 0.75}


def plot(result: dict[str, Any], path: Path) -> str | None:
    """Time vs image size, log-log, a line per implementation, a panel per kernel size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install \"xcorr[plot]\")"
    grid = [r for r in result["records"] if r["case"] == "grid" and r["status"] == "ok"]
    dtypes = [d for d in DTYPES if any(r["dtype"] == d for r in grid)]
    ks = sorted({r["k"] for r in grid})
    if not grid:
        return "plot skipped: no timed grid case"
    fig, axes = plt.subplots(len(dtypes), len(ks), figsize=(4.2 * len(ks), 3.6 * len(dtypes)),
                             squeeze=False, sharex=True)
    for i, dtype in enumerate(dtypes):
        for j, kk in enumerate(ks):
            ax = axes[i][j]
            rows = [r for r in grid if r["dtype"] == dtype and r["k"] == kk]
            for label in dict.fromkeys(r["impl"] for r in rows):
                pts = sorted((r["shape"][1], r["median_s"]) for r in rows
                             if r["impl"] == label)
                ax.loglog(*zip(*pts, strict=True), label=label, ms=4, **_style(label))
            sizes = sorted({r["shape"][1] for r in rows})
            ax.set_xticks(sizes, [f"{n}²" for n in sizes])
            ax.minorticks_off()
            ax.set_title(f"k{kk}, {dtype}")
            ax.set_xlabel("image size")
            ax.set_ylabel("median time (s)")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return None


# -- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``xcorr bench``."""
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, metavar="NAME",
                        help="benchmark only these backends (default: all that can run "
                        "here)")
    parser.add_argument("--peers", nargs="+", choices=PEER_KEYS, metavar="NAME",
                        help="compare with these peers only (default: all that are installed): "
                        + ", ".join(PEER_KEYS))
    parser.add_argument("--quick", action="store_true",
                        help="a tiny grid (64², 128²; k3, k11; float32) that takes under a "
                        "minute")
    parser.add_argument("--out", type=Path, default=Path("bench/results"),
                        help="directory for bench.json, bench.md and bench.png "
                        "(default: bench/results)")
    parser.add_argument("--sizes", nargs="+", type=int, metavar="N",
                        help="image sizes N (N×N) instead of the default grid")
    parser.add_argument("--kernels", nargs="+", type=int, metavar="K",
                        help="kernel sizes K (K×K) instead of the default grid")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, help="dtypes to run")
    parser.add_argument("--batch", nargs=3, type=int, metavar=("B", "H", "W"),
                        help=f"shape of the batched case (default {BATCH})")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for torch, Numba and the SciPy FFT (default: all CPUs)")
    parser.add_argument("--max-call", type=float, default=1.5, metavar="SECONDS",
                        help="skip a case whose call is estimated to take longer (default 1.5)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the benchmark described by ``args``; write JSON, Markdown and PNG; return 0."""
    out = out or sys.stdout
    start, load_before = time.perf_counter(), os.getloadavg()
    quick = args.quick
    sizes = args.sizes or (QUICK_SIZES if quick else SIZES)
    kernels = args.kernels or (QUICK_KERNELS if quick else KERNELS)
    dtypes = args.dtypes or (QUICK_DTYPES if quick else DTYPES)
    batch = tuple(args.batch) if args.batch else (QUICK_BATCH if quick else BATCH)
    opts = Options(threads=args.threads, max_call=args.max_call,
                   target=0.05 if quick else 0.5, min_repeat=3 if quick else 5,
                   max_repeat=7 if quick else 25, min_loop=2e-3 if quick else 2e-2)
    notes: list[str] = []

    wanted = {PEER_KEYS[p] for p in (args.peers or PEER_KEYS)}
    names = []
    for name in args.backends or BACKENDS:  # load only what was asked for: imports are slow
        try:
            _dispatch.load(name)
        except BackendUnavailableError as exc:
            notes.append(f"backend {name} skipped: {exc}")
        else:
            names.append(name)

    impls: list[Impl] = []
    largest = max(sizes)
    for name in names:
        be_impls = backend_impls(name)
        if name == "dask":
            notes.append(f"dask: run at the largest size ({largest}²) only: its chunked graph "
                         "is for images too big for one block, and costs milliseconds of "
                         "scheduling")
            for impl in be_impls:
                impl.applies = lambda cell: (None if cell.case == "grid"
                                             and cell.shape[1] == largest
                                             else f"dask: only at {largest}²")
        impls += be_impls
    torch_used = _installed("torch") and ("torch" in names or bool({FCONV, CUDNN} & wanted))
    threads = fix_threads(args.threads, torch_used)
    gpu_torch = torch_used and _torch_cuda()
    gpu_cupy = CUPYX in wanted and _usable("cupy")
    if gpu_torch and "torch" in names:
        impls += backend_impls("torch", "cuda")
    peers, peer_notes = peer_impls(wanted, args.threads, gpu_torch, gpu_cupy)
    impls += peers
    notes += peer_notes
    if CORR in wanted:
        notes.append(f"{CORR} runs inside scipy.fft.set_workers({args.threads}) so its FFT has "
                     "the threads xcorr's has; correlate2d and ndimage are single-threaded")
    if NDI in wanted:
        notes.append(f"{NDI} computes the 'same'-size output; the valid slice is compared, the "
                     "whole call is timed")
    if CORR in wanted and _installed("scipy"):
        from scipy import signal

        chosen = {f"{n}² k{kk}": signal.choose_conv_method(
            np.zeros((n, n), "float32"), np.zeros((kk, kk), "float32"), mode="valid")
            for n in sizes for kk in kernels if kk <= n}
        notes.append("scipy.signal.correlate(method='auto') chose: "
                     + ", ".join(f"{c} {m}" for c, m in chosen.items()))

    print(f"xcorr bench: backends {', '.join(names) or 'none'}; measuring matmul peak",
          file=out, flush=True)
    peaks = matmul_peak(512 if quick else 2048, torch_used)
    cells = _cells(sizes, kernels, dtypes, batch)
    records = run_grid(impls, cells, opts, peaks, out)
    training, why = run_training(names, opts)
    if why:
        notes.append(why)
    dispatch = run_dispatch(names, opts)
    result = {
        "meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                     timespec="seconds"),
                 "cpu": _cpu_model(), "platform": platform.platform(),
                 "versions": _versions(), "threads": threads, "peak_gflops": peaks,
                 "backends": names, "quick": quick, "command": " ".join(sys.argv),
                 "grid": {"sizes": list(sizes), "kernels": list(kernels),
                          "dtypes": list(dtypes), "batch": list(batch)},
                 "options": dict(vars(opts)),
                 "loadavg_before": [round(v, 2) for v in load_before],
                 "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 "notes": notes},
        "records": records, "training": training, "dispatch": dispatch,
    }
    result["targets"] = targets(records, dispatch)
    result["meta"]["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    result["meta"]["wall_s"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_plot:
        why = plot(result, args.out / "bench.png")
        if why:
            notes.append(why)
    text = json.dumps(_json_safe(result), indent=1, allow_nan=False)
    (args.out / "bench.json").write_text(text + "\n")
    (args.out / "bench.md").write_text(markdown(result))
    print("\ntargets (noisy on a busy machine; see bench.md):", file=out)
    for t in result["targets"]:
        print(f"  {t['result']:<5} {t['target']}: {t['subject']}: {t['measured']}", file=out)
    print(f"wrote {args.out / 'bench.json'}, bench.md" + ("" if args.no_plot else ", bench.png")
          + f" in {result['meta']['wall_s']:.0f} s", file=out)
    return 0


def _json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as None (JSON has no NaN/Infinity) and tuples as lists."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xcorr.benchmark [options]`` (the same as ``xcorr bench``)."""
    parser = argparse.ArgumentParser(prog="xcorr bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
