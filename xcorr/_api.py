"""``corr2d``: validate -> resolve the backend -> pick the method -> call the backend kernel."""

from __future__ import annotations

from typing import Any

from . import _dispatch, _validate
from ._auto import choose, fft_if_finite, warn_fft_nonfinite
from ._interop import to_numpy

# Dispatch plans by signature; see the end of corr2d.
_plans: dict[tuple[Any, ...], tuple[Any, str]] = {}


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
        ``mode``/``method``/``backend``; ``method="fft"`` or ``"native"`` on integers.
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
    if plan is not None:  # seen before: same types, devices, shapes, dtypes and settings
        return plan[0].corr2d_valid(x, k, plan[1])
    _validate.check_raw(x, "x")
    _validate.check_raw(k, "k")
    be = _dispatch.resolve(x, k, backend)
    _validate.check_options(mode, method, be.METHODS, be.NAME)
    x0, k0 = x, k
    x, k = _prepare(be, x, "x"), _prepare(be, k, "k")
    _validate.check_shapes(x, k, mode)
    x, k = be.promote(x, k)
    pad = _validate.pads(mode, *k.shape)
    if pad is not None:
        x = be.pad(x, pad)
    if method in ("fft", "native") and be.kind(x) == "i":
        # FFTs round; the frameworks' conv primitives accumulate integers in floating point
        # (cupyx) or not at all on a GPU (cuDNN, which both torch and XLA use there).
        raise ValueError(f"method={method!r} cannot give exact integer results; use "
                         "method='direct' or 'auto', or cast the inputs to float")
    if method == "fft":
        if be.all_finite(x, k) is False:
            warn_fft_nonfinite(stacklevel=3)
    elif method == "auto":
        if choose(be, x, k) == "fft":
            return fft_if_finite(be, x, k)
        method = "direct"
    if key is not None and x is x0 and k is k0 and method != "fft":
        # The inputs reached the kernel untouched (no conversion, promotion or padding) and
        # nothing value-dependent was decided: later calls with the same signature go
        # straight to the kernel (the dispatch above costs more than a 6×8 correlation).
        if len(_plans) > 4096:
            _plans.clear()
        _plans[key] = (be, method)
    return be.corr2d_valid(x, k, method)


def _plan_key(x: Any, k: Any, mode: str, method: str, backend: str | None
              ) -> tuple[Any, ...] | None:
    """What decides the whole dispatch of arrays (None for lists and scalars)."""
    try:
        key = (type(x), type(k), x.shape, k.shape, x.dtype, k.dtype, mode, method, backend,
               _dispatch.get_backend())
        if _dispatch.array_backend(x) == "torch" or _dispatch.array_backend(k) == "torch":
            # CPU and CUDA tensors differ in cost model and kernels, and two devices raise.
            key += (x.device, getattr(k, "device", None))
        hash(key)
    except (AttributeError, TypeError):
        return None
    return key


def _prepare(be: Any, obj: Any, name: str) -> Any:
    """Convert ``obj`` to the backend, checking its dtype kind (and uint64 range) on the way."""
    source = _dispatch.array_backend(obj)
    if source in (None, "numpy"):  # lists, scalars, NumPy: one rule
        obj = to_numpy(obj, be.NAME)
        _validate.check_kind(obj, name, _validate.numpy_kind(obj.dtype))
        _validate.check_int64_range(obj, name)
    elif source == "cupy":
        _validate.check_int64_range(obj, name)
    arr = be.asarray(obj)
    _validate.check_kind(arr, name, be.kind(arr))
    return arr
