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

import warnings
from typing import Any

import numpy as np

from . import _dropin
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
        As SciPy.  In ``valid`` mode, if ``in1`` is smaller than ``in2`` in a dimension
        (``in2`` must then be at least as large in every one) the inputs are swapped (and the
        output reversed), as SciPy does; equal shapes are not swapped.
    boundary : {"fill", "wrap", "symm"} or SciPy's synonyms "pad", "circular", "symmetric"
    fillvalue : scalar
        Padding value for ``fill``, converted to the output dtype as SciPy converts it
        (arrays must cast safely; Python numbers are assigned, e.g. ``1.5`` becomes ``1``
        for integer data, ``300`` is refused for int8).
    backend : str, optional
        xcorr's backend choice (default: the inputs' framework).

    Returns
    -------
    array of the backend
        dtype ``numpy.result_type(in1, in2)`` (its equivalent in the input's framework).

    Raises
    ------
    ValueError
        As SciPy (same messages): inputs not 2-D, unknown mode or boundary (SciPy also
        refuses ``"reflect"``), ``valid`` mode with neither input at least as large as the
        other, a dtype SciPy does not support (bool, float16, object), a ``fillvalue`` that
        is empty, not a single value, or that converts to the output dtype only via
        complex (with ``boundary="fill"``; otherwise it is ignored, as SciPy does).  Also
        ``boundary="wrap"``/``"symm"`` with an empty ``in1`` and a non-empty output, where
        SciPy crashes (SIGFPE).

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

    The correlation of ``in1`` with ``in2[::-1, ::-1]`` (flipped, not conjugated), ``same``
    aligned as SciPy aligns a convolution.

    Parameters
    ----------
    in1, in2 : array_like, 2-D
        Any backend's arrays (or nested lists); complex allowed.
    mode : {"full", "valid", "same"}
        As SciPy, including the swap of the inputs in ``valid`` mode when ``in1`` is smaller
        than ``in2`` in a dimension (equal shapes are not swapped).
    boundary : {"fill", "wrap", "symm"} or SciPy's synonyms "pad", "circular", "symmetric"
    fillvalue : scalar
        Padding value for ``fill``, converted as :func:`correlate2d` converts it.
    backend : str, optional
        xcorr's backend choice (default: the inputs' framework).

    Returns
    -------
    array of the backend
        dtype ``numpy.result_type(in1, in2)`` (its equivalent in the input's framework).

    Raises
    ------
    ValueError
        As SciPy, with SciPy's messages; the same cases as :func:`correlate2d`.

    Examples
    --------
    >>> from xcorr import signal
    >>> signal.convolve2d([[1, 2], [3, 4]], [[1, -1]]).tolist()
    [[1, 1, -2], [3, 1, -4]]
    """
    return _signal(in1, in2, mode, boundary, fillvalue, backend, convolve=True)


def _signal(in1: Any, in2: Any, mode: str, boundary: str, fillvalue: Any,
            backend: str | None, convolve: bool) -> Any:
    # SciPy's order of checks, so that a call with several faults names the same one.
    name = "convolve2d" if convolve else "correlate2d"
    be, (a, b), dtypes = _dropin.convert({"in1": in1, "in2": in2}, backend)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{name} inputs must both be 2-D arrays")
    swapped = _swap_needed(mode, tuple(a.shape), tuple(b.shape))
    if mode not in _MODES:
        raise ValueError("Acceptable mode flags are 'valid', 'same', or 'full'.")
    if boundary not in _BOUNDARIES and boundary != "reflect":
        raise ValueError("Acceptable boundary flags are 'fill', 'circular' (or 'wrap'), and "
                         "'symmetric' (or 'symm').")
    if boundary == "reflect":  # a name SciPy's Python layer knows and its C layer refuses
        raise ValueError("Incorrect boundary value.")
    out_dtype = _out_dtype(*dtypes)
    bnd = _BOUNDARIES[boundary]
    fill = _fill(fillvalue, out_dtype) if bnd == "fill" else out_dtype.type(0)
    if out_dtype.kind not in "iufc" or out_dtype == np.float16:
        # SciPy's message, for correlate2d too (both run its _convolve2d).
        raise ValueError("convolve2d not available for this type.")
    if swapped:
        a, b = b, a
    (h, w), (kh, kw) = a.shape, b.shape
    shape = {"full": (h + kh - 1, w + kw - 1), "same": (h, w),
             "valid": (h - kh + 1, w - kw + 1)}[mode]
    if 0 in shape:
        return _dropin.full(be, shape, 0, out_dtype)
    if 0 in (h, w) and bnd != "fill":
        # SciPy divides by the empty side here and dies (SIGFPE); nothing defines the result.
        raise ValueError(f"boundary={boundary!r} cannot extend an empty in1 (shape {(h, w)}) "
                         "to a non-empty output; use boundary='fill'")
    if 0 in (kh, kw):  # a sum over no taps
        return _dropin.full(be, shape, 0, out_dtype)
    a, b = _compute_input(be, a, out_dtype), _compute_input(be, b, out_dtype)
    if convolve:
        b = be.xp.flip(b, axis=(-2, -1))
    widths = pads(mode, kh, kw, convolve)

    def run(x: Any, k: Any, value: Any) -> Any:
        return _dropin.valid_of_padded(be, x, k, widths, bnd, value)

    if out_dtype.kind == "c":
        out = _dropin.complex_correlate(be, a, b, not convolve, run, fill)
    else:
        out = run(a, b, fill)
    if swapped and not convolve:
        # Swapping the inputs of a correlation reverses its output (a convolution commutes):
        # reversed before the cast, as torch cannot flip uint16-64.
        out = be.xp.flip(out, axis=(-2, -1))
    return _dropin.cast(be, out, out_dtype)


def _out_dtype(d1: np.dtype, d2: np.dtype) -> np.dtype:
    """SciPy's output dtype: NumPy's promotion of the two (non-numeric dtypes stay as they are
    for the "not available" error)."""
    try:
        return np.result_type(d1, d2)
    except TypeError:
        return np.dtype(object)


def _compute_input(be: Any, a: Any, out_dtype: np.dtype) -> Any:
    """What the real correlations run on.

    Integers go to int64: wrapping int64 arithmetic, cast to SciPy's dtype at the end, gives
    SciPy's wrapped result exactly (uint64 is reinterpreted, and wraps the same way).  Floats
    and complex numbers go to the output dtype, which SciPy computes in (an integer paired
    with complex64 gives complex128, so its real part is float64).
    """
    if out_dtype.kind in "iu":
        return _dropin.cast(be, a, np.dtype(np.int64))
    return _dropin.cast(be, a, out_dtype)


_CAST_ERRORS = (TypeError, ValueError, OverflowError)


def _fill(fillvalue: Any, out_dtype: np.dtype) -> Any:
    """``fillvalue`` converted as SciPy converts it, as a scalar ready to pad with.

    SciPy converts with NumPy's ``PyArray_FromObject(fillvalue, dtype)``: arrays (and array
    likes) must cast safely, scalars and lists are assigned (a float is truncated into an
    integer dtype, an integer out of its range is refused).  If that fails, SciPy retries via
    complex128 and, when that works, refuses the value as complex.  It must hold one element.
    """
    try:
        fv = _from_object(fillvalue, out_dtype)
    except _CAST_ERRORS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
            _from_object(fillvalue, np.dtype(np.complex128)).astype(out_dtype)  # may raise
        raise ValueError("could not cast `fillvalue` directly to the output type (it was "
                         "first converted to complex).") from None
    if fv.size != 1:
        if fv.size == 0:
            raise ValueError("`fillvalue` cannot be an empty array.")
        raise ValueError("`fillvalue` must be scalar or an array with one element.")
    fv = fv.reshape(())
    if out_dtype.kind in "iu":
        # The correlation runs in int64: pad with the same bits (uint64 above 2**63 wraps).
        return int(fv.astype(np.int64))
    if out_dtype.itemsize > 8 and out_dtype.kind == "f" or out_dtype.itemsize > 16:
        return fv[()]  # long double: a Python number would round it
    return fv.item()


def _from_object(obj: Any, dtype: np.dtype) -> np.ndarray:
    """NumPy's ``PyArray_FromObject(obj, dtype)``: unlike ``numpy.asarray`` it casts arrays
    only safely."""
    if isinstance(obj, np.ndarray) or (hasattr(obj, "__array__") and
                                       not isinstance(obj, np.generic)):
        arr = np.asarray(obj)
        if not np.can_cast(arr.dtype, dtype, "safe"):
            raise TypeError(f"Cannot cast array data from {arr.dtype} to {dtype} according "
                            "to the rule 'safe'")
        return arr.astype(dtype)
    return np.array(obj, dtype=dtype)


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
