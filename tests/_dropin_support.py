"""What the drop-in test modules (``test_dropin_signal``, ``test_dropin_ndimage``) share.

Inputs are written as NumPy arrays and carried to each backend here; results come back to the
host with ``to_np`` and are compared with SciPy's (or the expected values of SciPy's own tests)
in dtype, shape and value.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import to_np, x64

from xcorr._dispatch import array_backend

# The other frameworks have no extended precision.
_NO_LONG = {"jax", "torch", "cupy"}
LONG = (np.dtype(np.longdouble), np.dtype(np.clongdouble))


def holds(backend: str, dtype: Any) -> bool:
    """Whether ``backend``'s framework has ``dtype``."""
    return not (backend in _NO_LONG and np.dtype(dtype) in LONG)


def to_backend(backend: str, a: Any) -> Any:
    """``a`` (NumPy, or anything else as it is) as an array of ``backend``'s framework.

    Dask arrays get chunks of about half each side, so that the windows cross chunk edges.
    Call inside ``x64(backend)`` for JAX.
    """
    if not isinstance(a, np.ndarray) or backend == "numpy":
        return a
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray(a)
    if backend == "torch":
        import torch

        return torch.from_numpy(np.array(a))  # a writeable, contiguous copy
    if backend == "dask":
        import dask.array as da

        chunks = tuple(max(1, -(-n // 2)) for n in a.shape) if a.size else -1
        return da.from_array(a, chunks=chunks)
    if backend == "cupy":
        import cupy

        return cupy.asarray(a)
    raise AssertionError(backend)


def dtype_of(a: Any) -> np.dtype:
    """The NumPy dtype naming ``a``'s dtype, whatever its framework."""
    return np.dtype(str(a.dtype).removeprefix("torch."))


def assert_same(got: Any, want: np.ndarray, backend: str = "numpy", what: str = "") -> None:
    """``got`` is ``backend``'s array with ``want``'s dtype, shape and values (NaN == NaN)."""
    assert array_backend(got) == backend, f"{what}: a {type(got).__name__}, not {backend}"
    assert dtype_of(got) == want.dtype, f"{what}: dtype {dtype_of(got)}, expected {want.dtype}"
    host = to_np(got)
    assert host.shape == want.shape, f"{what}: shape {host.shape}, expected {want.shape}"
    np.testing.assert_array_equal(host, want, err_msg=what, strict=True)


def check_ported(backend: str, fn: Callable[..., Any], args: tuple[Any, ...],
                 want: Any, **kwargs: Any) -> None:
    """``fn(*args, **kwargs)`` on ``backend`` (NumPy inputs carried over) equals ``want``
    exactly, in a result of that framework; skips where the framework lacks a dtype."""
    want = np.asarray(want)
    dtypes = [a.dtype for a in args if isinstance(a, np.ndarray)] + [want.dtype]
    if not all(holds(backend, d) for d in dtypes):
        pytest.skip(f"{backend} has no {', '.join(sorted({str(d) for d in dtypes}))}")
    before = [a.copy() for a in args if isinstance(a, np.ndarray)]
    with x64(backend):
        got = fn(*(to_backend(backend, a) for a in args), backend=backend, **kwargs)
        assert_same(got, want, backend, f"{getattr(fn, '__name__', fn)} on {backend}")
    after = [a for a in args if isinstance(a, np.ndarray)]
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b, strict=True)  # inputs are never mutated


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """``("ok", result)`` or ``(exception type name, message)``, warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return "ok", fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - compared, not swallowed
            return type(exc).__name__, str(exc)


def assert_same_outcome(got: tuple[str, Any], want: tuple[str, Any], what: str = "") -> None:
    """Both raised the same exception type and message, or both returned equal arrays."""
    assert got[0] == want[0], f"{what}: xcorr {got}, SciPy {want}"
    if got[0] == "ok":
        assert_same(got[1], np.asarray(want[1]), "numpy", what)
    else:
        assert got[1] == want[1], f"{what}: message {got[1]!r}, SciPy's {want[1]!r}"


def magnitude(a: np.ndarray, wide: Any = np.float64) -> np.ndarray:
    """``|re| + |im|`` in ``wide`` (>= ``|a|``), non-finite values counted as 0."""
    a = np.asarray(a)
    m = np.abs(a.real.astype(wide))
    if a.dtype.kind == "c":
        m = m + np.abs(a.imag.astype(wide))
    return np.where(np.isfinite(m), m, 0.0)


def unit_roundoff(dtype: Any) -> float:
    """Unit roundoff of a float or complex dtype (of its real part)."""
    return float(np.finfo(np.dtype(dtype)).eps) / 2


def assert_close(got: np.ndarray, want: np.ndarray, bound: np.ndarray, what: str = "") -> None:
    """Same dtype and shape; non-finite values equal; finite ones within ``bound``
    (real and imaginary parts each)."""
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    parts = [(got.real, want.real)] + ([(got.imag, want.imag)] if got.dtype.kind == "c" else [])
    for g, w in parts:
        g, w = g.astype(np.longdouble), w.astype(np.longdouble)
        finite = np.isfinite(w)
        np.testing.assert_array_equal(np.isfinite(g), finite, err_msg=f"{what}: finiteness")
        np.testing.assert_array_equal(g[~finite], w[~finite], err_msg=f"{what}: non-finite")
        err = np.abs(g[finite] - w[finite])
        over = err > bound[finite]
        assert not over.any(), (f"{what}: {int(over.sum())} outputs over the bound; worst "
                                f"error {err.max()!r} vs bound {bound[finite][over].min()!r}\n"
                                f"got {g}\nwant {w}")
