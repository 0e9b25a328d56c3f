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

from . import _dispatch
from ._interop import to_numpy

# torch dtypes by name <-> NumPy dtypes (the other frameworks use NumPy dtypes).
_TORCH_NAMES = {"bool": "bool", "uint8": "uint8", "int8": "int8", "int16": "int16",
                "int32": "int32", "int64": "int64", "uint16": "uint16", "uint32": "uint32",
                "uint64": "uint64", "float16": "float16", "float32": "float32",
                "float64": "float64", "complex64": "complex64", "complex128": "complex128"}


def convert(objs: dict[str, Any], backend: str | None) -> tuple[ModuleType, list[Any]]:
    """The backend for a drop-in call and its inputs as that backend's arrays (no checks)."""
    be = _dispatch.resolve_all(tuple(objs.values()), backend, tuple(objs))
    out = []
    for obj in objs.values():
        if _dispatch.array_backend(obj) in (None, "numpy"):
            obj = to_numpy(obj, be.NAME)
        out.append(be.asarray(obj))
    return be, out


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
    """``a`` cast to (the framework's equivalent of) NumPy ``dtype``; integers wrap."""
    if be.NAME == "torch":
        import torch

        return a.to(getattr(torch, dtype.name))
    if be.NAME == "jax":
        import jax

        dtype = jax.dtypes.canonicalize_dtype(dtype)  # float64 is float32 without x64
    return be.astype(a, dtype)


def parts(be: ModuleType, a: Any) -> tuple[Any, Any | None]:
    """Real and imaginary parts (None for real data)."""
    if be.kind(a) == "c":
        return be.xp.real(a), be.xp.imag(a)
    return a, None


def complex_correlate(be: ModuleType, x: Any, k: Any, conjugate: bool,
                      run: Callable[[Any, Any, Any], Any], fill: complex) -> Any:
    """``sum x * k`` (``conj(k)`` if ``conjugate``) from real correlations ``run(x, k, fill)``.

    ``run`` correlates a real image with a real kernel, padding with a real fill value; the
    image's real part is padded with ``fill.real`` and its imaginary part with ``fill.imag``.
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
    return re if im is None else re + 1j * im
