"""Drop-ins for ``scipy.ndimage.correlate`` and ``scipy.ndimage.convolve`` on 2-D arrays.

Change ``from scipy import ndimage`` to ``from xcorr import ndimage`` for 2-D filtering: same
signature, defaults, mode names (and meanings), ``origin`` and output dtypes, computed by
xcorr's direct kernels on any backend's arrays (results in the input's framework).  Like
``scipy.ndimage`` the sums are accumulated in float64 (complex128) and cast once to the
output dtype (integers truncated toward zero, as ndimage's C cast does), so results equal
ndimage's within float64 rounding.  What ndimage supports and these do not (N-D input or
weights, ``axes``, a sequence of modes) raises ``NotImplementedError`` saying so.  The only
addition is the keyword ``backend=``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _corr, _dispatch, _dropin

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
        N-D input or weights, ``axes``, a sequence of modes.
    ValueError
        An origin outside the window, a complex ``cval`` with real input, an ``output``
        array for non-NumPy input.
    RuntimeError
        As ndimage: an unknown mode, an ``output`` array of the wrong shape.

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

    The correlation with the flipped weights, the centre mirrored as ndimage mirrors it.
    Parameters, results and errors as :func:`correlate`.

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
    name = "convolve" if convolve else "correlate"
    if axes is not None:
        raise NotImplementedError(f"xcorr.ndimage.{name} filters both axes of 2-D input; "
                                  "axes= is not supported (use scipy.ndimage for N-D work)")
    if not isinstance(mode, str):
        raise NotImplementedError(f"xcorr.ndimage.{name} takes one mode for both axes")
    if mode not in _MODES:
        raise RuntimeError("boundary mode not supported")
    be, (x, w) = _dropin.convert({"input": input, "weights": weights}, backend)
    if x.ndim != 2 or w.ndim != 2:
        raise NotImplementedError(
            f"xcorr.ndimage.{name} handles 2-D input and weights; got {x.ndim}-D input and "
            f"{w.ndim}-D weights (use scipy.ndimage, or xcorr.corr2d with batch axes)")
    if 0 in tuple(w.shape):
        raise RuntimeError("no filter weights given")
    x_dtype = _dropin.numpy_dtype(x)
    complex_out = x_dtype.kind == "c" or _dropin.numpy_dtype(w).kind == "c"
    if not complex_out and np.iscomplexobj(cval):
        raise ValueError("Cannot provide a complex-valued cval when the input is real.")
    out_dtype, out_array = _output(output, be, x_dtype, tuple(x.shape), complex_out)
    origins = _origins(origin, tuple(w.shape), convolve)
    if convolve:
        w = be.xp.flip(w, axis=(-2, -1))
    elif _dropin.numpy_dtype(w).kind == "c":
        w = be.xp.conj(w)  # as np.correlate: conjugate the weights, not the input
    widths = (*_side(w.shape[0], origins[0]), *_side(w.shape[1], origins[1]))
    boundary = _MODES[mode]
    wide = np.dtype(np.complex128 if complex_out else np.float64)

    def run(a: Any, k: Any, value: Any) -> Any:
        a, k = _dropin.cast(be, a, np.dtype(np.float64)), _dropin.cast(be, k, np.dtype(np.float64))
        return _corr.padded_valid(be, a, k, widths, boundary, float(value), "direct")

    if complex_out:
        res = _dropin.complex_correlate(be, x, w, False, run, complex(cval))
    else:
        res = run(x, w, cval)
    res = _dropin.cast(be, res, wide)
    if out_dtype.kind in "iub":  # ndimage's C cast: truncate toward zero, then wrap
        res = _dropin.cast(be, be.xp.trunc(res), np.dtype(np.int64))
    res = _dropin.cast(be, res, out_dtype)
    if out_array is not None:
        out_array[...] = res
        return out_array
    return res


def _side(w: int, origin: int) -> tuple[int, int]:
    """Padding (before, after) for a window of ``w`` centred at ``w // 2 + origin``."""
    before = w // 2 + origin
    return before, w - 1 - before


def _origins(origin: Any, wshape: tuple[int, int], convolve: bool) -> list[int]:
    o = np.broadcast_to(np.asarray(origin, dtype=np.int64), (2,)).tolist() if np.ndim(
        origin) <= 1 and np.size(origin) in (1, 2) else None
    if o is None:
        raise RuntimeError("sequence argument must have length equal to input rank")
    for v, n in zip(o, wshape, strict=True):
        if not -(n // 2) <= v <= (n - 1) // 2:
            raise ValueError("Invalid origin; origin must satisfy -(weights.shape[k] // 2) "
                             "<= origin[k] <= (weights.shape[k]-1) // 2")
    if convolve:  # ndimage flips the weights and mirrors the centre (one more for even sides)
        o = [-v - (1 - n % 2) for v, n in zip(o, wshape, strict=True)]
    return o


def _output(output: Any, be: Any, x_dtype: np.dtype, shape: tuple[int, ...],
            complex_out: bool) -> tuple[np.dtype, Any]:
    """The output dtype, and the user's output array if one was given."""
    if output is None:
        dt = np.promote_types(x_dtype, np.complex64) if complex_out else x_dtype
        return np.dtype(dt), None
    if isinstance(output, (type, np.dtype, str)):
        dt = np.dtype(output)
        if complex_out and dt.kind != "c":
            dt = np.promote_types(dt, np.complex64)
        return dt, None
    if _dispatch.array_backend(output) != "numpy" or be.NAME != "numpy":
        raise ValueError("output= may be None, a dtype, or (for NumPy input) a NumPy array; "
                         f"got {type(output).__name__} with backend {be.NAME!r}; use the "
                         "returned array instead")
    if tuple(output.shape) != shape:
        raise RuntimeError("output shape not correct")
    if complex_out and output.dtype.kind != "c":
        raise RuntimeError("output must have complex dtype")
    return output.dtype, output
