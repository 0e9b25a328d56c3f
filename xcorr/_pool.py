"""``pool2d``: max and average pooling over the last two axes (PyTorch's semantics), once.

The window's taps are strided views of the padded input, folded with ``maximum`` or ``+``;
backends with a pooling layer of their own (``F.max_pool2d``/``F.avg_pool2d``,
``lax.reduce_window``) supply it as ``pool2d_native`` and it is used where present.  Dask
pools block by block with a trailing halo, blocks aligned to the stride.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from ._api import front
from ._dropin import cast, numpy_dtype
from ._validate import cast_hint

MODES = ("max", "avg")


@dataclass(frozen=True)
class Window:
    """A pooling window's resolved geometry (pairs are (rows, columns))."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    out: tuple[int, int]

    @property
    def taps(self) -> list[tuple[int, int]]:
        return [(a, b) for a in range(self.kernel[0]) for b in range(self.kernel[1])]

    @property
    def pads(self) -> tuple[int, int, int, int]:
        return self.padding[0], self.padding[0], self.padding[1], self.padding[1]


def pool2d(x: Any, kernel_size: Any, *, stride: Any = None, padding: Any = 0,
           mode: str = "max", backend: str | None = None) -> Any:
    """Max or average pooling over the last two axes, as ``F.max_pool2d``/``F.avg_pool2d``.

    Parameters
    ----------
    x : array_like, shape (..., H, W)
        Leading dimensions are batch dimensions.
    kernel_size : int or (int, int)
        The window.
    stride : int or (int, int), optional
        Default: ``kernel_size`` (non-overlapping windows).
    padding : int or (int, int)
        On both sides of each axis, at most half the window (PyTorch's rule).  Max pooling
        pads with -inf (the dtype's minimum for integers, which stay exact), average pooling
        with 0 — and counts the padding in the average, as PyTorch does by default.
    mode : {"max", "avg"}
    backend : str, optional
        As for :func:`xcorr.corr2d`.

    Returns
    -------
    array of the backend, shape (..., Ho, Wo)
        ``Ho = (H + 2·padding - kh) // stride + 1``; the input's dtype.

    Raises
    ------
    ValueError
        A non-positive window or stride, padding over half the window, a window larger than
        the padded input, an unknown ``mode``, an empty input (any dimension of length 0,
        the batch too, where ``F.max_pool2d`` returns an empty batch).
    TypeError
        ``mode="avg"`` on integer input (cast to float first), and as ``corr2d``.

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> x = np.arange(9).reshape(3, 3)
    >>> xcorr.pool2d(x, 2, stride=1).tolist()
    [[4, 5], [7, 8]]
    >>> xcorr.pool2d(x.astype(float), 2, stride=1, mode="avg").tolist()
    [[2.0, 3.0], [5.0, 6.0]]
    """
    p = setup(x, kernel_size, stride, padding, mode, backend)
    out = forward(p.be, p.x, p.win, mode)
    return _input_dtype(p.be, out ^ _SIGN if p.flipped else out, p.src)


_SIGN = -(2**63)  # int64's sign bit


def _source_dtype(x: Any) -> Any:
    """The NumPy dtype of the user's array ``x``, native (a big-endian input's values);
    None for lists and scalars (read as int64 or float64, never unsigned)."""
    return numpy_dtype(x).newbyteorder("=") if hasattr(x, "dtype") else None


def _uint64_as_int64(arr: Any, src: Any) -> bool:
    """Whether the backend holds a uint64 input as int64 (torch)."""
    return src is not None and src.kind == "u" and src.itemsize == 8 and \
        str(arr.dtype).removeprefix("torch.") == "int64"


def _input_dtype(be: Any, out: Any, src: Any) -> Any:
    """Integer maxima in the input's dtype where the backend widened it on the way in (torch
    holds uint16-64 as int64): they are the input's own values, so they fit."""
    if be.kind(out) != "i" or src is None:
        return out
    return cast(be, out, src) if src.kind == "u" and src.itemsize > 1 else out


@dataclass
class Problem:
    be: Any
    x: Any  # the backend's array; its sign bit flipped where ``flipped``
    win: Window
    src: Any = None  # the NumPy dtype of the user's integer x (else None)
    flipped: bool = False


def setup(x: Any, kernel_size: Any, stride: Any, padding: Any, mode: Any,
          backend: str | None) -> Problem:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose 'max' or 'avg'")
    # Pooling only compares (max) or refuses integers (avg): uint64 needs no int64 range.
    user_x = x
    be, (x,) = front({"x": x}, backend, int64_range=False)
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (..., H, W), got shape "
                         f"{tuple(x.shape)}")
    if 0 in tuple(x.shape):
        raise ValueError(f"x is empty (shape {tuple(x.shape)}); every dimension must be >= 1")
    if mode == "avg" and be.kind(x) == "i":
        raise TypeError("mode='avg' on integer input would round the averages; cast x to a "
                        f"float dtype first (e.g. {cast_hint(x, 'x', 'float32')})")
    k = _pair(kernel_size, "kernel_size", 1)
    s = _pair(stride if stride is not None else k, "stride", 1)
    p = _pair(padding, "padding", 0)
    for pi, ki in zip(p, k, strict=True):
        if 2 * pi > ki:
            raise ValueError(f"padding {p} must be at most half the window {k} on each axis "
                             "(PyTorch's rule): a window of padding alone has no maximum")
    h, w = int(x.shape[-2]) + 2 * p[0], int(x.shape[-1]) + 2 * p[1]
    if k[0] > h or k[1] > w:
        raise ValueError(f"window {k} is larger than the padded input {(h, w)}; use a "
                         "smaller kernel_size or more padding")
    out = ((h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1)
    src = _source_dtype(user_x) if be.kind(x) == "i" else None
    flipped = _uint64_as_int64(x, src)
    if flipped:
        # torch holds uint64 as int64, the same bits: values from 2**63 up read negative.
        # Flipping the sign bit maps uint64's order onto int64's (0 -> int64's minimum, the
        # padding), and back: the maxima stay exact, as on the backends that keep uint64.
        x = x ^ _SIGN
    return Problem(be, x, Window(k, s, p, out), src, flipped)


def _pair(v: Any, name: str, low: int) -> tuple[int, int]:
    items = (v, v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v
    try:
        a, b = items
        ok = all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= low
                 for n in (a, b))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        what = "positive" if low else "non-negative"
        raise ValueError(f"{name} must be a {what} int or a pair of them, got {v!r}")
    return int(a), int(b)


def fill_value(be: Any, x: Any, mode: str) -> Any:
    """What padding holds: -inf (the integer minimum) for max, 0 for avg."""
    if mode == "avg":
        return 0
    if be.kind(x) == "i":
        import numpy as np

        return int(np.iinfo(str(x.dtype).removeprefix("torch.")).min)
    return float("-inf")


def forward(be: Any, x: Any, win: Window, mode: str) -> Any:
    """Pooled ``x``: the backend's own layer, a blocked pass, or the taps folded here."""
    if hasattr(be, "pool2d_native"):
        return be.pool2d_native(x, win, mode)
    if hasattr(be, "pool2d_blocked"):
        return be.pool2d_blocked(x, win, mode, fill_value(be, x, mode))
    return taps_pool(be, x, win, mode)


def taps(be: Any, x: Any, win: Window, mode: str) -> list[Any]:
    """Strided views of the padded ``x``, one per tap (row-major)."""
    if any(win.padding):
        x = be.pad(x, win.pads, "fill", fill_value(be, x, mode))
    (sh, sw), (ho, wo) = win.stride, win.out
    return [x[..., a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw]
            for a, b in win.taps]


def taps_pool(be: Any, x: Any, win: Window, mode: str) -> Any:
    """The generic pooling: fold the taps (NaN propagates through ``maximum``).

    Averages of half-precision data are summed in float32 and rounded once, as PyTorch does.
    """
    dtype = x.dtype
    if mode == "avg" and x.dtype.itemsize < 4:
        x = be.astype(x, "float32")
    views = taps(be, x, win, mode)
    out = views[0]
    for v in views[1:]:
        out = be.xp.maximum(out, v) if mode == "max" else out + v
    if mode == "avg":
        out = be.astype(out / (win.kernel[0] * win.kernel[1]), dtype)
    return out
