"""``corr2d``: validate -> resolve the backend -> pick the method -> call the backend kernel."""

from __future__ import annotations

import warnings
from typing import Any

from . import _dispatch, _methods, _validate
from ._interop import to_numpy


def corr2d(x: Any, k: Any, *, mode: str = "valid", method: str = "auto",
           backend: str | None = None) -> Any:
    """2-D cross-correlation of ``x`` with ``k`` (no kernel flip), as in d2l's ``corr2d``.

    ``out[..., i, j] = sum_{a, b} x[..., i + a, j + b] * k[a, b]``

    Parameters
    ----------
    x : array_like, shape (..., H, W)
        Image(s); leading dimensions are a batch.  NumPy, JAX, PyTorch, CuPy or Dask array,
        or a nested list.
    k : array_like, shape (kh, kw)
        Kernel.
    mode : {"valid", "same", "full"}
        Output size ``(H-kh+1, W-kw+1)``, ``(H, W)`` aligned as
        ``scipy.signal.correlate2d(mode="same")``, or ``(H+kh-1, W+kw-1)``.
    method : {"auto", "direct", "fft"} or a backend's own (e.g. "native")
        ``auto`` picks by the cost model in ``xcorr._methods``; it never uses the FFT for
        integer input (results are exact) nor for input holding NaN/Inf (so a NaN only
        reaches the outputs whose window covers it).  An explicit ``"fft"`` on non-finite
        input computes anyway but warns with ``RuntimeWarning``; on integer input it raises.
    backend : {"numpy", "jax", "torch", "cupy", "dask"}, optional
        Where to compute; inputs are converted to it (never silently from a GPU to the
        host).  Default: the inputs' framework, else ``use_backend``/``set_backend``/
        ``XCORR_BACKEND``, else NumPy.

    Returns
    -------
    array of the chosen backend's type
        dtype: the framework's promotion of ``x`` and ``k`` for floats; integers give the
        exact result in 64-bit integers (32-bit in JAX without x64).

    Raises
    ------
    ValueError
        Bad shapes, empty inputs, a kernel larger than ``x`` in valid mode, unknown
        ``mode``/``method``/``backend``.
    TypeError
        Strings, ``None``, object/bool/complex data, arrays of two frameworks, or a device
        array that would have to be copied to the host.

    Examples
    --------
    >>> import xcorr
    >>> xcorr.corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]]).tolist()
    [[19, 25], [37, 43]]
    """
    key = _plan_key(x, k, mode, method, backend)
    plan = _plans.get(key) if key is not None else None
    if plan is not None:  # seen before: same types, shapes, dtypes and settings
        return plan[0].corr2d_valid(x, k, plan[1])
    _validate.check_raw(x, "x")
    _validate.check_raw(k, "k")
    be = _dispatch.resolve(x, k, backend)
    _validate.check_options(mode, method, be.METHODS, be.NAME)
    own_types = _dispatch.array_backend(x) == _dispatch.array_backend(k) == be.NAME
    x0, k0 = x, k
    x, k = _prepare(be, x, "x"), _prepare(be, k, "k")
    _validate.check_shapes(x, k, mode)
    x, k = be.promote(x, k)
    pad = _validate.pads(mode, *k.shape)
    if pad is not None:
        x = be.pad(x, pad)
    if method == "fft":
        if be.kind(x) == "i":
            raise ValueError("method='fft' cannot give exact integer results; use "
                             "method='direct' or 'auto', or cast the inputs to float")
        if be.all_finite(x, k) is False:
            warn_fft_nonfinite(stacklevel=3)
    elif method == "auto":
        if _choose(be, x, k) == "fft":
            return _fft_if_finite(be, x, k)
        method = "direct"
    if (method != "fft" and pad is None and own_types and key is not None
            and x.dtype == x0.dtype and k.dtype == k0.dtype):
        # Nothing value-dependent happened: later calls with the same signature go straight
        # to the kernel (the dispatch above costs more than a 6×8 correlation).
        if len(_plans) > 4096:
            _plans.clear()
        _plans[key] = (be, method)
    return be.corr2d_valid(x, k, method)


_plans: dict[tuple[Any, ...], tuple[Any, str]] = {}


def _plan_key(x: Any, k: Any, mode: str, method: str, backend: str | None
              ) -> tuple[Any, ...] | None:
    """What decides the whole dispatch of arrays (None for lists and scalars)."""
    try:
        key = (type(x), type(k), x.shape, k.shape, x.dtype, k.dtype, mode, method, backend,
               _dispatch.get_backend())
        hash(key)
    except (AttributeError, TypeError):
        return None
    return key


def warn_fft_nonfinite(stacklevel: int) -> None:
    warnings.warn("x or k holds NaN/Inf: method='fft' spreads them over the whole output; "
                  "use method='direct' (or 'auto') to keep them local", RuntimeWarning,
                  stacklevel=stacklevel)


def _prepare(be: Any, obj: Any, name: str) -> Any:
    """Convert ``obj`` to the backend, checking its dtype kind on the way."""
    if _dispatch.array_backend(obj) in (None, "numpy"):  # lists, scalars, NumPy: one rule
        obj = to_numpy(obj, be.NAME)
        _validate.check_kind(obj, name, _validate.numpy_kind(obj.dtype))
    arr = be.asarray(obj)
    _validate.check_kind(arr, name, be.kind(arr))
    return arr


def _choose(be: Any, x: Any, k: Any) -> str:
    return _methods.choose(be.costs(), tuple(x.shape), tuple(k.shape), x.dtype.itemsize,
                           be.kind(x) == "i")


def _fft_if_finite(be: Any, x: Any, k: Any) -> Any:
    """The FFT, unless a value is non-finite (then direct, so NaN/Inf stay local)."""
    finite = be.all_finite(x, k)
    if finite is None:  # values unknown (a JAX tracer, a lazy Dask array): decide at run time
        return be.guarded_fft(x, k)
    return be.corr2d_valid(x, k, "fft" if finite else "direct")


def valid_auto(be: Any, x: Any, k: Any) -> Any:
    """Valid correlation of prepared arrays by the cheaper method; finite input only for FFT."""
    if _choose(be, x, k) == "fft":
        return _fft_if_finite(be, x, k)
    return be.corr2d_valid(x, k, "direct")
