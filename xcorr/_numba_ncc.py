"""Compiled NCC window normaliser for the NumPy backend (the ``fast`` extra: Numba).

``run(x, h, w, tol, phase, out)`` writes, for every valid ``h × w`` window of ``x (B, H, W)``,
``1 / sqrt(sum((v - mean)²))`` into ``out`` (0 where the window is flat: ``sum((v - mean)²)
<= tol · sum(v²)``): the quantity ``xcorr._ncc.inv_norm`` computes from
``xcorr._boxsum``'s window sums.  That NumPy expression makes some twenty passes over float64
arrays the size of the output, each a fresh allocation; this makes one pass over ``x``.

The window sums are accumulated in float64 as van Herk and Gil & Werman compute running
maxima: an axis is cut into blocks of the window's length, and a window, which meets at most
two blocks, is a suffix sum of one plus a prefix sum of the next.  So each window is summed
from its own entries only, as in ``_boxsum`` (sequentially rather than pairwise: an error of
``O((h + w) · eps)`` of the window's own magnitude), NaN/Inf reach only the windows that
hold them, and a constant window sums exactly whenever ``k · v`` is representable; three
additions per entry and axis, whatever the window.

The blocks are aligned to multiples of the window in the coordinates of a larger array of
which ``x`` is a part: ``phase = (row0 % h, col0 % w)`` for a part whose first output is
``(row0, col0)`` there.  Each window is then summed in the same order wherever the array
is cut, so Dask's blocks give the bits of the whole array.

The kernel is serial over a range of tasks (blocks of ``h`` output rows) with the GIL
released; the NumPy backend runs a large call in shares on its pool of Python threads, as
``xcorr._numba``'s loops (Numba's ``parallel=True`` workers spin after each region: with
torch's OpenMP pool in the same process, or on a busy machine, a 128² call took 8 ms).

This module imports Numba: the NumPy backend imports it only when ``xcorr._numba.kernel()``
says Numba is there and enabled.  The functions are at module level so that Numba's
on-disk cache finds them again in the next process (closures over other compiled functions
miss it and compile anew, ~10 s).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

# Each step is its own compiled function: inside the task loop's body LLVM did not
# vectorise them (the division and square root ran one element at a time), and with
# Python's error model a division cannot be vectorised at all.
jit = numba.njit(cache=True, nogil=True, error_model="numpy")
LANES = 8  # output rows summed side by side along the row, one per SIMD lane

@jit
def suffix(x, b, i0, length, s1, s2):
    # s[r] = sum of rows i0 + r .. i0 + length - 1 of x[b] (and of their squares)
    width = x.shape[2]
    last = i0 + length - 1
    for j in range(width):
        a = np.float64(x[b, last, j])
        s1[length - 1, j] = a
        s2[length - 1, j] = a * a
    for r in range(length - 2, -1, -1):
        for j in range(width):
            a = np.float64(x[b, i0 + r, j])
            s1[r, j] = a + s1[r + 1, j]
            s2[r, j] = a * a + s2[r + 1, j]

@jit
def add_row(x, b, i, p1, p2):
    for j in range(x.shape[2]):
        a = np.float64(x[b, i, j])
        p1[j] += a
        p2[j] += a * a

@jit
def gather(x, b, i0, h, g0, count, s1, s2, p1, p2, v1, v2):
    # v[:, lane] = the column sums of output row i0 + g0 + lane: the block's suffix plus
    # the prefix p of the next block, which gains the window's last row.
    width = x.shape[2]
    for lane in range(count):
        r = g0 + lane
        if r > 0:
            add_row(x, b, i0 + r + h - 1, p1, p2)
        for j in range(width):
            v1[j, lane] = s1[r, j] + p1[j]
            v2[j, lane] = s2[r, j] + p2[j]

@jit
def horizontal(v1, v2, u1, u2, q1, q2, w, first, wo):
    # Per block of columns (the first `first` long, then w): u the suffix sums within
    # it, q the prefix sums of the next block up to the last column a window starting
    # in this one reads.
    width = v1.shape[0]
    k0, length = 0, first
    while k0 < wo:
        last = k0 + length - 1
        for lane in range(v1.shape[1]):
            u1[last, lane] = v1[last, lane]
            u2[last, lane] = v2[last, lane]
        for j in range(last - 1, k0 - 1, -1):
            for lane in range(v1.shape[1]):
                u1[j, lane] = v1[j, lane] + u1[j + 1, lane]
                u2[j, lane] = v2[j, lane] + u2[j + 1, lane]
        for lane in range(v1.shape[1]):
            q1[last, lane] = 0.0
            q2[last, lane] = 0.0
        for j in range(last + 1, min(last + w, width)):
            for lane in range(v1.shape[1]):
                q1[j, lane] = q1[j - 1, lane] + v1[j, lane]
                q2[j, lane] = q2[j - 1, lane] + v2[j, lane]
        k0, length = k0 + length, w

@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def norm(t1, t2, n, tol):
    var = t2 - t1 * (t1 / n)
    return 1.0 / np.sqrt(var) if var > tol * t2 else 0.0

@jit
def normalise(u1, u2, q1, q2, w, first, wo, n, tol):
    # u1 <- each window's normaliser: a window that starts a block is the block's
    # suffix alone, any other a suffix plus the next block's prefix.
    k0, length = 0, first
    while k0 < wo:
        j0 = k0
        if length == w:
            for lane in range(u1.shape[1]):
                u1[k0, lane] = norm(u1[k0, lane], u2[k0, lane], n, tol)
            j0 = k0 + 1
        for j in range(j0, min(k0 + length, wo)):
            for lane in range(u1.shape[1]):
                u1[j, lane] = norm(u1[j, lane] + q1[j + w - 1, lane],
                                   u2[j, lane] + q2[j + w - 1, lane], n, tol)
        k0, length = k0 + length, w

@jit
def scatter(u1, out, b, row0, count):
    wo = out.shape[2]
    for lane in range(count):
        for j in range(wo):
            out[b, row0 + lane, j] = u1[j, lane]

@jit
def finish(u1, inv, num, scale, order, starts, b, row0, count):
    # The NCC of every output batch k of image b, in place in num: clip((num · inv) ·
    # scale[k]) with inv rounded to num's dtype first and each product rounded (the bits of
    # the NumPy expression in xcorr._ncc, which Dask's blocks compute).
    wo = num.shape[2]
    for lane in range(count):
        for j in range(wo):
            inv[j] = u1[j, lane]  # rounds to num's dtype
        for kk in range(starts[b], starts[b + 1]):
            k = order[kk]
            s = scale[k]
            for j in range(wo):
                r = num[k, row0 + lane, j] * inv[j] * s
                if r > 1.0:
                    r = 1.0
                elif r < -1.0:
                    r = -1.0
                num[k, row0 + lane, j] = r  # NaN passes both tests and stays NaN

@jit
def kernel(x, h, w, tol, oh, ow, nb, ho, wo, out, fused, num, scale, order, starts, first,
           last):
    # Tasks first .. last-1 (a task: one block of h output rows of one image; see
    # tasks()).  x (nb, H, W) centred image(s); out (nb, ho, wo) = (B, H-h+1, W-w+1) in x's
    # dtype; (oh, ow) the phase of the blocks (see the module docstring).  fused: out is not
    # written; instead each output batch order[starts[b]:starts[b + 1]] of num (K, H-h+1,
    # W-w+1) becomes its NCC (see finish), with scale (K,) the template's inverse norm.
    width = x.shape[2]
    first_h = h - oh  # outputs in the first block of rows (a part of one if oh > 0)
    first_w = w - ow
    ngroups = 1 + (max(ho - first_h, 0) + h - 1) // h
    s1 = np.empty((h, width))  # suffix sums of the block's rows
    s2 = np.empty((h, width))
    p1 = np.empty(width)  # prefix sums of the next block's rows
    p2 = np.empty(width)
    # Column sums of LANES output rows, transposed, so that the pass along the rows runs
    # down these columns with one output row per SIMD lane.
    v1 = np.zeros((width, LANES))
    v2 = np.zeros((width, LANES))
    u1 = np.empty((width, LANES))
    u2 = np.empty((width, LANES))
    q1 = np.empty((width, LANES))
    q2 = np.empty((width, LANES))
    inv = np.empty(width, num.dtype)
    for task in range(first, last):
        b = task // ngroups
        k = task - b * ngroups
        i0 = 0 if k == 0 else first_h + (k - 1) * h
        length = first_h if k == 0 else h
        rows = min(length, ho - i0)  # outputs i0 .. i0 + rows - 1
        suffix(x, b, i0, length, s1, s2)
        p1[:] = 0.0
        p2[:] = 0.0
        for i in range(i0 + length, i0 + h):  # the next block's rows in window i0
            add_row(x, b, i, p1, p2)
        for g0 in range(0, rows, LANES):
            count = min(LANES, rows - g0)
            gather(x, b, i0, h, g0, count, s1, s2, p1, p2, v1, v2)
            horizontal(v1, v2, u1, u2, q1, q2, w, first_w, wo)
            normalise(u1, u2, q1, q2, w, first_w, wo, h * w, tol)
            if fused:
                finish(u1, inv, num, scale, order, starts, b, i0 + g0, count)
            else:
                scatter(u1, out, b, i0 + g0, count)


def tasks(nb: int, ho: int, h: int, oh: int) -> int:
    """How many tasks ``kernel`` splits ``nb`` images of ``ho`` output rows into."""
    return nb * (1 + (max(ho - (h - oh), 0) + h - 1) // h)


Job = tuple[Any, tuple[Any, ...], int, int]  # kernel, arguments but (first, last), tasks, size


def job(x: np.ndarray, h: int, w: int, tol: float, phase: tuple[int, int],
        out: np.ndarray) -> Job:
    """``kernel``'s call that fills ``out (B, H-h+1, W-w+1)`` from C-contiguous float ``x
    (B, H, W)``: the kernel, its arguments but the task range, the tasks, the outputs."""
    none = np.zeros(1, np.intp)
    return _job(x, h, w, tol, phase, out, out.shape, False, out, np.ones(1, out.dtype), none,
                none)


def fused_job(x: np.ndarray, h: int, w: int, tol: float, num: np.ndarray, scale: np.ndarray,
              xi: np.ndarray) -> Job:
    """``kernel``'s call that overwrites ``num (K, H-h+1, W-w+1)`` with ``clip(num · inv ·
    scale[k], -1, 1)``, ``inv`` the normaliser of image ``xi[k]`` of C-contiguous ``x (B, H,
    W)`` (``num`` C-contiguous, ``scale (K,)`` of its dtype, ``xi (K,)`` intp)."""
    order = np.argsort(xi, kind="stable").astype(np.intp)
    starts = np.searchsorted(xi[order], np.arange(x.shape[0] + 1)).astype(np.intp)
    shape = (x.shape[0], num.shape[1], num.shape[2])
    out = np.empty((0, 0, 0), num.dtype)  # not written when fused
    return _job(x, h, w, tol, (0, 0), out, shape, True, num, scale, order, starts)


def _job(x: np.ndarray, h: int, w: int, tol: float, phase: tuple[int, int], out: np.ndarray,
         shape: Any, fused: bool, num: np.ndarray, scale: np.ndarray, order: np.ndarray,
         starts: np.ndarray) -> Job:
    nb, ho, wo = shape
    oh, ow = phase[0] % h, phase[1] % w
    args = (x, h, w, tol, oh, ow, nb, ho, wo, out, fused, num, scale, order, starts)
    return kernel, args, tasks(nb, ho, h, oh), nb * ho * wo
