"""Compiled NCC window normaliser for the NumPy backend (the ``fast`` extra: Numba).

``job(x, h, w, tol, phase, out)`` is the call that writes, for every valid ``h × w`` window
of ``x (B, H, W)``, ``1 / sqrt(sum((v - mean)²))`` into ``out`` (0 where the window is flat:
``sum((v - mean)²) <= tol · sum(v²)``): the quantity ``xcorr._ncc.inv_norm`` computes from
``xcorr._boxsum``'s window sums.  That NumPy expression makes some twenty passes over float64
arrays the size of the output, each a fresh allocation; this makes one pass over ``x``.
``fused_job`` also finishes the NCC from its numerator in that pass, and centres ``x`` as it
reads it.  ``column_totals`` gives the image's float64 mean its sums (``ncc_mean``).

The window sums are accumulated in float64.  Down the columns, as van Herk and Gil & Werman
compute running maxima: the rows are cut into blocks of the window's height, and a window,
which meets at most two blocks, is a suffix sum of one plus a prefix sum of the next (three
additions per entry).  Along each output row, by ``xcorr._boxsum``'s doubling tree
(``log2(w) + popcount(w)`` vectorised passes over the row, no transposes).  So each window
is summed from its own entries only, as in ``_boxsum`` (an error of ``O((h + log2 w) · eps)``
of the window's own magnitude), NaN/Inf reach only the windows that hold them, and a
constant window sums exactly whenever ``k · v`` is representable.

The row blocks are aligned to multiples of the window's height in the coordinates of a
larger array of which ``x`` is a part: ``phase = (row0 % h, col0 % w)`` for a part whose
first output is ``(row0, col0)`` there (the doubling tree along the rows does not depend on
where a window lies).  Each window is then summed in the same order wherever the array is
cut, so Dask's blocks give the bits of the whole array.

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

# x's entries enter the sums as float64(x - c), c = shift[b] the image's centre subtracted in
# x's dtype: the bits of the centred array xcorr._ncc forms (x - c), without making it.

@jit
def suffix(x, c, b, i0, length, s1, s2):
    # s[r] = sum of rows i0 + r .. i0 + length - 1 of x[b] - c (and of their squares)
    last = x[b, i0 + length - 1]
    e1, e2 = s1[length - 1], s2[length - 1]
    for j in range(last.shape[0]):
        a = np.float64(last[j] - c)
        e1[j] = a
        e2[j] = a * a
    for r in range(length - 2, -1, -1):
        suffix_row(x[b, i0 + r], c, s1[r], s2[r], s1[r + 1], s2[r + 1])

# suffix_row and add_row_sums are functions of their own, given their rows as views: the
# same loops written inside suffix's and kernel's loops over the rows compiled to code that
# took 1.5x as long (0.70 against 1.07 µs per 1024-wide row here).

@jit
def suffix_row(row, c, d1, d2, n1, n2):
    # d = (row - c) + n and (row - c)² + n2: the suffix n below it gains the row
    for j in range(row.shape[0]):
        a = np.float64(row[j] - c)
        d1[j] = a + n1[j]
        d2[j] = a * a + n2[j]

@jit
def add_row(x, c, b, i, p1, p2):
    row = x[b, i]
    for j in range(row.shape[0]):
        a = np.float64(row[j] - c)
        p1[j] += a
        p2[j] += a * a

@jit
def add_row_sums(row, c, p1, p2, s1, s2, c1, c2):
    # add_row, then column_sums, in one pass: the prefix p gains the window's last row, and
    # the output row's column sums are c = s + p (s: the block's suffix at that row)
    for j in range(row.shape[0]):
        a = np.float64(row[j] - c)
        q1 = p1[j] + a
        q2 = p2[j] + a * a
        p1[j] = q1
        p2[j] = q2
        c1[j] = s1[j] + q1
        c2[j] = s2[j] + q2

# The loops below index views (``a = src[m:m + size]``), never ``src[j + m]`` with a run-time
# offset: LLVM vectorises the former and not the latter (4.3 against 0.9 ms for 1024² of
# additions here).

@jit
def column_sums(s1, s2, r, p1, p2, c1, c2):
    # c = the column sums of output row r of the block: the block's suffix plus the prefix
    # p of the next block's rows
    a1, a2 = s1[r], s2[r]
    for j in range(c1.shape[0]):
        c1[j] = a1[j] + p1[j]
        c2[j] = a2[j] + p2[j]

@jit
def pair_sums(dst, src, m, size):
    # dst[j] = src[j] + src[j + m] for j < size
    a, b, d = src[:size], src[m:m + size], dst[:size]
    for j in range(size):
        d[j] = a[j] + b[j]

@jit
def accumulate(acc, src, off, wo, started):
    # acc[j] (+)= src[off + j] for j < wo
    a, t = acc[:wo], src[off:off + wo]
    if started:
        for j in range(wo):
            a[j] = a[j] + t[j]
    else:
        for j in range(wo):
            a[j] = t[j]

@jit
def row_sums(c, w, wo, acc, buf_a, buf_b):
    # acc[:wo] = the sums of w consecutive entries of c, by xcorr._boxsum's doubling tree:
    # p_1 = c, p_2m[j] = p_m[j] + p_m[j + m], acc adds the p_m of w's binary digits
    src = c
    size, m, off, started, level = c.shape[0], 1, 0, False, 0
    while True:
        if w & m:
            accumulate(acc, src, off, wo, started)
            started = True
            off += m
        if 2 * m > w:
            return
        size -= m
        dst = buf_a if level % 2 == 0 else buf_b
        pair_sums(dst, src, m, size)
        src = dst
        level += 1
        m *= 2

# The normaliser 1 / sqrt(var) of a window, var = t2 - t1·(t1/n) from its sums: 0 where the
# window is flat (var <= tol · t2, which also catches NaN).  Where the result is float32, the
# root and the division are taken in float32 (1.25 ulp of it, against 0.5 for the float64
# route rounded), twice as wide and at a fraction of the latency, save for the windows whose
# variance lies outside float32's comfortable range, taken again in float64 (window by
# window, so a window's bits do not depend on its row's other windows: Dask's blocks).  A
# float64 division and square root per window cost more than the window sums' additions:
# 1024² with 64², the whole pass took 4.4 ms on one thread with them and 3.5 without.  ``n``
# enters as its reciprocal, a multiplication instead of a division.  The unfused and fused
# calls share this code, so they give the same bits.
_F32_LO, _F32_HI = 2.0**-120, 2.0**120  # variances whose float32 root has room to spare

@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def variance(s1, s2, inv_n, tol):
    # the centred sum of squares of a window from its sums, 0 where flat (it is then > 0
    # exactly where the window is not flat: tol · s2 >= 0)
    v = s2 - s1 * (s1 * inv_n)
    return v if v > tol * s2 else 0.0

@jit
def variances(t1, t2, inv_n, tol, wo, var):
    for j in range(wo):
        var[j] = variance(t1[j], t2[j], inv_n, tol)

@jit
def roots32(t1, t2, inv_n, tol, wo, var, inv):
    # variances() and their float32 roots in one loop; returns how many variances lie
    # outside [_F32_LO, _F32_HI]
    outside = 0
    for j in range(wo):
        v = variance(t1[j], t2[j], inv_n, tol)
        var[j] = v
        outside += 1 if v > 0 and (v < _F32_LO or v > _F32_HI) else 0
        r = np.float32(1.0) / np.sqrt(np.float32(v))
        inv[j] = r if v > 0 else np.float32(0.0)
    return outside

@jit
def roots64(var, wo, inv, outside_only):
    # inv[j] = 1 / sqrt(var[j]) in float64, rounded to inv's dtype (0 where var is 0); with
    # outside_only, only for the variances outside [_F32_LO, _F32_HI]
    for j in range(wo):
        v = var[j]
        if outside_only and _F32_LO <= v <= _F32_HI:
            continue
        r = 1.0 / np.sqrt(v)
        inv[j] = r if v > 0 else 0.0

@jit
def normalise(t1, t2, inv_n, tol, wo, var, inv):
    # inv[:wo] = the normalisers of the windows from their sums t1, t2 (in inv's dtype)
    if inv.itemsize == 4:
        if roots32(t1, t2, inv_n, tol, wo, var, inv) > 0:
            roots64(var, wo, inv, True)
    else:
        variances(t1, t2, inv_n, tol, wo, var)
        roots64(var, wo, inv, False)

@jit
def finish(inv, num, scale, order, starts, b, row, wo):
    # The NCC of every output batch k of image b, in place in num's row: clip((num · inv) ·
    # scale[k]) with each product rounded (the bits of the NumPy expression in xcorr._ncc,
    # which Dask's blocks compute from the unfused normaliser).
    for kk in range(starts[b], starts[b + 1]):
        k = order[kk]
        s = scale[k]
        v = num[k, row]
        for j in range(wo):
            r = v[j] * inv[j] * s
            if r > 1.0:
                r = 1.0
            elif r < -1.0:
                r = -1.0
            v[j] = r  # NaN passes both tests and stays NaN

@jit
def kernel(x, shift, h, w, tol, oh, nb, ho, wo, out, fused, num, scale, order, starts, first,
           last):
    # Tasks first .. last-1 (a task: one block of h output rows of one image; see
    # tasks()).  x (nb, H, W) image(s), shift (nb,) their centres in x's dtype; out (nb,
    # ho, wo) = (B, H-h+1, W-w+1) in x's dtype; oh the phase of the blocks of rows (see the
    # module docstring).  fused: out is not written; instead each output batch
    # order[starts[b]:starts[b + 1]] of num (K, H-h+1, W-w+1) becomes its NCC (see finish),
    # with scale (K,) the template's inverse norm.
    width = x.shape[2]
    first_h = h - oh  # outputs in the first block of rows (a part of one if oh > 0)
    ngroups = 1 + (max(ho - first_h, 0) + h - 1) // h
    s1 = np.empty((h, width))  # suffix sums of the block's rows
    s2 = np.empty((h, width))
    p1 = np.empty(width)  # prefix sums of the next block's rows
    p2 = np.empty(width)
    c1 = np.empty(width)  # column sums of one output row
    c2 = np.empty(width)
    t1 = np.empty(width)  # window sums of one output row
    t2 = np.empty(width)
    buf = np.empty((4, width))  # the doubling tree's levels
    var = np.empty(width)
    inv = np.empty(width, num.dtype)
    inv_n = 1.0 / (h * w)
    for task in range(first, last):
        b = task // ngroups
        k = task - b * ngroups
        i0 = 0 if k == 0 else first_h + (k - 1) * h
        length = first_h if k == 0 else h
        rows = min(length, ho - i0)  # outputs i0 .. i0 + rows - 1
        c = shift[b]
        suffix(x, c, b, i0, length, s1, s2)
        p1[:] = 0.0
        p2[:] = 0.0
        for i in range(i0 + length, i0 + h):  # the next block's rows in window i0
            add_row(x, c, b, i, p1, p2)
        for r in range(rows):
            if r > 0:  # the prefix gains the window's last row
                add_row_sums(x[b, i0 + r + h - 1], c, p1, p2, s1[r], s2[r], c1, c2)
            else:
                column_sums(s1, s2, r, p1, p2, c1, c2)
            row_sums(c1, w, wo, t1, buf[0], buf[1])
            row_sums(c2, w, wo, t2, buf[2], buf[3])
            if fused:
                normalise(t1, t2, inv_n, tol, wo, var, inv)
                finish(inv, num, scale, order, starts, b, i0 + r, wo)
            else:
                normalise(t1, t2, inv_n, tol, wo, var, out[b, i0 + r])


@jit
def column_totals(x, rows, out, first, last):
    # out[t] = the float64 column sums of task t's rows of x (B, H, W): rows t % nblk · rows
    # onwards (at most ``rows`` of them) of image t // nblk, nblk = ceil(H / rows).
    # Whole rows at a time, so that the additions are vectorised (a running scalar sum is a
    # chain of dependent additions, four times slower than NumPy's pairwise one)
    height = x.shape[1]
    nblk = (height + rows - 1) // rows
    for t in range(first, last):
        b = t // nblk
        i0 = (t - b * nblk) * rows
        acc = out[t]
        acc[:] = 0.0
        for i in range(i0, min(i0 + rows, height)):
            row = x[b, i]
            for j in range(row.shape[0]):
                acc[j] += np.float64(row[j])


def tasks(nb: int, ho: int, h: int, oh: int) -> int:
    """How many tasks ``kernel`` splits ``nb`` images of ``ho`` output rows into."""
    return nb * (1 + (max(ho - (h - oh), 0) + h - 1) // h)


Job = tuple[Any, tuple[Any, ...], int, int]  # kernel, arguments but (first, last), tasks, size


def job(x: np.ndarray, h: int, w: int, tol: float, phase: tuple[int, int],
        out: np.ndarray) -> Job:
    """``kernel``'s call that fills ``out (B, H-h+1, W-w+1)`` from C-contiguous float ``x
    (B, H, W)``: the kernel, its arguments but the task range, the tasks, the outputs."""
    none = np.zeros(1, np.intp)
    return _job(x, np.zeros(x.shape[0], x.dtype), h, w, tol, phase, out, out.shape, False, out,
                np.ones(1, out.dtype), none, none)


def fused_job(x: np.ndarray, shift: np.ndarray, h: int, w: int, tol: float, num: np.ndarray,
              scale: np.ndarray, xi: np.ndarray) -> Job:
    """``kernel``'s call that overwrites ``num (K, H-h+1, W-w+1)`` with ``clip(num · inv ·
    scale[k], -1, 1)``, ``inv`` the normaliser of image ``xi[k]`` of C-contiguous ``x (B, H,
    W)`` less its centre ``shift[xi[k]]`` (``shift (B,)`` of x's dtype, ``num``'s rows
    contiguous, ``scale (K,)`` of its dtype, ``xi (K,)`` intp)."""
    order = np.argsort(xi, kind="stable").astype(np.intp)
    starts = np.searchsorted(xi[order], np.arange(x.shape[0] + 1)).astype(np.intp)
    shape = (x.shape[0], num.shape[1], num.shape[2])
    out = np.empty((0, 0, 0), num.dtype)  # not written when fused
    return _job(x, shift, h, w, tol, (0, 0), out, shape, True, num, scale, order, starts)


def _job(x: np.ndarray, shift: np.ndarray, h: int, w: int, tol: float, phase: tuple[int, int],
         out: np.ndarray, shape: Any, fused: bool, num: np.ndarray, scale: np.ndarray,
         order: np.ndarray, starts: np.ndarray) -> Job:
    nb, ho, wo = shape
    oh = phase[0] % h
    args = (x, shift, h, w, tol, oh, nb, ho, wo, out, fused, num, scale, order, starts)
    return kernel, args, tasks(nb, ho, h, oh), nb * ho * wo
