"""Drop-ins for ``scipy.signal.correlate2d`` and ``scipy.signal.convolve2d``.

Change ``from scipy import signal`` to ``from xcorr import signal``: same signatures, defaults,
results and output dtypes (SciPy's semantics in full, including its boundary synonyms,
complex input, the swap of inputs in ``valid`` mode when ``in2`` is the larger, and empty
inputs), computed by xcorr's direct kernels on any backend's arrays — results come back in
the input's framework.  The only addition is the keyword ``backend=``.

Floating-point results equal SciPy's within the dot-product error bound (the summation order
is xcorr's, so not always bit for bit); integer results are bit-identical (the exact sum,
wrapped to SciPy's dtype as SciPy's arithmetic wraps).  Like SciPy, these always sum directly
(NaN/Inf stay local); for FFT speed on large kernels call :func:`xcorr.corr2d`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _corr, _dropin
from ._boundary import pads

__all__ = ["convolve2d", "correlate2d"]

_BOUNDARIES = {"fill": "fill", "pad": "fill", "wrap": "wrap", "circular": "wrap",
               "symm": "symm", "symmetric": "symm"}
_MODES = ("valid", "same", "full")


def correlate2d(in1: Any, in2: Any, mode: str = "full", boundary: str = "fill",
                fillvalue: Any = 0, *, backend: str | None = None) -> Any:
    """Cross-correlate two 2-D arrays, as ``scipy.signal.correlate2d``.

    ``out[i, j] = sum_{a, b} in1p[i + a, j + b] * conj(in2[a, b])`` with ``in1p`` extended
    for ``mode`` by ``boundary``.

    Parameters
    ----------
    in1, in2 : array_like, 2-D
        Any backend's arrays (or nested lists); complex allowed (``in2`` is conjugated).
    mode : {"full", "valid", "same"}
        As SciPy.  In ``valid`` mode, if ``in2`` is at least as large as ``in1`` in every
        dimension the inputs are swapped (and the output reversed), as SciPy does.
    boundary : {"fill", "wrap", "symm"} or SciPy's synonyms "pad", "circular", "symmetric"
    fillvalue : scalar
        Padding value for ``fill``, cast to the output dtype as SciPy casts it.
    backend : str, optional
        xcorr's backend choice (default: the inputs' framework).

    Returns
    -------
    array of the backend
        dtype ``numpy.result_type(in1, in2)`` (its equivalent in the input's framework).

    Raises
    ------
    ValueError
        As SciPy: inputs not 2-D, unknown mode or boundary, ``valid`` mode with neither
        input at least as large as the other, a dtype SciPy does not support (bool,
        float16, object), a non-scalar or complex-to-real ``fillvalue``.

    Examples
    --------
    >>> from xcorr import signal
    >>> signal.correlate2d([[1, 2], [3, 4]], [[1, 1]]).tolist()
    [[1, 3, 2], [3, 7, 4]]
    """
    return _signal(in1, in2, mode, boundary, fillvalue, backend, convolve=False)


def convolve2d(in1: Any, in2: Any, mode: str = "full", boundary: str = "fill",
               fillvalue: Any = 0, *, backend: str | None = None) -> Any:
    """Convolve two 2-D arrays, as ``scipy.signal.convolve2d``.

    Parameters, results and errors as :func:`correlate2d`, with the kernel flipped instead
    of conjugated, and ``same`` aligned as SciPy aligns a convolution.

    Examples
    --------
    >>> from xcorr import signal
    >>> signal.convolve2d([[1, 2], [3, 4]], [[1, -1]]).tolist()
    [[1, 1, -2], [3, 1, -4]]
    """
    return _signal(in1, in2, mode, boundary, fillvalue, backend, convolve=True)


def _signal(in1: Any, in2: Any, mode: str, boundary: str, fillvalue: Any,
            backend: str | None, convolve: bool) -> Any:
    name = "convolve2d" if convolve else "correlate2d"
    be, (a, b) = _dropin.convert({"in1": in1, "in2": in2}, backend)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{name} inputs must both be 2-D arrays")
    if mode not in _MODES:
        raise ValueError("Acceptable mode flags are 'valid', 'same', or 'full'.")
    if boundary not in _BOUNDARIES:
        raise ValueError("Acceptable boundary flags are 'fill', 'circular' (or 'wrap'), and "
                         "'symmetric' (or 'symm').")
    out_dtype = np.result_type(_dropin.numpy_dtype(a), _dropin.numpy_dtype(b))
    if out_dtype.kind not in "iufc" or out_dtype == np.float16:
        raise ValueError(f"{name} not available for this type.")
    fill = _fill(fillvalue, out_dtype)
    swapped = _swap_needed(mode, tuple(a.shape), tuple(b.shape))
    if swapped:
        a, b = b, a
    (h, w), (kh, kw) = a.shape, b.shape
    bnd = _BOUNDARIES[boundary]
    if 0 in (kh, kw) or (0 in (h, w) and mode != "full"):
        # SciPy's shapes for empty inputs: a sum over nothing is 0.
        return _dropin.cast(be, _zeros(be, _empty_shape(mode, h, w, kh, kw)), out_dtype)
    if 0 in (h, w) and bnd != "fill":  # SciPy itself crashes here (SIGFPE)
        raise ValueError(f"boundary={boundary!r} cannot extend an empty image; use "
                         "boundary='fill'")
    if convolve:
        b = be.xp.flip(b, axis=(-2, -1))
    widths = pads(mode, kh, kw, convolve)

    def run(x: Any, k: Any, value: Any) -> Any:
        x, k = be.promote(x, k)
        return _corr.padded_valid(be, x, k, widths, bnd, value, "direct")

    if out_dtype.kind == "c":
        out = _dropin.complex_correlate(be, a, b, not convolve, run, complex(fill))
    else:
        out = run(_real_input(be, a, out_dtype), _real_input(be, b, out_dtype), fill)
    out = _dropin.cast(be, out, out_dtype)
    # Swapping the inputs of a correlation reverses its output; a convolution commutes.
    return be.xp.flip(out, axis=(-2, -1)) if swapped and not convolve else out


def _real_input(be: Any, a: Any, out_dtype: np.dtype) -> Any:
    """Integers go to int64 (wrapping arithmetic gives SciPy's wrapped result exactly after
    the final cast; uint64 reinterpreted), floats to the output dtype (SciPy computes in it:
    float16 paired with float64 must not stay float16)."""
    if out_dtype.kind in "iu":
        return _dropin.cast(be, a, np.dtype(np.int64))
    return _dropin.cast(be, a, out_dtype)


def _fill(fillvalue: Any, out_dtype: np.dtype) -> Any:
    """SciPy's rule: a scalar (or one-element array), cast to the output dtype."""
    fv = np.asarray(fillvalue)
    if fv.size != 1:
        raise ValueError("`fillvalue` must be scalar or an array with one element.")
    fv = fv.reshape(())
    if fv.dtype.kind == "c" and out_dtype.kind != "c":
        raise ValueError("could not cast `fillvalue` directly to the output type (it was "
                         "first converted to complex).")
    with np.errstate(invalid="ignore", over="ignore"):
        cast = fv.astype(out_dtype) if out_dtype.kind in "fc" else fv.astype(out_dtype)
    return cast.item() if out_dtype.kind != "c" else complex(cast.item())


def _swap_needed(mode: str, s1: tuple[int, ...], s2: tuple[int, ...]) -> bool:
    """SciPy's ``_inputs_swap_needed`` (gh-5897): the larger input goes first in valid mode."""
    if mode != "valid":
        return False
    ok1 = all(a >= b for a, b in zip(s1, s2, strict=True))
    ok2 = all(b >= a for a, b in zip(s1, s2, strict=True))
    if not (ok1 or ok2):
        raise ValueError("For 'valid' mode, one must be at least as large as the other in "
                         "every dimension")
    return not ok1


def _empty_shape(mode: str, h: int, w: int, kh: int, kw: int) -> tuple[int, int]:
    shape = {"full": (h + kh - 1, w + kw - 1), "same": (h, w),
             "valid": (h - kh + 1, w - kw + 1)}[mode]
    if min(shape) < 0:
        raise ValueError("negative dimensions are not allowed")
    return shape


def _zeros(be: Any, shape: tuple[int, int]) -> Any:
    if be.NAME == "torch":
        import torch

        return torch.zeros(shape)
    return be.xp.zeros(shape)
