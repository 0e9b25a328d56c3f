"""NumPy backend: a compiled or blocked direct loop, and a real FFT (``scipy.fft`` if present).

This module also documents the backend surface every ``backends/_<name>.py`` offers.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from .. import _grad, _numba
from .._boundary import NUMPY_MODES
from .._conv_cost import ConvCost
from .._fft import fft_valid, mul_conj_inplace, overlap_valid, tiles_by_view
from .._interop import to_numpy
from .._methods import Cost, for_itemsize
from .._validate import numpy_kind, numpy_result_dtype

NAME = "numpy"
xp = np  # the array namespace the operations are written against
METHODS = ("direct", "fft", "overlap")

# Cost-model constants (ns), keyed by dtype width, on the project machine (2 AMD EPYC Zen-4
# cores, NumPy 2.4, SciPy 1.17, Numba 0.68).  direct (tap, out): read off bench/bench_numpy.py
# (1024² float32: 0.23/2.3/16.3 ms at k3/k11/k31).  fft and overlap: least squares over 256²
# to 4096² (and 8×128²), k 5-41, tiles 16-512, of single-thread CPU time (process_time, min of
# 3: the machine was shared, wall clocks were not usable), halved for the two FFT workers;
# fixed parts from 8²-64² calls (``bench/fit_fft.py numpy``).
# Measured 1024² float32, one thread: fft 8.4 ms whatever the kernel, overlap 6.8 ms at k5
# (B=64) and 9.0 at k11; 2048²: fft 47-51, overlap 31 (k5), 43 (k11), 42 (k21, B=256); 4096²:
# fft 231, overlap 155 (k11, B=256), 172 (k31, B=256).  The whole-image FFT costs more per
# N·log2(N) as it leaves the caches (0.40 ns at 1024², 0.57 at 4096², one thread): ``point``
# is the compromise over these sizes.
COSTS = {
    4: Cost(tap=0.017, out=0.07, point=0.196, fixed=20_000.0,
            tile_point=0.131, tile_pix=1.9, tile_fixed=30_000.0),
    8: Cost(tap=0.033, out=0.14, point=0.318, fixed=20_000.0,
            tile_point=0.223, tile_pix=2.8, tile_fixed=30_000.0),
}
# Without Numba the blocked NumPy loop is ~10x slower per tap (25.9 ms at 1024² k11 float32);
# the FFTs do not use Numba.
FALLBACK_COSTS = {
    4: replace(COSTS[4], tap=0.21, out=0.3),
    8: replace(COSTS[8], tap=0.36, out=0.7),
}

# conv2d's constants (ns; see xcorr/_conv_cost.py), from bench runs on the project machine.
CONV_COSTS = {
    4: ConvCost(gemm=0.010, copy=0.15, native=None, native_thin=None, fixed=20_000.0),
    8: ConvCost(gemm=0.020, copy=0.15, native=None, native_thin=None, fixed=20_000.0),
}

# conv2d's GEMMs run in column panels of this width (reproducible bits: see _conv._gemm).
GEMM_PANEL = 512

_BLOCK_BYTES = 1 << 17  # ~128 KiB of output per block: it and its temporary stay in L2


def version() -> str:
    return np.__version__


def devices() -> list[str]:
    return ["cpu"]


def unavailable_reason() -> str | None:
    return None


def asarray(obj: Any) -> np.ndarray:
    """Convert host arrays, lists and scalars; device arrays raise ``TypeError``."""
    return to_numpy(obj, NAME)


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
        return bool(np.isfinite(x.sum(dtype=np.float64)) and np.isfinite(k.sum(dtype=np.float64)))


def corr2d_valid(x: np.ndarray, k: np.ndarray, method: str) -> np.ndarray:
    """Valid correlation of promoted ``x`` (..., H, W) with ``k`` (kh, kw)."""
    out_dtype = x.dtype
    if out_dtype == np.float16:  # accumulate half precision in float32, round once at the end
        x, k = x.astype(np.float32), k.astype(np.float32)
    if method == "fft":
        out = _fft(x, k)
    elif method == "overlap":
        out = _overlap(x, k)
    else:
        out = _direct(x, k)
    return out.astype(out_dtype, copy=False)


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
    fft, opts, inplace = _fft_module()
    return fft.fft(fft.rfft(a, s[1], axis=-1, **opts), s[0], axis=-2, **inplace)


def irfft2(a: np.ndarray, s: tuple[int, int]) -> np.ndarray:
    """Inverse of ``rfft2`` at size ``s``: columns, then rows (``a`` is left as it was)."""
    fft, opts, _ = _fft_module()
    return fft.irfft(fft.ifft(a, s[0], axis=-2, **opts), s[1], axis=-1, **opts)


def ncc_inv_norm(x: np.ndarray, window: tuple[int, int], tol: float,
                 phase: tuple[int, int] = (0, 0)) -> np.ndarray | None:
    """``xcorr._ncc.inv_norm`` in one compiled pass (``xcorr._numba_ncc``); None without Numba."""
    if _numba.kernel() is None or x.dtype not in (np.float32, np.float64):
        return None  # Numba missing or disabled: the caller sums over the array namespace
    from .. import _numba_ncc

    *lead, h, w = x.shape
    xb = np.ascontiguousarray(x.reshape(-1, h, w))
    out = np.empty((xb.shape[0], h - window[0] + 1, w - window[1] + 1), dtype=x.dtype)
    _numba_ncc.run(xb, window[0], window[1], tol, phase, out)
    return out.reshape(*lead, *out.shape[1:])


def conv_costs() -> dict[int, ConvCost]:
    return CONV_COSTS


def costs() -> dict[int, Cost]:
    return COSTS if _numba.kernel() is not None else FALLBACK_COSTS


def _fft_module() -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(module, its options, options for a transform that may overwrite its input).

    Looked up on every call (an import of a loaded module is a dict lookup), so that a
    missing or blocked ``scipy.fft`` falls back to ``numpy.fft``.
    """
    try:
        import scipy.fft as fft
    except ImportError:
        return np.fft, {}, {}
    return fft, {"workers": -1}, {"workers": -1, "overwrite_x": True}


# -- kernels ----------------------------------------------------------------------------------


def _fft(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(fft_valid(x, k, rfft2, _irfft2_owned, _mul_conj))


def _overlap(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    tile = for_itemsize(costs(), x.dtype.itemsize).overlap_tile(*x.shape[-2:], *k.shape[-2:])
    return np.ascontiguousarray(overlap_valid(x, k, tile, rfft2, _irfft2_owned, _tiles,
                                              _mul_conj))


def _irfft2_owned(a: np.ndarray, s: tuple[int, int]) -> np.ndarray:
    """``irfft2`` of a spectrum we own, its column pass in place: a transform that is not in
    place took 2× as long here (fresh output pages).  ``scipy.fft.irfft2`` on a batch of
    small tiles took 4× as long as these two calls (13 ms against 3.3 ms for 361 64×64 tiles).
    """
    fft, opts, inplace = _fft_module()
    return fft.irfft(fft.ifft(a, s[0], axis=-2, **inplace), s[1], axis=-1, **opts)


_mul_conj = mul_conj_inplace(np)


def _tiles(x: np.ndarray, tile: tuple[int, int], step: tuple[int, int],
           count: tuple[int, int]) -> np.ndarray:
    return tiles_by_view(x, tile, step, count, pad, partial(
        np.lib.stride_tricks.sliding_window_view, axis=(-2, -1)))


def _direct(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    if k.ndim > 2:  # TEMPORARY (replaced by the broadcasting compiled loop)
        lead = np.broadcast_shapes(x.shape[:-2], k.shape[:-2])
        xb = np.broadcast_to(x, lead + x.shape[-2:]).reshape(-1, *x.shape[-2:])
        kb = np.broadcast_to(k, lead + k.shape[-2:]).reshape(-1, *k.shape[-2:])
        outs = [_direct(xb[i], kb[i]) for i in range(len(xb))]
        return np.stack(outs).reshape(*lead, *outs[0].shape)
    *lead, h, w = x.shape
    kh, kw = k.shape
    ho, wo = h - kh + 1, w - kw + 1
    xb = x.reshape(-1, h, w)  # a view unless x is an odd-strided batch
    out = np.zeros((xb.shape[0], ho, wo), dtype=x.dtype)
    loop = _numba.kernel()
    if loop is not None:
        loop(np.ascontiguousarray(xb), np.ascontiguousarray(k), out)
    else:
        _shift_add(xb, k, out)
    return out.reshape(*lead, ho, wo)


def _shift_add(x: np.ndarray, k: np.ndarray, out: np.ndarray) -> None:
    """Pure-NumPy fallback: shift-and-accumulate over row blocks that stay in cache.

    Taps are added in the same row-major order as the compiled loop, so both paths give
    bit-identical results.
    """
    nb, ho, wo = out.shape
    kh, kw = k.shape
    rows = max(1, _BLOCK_BYTES // (wo * out.itemsize))
    tmp = np.empty((min(rows, ho), wo), dtype=out.dtype)
    for b in range(nb):
        for r0 in range(0, ho, rows):
            r1 = min(r0 + rows, ho)
            acc, t = out[b, r0:r1], tmp[: r1 - r0]
            for a in range(kh):
                for c in range(kw):
                    np.multiply(x[b, r0 + a:r1 + a, c:c + wo], k[a, c], out=t)
                    acc += t
