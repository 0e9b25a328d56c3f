"""Every input rule, written once and framework-agnostic.

Lists and NumPy arrays are first made NumPy arrays (one conversion, so a list of floats is
float64 on every backend) and checked; backends then convert with ``asarray`` and the checks
here only look at ``.shape``, ``.ndim`` and a dtype *kind* the backend reports ("f" float,
"i" integer, "b" bool, "c" complex, anything else unsupported), so the same messages come
from every backend.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
from typing import Any

from . import _boundary
from ._broadcast import broadcast_shapes
from ._dispatch import array_backend, jax_tracer

MODES = ("valid", "same", "full")


def check_raw(obj: Any, name: str) -> None:
    """Reject inputs no framework should try to convert (before conversion)."""
    if obj is None or isinstance(obj, (str, bytes)):
        raise TypeError(f"{name} must be an array or nested list of numbers, got "
                        f"{type(obj).__name__}; pass e.g. numpy.asarray(...) of floats")
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None and sparse.issparse(obj):  # NumPy reads it as one object
        raise TypeError(f"{name} is a SciPy sparse {type(obj).__name__}, which xcorr does not "
                        "correlate; call .toarray() first")
    shape = getattr(obj, "shape", None)
    if type(shape) is tuple and float in map(type, shape):  # Dask's unknown sizes are NaN
        raise ValueError(f"{name} has unknown chunk sizes (shape {shape}); call "
                         f"{name} = {name}.compute_chunk_sizes() first")


def check_options(mode: Any, method: Any, offered: tuple[str, ...], backend: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if method not in ("auto", *offered):
        raise ValueError(f"unknown method {method!r} for backend {backend!r}; choose one of "
                         f"{', '.join(('auto', *offered))}")


_kinds: dict[Any, str] = {}


def numpy_kind(dtype: Any) -> str:
    """Kind letter of a NumPy-style dtype; bfloat16 & co. (ml_dtypes, kind 'V') count as float.

    Unsigned integers report "i": every integer is computed in int64 (see
    ``check_int64_range`` for the one unsigned type that does not fit).
    """
    try:
        return _kinds[dtype]
    except (KeyError, TypeError):
        pass
    dt = sys.modules["numpy"].dtype(dtype)
    kind = "i" if dt.kind == "u" else "f" if dt.kind == "V" and "float" in dt.name else dt.kind
    _kinds[dtype] = kind
    return kind


def numpy_result_dtype(x_dtype: Any, k_dtype: Any) -> Any:
    """The compute dtype of NumPy-style backends (NumPy, CuPy, Dask chunks).

    Floats promote as NumPy does; integer pairs go to int64 so sums are exact (as
    ``numpy.sum`` widens small integers).
    """
    np = sys.modules["numpy"]
    if numpy_kind(x_dtype) == "i" and numpy_kind(k_dtype) == "i":
        return np.dtype(np.int64)
    try:
        return np.result_type(x_dtype, k_dtype)
    except TypeError:  # DTypePromotionError: ml_dtypes' types with most others
        return _half_result_dtype(np.dtype(x_dtype), np.dtype(k_dtype))


def _half_result_dtype(a: Any, b: Any) -> Any:
    """The promotion NumPy has no rule for: ml_dtypes' bfloat16 and float8 types with
    float16, with each other, or with integers wider than 8 bits (``float8_e5m2`` has most
    of these rules, and the others follow it).  Two half-precision formats, neither of which
    holds the other: float32, as JAX and PyTorch promote bfloat16 with float16.  With an
    integer: as NumPy promotes float16 with it (int16 -> float32, int32 and int64 ->
    float64).
    """
    np = sys.modules["numpy"]
    floats = [d for d in (a, b) if numpy_kind(d) == "f"]
    if len(floats) == 2:
        return np.dtype(np.float32)
    (other,) = (d for d in (a, b) if numpy_kind(d) != "f")
    wide = np.result_type(np.float16, other)
    return floats[0] if wide == np.float16 else wide


def check_int64_range(arr: Any, name: str) -> None:
    """uint64 values above 2**63 - 1 would wrap in the int64 accumulator: refuse them.

    ``arr`` is an eager NumPy or CuPy array or a torch tensor (one reduction, read back only
    for uint64; torch has no ``max`` for ``uint64``, so its values' sign bit is read).
    """
    dtype = str(arr.dtype)
    if dtype == "torch.uint64":
        if bool((arr.view(sys.modules["torch"].int64) < 0).any()):
            raise _int64_overflow(name)
    elif dtype == "uint64" and arr.size and int(arr.max()) > 2**63 - 1:
        raise _int64_overflow(name)


class Int64Overflow(OverflowError):
    """uint64 values past int64's range (``check_int64_range``): with a float operand beside
    them, ``xcorr._api.front`` reads them as float64 instead."""


def _int64_overflow(name: str) -> OverflowError:
    return Int64Overflow(f"{name} holds uint64 values above 2**63 - 1, which the exact int64 "
                         "result cannot represent; cast to float64 (rounds above 2**53) or "
                         "shift the data into the int64 range")


def cast_hint(arr: Any, name: str, dtype: str) -> str:
    """How to cast ``arr`` to ``dtype`` in its own framework: torch tensors have no
    ``astype``."""
    if array_backend(arr) == "torch":
        return f"{name}.to(torch.{dtype})"
    return f"{name}.astype('{dtype}')"


def check_kind(arr: Any, name: str, kind: str) -> None:
    """Only real numbers: ``kind`` is the dtype kind letter the backend reports for ``arr``."""
    if kind == "c":
        raise TypeError(f"{name} is complex, which xcorr does not support (correlation of "
                        "complex data is ambiguous about conjugation); correlate the real "
                        "and imaginary parts separately")
    if kind == "b":
        raise TypeError(f"{name} is boolean; cast it to a number type first, "
                        f"e.g. {cast_hint(arr, name, 'float32')} or "
                        f"{cast_hint(arr, name, 'int64')}")
    if kind not in ("f", "i"):
        raise TypeError(f"{name} has dtype {arr.dtype}, which is not a number type; "
                        "pass float or integer data")


def check_shapes(x: Any, k: Any, mode: str) -> None:
    """Shape rules for ``x`` (..., H, W) and ``k`` (..., kh, kw), image axes last."""
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (..., H, W), got shape "
                         f"{tuple(x.shape)}; for a 1-D signal use x[None, :]")
    if k.ndim < 2:
        raise ValueError(f"k must have at least 2 dimensions (..., kh, kw), got shape "
                         f"{tuple(k.shape)}; for a 1-D kernel use k[None, :]")
    if 0 in tuple(x.shape):
        raise ValueError(f"x is empty (shape {tuple(x.shape)}); every dimension must be >= 1")
    if 0 in tuple(k.shape):
        raise ValueError(f"k is empty (shape {tuple(k.shape)}); every dimension must be >= 1")
    if mode == "valid":
        for axis, label in ((-2, "height"), (-1, "width")):
            if int(k.shape[axis]) > int(x.shape[axis]):
                raise ValueError(
                    f"kernel {label} {k.shape[axis]} exceeds image {label} {x.shape[axis]} in "
                    "mode='valid'; use a smaller kernel or mode='same'/'full'")


def check_axes(axes: Any, ndim: int) -> tuple[int, int]:
    """The two image axes of an ``ndim``-dimensional ``x``, made non-negative."""
    try:
        if any(isinstance(v, bool) for v in axes):
            raise TypeError  # an index, but not an axis anyone means
        a, b = (operator.index(v) for v in axes)
    except (TypeError, ValueError):
        raise ValueError(f"axes must be two integers (the image's height and width axes), got "
                         f"{axes!r}; e.g. axes=(0, 1) for (H, W, C) images") from None
    for v in (a, b):
        if not -ndim <= v < ndim:
            raise ValueError(f"axes {tuple(axes)} out of range for x with {ndim} dimensions; "
                             f"use values in [{-ndim}, {ndim - 1}]")
    a, b = a % ndim, b % ndim
    if a == b:
        raise ValueError(f"axes {tuple(axes)} name the same axis twice; give two distinct axes")
    return a, b


def broadcast_batch(x_shape: tuple[int, ...], k_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Broadcast batch shape of ``x`` (..., H, W) and ``k`` (..., kh, kw), NumPy rules."""
    try:
        return broadcast_shapes(tuple(x_shape[:-2]), tuple(k_shape[:-2]))
    except ValueError:
        raise ValueError(
            f"the leading dimensions of k {tuple(k_shape)} do not broadcast against the "
            f"batch dimensions of x {tuple(x_shape)} (image axes last); give k one kernel per "
            "batch element, a shape that broadcasts (NumPy rules), or a single (kh, kw) "
            "kernel") from None


def check_fillvalue(value: Any) -> float | int:
    """``fillvalue`` must be a real scalar (NaN/Inf allowed)."""
    if isinstance(value, (bool, numbers.Integral)):
        return int(value)
    if isinstance(value, complex) or (hasattr(value, "dtype") and
                                       getattr(value.dtype, "kind", "") == "c"):
        raise TypeError(f"fillvalue must be a real number, got complex {value!r}; xcorr "
                        "correlates real data (xcorr.signal.correlate2d takes complex input)")
    if isinstance(value, numbers.Real):
        return float(value)
    if _differentiated(value):
        raise TypeError(f"fillvalue is a traced or differentiated array ({type(value).__name__}"
                        "); xcorr pads with a constant, so a derivative with respect to it "
                        "would be lost: pass a number, or pad the data yourself (jnp.pad, "
                        "torch.nn.functional.pad) and correlate with mode='valid'")
    scalar = concrete_scalar(value)  # a 0-d array of any framework: its number
    if scalar is not value:
        return check_fillvalue(scalar)
    raise TypeError(f"fillvalue must be a real scalar, got {type(value).__name__} {value!r}; "
                    "e.g. fillvalue=0.0")


def concrete_scalar(value: Any) -> Any:
    """A concrete 0-d array of any framework (``jnp.float32(1e-5)``, ``torch.tensor(3)``) as
    its Python number, as NumPy scalars already are; anything else as it is (a traced or
    differentiated value too: the caller's check then names it)."""
    if isinstance(value, numbers.Number) or getattr(value, "shape", None) != () \
            or _differentiated(value):
        return value
    try:
        return value.item()
    except (AttributeError, TypeError, ValueError):
        return value


def _differentiated(value: Any) -> bool:
    """Whether ``value`` is a JAX tracer (jit, grad, vmap) or a torch tensor that autograd
    tracks: its ``.item()`` would give a constant and drop the derivative silently."""
    if jax_tracer(value):
        return True
    return sys.modules.get("torch") is not None and getattr(value, "requires_grad", False) \
        is True


def integral_fill(value: float | int, boundary: str, mode: str, dtype: Any) -> int:
    """The fill value for integer data of ``dtype`` (the promoted int64, or JAX's int32
    without x64): it must be integral (else the exact result is lost) and in its range (else
    the framework wraps it or fails on a C long)."""
    if not isinstance(value, int) and (not math.isfinite(value) or value != int(value)):
        raise ValueError(f"fillvalue={value!r} is not an integer, but the data are integers "
                         f"and boundary={boundary!r} with mode={mode!r} pads with it; use an "
                         "integral fillvalue or cast the data to float")
    bits = 8 * int(getattr(dtype, "itemsize", 8))
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise ValueError(f"fillvalue={value!r} is outside the int{bits} range of the exact "
                         "integer result it pads; use a fill value within it or cast the data "
                         "to float")
    return int(value)


# 'same' and 'full' padding lives with the boundary rules.
pads = _boundary.pads
