"""Testing helpers: Hypothesis strategies and a cross-backend agreement check.

This module is public so that projects built on xcorr can test their own pipelines the way
xcorr tests itself.  It imports NumPy and Hypothesis (``pip install hypothesis``); ``import
xcorr`` does not import it.

Floating-point results are compared with the standard error bound of a dot product rather
than a relative tolerance: an output that cancels to nearly zero is allowed the error its
terms carry, not a fraction of its own (tiny) value.  See :func:`error_bound`.

Turn Hypothesis's deadline off (``@settings(deadline=None)``) for tests that run xcorr on
several backends: JAX compiles for each new shape and Numba for each new dtype, which can take
seconds, more than the default deadline of 200 ms; the next example of the same shape is fast,
so the deadline would only report a "flaky" timing, never a slow test.

Examples
--------
Paste into a test module of your own:

>>> from hypothesis import given, settings
>>> import xcorr.testing as xt
>>> @settings(deadline=None)
... @given(xt.corr2d_cases(dtype="float32", mode="same"))
... def test_backends_agree(case):
...     x, k = case
...     xt.assert_backends_agree(x, k, mode="same")

Run it with pytest like any other test.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import log2
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib.stride_tricks import sliding_window_view

from . import _boundary
from ._boundary import BOUNDARIES, NUMPY_MODES, pads
from ._corr import corr2d
from ._dispatch import available, load
from ._interop import host_copy as as_numpy
from ._methods import SPECTRAL, fft_len
from ._validate import MODES, numpy_kind, numpy_result_dtype

__all__ = [
    "DIRECT_C",
    "FFT_C",
    "as_numpy",
    "assert_backends_agree",
    "assert_within_bound",
    "boundaries",
    "corr2d_cases",
    "elements",
    "error_bound",
    "images",
    "kernels",
    "surface_cases",
]

# Constants of the bounds in `error_bound` (see there).  DIRECT_C = 2 covers the 1/(1 - n·u)
# of gamma_n with room for fused multiply-adds.  FFT_C is 4.6x the worst ratio of error to the
# normwise term seen on random, constant, integer-valued and one-huge-element inputs up to 64x64
# in float32 and float64 (0.87, NumPy/SciPy pocketfft); Hypothesis has not found a larger one.
DIRECT_C = 2.0
"""The constant of the direct (dot-product) term of :func:`error_bound`."""
FFT_C = 4.0
"""The constant of the normwise FFT term of :func:`error_bound`."""

# Methods whose summation order or algorithm is not the plain sum of products: "native"
# (cuDNN/oneDNN/XLA convolutions) may pick Winograd or FFT algorithms, and "auto" may pick fft.
_NORMWISE_METHODS = ("fft", "overlap", "auto", "native")


# -- conversion --------------------------------------------------------------------------------


# -- the error bound ---------------------------------------------------------------------------


def _finfo(dtype: Any) -> Any:
    """``finfo`` of a float dtype: NumPy's, ml_dtypes' (bfloat16, float8: NumPy's refuses
    them) or torch's (a torch dtype, which is what a torch result's half type says)."""
    if str(dtype).startswith("torch."):
        import torch

        return torch.finfo(dtype)
    try:
        return np.finfo(dtype)
    except ValueError:
        import ml_dtypes

        return ml_dtypes.finfo(dtype)


def _exact(dtype: Any) -> bool:
    """Integer and boolean dtypes (a bound of 0), NumPy's or torch's."""
    if str(dtype).startswith("torch."):
        return not (dtype.is_floating_point or dtype.is_complex)
    return numpy_kind(dtype) in "ib"


def _computed_in(result: Any, host: np.ndarray) -> Any:
    """The dtype a backend's ``result`` was computed in: ``as_numpy`` widens torch's half
    types to float32, which would tighten their bound 8192-fold (float16)."""
    dtype = getattr(result, "dtype", None)
    if str(dtype).startswith("torch.") and result.is_floating_point() and (
            result.element_size() < 4):
        return np.dtype(np.float16) if str(dtype) == "torch.float16" else dtype
    return host.dtype


def _unit_roundoff(dtype: Any) -> float:
    return float(_finfo(dtype).eps) / 2


def _finite_abs(a: np.ndarray) -> np.ndarray:
    a = np.abs(a.astype(np.float64))
    return np.where(np.isfinite(a), a, 0.0)


def _padded(a: np.ndarray, mode: str, kshape: tuple[int, int], boundary: str = "fill",
            fillvalue: float = 0.0, convolve: bool = False) -> np.ndarray:
    """``a`` extended as ``corr2d``/``convolve2d`` extend it for ``mode`` and ``boundary``."""
    p = pads(mode, *kshape, convolve)
    if p is None:
        return a
    top, bottom, left, right = p
    spec = [(0, 0)] * (a.ndim - 2) + [(top, bottom), (left, right)]
    if boundary == "fill":
        return np.pad(a, spec, constant_values=fillvalue)
    return np.pad(a, spec, mode=NUMPY_MODES[_boundary.check(boundary)])


def error_bound(x: Any, k: Any, mode: str = "valid", dtype: Any = None,
                method: str = "direct", *, boundary: str = "fill", fillvalue: Any = 0,
                convolve: bool = False) -> np.ndarray:
    """Per-output bound on ``|computed - exact|`` for ``corr2d(x, k, mode=mode, method=method)``.

    With ``boundary``/``fillvalue`` the bound is that of the padded problem ``corr2d`` solves;
    ``convolve=True`` bounds ``convolve2d`` instead; ``k`` may carry leading (per-image)
    dimensions that broadcast against ``x``'s batch dimensions, as in ``corr2d``.

    For a direct (sum-of-products) evaluation in a floating dtype with unit roundoff ``u``
    and ``n = kh·kw`` taps the bound is the classical dot-product bound [1]_::

        DIRECT_C · (n + 2) · u · (|x| ⋆ |k|)  +  n · tiny

    where ``|x| ⋆ |k|`` is the correlation of absolute values (computed in float64), the
    ``+ 2`` pays for rounding float64 inputs to ``dtype`` (JAX without x64 computes float64
    input in float32) and ``tiny`` (the smallest normal number) for products that underflow.
    Any summation order, blocking or fused multiply-add stays within it.

    An FFT does not bound each output by its own terms: rounding errors of the transforms
    spread over the whole output in proportion to the norms of the inputs [2]_.  For
    ``method`` ``"fft"``, ``"overlap"`` (tiles are smaller than the image, so the same term
    bounds them), ``"auto"`` (which may choose either) or ``"native"`` (library
    convolutions may use FFT or Winograd algorithms) the normwise term::

        FFT_C · u · log2(N) · ‖x_b‖₂ · ‖k‖₂         N = fft_len(H) · fft_len(W)

    is added, with ``x_b`` the 2-D image (after padding for ``mode``) the output belongs to.

    Parameters
    ----------
    x, k : array_like
        The inputs, as passed to ``corr2d`` (host arrays; see :func:`as_numpy`).
    mode : {"valid", "same", "full"}
    dtype : dtype, optional
        The dtype the result was computed in (e.g. the dtype ``corr2d`` returned; ml_dtypes'
        and torch's bfloat16 and float8 too).  Default: NumPy's promotion of ``x`` and
        ``k``.  Integer dtypes give a bound of 0.
    method : str
        The ``method`` passed to ``corr2d``.
    boundary : {"fill", "wrap", "symm", "mirror", "nearest"}
        The ``boundary`` passed to ``corr2d`` (``same``/``full`` modes).
    fillvalue : real scalar
        The ``fillvalue`` passed to ``corr2d``.
    convolve : bool
        Bound ``convolve2d`` (the flipped kernel, its ``same`` alignment) instead.

    Returns
    -------
    numpy.ndarray of float64, the shape of the output
        Non-finite inputs count as 0 here: outputs they reach are compared by value
        (NaN with NaN, ±Inf with ±Inf), not by this bound.

    Raises
    ------
    ValueError
        An unknown ``mode`` (or ``boundary``, in ``same``/``full`` mode), or kernel
        dimensions that do not broadcast against ``x``'s batch dimensions.

    References
    ----------
    .. [1] N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
       SIAM 2002, §3.1 (inner products).
    .. [2] Ibid., §24.1 (the fast Fourier transform).

    Examples
    --------
    >>> import numpy as np
    >>> from xcorr.testing import error_bound
    >>> error_bound(np.ones((3, 3)), np.ones((2, 2)), dtype="float32").shape
    (2, 2)
    """
    x, k = np.asarray(x), np.asarray(k)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if dtype is None:
        dt = numpy_result_dtype(x.dtype, k.dtype)  # (defined for ml_dtypes' pairs too)
    else:
        dt = dtype if str(dtype).startswith("torch.") else np.dtype(dtype)
    kshape = (int(k.shape[-2]), int(k.shape[-1]))
    fill = abs(float(fillvalue))  # non-finite, as non-finite inputs: 0 (compared by value)
    ax = _padded(_finite_abs(x), mode, kshape, boundary, fill if fill < np.inf else 0.0,
                 convolve)
    lead = np.broadcast_shapes(ax.shape[:-2], k.shape[:-2])
    out_shape = (*lead, ax.shape[-2] - kshape[0] + 1, ax.shape[-1] - kshape[1] + 1)
    if _exact(dt):
        return np.zeros(out_shape)
    ak = _finite_abs(k)
    if convolve:
        ak = ak[..., ::-1, ::-1]
    n = kshape[0] * kshape[1]
    u = _unit_roundoff(dt)
    tiny = float(_finfo(dt).smallest_normal)
    abs_corr = np.einsum("...ijab,...ab->...ij",  # "..." broadcasts per-image kernels
                         sliding_window_view(ax, kshape, axis=(-2, -1)), ak)
    bound = DIRECT_C * (n + 2) * u * abs_corr + n * tiny
    if method in _NORMWISE_METHODS:
        h, w = ax.shape[-2:]
        norm_x = np.sqrt(np.einsum("...ij,...ij->...", ax, ax))
        norm_k = np.sqrt(np.einsum("...ij,...ij->...", ak, ak))
        bound = bound + FFT_C * u * log2(max(fft_len(h) * fft_len(w), 2)) * (
            norm_x * norm_k)[..., None, None]
    return np.broadcast_to(bound, out_shape)


# -- comparison --------------------------------------------------------------------------------


def assert_within_bound(got: Any, want: Any, bound: Any, name: str = "result") -> None:
    """Assert ``got`` equals ``want`` up to ``bound``, the way :func:`assert_backends_agree` does.

    Integer ``got`` must equal ``want`` exactly; for floats the non-finite outputs must match
    by value (NaN with NaN) and the finite ones satisfy ``|got - want| <= bound``.

    Parameters
    ----------
    got : array_like
        The result under test, in the dtype it was computed in.
    want : array_like
        The expected result (float64 or int64 preferred).
    bound : array_like
        Allowed absolute error per element (e.g. from :func:`error_bound`), broadcastable; a
        NaN bound allows no error.
    name : str
        Used in the failure message.

    Raises
    ------
    AssertionError
        Shapes differ; an integer result differs anywhere; non-finite outputs differ in
        position or value; or a finite output exceeds its bound.  The message names the
        count, the worst output and its ratio to the bound.

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> import xcorr.testing as xt
    >>> x, k = np.arange(12.0).reshape(3, 4), np.array([[1.0, -1.0]])
    >>> want = xcorr.corr2d(x, k)
    >>> got = xcorr.corr2d(x.astype(np.float32), k.astype(np.float32))
    >>> xt.assert_within_bound(got, want, xt.error_bound(x, k, dtype=got.dtype))
    >>> xt.assert_within_bound(got + 0.5, want, xt.error_bound(x, k, dtype=got.dtype))
    Traceback (most recent call last):
    ...
    AssertionError: result: 9 of 9 outputs exceed the error bound; ...
    """
    got, want = as_numpy(got), as_numpy(want)  # any framework's, torch's bfloat16 too
    if got.shape != want.shape:  # before the bound is broadcast to the expected shape
        raise AssertionError(f"{name}: shape {got.shape}, expected {want.shape}")
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), want.shape)
    if got.dtype.kind in "iu":
        bad = got != want  # NumPy compares mixed integer types exactly (uint64 past int64)
        if bad.any():
            i = tuple(int(j) for j in np.argwhere(bad)[0])
            raise AssertionError(f"{name}: integer result differs at {int(bad.sum())} of "
                                 f"{bad.size} positions, first at {i}: got {got[i]}, "
                                 f"exact {want[i]}")
        return
    g = got.astype(np.float64)
    fw, fg = np.isfinite(want), np.isfinite(g)
    if not np.array_equal(fw, fg) or not np.array_equal(g[~fw], want[~fw], equal_nan=True):
        bad = (fw != fg) | (~fw & ~((g == want) | (np.isnan(g) & np.isnan(want))))
        i = tuple(int(j) for j in np.argwhere(bad)[0])
        raise AssertionError(f"{name}: non-finite outputs differ at {int(bad.sum())} "
                             f"positions, first at {i}: got {g[i]}, expected {want[i]}; "
                             f"dtype {got.dtype}")
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf where both are inf
        err = np.where(fw, np.abs(g - want), 0.0)
    over = fw & ~(err <= bound)  # a NaN bound allows nothing
    if over.any():
        with np.errstate(over="ignore", invalid="ignore"):
            ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1), np.inf)
        ratio = np.where(over, ratio, -1.0)  # the worst among the outputs that fail
        i = tuple(int(j) for j in np.unravel_index(np.argmax(ratio), ratio.shape))
        raise AssertionError(f"{name}: {int(over.sum())} of {over.size} outputs exceed the "
                             f"error bound; worst at {i}: got {g[i]!r}, expected {want[i]!r}, "
                             f"|error| {err[i]:.3g} > bound {bound[i]:.3g} "
                             f"({ratio[i]:.3g}x); dtype {got.dtype}")


def assert_backends_agree(x: Any, k: Any, *, backends: Sequence[str] | None = None,
                          mode: str = "valid", method: str = "auto", boundary: str = "fill",
                          fillvalue: Any = 0, convolve: bool = False) -> dict[str, np.ndarray]:
    """Run ``corr2d`` (``convolve2d`` with ``convolve=True``) on several backends and check
    each against a float64 NumPy result.

    The reference is the NumPy backend's direct method on float64 copies of the inputs (int64
    for integer inputs).  Each backend's result is compared in the dtype it returned:

    * integers must be exact;
    * NaN and ±Inf must appear at exactly the reference's positions, with the same values;
    * finite outputs must agree within :func:`error_bound` for the returned dtype and
      ``method``, plus the reference's own bound in float64.

    Parameters
    ----------
    x, k : numpy.ndarray or array_like
        Host inputs, as for ``corr2d`` (``k`` may carry per-image leading dimensions).
    backends : sequence of str, optional
        Backends to run.  Default: every available backend that offers ``method``.
    mode, method, boundary, fillvalue : str
        Passed to ``corr2d``.
    convolve : bool
        Check ``convolve2d`` instead.

    Returns
    -------
    dict
        Each backend's result as a NumPy array, for further checks.

    Raises
    ------
    AssertionError
        A backend disagrees; the message names it, the worst output and the bound.
    ValueError
        ``method="fft"`` on non-finite input (the FFT spreads NaN/Inf over the whole output
        by design), or no requested backend offers ``method``.

    Examples
    --------
    >>> import numpy as np
    >>> import xcorr.testing as xt
    >>> rng = np.random.default_rng(0)
    >>> x, k = rng.standard_normal((2, 16, 16)), rng.standard_normal((3, 3))
    >>> sorted(xt.assert_backends_agree(x, k, backends=["numpy"], mode="full"))
    ['numpy']
    >>> sorted(xt.assert_backends_agree(x, k, backends=["numpy"], mode="same",
    ...                                 boundary="wrap", convolve=True))
    ['numpy']
    """
    from ._corr import convolve2d

    fn = convolve2d if convolve else corr2d
    x, k = np.asarray(x), np.asarray(k)
    integer = x.dtype.kind in "iu" and k.dtype.kind in "iu"
    wide = np.int64 if integer else np.float64
    finite = bool(np.isfinite(x).all() and np.isfinite(k).all()
                  and np.isfinite(fillvalue)) if not integer else True
    if method in SPECTRAL and not finite:
        raise ValueError(f"method={method!r} on input holding NaN/Inf spreads them over the "
                         "whole output by design; compare with method='direct' or 'auto'")
    opts = {"mode": mode, "boundary": boundary, "fillvalue": fillvalue}
    bound_opts = {"boundary": boundary, "fillvalue": fillvalue, "convolve": convolve}
    want = as_numpy(fn(x.astype(wide), k.astype(wide), method="direct", backend="numpy",
                       **opts))
    want_err = error_bound(x, k, mode, wide, **bound_opts)
    if backends is None:
        names = [n for n in available() if method == "auto" or method in load(n).METHODS]
        if not names:
            raise ValueError(f"no available backend offers method={method!r}")
    else:
        names = list(backends)
    results = {}
    for name in names:
        result = fn(x, k, method=method, backend=name, **opts)
        got = as_numpy(result)
        if integer and got.dtype.kind not in "iu":
            raise AssertionError(f"backend {name!r} returned {got.dtype} for integer input")
        bound = error_bound(x, k, mode, _computed_in(result, got), method,
                            **bound_opts) + want_err
        assert_within_bound(got, want, bound,
                            f"backend {name!r} (mode={mode!r}, method={method!r}, "
                            f"boundary={boundary!r})")
        results[name] = got
    return results


# -- strategies --------------------------------------------------------------------------------

_DEFAULT_MAGNITUDE = {"f2": 2.0**4, "f4": 2.0**10, "f8": 2.0**10}


def elements(dtype: Any = "float64", *, max_magnitude: float | None = None,
             allow_nonfinite: bool = False) -> st.SearchStrategy[Any]:
    """Element values for ``dtype``, bounded so that sums of products stay representable.

    Floats lie in ``[-M, M]`` with ``M = max_magnitude`` (default ``2**10``; ``16`` for
    float16, whose sums stay finite for kernels of up to 255 taps: pass a smaller ``M`` for
    larger ones), rounded down to the dtype, and magnitudes below ``2**-20`` (``2**-6`` for
    float16) are flushed to zero: the relative bound of :func:`error_bound` is about
    rounding, not gradual underflow.  Integers lie in ``[-M, M]`` (default 100, clipped to
    the dtype), small enough for exact sums even in 32-bit accumulators.
    ``allow_nonfinite`` mixes in NaN, +Inf and -Inf.

    Parameters
    ----------
    dtype : dtype or str
        A float or integer dtype.
    max_magnitude : float, optional
        ``M`` above.
    allow_nonfinite : bool
        Also draw NaN, +Inf and -Inf (floats only).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Python scalars for ``hypothesis.extra.numpy.arrays(..., elements=...)``.

    Raises
    ------
    TypeError
        A dtype that is neither float nor integer (complex, bool, object).

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> import xcorr.testing as xt
    >>> @settings(max_examples=20)
    ... @given(xt.elements("int8", max_magnitude=5))
    ... def test_bounded(v):
    ...     assert -5 <= v <= 5
    >>> test_bounded()
    """
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        m = int(max_magnitude if max_magnitude is not None else 100)
        return st.integers(max(info.min, -m), min(info.max, m))
    if dt.kind != "f" or dt.str[1:] not in _DEFAULT_MAGNITUDE:
        raise TypeError(f"no element strategy for dtype {dt}; use float16, float32, float64 or "
                        "an integer dtype (for bfloat16 and float8, draw float32 and cast)")
    m = float(max_magnitude if max_magnitude is not None else _DEFAULT_MAGNITUDE[dt.str[1:]])
    m = _representable_below(m, dt)  # hypothesis wants bounds the width holds exactly
    floor = 2.0**-6 if dt.itemsize == 2 else 2.0**-20
    finite = st.floats(-m, m, width=8 * dt.itemsize, allow_subnormal=False).map(
        lambda v: v if abs(v) >= floor else 0.0)
    if allow_nonfinite:
        return st.one_of(finite, st.sampled_from([np.nan, np.inf, -np.inf]))
    return finite


def _representable_below(m: float, dt: np.dtype) -> float:
    """The largest value of ``dt`` at most ``m`` (``dt``'s maximum for a larger ``m``)."""
    info = np.finfo(dt)
    if not m < float(info.max):
        return float(info.max)
    with np.errstate(over="ignore"):
        v = np.array(m, dt)
    return float(v if float(v) <= m else np.nextafter(v, dt.type(0)))


def _batch(max_batch_dims: int) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(1, 3), max_size=max_batch_dims).map(tuple)


def _side(cap: int) -> st.SearchStrategy[int]:
    # Half the draws go to the largest allowed side: kernels as large as the image, 1×N images.
    return st.one_of(st.just(cap), st.integers(1, cap))


def images(dtype: Any = "float64", *, max_side: int = 10, min_side: int = 1,
           max_batch_dims: int = 0, max_magnitude: float | None = None,
           allow_nonfinite: bool = False) -> st.SearchStrategy[np.ndarray]:
    """NumPy images of shape ``(*batch, H, W)`` with ``min_side <= H, W <= max_side``.

    ``max_batch_dims`` leading batch dimensions (each of size 1-3) may be drawn; elements come
    from :func:`elements`.

    Parameters
    ----------
    dtype : dtype or str
        A float or integer dtype.
    max_side, min_side : int
        Bounds of ``H`` and ``W``.
    max_batch_dims : int
        At most this many leading batch dimensions.
    max_magnitude, allow_nonfinite
        As for :func:`elements`.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of numpy.ndarray

    Raises
    ------
    TypeError
        As :func:`elements`.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> import xcorr.testing as xt
    >>> @settings(max_examples=10)
    ... @given(xt.images("float32", max_side=6, max_batch_dims=1))
    ... def test_shapes(x):
    ...     assert x.dtype == "float32" and 2 <= x.ndim <= 3 and max(x.shape[-2:]) <= 6
    >>> test_shapes()
    """
    shape = st.tuples(_batch(max_batch_dims), st.integers(min_side, max_side),
                      st.integers(min_side, max_side)).map(lambda t: (*t[0], t[1], t[2]))
    return hnp.arrays(np.dtype(dtype), shape,
                      elements=elements(dtype, max_magnitude=max_magnitude,
                                        allow_nonfinite=allow_nonfinite))


def kernels(dtype: Any = "float64", *, max_side: int = 5, max_magnitude: float | None = None,
            allow_nonfinite: bool = False) -> st.SearchStrategy[np.ndarray]:
    """NumPy kernels of shape ``(kh, kw)`` with ``1 <= kh, kw <= max_side``.

    Half the draws of each side are ``max_side`` itself.

    Parameters
    ----------
    dtype : dtype or str
        A float or integer dtype.
    max_side : int
        Bound of ``kh`` and ``kw``.
    max_magnitude, allow_nonfinite
        As for :func:`elements`.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of numpy.ndarray

    Raises
    ------
    TypeError
        As :func:`elements`.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> import xcorr.testing as xt
    >>> @settings(max_examples=10)
    ... @given(xt.kernels("int64", max_side=3))
    ... def test_shapes(k):
    ...     assert k.ndim == 2 and max(k.shape) <= 3
    >>> test_shapes()
    """
    return hnp.arrays(np.dtype(dtype), st.tuples(_side(max_side), _side(max_side)),
                      elements=elements(dtype, max_magnitude=max_magnitude,
                                        allow_nonfinite=allow_nonfinite))


@st.composite
def corr2d_cases(draw: st.DrawFn, dtype: Any = "float64", *, kernel_dtype: Any = None,
                 mode: str = "valid", max_side: int = 10, max_kernel_side: int | None = None,
                 max_batch_dims: int = 1, max_magnitude: float | None = None,
                 allow_nonfinite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(x, k)`` that ``corr2d(x, k, mode=mode)`` accepts.

    ``x`` has shape ``(*batch, H, W)`` (``0..max_batch_dims`` batch dimensions of size 1-3,
    ``1 <= H, W <= max_side``) and ``k`` shape ``(kh, kw)``.  In ``"valid"`` mode the kernel
    fits the image, and half the draws of each kernel side equal the image side (the
    single-output case); in ``"same"``/``"full"`` kernels may be larger than the image (up to
    ``max_kernel_side``, default ``max_side``).  1×1 images and kernels are drawn too.
    ``kernel_dtype`` (default ``dtype``) allows mixed-dtype pairs.

    Parameters
    ----------
    dtype, kernel_dtype : dtype or str
        Of ``x`` and of ``k`` (default: ``dtype``).
    mode : {"valid", "same", "full"}
        The mode the pairs are for.
    max_side, max_kernel_side, max_batch_dims : int
        Bounds of the shapes, as above.
    max_magnitude, allow_nonfinite
        As for :func:`elements`.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of (numpy.ndarray, numpy.ndarray)

    Raises
    ------
    TypeError
        As :func:`elements`.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> import xcorr, xcorr.testing as xt
    >>> @settings(max_examples=10, deadline=None)
    ... @given(xt.corr2d_cases("float32", mode="full", max_side=6))
    ... def test_full_size(case):
    ...     x, k = case
    ...     out = xcorr.corr2d(x, k, mode="full")
    ...     assert out.shape[-2:] == (x.shape[-2] + k.shape[0] - 1, x.shape[-1] + k.shape[1] - 1)
    >>> test_full_size()
    """
    kdt = dtype if kernel_dtype is None else kernel_dtype
    kmax = max_side if max_kernel_side is None else max_kernel_side
    batch = draw(_batch(max_batch_dims))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    if mode == "valid":
        kh, kw = draw(_side(min(h, kmax))), draw(_side(min(w, kmax)))
    else:
        kh, kw = draw(st.integers(1, kmax)), draw(st.integers(1, kmax))
    x = draw(hnp.arrays(np.dtype(dtype), (*batch, h, w),
                        elements=elements(dtype, max_magnitude=max_magnitude,
                                          allow_nonfinite=allow_nonfinite)))
    k = draw(hnp.arrays(np.dtype(kdt), (kh, kw),
                        elements=elements(kdt, max_magnitude=max_magnitude,
                                          allow_nonfinite=allow_nonfinite)))
    return x, k


def boundaries() -> st.SearchStrategy[str]:
    """The boundary rules ``corr2d`` accepts.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of str
        ``"fill"``, ``"wrap"``, ``"symm"``, ``"mirror"`` and ``"nearest"``.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> import numpy as np, xcorr, xcorr.testing as xt
    >>> @settings(max_examples=5, deadline=None)
    ... @given(xt.boundaries())
    ... def test_same_keeps_the_shape(boundary):
    ...     assert xcorr.corr2d(np.ones((4, 5)), np.ones((3, 3)), mode="same",
    ...                         boundary=boundary).shape == (4, 5)
    >>> test_same_keeps_the_shape()
    """
    return st.sampled_from(BOUNDARIES)


@st.composite
def surface_cases(draw: st.DrawFn, dtype: Any = "float64", *, max_side: int = 8,
                  max_kernel_side: int | None = None, max_batch_dims: int = 2,
                  per_image_kernels: bool = True, max_magnitude: float | None = None,
                  allow_nonfinite: bool = False) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Triples ``(x, k, options)`` covering ``corr2d``'s whole surface.

    ``options`` holds ``mode``, ``boundary`` and ``fillvalue`` (integral for integer
    dtypes); in ``same``/``full`` mode kernels may be larger than the image, so the copying
    boundaries pad wider than the image too.  With ``per_image_kernels`` the kernel may carry
    leading dimensions broadcasting against ``x``'s batch (one kernel per channel, banks of
    kernels).  Call ``corr2d(x, k, **options)`` or ``convolve2d(x, k, **options)``.

    Parameters
    ----------
    dtype : dtype or str
        Of ``x`` and ``k``.
    max_side, max_kernel_side, max_batch_dims : int
        Bounds of the image sides, the kernel sides (default ``max_side``) and the number of
        batch dimensions (each of size 1-3).
    per_image_kernels : bool
        Let ``k`` carry leading dimensions.
    max_magnitude, allow_nonfinite
        As for :func:`elements`.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of (numpy.ndarray, numpy.ndarray, dict)

    Raises
    ------
    TypeError
        As :func:`elements`.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> import xcorr, xcorr.testing as xt
    >>> @settings(max_examples=5, deadline=None)
    ... @given(xt.surface_cases())
    ... def test_numpy(case):
    ...     x, k, options = case
    ...     xt.assert_backends_agree(x, k, backends=["numpy"], **options)
    >>> test_numpy()
    """
    mode = draw(st.sampled_from(MODES))
    kmax = max_side if max_kernel_side is None else max_kernel_side
    batch = draw(_batch(max_batch_dims))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    if mode == "valid":
        kh, kw = draw(_side(min(h, kmax))), draw(_side(min(w, kmax)))
    else:
        kh, kw = draw(st.integers(1, kmax)), draw(st.integers(1, kmax))
    klead: tuple[int, ...] = ()
    if per_image_kernels and draw(st.booleans()):
        # each of x's trailing batch dims: shared (1), or one kernel per element; maybe a bank
        tail = tuple(draw(st.sampled_from([1, n])) for n in batch[len(batch) - draw(
            st.integers(0, len(batch))):])
        bank = (draw(st.integers(2, 3)),) if draw(st.booleans()) and not batch else ()
        klead = bank + tail
    el = elements(dtype, max_magnitude=max_magnitude, allow_nonfinite=allow_nonfinite)
    x = draw(hnp.arrays(np.dtype(dtype), (*batch, h, w), elements=el))
    k = draw(hnp.arrays(np.dtype(dtype), (*klead, kh, kw), elements=el))
    integer = np.dtype(dtype).kind in "iu"
    fill = draw(st.integers(-3, 3)) if integer else draw(st.sampled_from([0.0, 1.5, -2.0]))
    return x, k, {"mode": mode, "boundary": draw(boundaries()), "fillvalue": fill}
