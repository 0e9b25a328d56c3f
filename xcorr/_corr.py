"""``corr2d`` and ``convolve2d``: the 2-D correlation surface, written once over the backends.

validate -> resolve the backend -> convert -> move the image axes last -> promote -> (flip)
-> pad by the boundary rule -> pick the method -> the backend's valid-mode kernel -> move the
axes back.  A backend supplies only the primitives (``pad``, ``promote``, ``corr2d_valid``,
its array namespace ``xp``); the rules live here and in ``_validate``/``_boundary``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _boundary, _dispatch, _numba, _validate
from ._api import front
from ._auto import choose, fft_if_finite, warn_fft_nonfinite

# Dispatch plans by signature; see the end of _correlate.
_plans: dict[tuple[Any, ...], tuple[Any, str]] = {}

_COMMON_DOC = """
    Parameters
    ----------
    x : array_like, shape (..., H, W)
        Image(s); dimensions other than ``axes`` are batch dimensions.  NumPy, JAX, PyTorch,
        CuPy or Dask array, or a nested list.
    k : array_like, shape (..., kh, kw)
        Kernel(s).  Leading dimensions broadcast against the batch dimensions of ``x``
        (NumPy rules): ``x (N, C, H, W)`` with ``k (C, kh, kw)`` applies one kernel per
        channel, ``x (H, W)`` with ``k (T, kh, kw)`` a bank of ``T`` kernels.
    mode : {"valid", "same", "full"}
        Output size ``(H-kh+1, W-kw+1)``, ``(H, W)`` (aligned as ``scipy.signal``'s), or
        ``(H+kh-1, W+kw-1)``.
    boundary : {"fill", "wrap", "symm", "mirror", "nearest"}
        How ``same``/``full`` extend ``x`` past its edges (row ``a b c d``): ``fill``
        ``v v | a b c d | v v``, ``wrap`` ``c d | a b c d | a b``, ``symm``
        ``b a | a b c d | d c``, ``mirror`` ``c b | a b c d | c b``, ``nearest``
        ``a a | a b c d | d d`` — what ``numpy.pad`` does with ``constant``, ``wrap``,
        ``symmetric``, ``reflect`` and ``edge``, also when the padding is wider than the
        image.  ``"reflect"`` is refused: it means ``symm`` in ``scipy.ndimage`` and ``mirror``
        in NumPy and PyTorch.  Irrelevant in ``valid`` mode.
    fillvalue : real scalar
        The value ``v`` of ``boundary="fill"`` (ignored otherwise).  Integral for integer data;
        NaN/Inf count as non-finite input (``auto`` then avoids the FFT).
    axes : (int, int)
        The image's height and width axes in ``x``, e.g. ``(0, 1)`` for ``(H, W, C)`` images;
        the output keeps the batch axes where they were.
    method : {"auto", "direct", "fft", "overlap", "native"}
        ``direct`` sums the products, ``fft`` transforms the whole image, ``overlap`` runs
        overlap-save FFTs over tiles; ``native`` is the framework's own convolution (JAX,
        PyTorch and CuPy only).
        ``auto`` picks by the cost model in ``xcorr._methods``; it never uses an FFT for
        integer input (results are exact) nor for input holding NaN/Inf (so a NaN only reaches
        the outputs whose window covers it).  An explicit ``"fft"`` on non-finite input
        computes anyway but warns with ``RuntimeWarning``; on integer input it raises.
    backend : {"numpy", "jax", "torch", "cupy", "dask"}, optional
        Where to compute; inputs are converted to it (never silently from a GPU to the host).
        Default: the inputs' framework, else ``use_backend``/``set_backend``/
        ``XCORR_BACKEND``, else NumPy.

    Returns
    -------
    array of the chosen backend's type
        Shape: the broadcast batch shape with the two image axes in place.  dtype: the
        framework's promotion of ``x`` and ``k`` for floats; integers give the exact result in
        64-bit integers (32-bit in JAX without x64).  NumPy's FFT methods may return a view
        of the transform's buffer (as ``scipy.signal.fftconvolve`` does): not C-contiguous,
        but never pinning more than 1.5x the result's memory.

    Raises
    ------
    ValueError
        Bad shapes or axes, empty inputs, a kernel larger than ``x`` in valid mode, kernel
        batch dimensions that do not broadcast, unknown ``mode``/``boundary``/``method``/
        ``backend``, a non-integral ``fillvalue`` with integer data, ``method="fft"`` or
        ``"native"`` on integers.
    TypeError
        Strings, ``None``, object/bool/complex data, a complex ``fillvalue``, arrays of two
        frameworks, or a device array that would have to be copied to the host.
"""


def corr2d(x: Any, k: Any, *, mode: str = "valid", boundary: str = "fill", fillvalue: Any = 0,
           axes: tuple[int, int] = (-2, -1), method: str = "auto",
           backend: str | None = None) -> Any:
    return _correlate(x, k, mode, boundary, fillvalue, axes, method, backend, False)


def convolve2d(x: Any, k: Any, *, mode: str = "valid", boundary: str = "fill",
               fillvalue: Any = 0, axes: tuple[int, int] = (-2, -1), method: str = "auto",
               backend: str | None = None) -> Any:
    return _correlate(x, k, mode, boundary, fillvalue, axes, method, backend, True)


corr2d.__doc__ = """2-D cross-correlation of ``x`` with ``k`` (no kernel flip), as d2l's ``corr2d``.

    ``out[..., i, j] = sum_{a, b} xp[..., i + a, j + b] * k[..., a, b]`` where ``xp`` is ``x``
    extended for ``mode`` by the ``boundary`` rule.
""" + _COMMON_DOC + """
    Examples
    --------
    >>> import xcorr
    >>> xcorr.corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]]).tolist()
    [[19, 25], [37, 43]]
    >>> xcorr.corr2d([[1, 2, 3]], [[1, 1, 1]], mode="same", boundary="wrap").tolist()
    [[6, 6, 6]]
"""

convolve2d.__doc__ = """2-D convolution of ``x`` with ``k``: correlation with the flipped kernel.

    ``convolve2d(x, k) == corr2d(x, k[..., ::-1, ::-1])`` in ``valid`` and ``full`` mode; in
    ``same`` mode the window is aligned as ``scipy.signal.convolve2d`` aligns it (for an even
    kernel side one pixel off ``corr2d``'s ``same``).
""" + _COMMON_DOC + """
    Examples
    --------
    >>> import xcorr
    >>> xcorr.convolve2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]]).tolist()
    [[5, 11], [23, 29]]
"""


@dataclass
class Problem:
    """A correlation reduced to a valid one: what the forward pass and its VJP share.

    ``x`` is the user's image moved (image axes last) and promoted, ``xpad`` it padded by
    ``widths`` under ``boundary``, ``k`` the promoted (and for a convolution flipped) kernel:
    the result is ``corr2d_valid(xpad, k)`` with the image axes moved back to ``axes``.
    """

    be: Any
    x: Any
    xpad: Any
    k: Any
    widths: tuple[int, int, int, int] | None
    boundary: str
    axes: tuple[int, int] | None  # where the image axes go back to (None: already last)
    convolve: bool
    integer: bool

    def restore(self, out: Any) -> Any:
        """Move the image axes of a result shaped like the valid output back into place."""
        if self.axes is None:
            return out
        extra = out.ndim - self.x.ndim
        return self.be.xp.moveaxis(out, (-2, -1), (self.axes[0] + extra, self.axes[1] + extra))

    def output_shape(self) -> tuple[int, ...]:
        """Shape of the result, image axes in place (worked out on a zero-byte array)."""
        kh, kw = self.k.shape[-2:]
        h, w = self.xpad.shape[-2:]
        lead = _validate.broadcast_batch(tuple(self.x.shape), tuple(self.k.shape))
        shape = (*lead, int(h) - int(kh) + 1, int(w) - int(kw) + 1)
        if self.axes is None:
            return shape
        extra = len(shape) - self.x.ndim
        empty = np.broadcast_to(np.empty((), dtype=bool), shape)
        return np.moveaxis(empty, (-2, -1), (self.axes[0] + extra, self.axes[1] + extra)).shape

    def moved(self, g: Any) -> Any:
        """A cotangent shaped like the user's output, with its image axes moved last."""
        if self.axes is None:
            return g
        extra = g.ndim - self.x.ndim
        return self.be.xp.moveaxis(g, (self.axes[0] + extra, self.axes[1] + extra), (-2, -1))


def setup(x: Any, k: Any, mode: str, boundary: str, fillvalue: Any, axes: Any, method: str,
          backend: str | None, convolve: bool) -> Problem:
    """Validate, convert, move, promote, flip and pad: everything before the valid kernel."""
    be, (x, k) = front({"x": x, "k": k}, backend)
    _validate.check_options(mode, method, be.METHODS, be.NAME)
    boundary = _boundary.check(boundary)
    fill = _validate.check_fillvalue(fillvalue)
    moved = None
    if x.ndim >= 2:
        ax = _validate.check_axes(axes, x.ndim)
        if ax != (x.ndim - 2, x.ndim - 1):
            moved, x = ax, be.xp.moveaxis(x, ax, (-2, -1))
    _validate.check_shapes(x, k, mode)
    _validate.broadcast_batch(tuple(x.shape), tuple(k.shape))
    x, k = be.promote(x, k)
    integer = be.kind(x) == "i"
    if convolve:
        k = be.xp.flip(k, axis=(-2, -1))
    widths = _boundary.pads(mode, *k.shape[-2:], convolve)
    xpad = x
    if widths is not None:
        if boundary == "fill" and integer:
            fill = _validate.integral_fill(fill, boundary, mode, x.dtype)
        elif boundary == "fill":
            fill = _float_fill(fill)
        xpad = be.pad(x, widths, boundary, fill)
    return Problem(be, x, xpad, k, widths, boundary, moved, convolve, integer)


def _float_fill(fill: float | int) -> float | int:
    """The fill of float data: an integer past float64's range rounds to an infinity, as one
    past float32's does for float32 data (NumPy's pad raised Python's OverflowError)."""
    try:
        float(fill)
    except OverflowError:
        return float("inf") if fill > 0 else float("-inf")
    return fill


def padded_valid(be: Any, x: Any, k: Any, widths: tuple[int, int, int, int] | None,
                 boundary: str, fill: Any, method: str) -> Any:
    """Pad prepared, promoted ``x`` by ``widths`` under ``boundary``, then correlate (valid).

    For adapters (the SciPy drop-ins) that work out their own alignment and dtypes.
    """
    if widths is not None and any(widths):
        x = be.pad(x, widths, boundary, fill)
    return valid(be, x, k, method, be.kind(x) == "i")[0]


def _correlate(x: Any, k: Any, mode: str, boundary: str, fillvalue: Any, axes: Any,
               method: str, backend: str | None, convolve: bool) -> Any:
    # the types of the numeric settings too: (False, True) == (0, 1), but the checks a plan
    # skips refuse bool axes
    key = _plan_key(x, k, mode, boundary, fillvalue, axes, method, backend, convolve,
                    type(fillvalue), tuple(map(type, axes)) if type(axes) is tuple else None)
    plan = _plans.get(key) if key is not None else None
    if plan is not None:  # seen before: same types, devices, shapes, dtypes and settings
        return plan[0].corr2d_valid(x, k, plan[1])
    p = setup(x, k, mode, boundary, fillvalue, axes, method, backend, convolve)
    out, chosen = valid(p.be, p.xpad, p.k, method, p.integer)
    if key is not None and p.xpad is x and p.k is k and chosen is not None:
        # The inputs reached the kernel untouched (no conversion, promotion, padding, axis
        # move or flip) and nothing value-dependent was decided: later calls with the same
        # signature go straight to the kernel (the dispatch above costs more than a 6×8
        # correlation).
        if len(_plans) > 4096:
            _plans.clear()
        _plans[key] = (p.be, chosen)
    return p.restore(out)


def valid(be: Any, x: Any, k: Any, method: str, integer: bool) -> tuple[Any, str | None]:
    """Valid correlation of prepared arrays, and the method if it can be reused blindly."""
    if method in ("fft", "overlap", "native") and integer:
        # FFTs round; the frameworks' conv primitives accumulate integers in floating point
        # (cupyx) or not at all on a GPU (cuDNN, which both torch and XLA use there).
        raise ValueError(f"method={method!r} cannot give exact integer results; use "
                         "method='direct' or 'auto', or cast the inputs to float")
    if method in ("fft", "overlap"):
        if be.all_finite(x, k) is False:
            warn_fft_nonfinite(stacklevel=5, method=method)
        return be.corr2d_valid(x, k, method), None
    if method == "auto":
        chosen = choose(be, x, k)
        if chosen in ("fft", "overlap"):  # only on finite input: decided per call
            return fft_if_finite(be, x, k, chosen), None
        method = chosen
    return be.corr2d_valid(x, k, method), method


def _plan_key(x: Any, k: Any, *settings: Any) -> tuple[Any, ...] | None:
    """What decides the whole dispatch of arrays (None for lists and scalars)."""
    try:
        key = (type(x), type(k), x.shape, k.shape, x.dtype, k.dtype, *settings)
        kinds = (_dispatch.array_backend(x), _dispatch.array_backend(k))
        if all(kind in (None, "numpy") for kind in kinds):
            key += (_dispatch.get_backend(),)  # only host data goes where the setting says
        if "torch" in kinds:
            if _dispatch.torch_compiling():
                # Dynamo caches the traced graph itself, and cannot trace this key (the
                # setting's ContextVar; hash() of a tuple on torch 2.9)
                return None
            # CPU and CUDA tensors differ in cost model and kernels, and two devices raise;
            # a sparse layout is refused by the checks the plan skips.
            key += (x.device, getattr(k, "device", None), x.layout, getattr(k, "layout", None))
        if "jax" in kinds:  # the x64 switch (thread-local in jax.enable_x64) sets promotion
            key += (_dispatch.load("jax").x64(),)
        key += (_numba.DISABLED,)  # the cost model's constants (switched off by tests, bench)
        hash(key)
    except (AttributeError, TypeError):
        return None
    return key
