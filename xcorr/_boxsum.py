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
"""

from __future__ import annotations

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
    n = a.shape[axis]
    out_len = n - w + 1
    acc, p, m, off = None, a, 1, 0
    while True:
        if w & m:  # this binary digit of w: add the block of m entries that starts at off
            term = _slice(p, axis, off, off + out_len)
            acc = term if acc is None else acc + term
            off += m
        if 2 * m > w:
            return acc
        size = p.shape[axis] - m
        p = _slice(p, axis, 0, size) + _slice(p, axis, m, m + size)
        m *= 2


def _slice(a: Any, axis: int, start: int, stop: int) -> Any:
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, stop)
    return a[tuple(index)]
