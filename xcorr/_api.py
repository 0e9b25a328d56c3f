"""What every operation does first: check raw inputs, pick the backend, convert the arrays.

Operations (``_corr``, ``_conv``, ``_pool``, ``_ncc``) call :func:`front` and then work on
backend arrays only; nothing here knows about a particular operation.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from . import _dispatch, _validate
from ._interop import to_numpy


def front(arrays: dict[str, Any], backend: str | None, optional: tuple[str, ...] = (),
          int64_range: bool = True, float_result: bool = False
          ) -> tuple[ModuleType, list[Any]]:
    """Validate and convert an operation's array arguments.

    ``arrays`` maps parameter names to the user's objects, in signature order; those named in
    ``optional`` may be None and stay None.  uint64 values above 2**63 - 1 would wrap in an
    int64 sum: where a float operand (or ``float_result``, an operation that computes in
    float whatever its input) makes the result float, they are read as float64, NumPy's
    promotion; else refused, unless ``int64_range`` is False (an operation that only compares
    them).  Returns the backend module and the converted arrays in the same order.
    """
    names = tuple(arrays)
    objs = tuple(arrays.values())
    for name, obj in arrays.items():
        if obj is not None or name not in optional:
            _validate.check_raw(obj, name)
    be = _dispatch.resolve_all(objs, backend, names)
    out: list[Any] = []
    past: list[tuple[int, str, Any, OverflowError]] = []  # uint64 past int64's range
    for name, obj in arrays.items():
        try:
            out.append(None if obj is None else prepare(be, obj, name, int64_range))
        except _validate.Int64Overflow as e:
            out.append(None)
            past.append((len(out) - 1, name, obj, e))
    if past:
        if not float_result and not any(a is not None and be.kind(a) == "f" for a in out):
            raise past[0][3]  # an integer result, in int64: they would wrap
        for i, name, obj, _ in past:  # a float result: NumPy's promotion, uint64 -> float64
            out[i] = prepare(be, _float64(be, obj), name)
    return be, out


def prepare_float(be: Any, obj: Any, name: str) -> Any:
    """``prepare`` for an operation that computes in float whatever its input's dtype (NCC):
    uint64 values past int64's range are read as float64 (see ``front``)."""
    try:
        return prepare(be, obj, name)
    except _validate.Int64Overflow:
        return prepare(be, _float64(be, obj), name)


def _float64(be: Any, obj: Any) -> Any:
    """``obj``, a uint64 array of any framework (or a list NumPy reads as one), as float64 in
    its own framework."""
    if _dispatch.array_backend(obj) == "torch":
        return obj.to(sys.modules["torch"].float64)
    return (obj if hasattr(obj, "astype") else to_numpy(obj, be.NAME)).astype("float64")


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
