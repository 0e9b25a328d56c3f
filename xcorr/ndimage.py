"""Drop-ins for ``scipy.ndimage.correlate`` and ``scipy.ndimage.convolve`` on 2-D arrays.

Change ``from scipy import ndimage`` to ``from xcorr import ndimage`` for 2-D filtering: same
signature, defaults, mode names (and meanings), ``origin`` and output dtypes, computed by
xcorr's direct kernels on any backend's arrays (results in the input's framework).  Like
``scipy.ndimage`` the sums are accumulated in float64 (complex128) and cast once to the
output dtype (integers truncated toward zero, as ndimage's C cast does), so results equal
ndimage's within float64 rounding (on JAX, with ``jax_enable_x64``: without it JAX has no
float64, the sums are float32, and an int32 result past 2**24 is rounded); like ndimage,
weights with ``|w| <= DBL_EPSILON`` (and NaN weights) are left out, so they never turn an
infinite pixel into NaN.  ndimage's errors keep their types and messages.  What ndimage
supports and these do not (N-D input or weights, ``axes``) raises ``NotImplementedError``
saying so.  The only addition is the keyword ``backend=``.

Where ndimage's C cast is undefined (NaN, ±Inf or a sum out of range into an integer
output) the result is the truncated sum wrapped into int64 (``INT64_MIN`` beyond its range)
and then into the output dtype, which equals ndimage on x86-64 for sums within the 32-bit
range (64-bit for 64-bit outputs).
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _dispatch, _dropin

__all__ = ["convolve", "correlate"]

# ndimage's mode names -> xcorr's boundaries.  For filters ndimage treats grid-wrap as wrap,
# grid-constant as constant, and grid-mirror is its documented synonym of reflect.
_MODES = {"reflect": "symm", "grid-mirror": "symm", "constant": "fill",
          "grid-constant": "fill", "nearest": "nearest", "mirror": "mirror", "wrap": "wrap",
          "grid-wrap": "wrap"}


def correlate(input: Any, weights: Any, output: Any = None, mode: str = "reflect",  # noqa: A002
              cval: Any = 0.0, origin: Any = 0, *, axes: Any = None,
              backend: str | None = None) -> Any:
    """2-D correlation, as ``scipy.ndimage.correlate`` (for 2-D ``input`` and ``weights``).

    ``out[i, j] = sum_{a, b} weights[a, b] * ext[i + a - ca, j + b - cb]`` with the centre
    ``c = w // 2 + origin`` on each axis and ``ext`` the input extended by ``mode``.

    Parameters
    ----------
    input, weights : array_like, 2-D
        Any backend's arrays; complex allowed (complex weights are conjugated, as ndimage).
    output : None, dtype, or numpy.ndarray
        Output dtype (default: ``input``'s), or for NumPy input an array to write into (it
        is also returned).
    mode : {"reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror",
            "grid-constant", "grid-wrap"}
        ndimage's names: ``reflect`` repeats the edge pixel (xcorr's ``symm``), ``mirror``
        does not (xcorr's ``mirror``), ``nearest`` repeats it (``nearest``), ``wrap`` is
        periodic, ``constant`` pads with ``cval``.
    cval : scalar
        Fill value of ``constant``.
    origin : int or (int, int)
        Shift of the window's centre; ``-(w // 2) <= origin <= (w - 1) // 2`` per axis.
    axes : None
        Accepted only as None (2-D input: both axes); other values raise
        ``NotImplementedError``.
    backend : str, optional
        xcorr's backend choice (default: the inputs' framework).

    Returns
    -------
    array of the backend (or ``output`` when it is an array)

    Raises
    ------
    NotImplementedError
        N-D input or weights, ``axes``.
    ValueError
        As ndimage: an origin outside the window, a complex ``cval`` with real input and
        complex weights.  Also an ``output`` array for non-NumPy input (or a non-NumPy
        ``output`` array).
    TypeError
        As ndimage: a ``cval`` that is not a real number (for real data), a non-integer
        origin.
    RuntimeError
        As ndimage: an unknown mode or a sequence of modes, weights whose dimensions do not
        match the input's, an ``output`` array of the wrong shape, a real ``output`` array
        (or output dtype name) for complex data, a dtype ndimage does not handle (float16,
        long double, object; complex output for real data).

    Warns
    -----
    UserWarning
        As ndimage: "promoting specified output dtype to complex" when ``output`` is a real
        dtype (type or ``numpy.dtype``) and the result is complex.

    Examples
    --------
    >>> import numpy as np
    >>> from xcorr import ndimage
    >>> ndimage.correlate(np.arange(9.0).reshape(3, 3), [[1.0, 1.0]], mode="nearest").tolist()
    [[0.0, 1.0, 3.0], [6.0, 7.0, 9.0], [12.0, 13.0, 15.0]]
    """
    return _filter(input, weights, output, mode, cval, origin, axes, backend, convolve=False)


def convolve(input: Any, weights: Any, output: Any = None, mode: str = "reflect",  # noqa: A002
             cval: Any = 0.0, origin: Any = 0, *, axes: Any = None,
             backend: str | None = None) -> Any:
    """2-D convolution, as ``scipy.ndimage.convolve`` (for 2-D ``input`` and ``weights``).

    The correlation with the flipped weights, the centre mirrored as ndimage mirrors it
    (``origin`` shifts it the other way, as in ndimage).

    Parameters
    ----------
    input, weights : array_like, 2-D
        Any backend's arrays; complex allowed (complex weights are not conjugated).
    output : None, dtype, or numpy.ndarray
        As :func:`correlate`.
    mode : {"reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror",
            "grid-constant", "grid-wrap"}
        ndimage's names and meanings, as :func:`correlate`.
    cval : scalar
        Fill value of ``constant``.
    origin : int or (int, int)
        Shift of the window's centre, within the window as in :func:`correlate`.
    axes : None
        Accepted only as None; other values raise ``NotImplementedError``.
    backend : str, optional
        xcorr's backend choice (default: the inputs' framework).

    Returns
    -------
    array of the backend (or ``output`` when it is an array)

    Raises
    ------
    NotImplementedError, ValueError, TypeError, RuntimeError
        In the cases and with the messages of :func:`correlate` (ndimage's).

    Warns
    -----
    UserWarning
        As :func:`correlate`, when a real ``output`` dtype is promoted to complex.

    Examples
    --------
    >>> import numpy as np
    >>> from xcorr import ndimage
    >>> ndimage.convolve(np.arange(9.0).reshape(3, 3), [[1.0, 1.0]], mode="nearest").tolist()
    [[1.0, 3.0, 4.0], [7.0, 9.0, 10.0], [13.0, 15.0, 16.0]]
    """
    return _filter(input, weights, output, mode, cval, origin, axes, backend, convolve=True)


def _filter(input: Any, weights: Any, output: Any, mode: Any, cval: Any, origin: Any,  # noqa: A002
            axes: Any, backend: str | None, convolve: bool) -> Any:
    # ndimage's order of checks, so that a call with several faults names the same one.
    name = "convolve" if convolve else "correlate"
    if axes is not None:
        raise NotImplementedError(f"xcorr.ndimage.{name} filters both axes of 2-D input; "
                                  "axes= is not supported (use scipy.ndimage for N-D work)")
    be, (x, w), (x_dtype, w_dtype) = _dropin.convert({"input": input, "weights": weights},
                                                     backend)
    shape = tuple(x.shape)
    complex_out = x_dtype.kind == "c" or w_dtype.kind == "c"
    if complex_out:  # ndimage settles the output first on this path
        out_dtype, out_array = _output(output, be, x_dtype, shape, True)
    origins = _normalize_origin(origin)
    wshape = [n for n in w.shape if n > 0]
    if len(wshape) != x.ndim:
        raise RuntimeError(f"weights.ndim ({len(wshape)}) must match len(axes) ({x.ndim})")
    if x.ndim != 2 or w.ndim != 2:
        raise NotImplementedError(
            f"xcorr.ndimage.{name} handles 2-D input and weights; got {x.ndim}-D input and "
            f"{w.ndim}-D weights (use scipy.ndimage, or xcorr.corr2d with batch axes)")
    origins = _origins(origins, tuple(w.shape), convolve)
    if not complex_out:
        out_dtype, out_array = _output(output, be, x_dtype, shape, False)
    if not isinstance(mode, str) and isinstance(mode, Iterable):
        raise RuntimeError("A sequence of modes is not supported")
    if not isinstance(mode, str) or mode not in _MODES:
        raise RuntimeError("boundary mode not supported")
    fill = _fill(cval, x_dtype, w_dtype)
    if 0 in shape:  # nothing to compute (a given output array is left as it is)
        return out_array if out_array is not None else _dropin.full(be, shape, 0, out_dtype)
    _check_types(x_dtype, out_dtype, complex_out)  # ndimage checks in its loop: not if empty
    # ndimage takes the weights in float64 (their parts, if complex): cast before flipping
    # (torch cannot flip its unsigned types).
    w = _dropin.cast(be, w, np.dtype(np.complex128 if w_dtype.kind == "c" else np.float64))
    if convolve:
        w = be.xp.flip(w, axis=(-2, -1))
    elif w_dtype.kind == "c":
        w = be.xp.conj(w)  # as np.correlate: conjugate the weights, not the input
    widths = (*_side(w.shape[0], origins[0]), *_side(w.shape[1], origins[1]))
    boundary = _MODES[mode]
    f64 = np.dtype(np.float64)

    def run(a: Any, k: Any, value: Any) -> Any:
        k, pads = _dropin.cast(be, k, f64), widths
        if _pads_narrow(a, boundary, value):
            # Padded before it is widened: the same float64 values, one float64 pass fewer
            # (1024² float32 with 7×7 weights: 3.6 -> 3.4 ms here)
            a, pads = _dropin.padded(be, a, widths, boundary, value), None
        return _skipping_valid(be, _dropin.cast(be, a, f64), k, pads, boundary, value,
                               narrow=a if pads is None else None)

    if complex_out:
        res = _dropin.complex_correlate(be, x, w, False, run, fill)
    else:
        res = run(x, w, fill)
    res = _cast_out(be, res, out_dtype)
    if out_array is not None:
        out_array[...] = res
        return out_array
    return res


_EPS = float(np.finfo(np.float64).eps)
_INF = float("inf")


def _skipping_valid(be: Any, x: Any, k: Any, widths: tuple[int, int, int, int] | None,
                    boundary: str, value: float, narrow: Any = None) -> Any:
    """ndimage's sum for a float64 image ``x`` and float64 weights ``k``: it skips the taps
    with ``|k| <= eps`` (and NaN), so they contribute nothing — not even ``0 * inf = nan``.

    On finite data that is the correlation with those taps zeroed.  Where a skipped tap may
    meet NaN or ±Inf (in ``x`` or the fill value), the non-finite pixels are taken out of the
    sum and their effect rebuilt from counts of the IEEE products the used taps form with
    them: any NaN product, or both infinities, give NaN; else an infinity beats the finite
    sum.  The sum and the counts are one batched correlation (one pass, one Dask graph node).
    ``narrow``: ``x`` before it was widened to float64, finite exactly where ``x`` is (its
    check reads half the bytes).
    """
    blocked = getattr(be, "skipping_blocked", None)
    if blocked is not None:  # Dask: each block decides from its own values, lazily
        return blocked(_dropin.padded(be, x, widths, boundary, value), k, _block_skipping)
    xp = be.xp
    used = abs(k) > _EPS  # False for NaN
    k0 = xp.where(used, k, 0.0)
    # all_finite says None where it cannot tell without computing (Dask) or tracing (JAX).
    if _all_true(be, used) or (be.all_finite(x if narrow is None else narrow, k0) is True
                               and np.isfinite(value)):
        return _dropin.valid_of_padded(be, x, k0, widths, boundary, value)
    xpad = _dropin.padded(be, x, widths, boundary, value)
    pos, neg = used & (k > 0), used & (k < 0)
    pinf, ninf = xpad == _INF, xpad == -_INF
    # (image, weights) pairs: the finite sum, then NaN, +Inf and -Inf products.
    pairs = [(xp.where(abs(xpad) < _INF, xpad, 0.0), xp.where(abs(k0) < _INF, k0, 0.0)),
             (xpad != xpad, used), (pinf, pos), (ninf, neg), (ninf, pos), (pinf, neg)]
    nan_ch, pinf_ch, ninf_ch = [1], [2, 3], [4, 5]
    if not _all_true(be, abs(k) < _INF):  # infinite weights: with 0 NaN, else ±Inf
        k_pinf, k_ninf = k == _INF, k == -_INF
        pairs += [(xpad == 0, k_pinf | k_ninf), (xpad > 0, k_pinf), (xpad < 0, k_ninf),
                  (xpad < 0, k_pinf), (xpad > 0, k_ninf)]
        nan_ch, pinf_ch, ninf_ch = [1, 6], [2, 3, 7, 8], [4, 5, 9, 10]
    f64 = np.dtype(np.float64)
    images = xp.stack([_dropin.cast(be, a, f64) for a, _ in pairs])
    weights = xp.stack([_dropin.cast(be, m, f64) for _, m in pairs])
    sums = _dropin.valid_of_padded(be, images, weights, None, boundary, 0.0)

    def hit(channels: list[int]) -> Any:
        total = sums[channels[0]]
        for c in channels[1:]:
            total = total + sums[c]
        return total > 0

    out = xp.where(hit(ninf_ch), -_INF, sums[0])
    out = xp.where(hit(pinf_ch), _INF, out)
    return xp.where(hit(nan_ch) | (hit(pinf_ch) & hit(ninf_ch)), float("nan"), out)


def _block_skipping(be: Any, xpad: Any, k: Any) -> Any:
    """``_skipping_valid`` of one padded block (Dask's, with its halo): its own data decide
    whether a skipped tap can meet NaN or Inf, so finite blocks take the one correlation."""
    return _skipping_valid(be, xpad, k, None, "fill", 0.0)


def _pads_narrow(a: Any, boundary: str, value: float) -> bool:
    """Whether float32 ``a`` can be padded before it is widened to float64: the copying
    boundaries copy its values, and ``fill`` needs a fill value that float32 holds exactly
    (NaN and ±Inf do; 0.1 does not)."""
    if _dropin.numpy_dtype(a) != np.float32:
        return False
    if boundary != "fill":
        return True
    with np.errstate(over="ignore"):
        narrow = float(np.float32(value))
    return bool(np.isnan(value) or narrow == value)


def _all_true(be: Any, mask: Any) -> bool:
    """Whether every element of a (small) boolean array is True; False where unknown."""
    if be.NAME == "dask":
        return bool(mask.all().compute())
    if be.NAME == "jax" and _dispatch.jax_tracer(mask):
        return False
    if be.NAME == "torch" and be.values_unknown(mask):
        return False
    return bool(mask.all())


# The dtypes ndimage's C code reads and writes (not float16, long double, complex or object;
# complex data goes through its real and imaginary parts).
_C_TYPES = frozenset(np.dtype(c) for c in "?bBhHiIlLqQfd")


def _check_types(x_dtype: np.dtype, out_dtype: np.dtype, complex_out: bool) -> None:
    """ndimage's C code refuses other dtypes, for complex data in their real parts (so a
    complex output for real data is refused too); an output dtype of either byte order."""
    real_in = np.empty(0, x_dtype).real.dtype
    real_out = (np.empty(0, out_dtype).real.dtype if complex_out else out_dtype
                ).newbyteorder("=")
    if real_in not in _C_TYPES or real_out not in _C_TYPES:
        raise RuntimeError("array type not supported")


def _cast_out(be: Any, res: Any, out_dtype: np.dtype) -> Any:
    """The float64 (complex128) sums cast once to the output dtype, as ndimage's C cast does:
    integers are truncated toward zero and wrap, booleans are the low byte's truth."""
    if out_dtype.kind in "iub":
        res = be.xp.trunc(res)
        if out_dtype == np.uint64:
            # C casts [2**63, 2**64) to uint64 exactly; int64 would overflow, so shift those
            # by 2**64 first (exact: x and 2**64 are within a factor of two).
            res = be.xp.where(res >= 2.0**63, res - 2.0**64, res)
        # NaN, ±Inf and sums beyond int64 have no defined C conversion; take the value x86
        # gives (INT64_MIN, whose low bits are 0) without NumPy's "invalid value" warning.
        res = be.xp.where((res >= -2.0**63) & (res < 2.0**63), res, -2.0**63)
        res = _dropin.cast(be, res, np.dtype(np.int64))
        if out_dtype.kind == "b":  # npy_bool is an unsigned char
            res = _dropin.cast(be, res, np.dtype(np.uint8))
    with np.errstate(over="ignore"):  # a float64 sum past float32's range: inf, silently
        return _dropin.cast(be, res, out_dtype)


def _as_double(v: Any) -> float:
    """``v`` as a C double the way ndimage's argument parsing takes it (no strings)."""
    t = type(v)
    if isinstance(v, (str, bytes)) or not (hasattr(t, "__float__") or hasattr(t, "__index__")):
        raise TypeError(f"must be real number, not {t.__name__}")
    return float(v)


def _fill(cval: Any, x_dtype: np.dtype, w_dtype: np.dtype) -> Any:
    """``cval`` as ndimage takes it: real data needs a real ``cval``; complex input pads its
    real part with ``real(cval)`` and its imaginary part with ``imag(cval)``."""
    if x_dtype.kind == "c":
        return complex(_as_double(np.real(cval)), _as_double(np.imag(cval)))
    if w_dtype.kind == "c" and np.iscomplexobj(cval):
        raise ValueError("Cannot provide a complex-valued cval when the input is real.")
    value = _as_double(cval)
    return complex(value, 0.0) if w_dtype.kind == "c" else value


def _side(w: int, origin: int) -> tuple[int, int]:
    """Padding (before, after) for a window of ``w`` centred at ``w // 2 + origin``."""
    before = w // 2 + origin
    return before, w - 1 - before


def _normalize_origin(origin: Any) -> list[Any]:
    """ndimage's ``_normalize_sequence(origin, 2)``: one value per axis."""
    if not isinstance(origin, str) and np.iterable(origin):
        o = list(origin)
        if len(o) != 2:
            raise RuntimeError("sequence argument must have length equal to input rank")
        return o
    return [origin, origin]


def _origins(o: list[Any], wshape: tuple[int, int], convolve: bool) -> list[int]:
    if convolve:  # ndimage flips the weights and mirrors the centre (one more for even sides)
        o = [-v - (1 - n % 2) for v, n in zip(o, wshape, strict=True)]
    for v, n in zip(o, wshape, strict=True):
        if isinstance(v, (bool, np.bool_)):  # ndimage's C code refuses them
            raise TypeError("an integer is required")
        if v < -(n // 2) or v > (n - 1) // 2:
            raise ValueError("Invalid origin; origin must satisfy -(weights.shape[k] // 2) "
                             "<= origin[k] <= (weights.shape[k]-1) // 2")
    return [operator.index(v) for v in o]  # ndimage's C code takes integers only


def _output(output: Any, be: Any, x_dtype: np.dtype, shape: tuple[int, ...],
            complex_out: bool) -> tuple[np.dtype, Any]:
    """ndimage's ``_get_output``: the output dtype, and the user's output array if given."""
    if output is None:
        dt = np.promote_types(x_dtype, np.complex64) if complex_out else x_dtype
        return np.dtype(dt), None
    if str(type(output)) == "<class 'torch.dtype'>":  # torch.float32: NumPy's by name
        output = np.dtype(str(output).removeprefix("torch."))
    if isinstance(output, (type, np.dtype)):
        dt = np.dtype(output)
        if complex_out and dt.kind != "c":
            warnings.warn("promoting specified output dtype to complex", UserWarning,
                          stacklevel=4)
            dt = np.promote_types(dt, np.complex64)
        return dt, None
    if isinstance(output, str):
        dt = np.dtype(output)
        if complex_out and dt.kind != "c":
            raise RuntimeError("output must have complex dtype")
        if not issubclass(dt.type, np.number):
            raise RuntimeError("output must have numeric dtype")
        return dt, None
    if _dispatch.array_backend(output) != "numpy":
        raise ValueError("output= may be None, a dtype, or a NumPy array (with the NumPy "
                         f"backend); got {type(output).__name__}; use the returned array "
                         "instead")
    if be.NAME != "numpy":
        raise ValueError(f"output= as a NumPy array needs the NumPy backend, but {be.NAME!r} "
                         "computes this call (its input, backend= or the default backend "
                         "chose it); pass backend='numpy', or drop output= and use the "
                         "returned array")
    if tuple(output.shape) != shape:
        raise RuntimeError("output shape not correct")
    if not output.flags.writeable:  # before the work, as ndimage
        raise ValueError("output array is read-only.")
    if complex_out and output.dtype.kind != "c":
        raise RuntimeError("output must have complex dtype")
    return output.dtype, output
