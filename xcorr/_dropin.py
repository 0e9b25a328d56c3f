"""What the SciPy drop-ins (``xcorr.signal``, ``xcorr.ndimage``) share.

They accept what SciPy accepts — complex data, every integer width with SciPy's wrapping —
which ``corr2d`` itself refuses or widens.  So they convert their inputs here (any backend's
arrays, results in the input's framework), split complex data into real parts, run the same
padded valid correlation as ``corr2d`` (``_corr.padded_valid``) on real arrays, and recombine.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from . import _corr, _dispatch
from ._interop import to_numpy

# torch dtypes by name <-> NumPy dtypes (the other frameworks use NumPy dtypes).
_TORCH_NAMES = {"bool": "bool", "uint8": "uint8", "int8": "int8", "int16": "int16",
                "int32": "int32", "int64": "int64", "uint16": "uint16", "uint32": "uint32",
                "uint64": "uint64", "float16": "float16", "float32": "float32",
                "float64": "float64", "complex64": "complex64", "complex128": "complex128"}


def convert(objs: dict[str, Any], backend: str | None
            ) -> tuple[ModuleType, list[Any], list[np.dtype]]:
    """The backend for a drop-in call, its inputs as that backend's arrays, and their dtypes.

    The dtypes are the NumPy equivalents of the dtypes the caller passed, read before the
    conversion: a backend may widen on the way in (torch holds NumPy's ``uint16`` as
    ``int64``), and SciPy's output dtype depends on what was passed.  In native byte order:
    SciPy's results are native whatever the input's order.
    """
    be = _dispatch.resolve_all(tuple(objs.values()), backend, tuple(objs))
    arrays, dtypes = [], []
    for obj in objs.values():
        if _dispatch.array_backend(obj) in (None, "numpy"):
            obj = to_numpy(obj, be.NAME)
        dtypes.append(numpy_dtype(obj).newbyteorder("="))
        arrays.append(_as_backend_array(be, obj, dtypes[-1]))
    return be, arrays, dtypes


def _as_backend_array(be: ModuleType, obj: Any, dtype: np.dtype) -> Any:
    """``be.asarray(obj)``, but unsigned integers wider than a byte stay unsigned on torch.

    torch's ``asarray`` holds them as int64 (``corr2d`` computes in int64 anyway), which
    reinterprets uint64 values from 2**63 as negative.  SciPy computes with the values: in
    int64 where the result is an integer (the same bits), but in float64 where an unsigned
    integer meets a signed one (int8 with uint64), and the drop-ins cast each input to that
    dtype themselves, which torch does right from uint64.
    """
    if be.NAME != "torch" or dtype.kind != "u" or dtype.itemsize == 1:
        return be.asarray(obj)
    if _dispatch.array_backend(obj) == "torch":
        return obj
    import torch

    # a native copy it owns, viewed as the width's canonical dtype: ulonglong is a twin of
    # uint64 that torch.from_numpy refuses (and that a copy to uint64 keeps)
    a = np.array(obj, dtype=dtype)
    return torch.from_numpy(a.view(f"u{dtype.itemsize}"))


def numpy_dtype(a: Any) -> np.dtype:
    """The NumPy dtype equivalent to an array's dtype, whatever its framework."""
    dt = a.dtype
    if _dispatch.array_backend(a) == "torch":
        name = str(dt).removeprefix("torch.")
        if name not in _TORCH_NAMES:
            raise TypeError(f"torch dtype {dt} has no SciPy equivalent; cast to float32")
        return np.dtype(_TORCH_NAMES[name])
    return np.dtype(dt)


def cast(be: ModuleType, a: Any, dtype: np.dtype) -> Any:
    """``a`` cast to (the framework's equivalent of) NumPy ``dtype``; integers wrap.  Only
    NumPy arrays keep a non-native byte order (a requested ``'>f4'`` output)."""
    if be.NAME not in ("numpy", "dask"):
        dtype = dtype.newbyteorder("=")
    if be.NAME == "torch":
        import torch

        return a.to(getattr(torch, dtype.name))
    if be.NAME == "jax":
        import jax

        dtype = jax.dtypes.canonicalize_dtype(dtype)  # float64 is float32 without x64
    return be.astype(a, dtype)


def full(be: ModuleType, shape: tuple[int, ...], value: Any, dtype: np.dtype) -> Any:
    """A backend array of ``shape`` filled with ``value``, in (the equivalent of) ``dtype``.

    Made on the host and converted: ``shape`` may hold zeros, which some frameworks' own
    constructors refuse (Dask's automatic chunking divides by the chunk size).
    """
    host = np.full(shape, value, dtype=dtype)
    if be.NAME == "dask":
        import dask.array as da

        return da.from_array(host, chunks=-1)
    return cast(be, be.asarray(host), dtype)


def padded(be: ModuleType, x: Any, widths: tuple[int, int, int, int] | None, boundary: str,
           fill: Any) -> Any:
    """``x`` extended by ``widths`` (top, bottom, left, right) under ``boundary``.

    An empty ``x`` padded by ``fill`` is nothing but ``fill``, built here whole: the
    frameworks' pad functions refuse (or crash on) empty axes.  The copying boundaries cannot
    extend an empty axis; the callers refuse that case first.
    """
    if widths is None or not any(widths):
        return x
    if 0 in tuple(x.shape):
        top, bottom, left, right = widths
        h, w = x.shape[-2:]
        return full(be, (*x.shape[:-2], h + top + bottom, w + left + right), fill,
                    numpy_dtype(x))
    return be.pad(x, widths, boundary, fill)


def valid_of_padded(be: ModuleType, x: Any, k: Any, widths: tuple[int, int, int, int] | None,
                    boundary: str, fill: Any) -> Any:
    """The valid correlation of ``padded(x)`` with ``k`` by the direct method."""
    return _corr.padded_valid(be, padded(be, x, widths, boundary, fill), k, None, boundary,
                              fill, "direct")


def parts(be: ModuleType, a: Any) -> tuple[Any, Any | None]:
    """Real and imaginary parts (None for real data)."""
    if be.kind(a) == "c":
        return be.xp.real(a), be.xp.imag(a)
    return a, None


def complex_correlate(be: ModuleType, x: Any, k: Any, conjugate: bool,
                      run: Callable[[Any, Any, Any], Any], fill: Any) -> Any:
    """``sum x * k`` (``conj(k)`` if ``conjugate``) from real correlations ``run(x, k, fill)``.

    ``run`` correlates a real image with a real kernel, padding with a real fill value; the
    image's real part is padded with ``fill.real`` and its imaginary part with ``fill.imag``
    (``fill`` is any scalar with ``.real``/``.imag``: a Python or NumPy complex).
    """
    xr, xi = parts(be, x)
    kr, ki = parts(be, k)
    sign = -1 if conjugate else 1
    re = run(xr, kr, fill.real)
    im = None
    if ki is not None:
        im = sign * run(xr, ki, fill.real)
    if xi is not None:
        t = run(xi, kr, fill.imag)
        im = t if im is None else im + t
        if ki is not None:
            re = re - sign * run(xi, ki, fill.imag)
    return re if im is None else make_complex(be, re, im)


def make_complex(be: ModuleType, re: Any, im: Any) -> Any:
    """``re + i·im`` from real arrays of one dtype, without arithmetic: ``re + 1j * im``
    multiplies, and ``1j * inf`` is ``nan + inf·j``, which would put NaN in the real part."""
    if be.NAME == "torch":
        import torch

        return torch.complex(re, im)
    if be.NAME == "jax":
        from jax import lax

        return lax.complex(re, im)
    if be.NAME == "dask":
        import dask.array as da

        dtype = np.result_type(re.dtype, np.complex64)
        return da.map_blocks(_host_complex, re, im, dtype=dtype)
    return _host_complex(re, im)


def _host_complex(re: Any, im: Any) -> Any:
    """NumPy or CuPy: a complex array whose parts are written in place."""
    out = re.astype(np.result_type(re.dtype, np.complex64))
    out.imag = im
    return out

