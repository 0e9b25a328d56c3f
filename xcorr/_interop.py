"""Host conversion shared by the CPU backends: any host array -> NumPy, never a device copy."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ._dispatch import array_backend


def to_numpy(obj: Any, target: str) -> np.ndarray:
    """A NumPy array (a view where possible) of a host array, list or scalar.

    Device arrays (CuPy, CUDA tensors, JAX arrays on a GPU), tracers and lazy Dask arrays
    raise ``TypeError`` saying how to convert explicitly: nothing leaves a device behind the
    caller's back.
    """
    kind = array_backend(obj)
    where = f"backend={target!r}"
    if kind == "torch":
        if obj.device.type != "cpu":
            raise TypeError(f"a torch tensor on {obj.device} cannot go to {where} without a copy "
                            "to the host; call .cpu() yourself, or use backend='torch'")
        if obj.requires_grad:
            raise TypeError(f"a torch tensor that requires grad cannot go to {where} (its "
                            "gradient would be lost); call .detach(), or use backend='torch'")
        obj = obj.resolve_conj().resolve_neg()
    elif kind == "jax":
        tracer = getattr(sys.modules.get("jax.core"), "Tracer", ())
        if isinstance(obj, tracer):  # inside jit/grad/vmap: there are no values to convert
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
