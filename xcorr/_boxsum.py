"""Window sums (box filters) by pairwise doubling, written once over any array namespace.

``box_sums(be, a, (h, w))[..., i, j] = sum(a[..., i:i+h, j:j+w])`` for every valid window.
Each axis is summed by doubling: ``p_1 = a``, ``p_2m[r] = p_m[r] + p_m[r+m]`` (the sum of
``2m`` consecutive entries), and the window of width ``w`` adds the ``p_m`` of ``w``'s binary
digits, lowest first.  That is ``log2(w) + popcount(w)`` whole-array additions per axis
instead of ``w``, and compared with summed-area tables (cumulative sums, then differences):

- every window is summed by the same tree of its own entries only (pairwise summation): the
  error is ``O(log2(w) · eps)`` of the window's own magnitude, whatever the rest of the image
  holds (a prefix-sum difference carries the error of everything before the window);
- NaN and Inf stay in the windows that hold them (a prefix sum spreads them to the end);
- a constant window sums exactly as long as the partial sums are representable (``w · v``
  for a float32 ``v`` in float64), so its variance comes out as (near) zero, not noise;
- the result does not depend on where a window lies, so a chunked (Dask) computation equals
  the whole-array one bit for bit, and a backend's compiled kernel
  (``be.box_sums``, see ``backends/_numpy.py``) can reproduce it exactly.

Sums over the second-last axis are taken first, then over the last.

Where no float64 is at hand (JAX without x64), ``box_sums_dd`` sums double-word numbers
``hi + lo`` (two float32s: about 48 bits) by the same tree, with error-free transformations
(Knuth's TwoSum; Dekker's product with an exact ``frexp`` split, which no fused multiply-add
can spoil): float32 arrays with nearly float64 sums.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any


def box_sums(be: Any, a: Any, window: tuple[int, int]) -> Any:
    """Sums of ``a (..., H, W)`` over every ``window = (h, w)`` that fits: ``(..., H-h+1,
    W-w+1)``, in ``a``'s dtype (accumulate in float64 by passing float64 ``a``).

    Uses the backend's compiled ``box_sums`` if it has one (same tree, same bits).
    """
    fast = getattr(be, "box_sums", None)
    if fast is not None:
        out = fast(a, window)
        if out is not None:  # None: the kernel does not take this input (dtype, layout)
            return out
    h, w = window
    return axis_sums(axis_sums(a, h, a.ndim - 2), w, a.ndim - 1)


def axis_sums(a: Any, w: int, axis: int) -> Any:
    """Sums of ``w`` consecutive entries of ``a`` along ``axis`` (length ``n - w + 1``)."""
    return _doubling(a, w, a.shape[axis], lambda p, i, j: _slice(p, axis, i, j), operator.add)


def box_sums_dd(hi: Any, lo: Any, window: tuple[int, int]) -> tuple[Any, Any]:
    """``box_sums`` of the double-word numbers ``hi + lo`` (``|lo| <= ulp(hi)``), as a pair.

    Each addition is exact but for ~``2 u²`` of its result (``u`` the unit roundoff of the
    dtype), so a window's sum errs by ``O(log2(h·w) · u²)`` of its magnitude.
    """
    h, w = window
    nd = hi.ndim

    def take(axis: int) -> Callable[[Any, int, int], Any]:
        return lambda p, i, j: (_slice(p[0], axis, i, j), _slice(p[1], axis, i, j))

    pair = _doubling((hi, lo), h, hi.shape[nd - 2], take(nd - 2), dd_add)
    return _doubling(pair, w, pair[0].shape[nd - 1], take(nd - 1), dd_add)


def total_dd(xp: Any, hi: Any, lo: Any) -> tuple[Any, Any]:
    """The double-word sum of ``hi + lo`` over the last two axes, kept (``(..., 1, 1)``).

    Pairwise by halving the flattened axes (zero-padded to a power of two): the first half
    plus the second, ``log2(n)`` contiguous additions.  ``box_sums_dd`` with the whole array
    as its window gives a sum as accurate, but XLA's CPU compiler ran its offset slices 20x
    slower when their input is itself computed from such a sum (a template centred twice:
    4.2 ms against 0.27 for 16 templates 31²).
    """
    lead, n = hi.shape[:-2], int(hi.shape[-2]) * int(hi.shape[-1])
    size = 1 << max(n - 1, 0).bit_length()
    pair = []
    for a in (hi, lo):
        a = a.reshape(*lead, n)
        if size > n:
            a = xp.concatenate([a, xp.zeros((*lead, size - n), dtype=a.dtype)], axis=-1)
        pair.append(a)
    while size > 1:
        size //= 2
        pair = dd_add((pair[0][..., :size], pair[1][..., :size]),
                      (pair[0][..., size:], pair[1][..., size:]))
    return pair[0].reshape(*lead, 1, 1), pair[1].reshape(*lead, 1, 1)


def _doubling(a: Any, w: int, n: int, take: Callable[[Any, int, int], Any],
              add: Callable[[Any, Any], Any]) -> Any:
    """The doubling tree along one axis of length ``n``: ``take(p, i, j)`` slices ``p``
    there, ``add`` adds two such slices."""
    out_len = n - w + 1
    acc, p, m, off, size = None, a, 1, 0, n
    while True:
        if w & m:  # this binary digit of w: add the block of m entries that starts at off
            term = take(p, off, off + out_len)
            acc = term if acc is None else add(acc, term)
            off += m
        if 2 * m > w:
            return acc
        size -= m
        p = add(take(p, 0, size), take(p, m, m + size))
        m *= 2


# -- error-free transformations (double-word arithmetic in the array's own dtype) -------------


def two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """``s + e == a + b`` exactly, ``s = fl(a + b)`` (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def dd_add(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    """Double-word ``a + b``, renormalised (relative error about ``2 u²``)."""
    s, e = two_sum(a[0], b[0])
    e = e + (a[1] + b[1])
    hi = s + e
    return hi, e - (hi - s)


def split(xp: Any, a: Any) -> tuple[Any, Any]:
    """``a == hi + lo`` exactly with ``hi`` and ``lo`` of at most 12 significant bits each
    (for 24-bit float32), by ``frexp``/``ldexp`` (exact, unlike Veltkamp's ``(c·a) - ...``
    which a fused multiply-add would change)."""
    if isinstance(a, float):
        m, e = math.frexp(a)
        hi = math.ldexp(round(m * 4096), e - 12)
        return hi, a - hi
    m, e = xp.frexp(a)
    hi = xp.ldexp(xp.round(m * 4096), e - 12)
    return hi, a - hi


def two_prod(xp: Any, a: Any, b: Any) -> tuple[Any, Any]:
    """``p + e == a · b`` exactly for float32 ``a`` and ``b`` (Dekker), ``p = fl(a · b)``."""
    p = a * b
    ah, al = split(xp, a)
    bh, bl = split(xp, b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _slice(a: Any, axis: int, start: int, stop: int) -> Any:
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, stop)
    return a[tuple(index)]
