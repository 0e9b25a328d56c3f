"""NumPy backend: a compiled or blocked direct loop, and a real FFT (``scipy.fft`` if present).

This module also documents the backend surface every ``backends/_<name>.py`` offers.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from .. import _grad, _numba
from .._boundary import NUMPY_MODES
from .._conv_cost import ConvCost
from .._fft import fft_valid, mul_conj_inplace, overlap_tiles, overlap_valid, tiles_by_view
from .._interop import to_numpy
from .._methods import Cost, ceil_div, for_itemsize, hosted
from .._validate import broadcast_batch, numpy_kind, numpy_result_dtype

NAME = "numpy"
xp = np  # the array namespace the operations are written against
METHODS = ("direct", "fft", "overlap")

# Cost-model constants (ns), keyed by dtype width, on the project machine (2 AMD EPYC Zen-4
# cores, NumPy 2.4, SciPy 1.17, Numba 0.68).  direct (tap, out): ``bench/fit_direct.py numpy``
# (wall time on two threads, 16²-1024², batches 1 and 8, k 1-15; 17-19% median error).
# fft and overlap: least squares over 256² to 4096² (and 8×128²), k 5-41, tiles 16-512, of
# single-thread CPU time (process_time, min of 3: the machine was shared, wall clocks were not
# usable), halved for the two FFT workers; fixed parts from 8²-64² calls
# (``bench/fit_fft.py numpy``).
# Measured 1024² float32, one thread: fft 8.4 ms whatever the kernel, overlap 6.8 ms at k5
# (B=64) and 9.0 at k11; 2048²: fft 47-51, overlap 31 (k5), 43 (k11), 42 (k21, B=256); 4096²:
# fft 231, overlap 155 (k11, B=256), 172 (k31, B=256).  The whole-image FFT costs more per
# N·log2(N) as it leaves the caches (0.40 ns at 1024², 0.57 at 4096², one thread): ``point``
# is the compromise over these sizes.
#
# In wall time the FFTs were slower than that fit (halved single-thread CPU time) said: the
# committed benchmark's numpy/fft cells ran 1.3-2.2x the prediction at 1024²-4096² (3x at
# 256², where two workers barely help), overlap-save 1.2-1.7x.  So ``point`` is scaled by 1.6,
# the tile terms by 1.3, and the fixed parts set to 60/84 µs: against that run's medians
# (in-sample) no numpy cell is left where auto is over 1.2x the fastest method (there were
# seven), and overlap-save is chosen for large images with kernels from 21.
#
# Overlap-save then went by parts of a few tiles through one core's cache (``_overlap``), and
# its tile terms were refitted to wall time on two threads (medians of 5-9 interleaved calls,
# 1024²-4096², k 7/15/31, tiles 64-1024): a flat cost per point (least squares gave no log2
# term; 6-8% median error), tiles beyond ``tile_cache_points`` at the FFT's cost (float64
# 1024² tiles ran at 6.3 ns a point against 5.1 for 512²), and a fixed part of 1.4/0.9 ms
# (float32/float64: parts and threads cost more per call than one batch; the benchmark's
# 1024² k15 float32 overlap took 5.0 ms, 3.8 predicted without it, and auto took it over
# the direct loop's 3.9).  With them auto's tile was within 1.15x of the best measured one
# in 14 of those 18 cells (1.24x and 1.35x at k7, where the direct loop is chosen anyway).
COSTS = {
    4: Cost(tap=0.019, out=0.097, point=0.314, fixed=60_000.0,
            tile_point=0.0, tile_pix=3.34, tile_fixed=1_380_000.0, tile_cache_points=1 << 18),
    8: Cost(tap=0.032, out=0.17, point=0.509, fixed=60_000.0,
            tile_point=0.0, tile_pix=5.40, tile_fixed=860_000.0, tile_cache_points=1 << 18),
}
# Without Numba, the blocked NumPy loop (``_shift_add``): ``XCORR_DISABLE_NUMBA=1 python
# bench/fit_direct.py numpy`` on the AMD machine, 2 MiB blocks (16% / 10% median error; the
# 1 MiB blocks and the first tap's shortcut came later and were timed on the Intel machine
# only, 25-30% faster there at 1024² k3); ``tap_call`` is each tap's two ufunc calls per
# block.  The FFTs do not use Numba.
FALLBACK_COSTS = {
    4: replace(COSTS[4], tap=0.11, out=0.24, tap_call=2_200.0),
    8: replace(COSTS[8], tap=0.21, out=0.47, tap_call=2_250.0),
}

# conv2d's constants (ns; see xcorr/_conv_cost.py), from bench runs on the project machine.
CONV_COSTS = {
    4: ConvCost(gemm=0.010, copy=0.15, native=None, native_thin=None, fixed=20_000.0),
    8: ConvCost(gemm=0.020, copy=0.15, native=None, native_thin=None, fixed=20_000.0),
}

# conv2d's GEMMs run in column panels of this width (reproducible bits: see _conv._gemm).
GEMM_PANEL = 512

# Output bytes per block of the pure-NumPy loop (``_shift_add``).  Each tap costs two ufunc
# calls per block, ~2 µs of dispatch each under the GIL, which the threads take in turn: with
# small blocks the calls, not the memory, set the pace; with large ones the block's three
# arrays leave the core's L2.  Where the balance lies depends on the machine, so 1 MiB:
# within 8% of the best block measured on one machine and 17% on the other, where 2 MiB lost
# 20-40% and 256 KiB up to 2x (medians, two threads).
#   2 AMD Zen-4 cores (1 MiB L2 each), 256 KiB / 1 MiB / 2 MiB: 1024² k3 float64 3.16 / 2.53 /
#   2.65 ms, k7 float32 6.8 / 5.5 / 5.2, 4096² k3 float64 84 / 44 / 42, k7 float32 176 / 92 /
#   85 (at 4 MiB and more, fewer blocks than threads: 1024² k3 float64 4.9 ms).
#   2 Intel Xeon cores (AVX-512, 2 MiB L2 each), 256 KiB / 512 KiB / 1 MiB / 2 MiB: 1024² k3
#   float64 4.56 / 3.93 / 4.33 / 5.76 ms, float32 2.34 / 1.96 / 2.18 / 2.92, k7 float32 5.2-5.3
#   for all, 4096² k3 float64 84 / 73 / 85 / 103.
_BLOCK_BYTES = 1 << 20
# B·Ho·Wo·kh·kw·itemsize from which the compiled direct loop uses threads.  Measured on the
# project machine (2 cores, serial against two shares, medians of 300 calls):
# - with xcorr._spin's spinning workers (hand-off ~8 µs), from ~3 MB of taps: float32 128²
#   k5 (1.5 MB) 20.8 µs on one thread and 23.0 on two, 300² k3 (3.0 MB) 27.4 and 27.7,
#   128² k9 (4.4 MB) 42.4 and 36.6, 256² k7 108.6 and 71, 512² k3 81.9 and 49.5; float64
#   128² k5 (2.9 MB) 28.1 and 26.9, 192² k5 (6.7 MB) 55.1 and 43.1;
# - with the executor's sleeping threads (``XCORR_SPIN_US=0``: a wake-up of ~76 µs here),
#   from ~24 MB: float32 256² k7 (3.1M taps) took 122 µs on one thread and 164 on two, k9
#   176 against 209, k11 258 against 218; float64 256² k7 179 against 161.
_PARALLEL_MIN_TAP_BYTES = 3 << 20
_PARALLEL_MIN_TAP_BYTES_ASLEEP = 3 << 23
_NCC_PARALLEL_MIN = 1 << 16  # NCC outputs below which one thread computes the statistics
_FALLBACK_PARALLEL_TAPS = 1 << 18


def version() -> str:
    return np.__version__


def devices() -> list[str]:
    return ["cpu"]


def unavailable_reason() -> str | None:
    return None


def asarray(obj: Any) -> np.ndarray:
    """Convert host arrays, lists and scalars; device arrays raise ``TypeError``.  Byte-swapped
    data is read into native order (results are native, as NumPy's own arithmetic gives)."""
    a = to_numpy(obj, NAME)
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def kind(arr: np.ndarray) -> str:
    return numpy_kind(arr.dtype)


def promote(x: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Common dtype: NumPy promotion for floats, int64 for integers (exact sums, as np.sum)."""
    dt = numpy_result_dtype(x.dtype, k.dtype)
    return x.astype(dt, copy=False), k.astype(dt, copy=False)


def pad(x: np.ndarray, widths: tuple[int, int, int, int], boundary: str = "fill",
        value: Any = 0) -> np.ndarray:
    """Pad the last two axes by ``widths`` (top, bottom, left, right) under ``boundary``."""
    top, bottom, left, right = widths
    spec = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    if boundary == "fill":
        return np.pad(x, spec, constant_values=value)
    return np.pad(x, spec, mode=NUMPY_MODES[boundary])


def astype(a: np.ndarray, dtype: Any) -> np.ndarray:
    return a.astype(dtype, copy=False)


def from_host(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Host data as an array like ``like`` (its dtype; its device, for GPU backends)."""
    return np.asarray(a, dtype=like.dtype)


def all_finite(x: np.ndarray, k: np.ndarray) -> bool:
    # A sum is non-finite if any term is (NaN, or Inf of either sign): one cheap pass with no
    # temporary.  A finite sum that overflows float64 only sends us to the (exact) direct path;
    # inf - inf and overflow are expected here, so they must not warn.
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite_sum(x) and _finite_sum(k)


def _finite_sum(a: np.ndarray) -> bool:
    # A finite sum in the array's own dtype proves every term finite (NaN or Inf in a term
    # leaves the sum NaN or Inf); only a non-finite one is summed again, in float64, to tell
    # NaN/Inf from overflow.  For float32 that is 4x faster (4096²: 2.6 ms against 9.8).
    if a.dtype.kind == "f" and np.isfinite(a.sum()):
        return True
    return bool(np.isfinite(a.sum(dtype=np.float64)))


def corr2d_valid(x: np.ndarray, k: np.ndarray, method: str) -> np.ndarray:
    """Valid correlation of promoted ``x`` (..., H, W) with ``k`` (..., kh, kw)."""
    out_dtype = x.dtype
    if out_dtype.itemsize < 4 and numpy_kind(out_dtype) == "f":
        # float16, and ml_dtypes' bfloat16 and float8 (kind 'V'), accumulate in float32 and
        # round once at the end
        x, k = x.astype(np.float32), k.astype(np.float32)
    if method == "fft":
        out = _fft(x, k)
    elif method == "overlap":
        out = _overlap(x, k)
    else:
        out = _direct(x, k)
    return out.astype(out_dtype, copy=False)


def corr2d_valid_centred(x: np.ndarray, c: np.ndarray, k: np.ndarray,
                         method: str) -> np.ndarray | None:
    """``corr2d_valid(x - c, k, method)`` for the FFT methods, ``c (..., 1, 1)`` one value
    per image in x's dtype: the subtraction is made a block of rows at a time as the rows
    are transformed, so that the only image-sized array is the spectrum, which then holds
    the result (see ``_irfft2_owned``).  A call makes one fresh 4 MB at 1024² instead of
    three, and fresh pages are what cost on a trimmed heap (~2.7 µs a page here).  None for
    other methods and dtypes (the caller subtracts)."""
    if method not in ("fft", "overlap") or x.dtype not in (np.float32, np.float64):
        return None
    rfft2 = partial(_rfft2_centred, c=np.asarray(c, x.dtype))
    if method == "fft":
        return _fft(x, k, rfft2)

    def pad_centre(a: np.ndarray, widths: tuple[int, int, int, int]) -> np.ndarray:
        # tiles past the image's end are padded with its centre, which centring makes 0
        # (zeros would become -c, which only wrapped outputs see but which sets the FFT's
        # rounding, relative to the whole tile)
        out = pad(a, widths)
        h, w = a.shape[-2:]
        out[..., h:, :] = c
        out[..., :h, w:] = c
        return out

    return _overlap(x, k, rfft2, partial(tiles_by_view, pad=pad_centre, windows=_windows))


def sse_value_and_grad(x: np.ndarray, y: np.ndarray, k: np.ndarray, b: Any | None,
                       geometry: Any = None) -> tuple[Any, np.ndarray, Any | None]:
    """Squared-error loss and its gradient for the trainer, through the analytic VJP
    (``geometry``: a conv2d model, see ``xcorr._grad.model``)."""
    return _grad.sse_value_and_grad(sys.modules[__name__], x, y, k, b, geometry)


def rfft2(a: np.ndarray, s: tuple[int, int]) -> np.ndarray:
    """Real 2-D FFT over the last two axes at size ``s`` (a zero-padded), one axis at a time.

    Rows first, so the rows the padding adds are never transformed (half the work for a
    kernel's spectrum), then the columns in place.  ``scipy.fft`` (threaded, and float32 stays
    complex64) if present.
    """
    # Threads by the points each pass transforms, not by the input's: a 31² kernel's column
    # pass transforms s[0] × (s[1]//2 + 1) points (1.4 ms on one thread at 1024², 0.8 on two).
    return _fft_columns(_rfft_rows(a, s[1]), s[0])


def _rfft2_centred(a: np.ndarray, s: tuple[int, int], c: np.ndarray) -> np.ndarray:
    """``rfft2(a - c, s)``, ``c`` one value per image of ``a``'s leading dimensions (``a`` may
    be the overlap-save tiles of the images, with two more): the rows a block at a time,
    centred and transformed while in cache, on the pool's threads, into one spectrum."""
    *lead, h, w = a.shape
    c = np.broadcast_to(c.reshape(*c.shape[:-2], *(1,) * (a.ndim - c.ndim), 1, 1),
                        (*lead, 1, 1))
    if _serial() and h == s[0]:  # a part of _overlap, in cache: one transform, no copy
        fft, opts, _ = _fft_module(0)
        return _fft_columns(fft.rfft(a - c, s[1], axis=-1, **opts), s[0])
    spec = np.empty((*lead, s[0], s[1] // 2 + 1), np.result_type(a.dtype, np.complex64))
    spec[..., h:, :] = 0  # the zero padding's rows transform to zeros
    rows = max(1, _ROW_BLOCK_BYTES // (w * a.itemsize))
    tasks = [(i, r) for i in np.ndindex(*lead) for r in range(0, h, rows)]
    _in_shares(_centred_row_blocks, (a, c, spec, s[1], rows, tasks), len(tasks),
               spec.size >= _FFT_THREADED_MIN)
    return _fft_columns(spec, s[0])


def _centred_row_blocks(a: np.ndarray, c: np.ndarray, spec: np.ndarray, n: int, rows: int,
                        tasks: list[tuple[tuple[int, ...], int]], first: int, last: int) -> None:
    fft, opts, _ = _fft_module(0)  # one thread per block: the blocks are shared out already
    h = a.shape[-2]
    for i, r in tasks[first:last]:
        part = (*i, slice(r, min(r + rows, h)))
        spec[part] = fft.rfft(a[part] - c[(*i, 0)], n, axis=-1, **opts)


def _rfft_rows(a: np.ndarray, n: int) -> np.ndarray:
    """``rfft2``'s first pass: the real transform of ``a``'s rows at length ``n``."""
    fft, opts, _ = _fft_module(a.size // max(a.shape[-1], 1) * n)
    return fft.rfft(a, n, axis=-1, **opts)


def _fft_columns(rows: np.ndarray, n: int) -> np.ndarray:
    """``rfft2``'s second pass, over a row spectrum we own: its columns at length ``n``, in
    place where they already have it."""
    fft, _, inplace = _fft_module(rows.size // max(rows.shape[-2], 1) * n)
    return fft.fft(rows, n, axis=-2, **inplace)


def irfft2(a: np.ndarray, s: tuple[int, int]) -> np.ndarray:
    """Inverse of ``rfft2`` at size ``s``: columns, then rows (``a`` is left as it was)."""
    fft, opts, _ = _fft_module(a.size)
    return fft.irfft(fft.ifft(a, s[0], axis=-2, **opts), s[1], axis=-1, **opts)


def ncc_inv_norm(x: np.ndarray, window: tuple[int, int], tol: float,
                 phase: tuple[int, int] = (0, 0)) -> np.ndarray | None:
    """``xcorr._ncc.inv_norm`` in one compiled pass (``xcorr._numba_ncc``); None without Numba."""
    if _numba.kernel() is None or x.dtype not in (np.float32, np.float64):
        return None  # Numba missing or disabled: the caller sums over the array namespace
    from .. import _numba_ncc

    *lead, h, w = x.shape
    xb = np.ascontiguousarray(x.reshape(-1, h, w))
    out = empty((*lead, h - window[0] + 1, w - window[1] + 1), x.dtype)
    _run_job(_numba_ncc.job(xb, window[0], window[1], tol, phase,
                            out.reshape(xb.shape[0], *out.shape[-2:])))
    return out


def ncc_mean(x: np.ndarray, wide: Any) -> np.ndarray | None:
    """``mean(x, axis=(-2, -1), keepdims=True, dtype=wide)`` of float ``x`` by the compiled
    column totals of ``_ROW_TOTAL_ROWS`` rows at a time (on the threads from 512²: with the
    spinning workers, 256² took 13 µs on one thread and 23 on two, 512² 41 and 35, 1024²
    175 and 108), then NumPy's pairwise sum of
    them: NumPy's float64 sum of float32 goes through its casting buffers, 0.48 ms here.
    None without Numba, or unless ``wide`` is float64 (the caller's ``xp.mean``).  The
    order of the additions differs from NumPy's; ``xcorr._ncc`` rounds the mean to 16 bits
    anyway."""
    if (_numba.kernel() is None or x.dtype not in (np.float32, np.float64)
            or np.dtype(wide) != np.float64 or x.size == 0):
        return None
    from .. import _numba_ncc

    *lead, h, w = x.shape
    xb = np.ascontiguousarray(x.reshape(-1, h, w))
    totals = np.empty((xb.shape[0] * ceil_div(h, _ROW_TOTAL_ROWS), w))
    _in_shares(_numba_ncc.column_totals, (xb, _ROW_TOTAL_ROWS, totals), len(totals),
               x.size >= _MEAN_PARALLEL_MIN, compiled=True,
               wake=x.size >= _MEAN_PARALLEL_MIN_ASLEEP)
    sums = totals.reshape(xb.shape[0], -1).sum(axis=1)
    return (sums / (h * w)).reshape(*lead, 1, 1)


_ROW_TOTAL_ROWS = 64  # rows whose column totals one task of ncc_mean adds up
_MEAN_PARALLEL_MIN = 1 << 18  # pixels from which ncc_mean's tasks go to the threads
_MEAN_PARALLEL_MIN_ASLEEP = 1 << 22  # ... to the executor's (at 1024² no faster on two)


def ncc_finish(x: np.ndarray, c: np.ndarray, num: np.ndarray, inv_t: np.ndarray,
               window: tuple[int, int], tol: float) -> np.ndarray | None:
    """``clip(num · inv_norm(x - c) · inv_t, -1, 1)`` (``xcorr._ncc.finish``) in the
    compiled pass that computes ``inv_norm``, written over ``num`` (the caller's own array):
    one pass after the correlation instead of a float32 array per operation, and ``x - c``
    formed as it is read.  The same bits as the expression.  None without Numba (or for a
    ``num`` not laid out for it)."""
    if (_numba.kernel() is None or x.dtype not in (np.float32, np.float64)
            or num.dtype != x.dtype or num.strides[-1] != num.itemsize
            or not num.flags.writeable or np.may_share_memory(num, x)):
        return None
    flat = num.reshape(-1, *num.shape[-2:])  # rows contiguous: an FFT's crop (see _compact)
    if not np.may_share_memory(flat, num):
        return None  # the batch dimensions do not merge without a copy
    from .. import _numba_ncc

    *xlead, h, w = x.shape
    lead = num.shape[:-2]
    xb = np.ascontiguousarray(x.reshape(-1, h, w))
    shift = np.broadcast_to(np.asarray(c, x.dtype), (*xlead, 1, 1)).reshape(-1)
    # which image each output batch normalises by (the leading dims broadcast)
    xi = np.broadcast_to(np.arange(xb.shape[0]).reshape(*xlead, 1, 1), (*lead, 1, 1))
    scale = np.broadcast_to(inv_t.astype(num.dtype, copy=False), (*lead, 1, 1))
    _run_job(_numba_ncc.fused_job(xb, np.ascontiguousarray(shift), window[0], window[1], tol,
                                  flat, np.ascontiguousarray(scale.reshape(-1)),
                                  np.ascontiguousarray(xi.reshape(-1), dtype=np.intp)))
    return num


def _run_job(job: tuple[Any, tuple[Any, ...], int, int]) -> None:
    """A ``_numba_ncc`` kernel call, in shares on the thread pool when it is large."""
    loop, args, tasks, size = job
    _in_shares(loop, args, tasks, size >= _NCC_PARALLEL_MIN, compiled=True)


def conv_costs() -> dict[int, ConvCost]:
    return CONV_COSTS


def costs() -> dict[int, Cost]:
    return COSTS if _numba.kernel() is not None else FALLBACK_COSTS


def hosting_costs(own: dict[int, Cost], methods: tuple[str, ...]) -> dict[int, Cost]:
    """The cost table of a backend (``own``: its constants) that hands ``methods`` to this
    backend's kernels, torch's and JAX's for CPU arrays: ``_methods.hosted``, cached."""
    key = (id(own), methods, costs() is COSTS)
    table = _hosting.get(key)
    if table is None:
        table = _hosting[key] = hosted(own, costs(), methods)
    return table


_hosting: dict[tuple[int, tuple[str, ...], bool], dict[int, Cost]] = {}


_FFT_THREADED_MIN = 1 << 17  # points below which one thread transforms (64²: 18 µs vs 39 µs)


def _fft_module(size: int) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(module, its options, options for a transform that may overwrite its input) for an
    array of ``size`` points: all cores from ``_FFT_THREADED_MIN`` up, else one (handing a
    small transform to the worker threads costs more than it saves).

    Looked up on every call (an import of a loaded module is a dict lookup), so that a
    missing or blocked ``scipy.fft`` falls back to ``numpy.fft``.
    """
    try:
        import scipy.fft as fft
    except ImportError:
        return np.fft, {}, {}
    workers = -1 if size >= _FFT_THREADED_MIN and not _serial() else 1
    return fft, {"workers": workers}, {"workers": workers, "overwrite_x": True}


# -- kernels ----------------------------------------------------------------------------------


def _fft(x: np.ndarray, k: np.ndarray, forward: Any = None) -> np.ndarray:
    """``fft_valid`` by this backend's transforms (``forward``: another ``rfft2``)."""
    return _compact(fft_valid(x, k, forward or rfft2, _irfft2_owned, product=_product))


def _overlap(x: np.ndarray, k: np.ndarray, forward: Any = None, tiles: Any = None
             ) -> np.ndarray:
    """``overlap_valid`` by this backend's transforms and tiles (or those given).

    Where the tiles' spectra exceed ``_OVERLAP_PART_BYTES``, the tiles are taken a few at a
    time (a part of a row of tiles), the parts shared among the pool's threads, each part
    transformed, multiplied by the kernel's spectrum (computed once), transformed back and
    copied into the output by one thread while it is in that core's cache, as OpenCV's
    ``crossCorr`` does.  The tiles, and each tile's arithmetic, are those of the whole batch,
    so the bits are too.  At 4096² with 31² and tiles of 256 × 640 (medians of 5 calls on
    two threads here), all tiles at once took 174 ms in float64 (their spectra are 171 MB,
    each pass goes through memory) and by parts 106 ms; float32 95 against 65 ms.  Parts
    of 0.5-2 MB ran alike, 4 MB lost most of the gain; at 1024²-2048² parts and one batch
    were level.  The price is an output of its own instead of a view of the spectrum.
    Going by parts, the tile is chosen for the threads (``Cost.overlap_tile``).
    """
    (h, w), (kh, kw) = x.shape[-2:], k.shape[-2:]
    lead = broadcast_batch(x.shape, k.shape)
    whole = _spectra_bytes(lead, (h, w), x.itemsize)  # about all tiles' spectra
    threads = _threads(whole > _OVERLAP_PART_BYTES)
    tile = for_itemsize(costs(), x.dtype.itemsize).overlap_tile(h, w, kh, kw, threads)
    transforms = {"tile": tile, "rfft2": forward or rfft2, "irfft2": _irfft2_owned,
                  "tiles": tiles or _tiles}
    (bh, bw), ho, wo = tile, h - kh + 1, w - kw + 1
    sh, sw = bh - kh + 1, bw - kw + 1
    tile_bytes = _spectra_bytes(lead, tile, x.itemsize)  # one tile's spectra
    per_part = max(1, _OVERLAP_PART_BYTES // tile_bytes)  # tiles per part, along a row
    groups = ceil_div(ceil_div(wo, sw), per_part)  # parts per row of tiles
    parts = ceil_div(ho, sh) * groups
    if parts == 1:
        return _compact(overlap_valid(x, k, product=_product, **transforms))
    kspec = rfft2(k.reshape(*k.shape[:-2], 1, 1, kh, kw), tile)
    np.conjugate(kspec, out=kspec)
    out = empty((*lead, ho, wo), x.dtype)
    run = partial(overlap_tiles, product=partial(_times, kspec=kspec), **transforms)
    _in_shares(_overlap_parts, (x, k, run, out, (sh, sw), per_part, groups), parts, True)
    return out


def _spectra_bytes(lead: tuple[int, ...], shape: tuple[int, int], itemsize: int) -> int:
    """Bytes of the real FFT spectra of ``lead`` arrays of ``shape`` (complex of ``itemsize``
    parts)."""
    return math.prod(lead) * shape[0] * (shape[1] // 2 + 1) * 2 * itemsize


def _overlap_parts(x: np.ndarray, k: np.ndarray, run: Callable[..., np.ndarray],
                   out: np.ndarray, step: tuple[int, int], per_part: int, groups: int,
                   first: int, last: int) -> None:
    """Parts ``first .. last-1`` of ``_overlap``, each on this thread alone."""
    (kh, kw), (ho, wo), (sh, sw) = k.shape[-2:], out.shape[-2:], step
    was, _local.serial = _serial(), True
    _local.scratch = None
    try:
        for t in range(first, last):
            i, g = divmod(t, groups)
            r0, c0 = i * sh, g * per_part * sw
            r1, c1 = min(ho, r0 + sh), min(wo, c0 + per_part * sw)
            _place(out[..., r0:r1, c0:c1], run(x[..., r0:r1 + kh - 1, c0:c1 + kw - 1], k))
    finally:
        _local.serial, _local.scratch = was, None


def _place(dst: np.ndarray, y: np.ndarray) -> None:
    """Copy a row of tiles' outputs ``y (..., 1, nw, sh, sw)`` into ``dst (..., rows, cols)``
    (a part of the output: its rows contiguous), cropping the tiles that pass its end: one
    copy, where merging the tiles first and then copying made two."""
    rows, cols = dst.shape[-2:]
    sw = y.shape[-1]
    full = cols // sw  # tiles that fit whole along the row
    if full:  # dst's columns as (full, sw): a view, since its rows are contiguous
        np.copyto(dst[..., : full * sw].reshape(*dst.shape[:-1], full, sw),
                  y[..., 0, :full, :rows, :].swapaxes(-3, -2))
    if full * sw < cols:
        dst[..., full * sw:] = y[..., 0, full, :rows, : cols - full * sw]


def _times(xs: np.ndarray, k: np.ndarray, s: tuple[int, int], kspec: np.ndarray
           ) -> np.ndarray:
    """``xs * kspec`` (the conjugated kernel spectrum), over ``xs`` where it has the shape."""
    return np.multiply(xs, kspec, out=xs if _holds_product(xs, kspec) else None)


def _holds_product(xs: np.ndarray, k: np.ndarray) -> bool:
    """Whether ``xs`` has the shape of its product with ``k`` (whose leading dimensions
    broadcast against its own): one kernel per image or one for all, not a bank."""
    return (*broadcast_batch(xs.shape, k.shape), *xs.shape[-2:]) == xs.shape


# The tile spectra above which _overlap goes by parts, and their size (a core's L2 cache is
# 1 MB here).
_OVERLAP_PART_BYTES = 1 << 20
# .serial: in a share of a parallel loop, one thread per call; .scratch: see _scratch;
# .into: see output_into
_local = threading.local()


def _serial() -> bool:
    return getattr(_local, "serial", False)


def _threads(parallel: bool) -> int:
    """Threads a call shares its work among: the pool's (``_thread_count``) where it is large
    enough (``parallel``) and not already a share of a larger call (``_serial``), else 1."""
    return _thread_count() if parallel and not _serial() else 1


def _scratch(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An array of ``shape`` on this thread's scratch, which a share of ``_overlap``'s parts
    reuses from part to part: a fresh array for every part's inverse transform was fresh
    pages whenever glibc had trimmed the heap between parts (4096² k15: 33k page faults a
    call in float64 and 21k in float32, ~2 µs each; best of 7, 171 against 115 ms in
    float64 and 98 against 65 ms in float32)."""
    n = math.prod(shape)
    buf = getattr(_local, "scratch", None)
    if buf is None or buf.size < n or buf.dtype != dtype:
        buf = _local.scratch = np.empty(n, dtype)
    return buf[:n].reshape(shape)


def empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.empty(shape, dtype)`` for a kernel's output; while any thread is inside
    ``for_xla`` or ``output_into``, one that starts on an ``ALIGNMENT``-byte boundary, or the
    destination ``output_into`` gave this thread, where it has this shape and dtype.

    Aligned so that the JAX backend can hand the result to XLA without a copy: XLA's CPU
    client aliases host memory only at 64-byte alignment, and NumPy's large arrays start 16
    bytes into their pages (a 4096² float32 copy: 7 ms).  Only then: finding the address
    and cutting the array out of a larger one took 1.7 of the 7 µs a small correlation's
    call costs, for callers that do not need it (NumPy's own, torch's).
    """
    if not _hints:
        return np.empty(shape, dtype)
    dtype = np.dtype(dtype)
    into = getattr(_local, "into", None)
    if (into is not None and into.shape == tuple(shape) and into.dtype == dtype
            and into.flags.c_contiguous and into.flags.writeable):
        _local.into = None  # taken once: by the first output of its shape and dtype
        return into
    return _aligned_empty(shape, dtype)


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    n = math.prod(shape) * dtype.itemsize
    raw = np.empty(n + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + n].view(dtype).reshape(shape)


ALIGNMENT = 64
_hints = 0  # threads inside for_xla() or output_into(): while any is, empty() aligns
_hints_lock = threading.Lock()


@contextmanager
def for_xla() -> Iterator[None]:
    """Within the block, the kernels' outputs are 64-byte aligned (see ``empty``): for a
    result that the JAX backend hands to XLA."""
    global _hints
    with _hints_lock:
        _hints += 1
    try:
        yield
    finally:
        with _hints_lock:
            _hints -= 1


@contextmanager
def output_into(dst: np.ndarray) -> Iterator[None]:
    """Within the block, the first kernel output of ``dst``'s shape and dtype that this
    thread makes (``empty``) is ``dst`` itself: a caller that must deliver the result into
    memory of its own (JAX's ``buffer_callback``: XLA's output buffer) has the kernels
    write there instead of copying their result in afterwards.  Only a hint: the result
    may still be another array (a method whose output is a crop of an FFT buffer, a float64
    sum rounded to float32), and then, or where something else took ``dst`` on the way,
    ``deliver`` copies it."""
    with for_xla():
        _local.into = dst
        try:
            yield
        finally:
            _local.into = None


def deliver(result: np.ndarray, dst: np.ndarray) -> None:
    """Make ``dst`` hold ``result`` (computed under ``output_into(dst)``): nothing to do
    where ``result`` is ``dst``'s memory in ``dst``'s layout, else a copy (which NumPy
    makes through a temporary where the two overlap)."""
    same = (result.shape == dst.shape and result.strides == dst.strides
            and result.dtype == dst.dtype
            and result.__array_interface__["data"][0] == dst.__array_interface__["data"][0])
    if not same:
        np.copyto(dst, result, casting="same_kind")


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """A contiguous copy of ``a``, 64-byte aligned."""
    out = _aligned_empty(a.shape, a.dtype)
    np.copyto(out, a)
    return out


def _compact(y: np.ndarray) -> np.ndarray:
    """``y``, a crop of a transform's buffer, as it is (a view, as ``scipy.signal.fftconvolve``
    returns), or copied out where the buffer is more than 1.5x its size: a copy of 1024² is a
    fresh 4 MB (~1000 page faults, 2.7 ms on a trimmed heap here, more than the FFT's row
    pass), but a large kernel's small output should not pin the whole buffer."""
    root = y
    while isinstance(root.base, np.ndarray):
        root = root.base
    if 3 * y.nbytes >= 2 * root.nbytes:
        return y
    out = empty(y.shape, y.dtype)
    np.copyto(out, y)
    return out


_PRODUCT_BLOCK_BYTES = 1 << 19  # the kernel spectrum's columns transformed at a time


def _product(xs: np.ndarray, k: np.ndarray, s: tuple[int, int]) -> np.ndarray:
    """``xs * conj(rfft2(k, s))`` over ``xs`` (a spectrum we own).

    Where the product has ``xs``'s shape (one kernel per image, or one for all), the
    kernel's spectrum is never made whole: its rows are transformed (a few), then its
    columns a block of at most ``_PRODUCT_BLOCK_BYTES`` at a time, each block multiplied
    in while in cache, the blocks shared among the pool's threads (each transform on one
    thread).  A whole kernel spectrum is one more image-sized temporary, and fresh pages
    cost on a trimmed heap: at 1024² with 31², 3.6 ms against 8.0 (2235 page faults a
    call), and 2.7 against 2.7 on a warm heap; 2048² with 128²: 14.1 against 16.7 (warm).
    A bank of kernels over fewer images makes the whole spectra (the product is larger
    than ``xs`` anyway).
    """
    if not _holds_product(xs, k):
        return _mul_conj(xs, rfft2(k, s))
    rows = _rfft_rows(k, s[1])
    cols = rows.shape[-1]
    lead = math.prod(rows.shape[:-2])
    width = max(8, _PRODUCT_BLOCK_BYTES // (s[0] * rows.itemsize * lead))
    blocks = -(-cols // width)
    _in_shares(_product_blocks, (xs, rows, s[0], width), blocks,
               lead * s[0] * cols >= _FFT_THREADED_MIN)
    return xs


def _product_blocks(xs: np.ndarray, rows: np.ndarray, n: int, width: int, first: int,
                    last: int) -> None:
    fft, opts, _ = _fft_module(0)  # one thread per block: the blocks are shared out already
    for b in range(first, last):
        part = slice(b * width, (b + 1) * width)
        spec = fft.fft(rows[..., part], n, axis=-2, **opts)
        np.conjugate(spec, out=spec)
        target = xs[..., part]
        np.multiply(target, spec, out=target)


def _irfft2_owned(a: np.ndarray, s: tuple[int, int]) -> np.ndarray:
    """``irfft2`` of a spectrum we own, in place: the result is a view of ``a``'s memory.

    The column pass by ``scipy.fft`` with ``overwrite_x``; the row pass by ``numpy.fft``,
    which (NumPy >= 2) writes into ``out=``: each block of rows is copied to a cache-sized
    scratch and transformed back into the rows' own memory (a real row of ``n`` points fits
    in its ``n // 2 + 1`` complex ones), the blocks shared among the pool's threads.  A
    transform that is not in place took 2x as long here (fresh output pages: at 1024² with
    31², with the crop's copy, 8.1 ms against 4.5 for the whole correlation, 1725 page
    faults a call against none).  ``scipy.fft.irfft2`` on a batch of small tiles took 4x as
    long as these two passes (13 ms against 3.3 ms for 361 64×64 tiles).  In a part of
    ``_overlap`` (one thread, in cache) the rows go into the thread's scratch instead
    (``_scratch``), which ``_overlap_parts`` copies out before the next part reuses it.
    """
    fft, opts, inplace = _fft_module(a.size)
    cols = fft.ifft(a, s[0], axis=-2, **inplace)
    if _NUMPY_FFT_OUT and _serial():  # a part of _overlap: into its thread's scratch
        return np.fft.irfft(cols, s[1], axis=-1, out=_scratch((*cols.shape[:-1], s[1]),
                                                               cols.real.dtype))
    if not _NUMPY_FFT_OUT or not cols.flags.c_contiguous:
        return fft.irfft(cols, s[1], axis=-1, **opts)
    spec = cols.reshape(-1, cols.shape[-1])
    real = spec.view(np.float32 if spec.dtype == np.complex64 else np.float64)[:, : s[1]]
    rows = max(1, _ROW_BLOCK_BYTES // (spec.shape[1] * spec.itemsize))
    blocks = -(-spec.shape[0] // rows)
    _in_shares(_irfft_row_blocks, (spec, real, rows), blocks, a.size >= _FFT_THREADED_MIN)
    return real.reshape(*cols.shape[:-1], s[1])


# numpy.fft's transforms take ``out=`` (and keep float32) from NumPy 2.0
_NUMPY_FFT_OUT = "out" in inspect.signature(np.fft.irfft).parameters
_ROW_BLOCK_BYTES = 1 << 17  # the scratch of one block of the in-place row pass


def _irfft_row_blocks(spec: np.ndarray, real: np.ndarray, rows: int, first: int,
                      last: int) -> None:
    for b in range(first, last):
        part = slice(b * rows, (b + 1) * rows)
        np.fft.irfft(spec[part].copy(), real.shape[1], axis=-1, out=real[part])


_mul_conj = mul_conj_inplace(np)  # a bank's whole kernel spectra: the product over them


_windows = partial(np.lib.stride_tricks.sliding_window_view, axis=(-2, -1))


def _tiles(x: np.ndarray, tile: tuple[int, int], step: tuple[int, int],
           count: tuple[int, int]) -> np.ndarray:
    return tiles_by_view(x, tile, step, count, pad, _windows)


def _direct(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Valid correlation of ``x`` (..., H, W) with ``k`` (..., kh, kw), in ``x``'s dtype.

    The leading dimensions broadcast (one kernel for all images, one per channel, a bank of
    kernels over one image, ...) through index maps, never through a broadcast copy.  The
    compiled loop or, for dtypes it lacks (long double, non-native byte order) or without
    Numba, the NumPy one; a large problem on a few threads.
    """
    x3, k3, xi, ki, lead = _batches(x, k)
    kh, kw = k3.shape[1:]
    ho, wo = x3.shape[1] - kh + 1, x3.shape[2] - kw + 1
    result = empty((*lead, ho, wo), x.dtype)
    out = result.reshape(len(xi), ho, wo)  # a view: result is contiguous
    prepare = _numba.kernel() if _numba.supports(out.dtype) else None
    wake = True
    if prepare is not None:
        loop, rows = prepare(kh, kw, out.dtype)
        tap_bytes = out.size * kh * kw * out.itemsize
        parallel = tap_bytes >= _parallel_min_tap_bytes()
        wake = tap_bytes >= _PARALLEL_MIN_TAP_BYTES_ASLEEP
    else:
        parallel = out.size * kh * kw >= _FALLBACK_PARALLEL_TAPS
        rows = _fallback_rows(x3.shape[2], out.itemsize, ho, -(-_threads(parallel) // len(xi)))
        loop = partial(_shift_add, rows=rows)
    # both loops read whole rows: a copy only of an image with strided or reversed rows
    args = (np.ascontiguousarray(x3), np.ascontiguousarray(k3), xi, ki, out, out.dtype.type(0))
    _in_shares(loop, args, len(xi) * -(-ho // rows), parallel, compiled=prepare is not None,
               wake=wake)
    return result


def _parallel_min_tap_bytes() -> int:
    """``_PARALLEL_MIN_TAP_BYTES`` where the spinning workers serve the compiled loops."""
    from .. import _spin  # only with Numba loaded

    return _PARALLEL_MIN_TAP_BYTES if _spin.enabled() else _PARALLEL_MIN_TAP_BYTES_ASLEEP


def _in_shares(loop: Callable[..., None], args: tuple[Any, ...], blocks: int,
               parallel: bool, compiled: bool = False, wake: bool = True) -> None:
    """``loop(*args, first, last)`` over blocks ``0 .. blocks-1``: in one go, or in one
    contiguous share per thread (the loops release the GIL), the caller's thread included.

    ``compiled``: ``loop`` is a Numba loop compiled with ``nogil=True``, which
    ``xcorr._spin``'s spinning workers take (a hand-off of a few µs, against ~76 µs for
    the executor's sleeping threads here); Python-level shares go to the executor.  When
    another thread has the spinning workers, the executor takes the shares only if ``wake``
    (the problem is worth waking its threads for), else this thread computes them all:
    with 2-4 user threads calling at once (Dask's scheduler), the executor at the spinning
    workers' lower threshold made 225 256² 7×7 calls 20-30% slower than one thread.
    """
    shares = min(_threads(parallel), blocks)
    if shares <= 1:
        loop(*args, 0, blocks)
        return
    bounds = [s * blocks // shares for s in range(shares + 1)]
    if compiled:
        from .. import _spin  # Numba is loaded: the loop is compiled

        if _spin.run(loop, args, bounds):
            return
        if not wake:
            loop(*args, 0, blocks)
            return
    futures = [_pool(shares - 1).submit(loop, *args, bounds[s], bounds[s + 1])
               for s in range(1, shares)]
    loop(*args, 0, bounds[1])
    for f in futures:
        f.result()


def _thread_count() -> int:
    """Numba's thread count when Numba is loaded (``numba.set_num_threads`` pins it, as
    ``xcorr bench --threads`` does), else the cores this process may run on."""
    numba = sys.modules.get("numba")
    if numba is not None:
        return numba.get_num_threads()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (pid, workers) -> pool
_pools_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    global _pools_lock  # one held by a parent's thread would never be released in the child
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _pool(workers: int) -> ThreadPoolExecutor:
    """A lasting pool of ``workers`` threads (a new one after a fork: threads do not
    survive it)."""
    key = (os.getpid(), workers)
    pool = _pools.get(key)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="xcorr")
    return pool


_FIRST = np.zeros(1, dtype=np.intp)  # the index map of a single image (read-only)
_FIRST.flags.writeable = False


def _batches(x: np.ndarray, k: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    """Stacks of the distinct images (Bx, H, W) and kernels (Bk, kh, kw), the index of the
    image and of the kernel of each of the B output batches, and their broadcast shape."""
    h, w = x.shape[-2:]
    if k.ndim == 2 and 0 not in x.strides[:-2]:  # one kernel for all: the common, cheap case
        n = x.size // (h * w) if h * w else 0
        # a reshape copies only an image stack with odd strides, never a broadcast
        xi, ki = (_FIRST, _FIRST) if n == 1 else (np.arange(n, dtype=np.intp),
                                                  np.zeros(n, dtype=np.intp))
        return x.reshape(n, h, w), k[None], xi, ki, x.shape[:-2]
    lead = np.broadcast_shapes(x.shape[:-2], k.shape[:-2])
    x, k = _squeeze_broadcast(x), _squeeze_broadcast(k)
    maps = []
    for a in (x, k):
        own = np.arange(int(np.prod(a.shape[:-2])), dtype=np.intp).reshape(a.shape[:-2])
        maps.append(np.ascontiguousarray(np.broadcast_to(own, lead)).reshape(-1))
    return x.reshape(-1, h, w), k.reshape(-1, *k.shape[-2:]), *maps, lead


def _squeeze_broadcast(a: np.ndarray) -> np.ndarray:
    """A view with each stride-0 leading axis (a ``broadcast_to`` view) cut to length 1."""
    cut = tuple(slice(0, 1) if st == 0 and n > 1 else slice(None)
                for n, st in zip(a.shape[:-2], a.strides[:-2], strict=True))
    return a[cut] if cut else a


def _fallback_rows(w: int, itemsize: int, ho: int, blocks: int = 1) -> int:
    """Output rows per block of the NumPy loop: about ``_BLOCK_BYTES`` of them, and at least
    ``blocks`` blocks per image (one per thread that shares the image)."""
    return max(1, min(ho, _BLOCK_BYTES // (w * itemsize), -(-ho // blocks)))


def _shift_add(x3: np.ndarray, k3: np.ndarray, xi: np.ndarray, ki: np.ndarray,
               out: np.ndarray, zero: Any, first: int, last: int, *, rows: int) -> None:
    """Pure-NumPy fallback: shift-and-accumulate over blocks of ``rows`` output rows.

    Same arguments as the compiled loop (``_numba.kernel``; ``x3`` C-contiguous), and
    ``rows`` (``_fallback_rows``), and the same result to the bit (each output is ``0 +
    t(0,0) + t(0,1) + ...``).  A block of output rows is computed ``W`` wide, so that each
    tap is one multiply and one add over a contiguous run of the flattened image (one flat
    SIMD loop each, which releases the GIL); the last ``kw - 1`` columns of each wide row
    straddle two image rows and are dropped.  Like the compiled loop, it does not warn
    about overflow.

    The first tap is multiplied straight into the accumulator, one pass fewer than adding
    it to zero: ``t(0,0) + t(0,1) + ...`` differs from ``0 + t(0,0) + ...`` only where
    every term is -0, whose sum is -0 instead of +0 (a nonzero term absorbs the zero it
    meets, and a sum that cancels to zero is +0 either way).  The copy into ``out`` adds
    +0, which turns that -0 into +0 and changes no other value.
    """
    ho, wo = out.shape[1:]
    kh, kw = k3.shape[1:]
    w = x3.shape[2]
    nrb = -(-ho // rows)
    flat = x3.reshape(len(x3), -1)
    acc, tmp = np.empty(rows * w, out.dtype), np.empty(rows * w, out.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(first, last):
            b, r0 = divmod(t, nrb)
            r0 *= rows
            x, k = flat[xi[b]], k3[ki[b]]
            r1 = min(r0 + rows, ho)
            n = (r1 - r0 - 1) * w + wo
            np.multiply(x[r0 * w:r0 * w + n], k[0, 0], out=acc[:n])
            for a in range(kh):
                for c in range(1 if a == 0 else 0, kw):
                    s = (r0 + a) * w + c
                    np.multiply(x[s:s + n], k[a, c], out=tmp[:n])
                    np.add(acc[:n], tmp[:n], out=acc[:n])
            np.add(acc[:(r1 - r0) * w].reshape(r1 - r0, w)[:, :wo], zero, out=out[b, r0:r1])
