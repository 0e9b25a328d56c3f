"""Host conversion, both ways it is allowed.

``to_numpy`` is the implicit one the CPU backends use (a host array -> NumPy, never a device
copy); ``host_copy`` is the explicit one for code that asked for host values (tests, the CLI's
printing, the benchmarks' checks).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ._dispatch import array_backend, jax_tracer


def to_numpy(obj: Any, target: str) -> np.ndarray:
    """A NumPy array (a view where possible) of a host array, list or scalar.

    Device arrays (CuPy, CUDA tensors, JAX arrays on a GPU), tracers and lazy Dask arrays
    raise ``TypeError`` saying how to convert explicitly: nothing leaves a device behind the
    caller's back.
    """
    kind = array_backend(obj)
    where = f"backend={target!r}"
    if kind == "torch":
        if obj.layout != sys.modules["torch"].strided:
            raise TypeError(f"a tensor of layout {obj.layout} cannot go to {where}; call "
                            ".to_dense() first")
        if obj.device.type != "cpu":
            raise TypeError(f"a torch tensor on {obj.device} cannot go to {where} without a copy "
                            "to the host; call .cpu() yourself, or use backend='torch'")
        if obj.requires_grad:
            raise TypeError(f"a torch tensor that requires grad cannot go to {where} (its "
                            "gradient would be lost); call .detach(), or use backend='torch'")
        obj = obj.resolve_conj().resolve_neg()
        narrow = _ml_dtype(obj)
        if narrow is not None:  # bfloat16, float8: NumPy has them only through ml_dtypes
            bits = "uint8" if narrow.itemsize == 1 else "int16"
            return obj.view(getattr(sys.modules["torch"], bits)).numpy().view(narrow)
    elif kind == "jax":
        if jax_tracer(obj):  # inside jit/grad/vmap: there are no values to convert
            raise TypeError(f"a traced JAX value cannot go to {where}; use backend='jax' "
                            "inside jax transformations")
        devices = obj.devices()
        if any(d.platform != "cpu" for d in devices):
            raise TypeError(f"a JAX array on {sorted(str(d) for d in devices)} cannot go to "
                            f"{where} without a copy to the host; call jax.device_get() "
                            "yourself, or use backend='jax'")
    elif kind == "cupy":
        raise TypeError(f"a CuPy array lives on the GPU and cannot go to {where} without a "
                        "copy to the host; call .get() yourself, or use backend='cupy'")
    elif kind == "dask":
        raise TypeError(f"a Dask array is lazy; call .compute() yourself to use {where}, or "
                        "use backend='dask'")
    try:
        return np.asarray(obj)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"cannot convert {type(obj).__name__} to an array for {where} ({exc}); "
                        "pass a rectangular nested list or an array of numbers") from exc


def _ml_dtype(t: Any) -> np.dtype | None:
    """The ml_dtypes twin of a torch tensor's bfloat16 or float8 dtype (what JAX hands NumPy
    for them), if ml_dtypes is installed; None for the dtypes NumPy has itself."""
    if not t.is_floating_point() or t.element_size() > 2 or str(t.dtype) == "torch.float16":
        return None
    try:
        import ml_dtypes
    except ImportError:  # np.asarray's TypeError then says the dtype is not supported
        return None
    twin = getattr(ml_dtypes, str(t.dtype).removeprefix("torch."), None)
    return None if twin is None else np.dtype(twin)


def native_order(a: np.ndarray) -> np.ndarray:
    """``a`` in the machine's byte order (a copy only when it is not): JAX, CuPy and torch
    accept no other (NumPy and SciPy compute any)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def host_copy(a: Any) -> np.ndarray:
    """Explicitly copy any backend's array to a NumPy array on the host.

    Dask arrays are computed, torch tensors detached (``bfloat16``/``float16`` widened to
    float32, which is exact), CuPy arrays copied from the device; JAX arrays go through
    ``numpy.asarray``.  (Public as ``xcorr.testing.as_numpy``.)

    Parameters
    ----------
    a : array of any backend, or array_like
        What to copy; lists and scalars become arrays.

    Returns
    -------
    numpy.ndarray
        A copy, or a view where no copy is needed (NumPy input, CPU tensors).

    Raises
    ------
    TypeError, ValueError
        Whatever ``numpy.asarray`` raises for input that is not an array.

    Examples
    --------
    >>> import torch
    >>> from xcorr.testing import as_numpy
    >>> as_numpy(torch.ones(2, dtype=torch.bfloat16, requires_grad=True))
    array([1., 1.], dtype=float32)
    """
    kind = array_backend(a)
    if kind == "dask":
        a = a.compute()
    elif kind == "torch":
        a = a.detach().cpu()
        if a.dtype.is_floating_point and a.element_size() < 4:
            a = a.float()
        return a.numpy()
    elif kind == "cupy":
        return a.get()
    return np.asarray(a)
