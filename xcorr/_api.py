"""What every operation does first: check raw inputs, pick the backend, convert the arrays.

Operations (``_corr``, ``_conv``, ``_pool``, ``_ncc``) call :func:`front` and then work on
backend arrays only; nothing here knows about a particular operation.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from . import _dispatch, _validate
from ._interop import to_numpy


def front(arrays: dict[str, Any], backend: str | None, optional: tuple[str, ...] = (),
          int64_range: bool = True) -> tuple[ModuleType, list[Any]]:
    """Validate and convert an operation's array arguments.

    ``arrays`` maps parameter names to the user's objects, in signature order; those named in
    ``optional`` may be None and stay None.  ``int64_range``: refuse uint64 values above
    2**63 - 1 (they would wrap in an int64 sum); False for an operation that only compares
    them.  Returns the backend module and the converted arrays in the same order.
    """
    names = tuple(arrays)
    objs = tuple(arrays.values())
    for name, obj in arrays.items():
        if obj is not None or name not in optional:
            _validate.check_raw(obj, name)
    be = _dispatch.resolve_all(objs, backend, names)
    return be, [None if obj is None else prepare(be, obj, name, int64_range)
                for name, obj in arrays.items()]


def prepare(be: Any, obj: Any, name: str, int64_range: bool = True) -> Any:
    """Convert ``obj`` to the backend, checking its dtype kind (and uint64 range) on the way."""
    source = _dispatch.array_backend(obj)
    if source in (None, "numpy"):  # lists, scalars, NumPy: one rule
        obj = to_numpy(obj, be.NAME)
        _validate.check_kind(obj, name, _validate.numpy_kind(obj.dtype))
        if int64_range:
            _validate.check_int64_range(obj, name)
    elif source in ("cupy", "torch") and int64_range:
        _validate.check_int64_range(obj, name)
    arr = be.asarray(obj)
    _validate.check_kind(arr, name, be.kind(arr))
    return arr


def join(be: Any, a: Any, ref: Any) -> Any:
    """``a`` on ``ref``'s device, where the backend moves host-side operands to a device
    (torch: a CPU tensor joins a CUDA one, see ``to_device_of``); else ``a`` as it is."""
    move = getattr(be, "to_device_of", None)
    return a if move is None else move(a, ref)


_prepare = prepare  # the name the trainer imports
