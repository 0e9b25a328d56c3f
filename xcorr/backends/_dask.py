"""Dask backend: lazy, chunked correlation for images larger than memory or than one machine.

Every call only builds a graph; Dask (a local scheduler or a ``dask.distributed`` cluster) runs
it.  A valid correlation needs, for each output block, its input block plus the next
``kh - 1`` rows and ``kw - 1`` columns, so the input is overlapped on the *trailing* side only
(``map_overlap`` with ``depth=(0, kh - 1)``, ``boundary="none"``, no trimming) and each block
is handed to the chunk type's own backend: the NumPy backend's kernel for NumPy chunks, the
CuPy backend's for CuPy chunks (``meta=`` keeps the chunk type in the result).  ``same`` and
``full`` arrive here already zero-padded by ``xcorr._api`` (through ``pad``).

Method choice and non-finite values.  Looking at the values of a lazy array means computing
it, so ``all_finite`` answers None, as for a traced JAX value.  ``method="auto"`` then goes
direct when the cost model says so for the whole shape, and otherwise reaches ``guarded_fft``,
which defers the choice to each block: the block runs the chunk backend's
own ``auto`` (its cost model on the block's shape, FFT only if the block *with its halo* is
finite).  That keeps a NaN local: an output depends on a NaN only if its window covers it, and
such an output lives in a block whose extended input holds the NaN, so that block goes direct;
blocks whose extended input is finite cannot be reached by it whatever their method.  An
explicit ``method="fft"`` cannot warn in advance (that too would compute ``x``): it runs the
FFT in every block, a NaN spreads over the blocks whose extended input holds it, and the
``RuntimeWarning`` comes from the blocks that hold one, when they are computed.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from typing import Any

import dask
import dask.array as da
import numpy as np

from .. import _dispatch, _grad
from .._auto import valid_auto, warn_fft_nonfinite
from .._boundary import index_map
from .._interop import to_numpy
from .._methods import SPECTRAL, Cost
from .._validate import broadcast_batch, numpy_kind, numpy_result_dtype

NAME = "dask"
xp = da  # the array namespace the operations are written against
METHODS = ("direct", "fft", "overlap")


def version() -> str:
    return dask.__version__


def devices() -> list[str]:
    """Where graphs run: the default ``distributed`` client if one is active, else local."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            client = distributed.default_client()
        except ValueError:  # no client: dask uses its local scheduler
            pass
        else:
            n = len(client.nthreads())
            return [f"distributed scheduler {client.scheduler.address} ({n} workers)"]
    return ["cpu (local scheduler)"]


def unavailable_reason() -> str | None:
    return None


def costs() -> dict[int, Cost]:
    """The NumPy backend's constants: every block of NumPy chunks runs that backend's kernel.

    ``auto`` uses them once on the whole shape (direct, or defer to the blocks) and each block
    then applies its own chunk backend's model to its own shape; see the module docstring.
    """
    return _chunk_module("numpy").costs()


def asarray(obj: Any) -> da.Array:
    """A Dask array: Dask arrays as they are, host arrays and lists wrapped (not copied).

    NumPy input is split with ``chunks="auto"`` (Dask's ``array.chunk-size`` setting, 128 MiB
    by default); CuPy input keeps its CuPy chunks.  Device arrays of other frameworks raise
    ``TypeError`` as in every backend: nothing is copied from a device behind the caller's back.
    """
    kind = _dispatch.array_backend(obj)
    if kind == "dask":
        arr = obj
    elif kind == "cupy":  # stays on its GPU: the blocks are CuPy arrays
        arr = da.from_array(obj, chunks="auto", asarray=False)
    else:
        arr = da.from_array(to_numpy(obj, NAME), chunks="auto")
    if any(math.isnan(n) for n in arr.shape):
        raise ValueError(f"the Dask array has unknown chunk sizes (shape {arr.shape}); call "
                         "x.compute_chunk_sizes() first")
    # byte-swapped data read into native order, block by block, as the NumPy backend does
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def kind(arr: da.Array) -> str:
    return numpy_kind(arr.dtype)


def promote(x: da.Array, k: da.Array) -> tuple[da.Array, da.Array]:
    """Common dtype as NumPy (and CuPy) chunks promote: floats by ``result_type``, ints to int64."""
    dt = numpy_result_dtype(x.dtype, k.dtype)
    x, k = _int64_checked(x, "x", dt), _int64_checked(k, "k", dt)
    return x.astype(dt), k.astype(dt)  # lazy; a no-op when the dtype is already right


def _int64_checked(a: da.Array, name: str, dt: Any) -> da.Array:
    """uint64 blocks bound for int64 checked when they are computed (their values are not
    known before): values above 2**63 - 1 raise the OverflowError eager data raise at the
    call (``_validate.check_int64_range``), instead of wrapping."""
    if a.dtype != np.uint64 or dt != np.int64:
        return a
    return a.map_blocks(_check_int64_block, what=name, dtype=a.dtype, meta=a._meta)


def _check_int64_block(block: Any, what: str) -> Any:
    from .._validate import check_int64_range

    check_int64_range(block, what)
    return block


def pad(x: da.Array, widths: tuple[int, int, int, int], boundary: str = "fill",
        value: Any = 0) -> da.Array:
    """Pad the last two axes under ``boundary``, lazily.

    ``da.pad`` fails for copying modes wider than the array, so those gather their border
    rows/columns through ``xcorr._boundary.index_map`` (what ``numpy.pad`` does) and
    concatenate them around ``x``: the interior keeps its chunks, so a border across a chunk
    edge (``wrap`` reaches the far edge: dask-image#242) is read from wherever it lives.  The
    thin blocks this adds are merged into their neighbours by ``corr2d_valid``.
    """
    top, bottom, left, right = widths
    if boundary == "fill":
        spec = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
        return da.pad(x, spec, mode="constant", constant_values=value)
    for axis, before, after in ((x.ndim - 2, top, bottom), (x.ndim - 1, left, right)):
        n = x.shape[axis]
        idx = index_map(n, before, after, boundary)
        parts = [da.take(x, idx[:before], axis=axis)] if before else []
        parts.append(x)
        if after:
            parts.append(da.take(x, idx[before + n:], axis=axis))
        x = da.concatenate(parts, axis=axis) if len(parts) > 1 else x
    return x


def astype(a: da.Array, dtype: Any) -> da.Array:
    return a.astype(dtype)


def from_host(a: Any, like: da.Array) -> Any:
    """Host data for use beside ``like`` (a small NumPy array: Dask embeds it in the graph)."""
    return np.asarray(a, dtype=like.dtype)


def all_finite(x: da.Array, k: da.Array) -> None:
    """Unknown without computing the whole graph: each block checks its own values instead."""
    return None


def whole_planes(a: da.Array) -> da.Array:
    """``a`` with its last two axes in one chunk each (the leading ones as they are): a
    template's sums then add in NumPy's order, whatever its chunks (``match_template``)."""
    return a.rechunk({a.ndim - 2: -1, a.ndim - 1: -1})


def rfft2(a: da.Array, s: tuple[int, int]) -> da.Array:
    """``da.fft.rfft2`` needs the transformed axes in one chunk each: merge them first."""
    return da.fft.rfft2(whole_planes(a), s=s, axes=(-2, -1))


def irfft2(a: da.Array, s: tuple[int, int]) -> da.Array:
    return da.fft.irfft2(whole_planes(a), s=s, axes=(-2, -1))


def corr2d_valid(x: da.Array, k: da.Array, method: str) -> da.Array:
    """Lazy valid correlation of promoted ``x`` (..., H, W) with ``k`` (kh, kw), block by block."""
    return _map_blocks(x, k, method)


def guarded_fft(x: da.Array, k: da.Array, method: str = "fft") -> da.Array:
    """``auto`` decided per block: FFT only where the block's cost model and values allow it."""
    return _map_blocks(x, k, "auto")


def sse_value_and_grad(x: Any, y: Any, k: Any, b: Any | None, geometry: Any = None
                       ) -> tuple[Any, Any, Any | None]:
    """Loss ``sum((corr2d(x, k) + b - y)**2)`` and ``(dk, db)``, computed in one pass.

    With a conv2d ``geometry`` (see ``xcorr._grad.model``) each chunk of whole images runs
    the chunk backend's own analytic gradient and Dask sums the partial results.

    ``dL/dk = corr2d(x, g)`` with ``g = 2 (pred + b - y)`` is a sum over output blocks: block
    ``g_ij`` only meets the input block ``x_ij`` extended by the same trailing halo as the
    forward pass, so each block contributes ``_grad.grad_k(chunk_backend, x_ij, g_ij)``, the
    same analytic gradient the NumPy and CuPy backends use, and Dask sums the (kh, kw)
    partials.  The three results are small, so they are returned computed (NumPy or CuPy
    values, not Dask arrays): a training step is one pass over the data and the trainer's
    kernel never drags a growing graph along.
    """
    x, y, k = asarray(x), asarray(y), asarray(k)
    x, k = promote(x, k)
    if geometry is not None:
        return _conv_sse(x, y, k, b, geometry)
    kh, kw = k.shape
    x = _rechunk_for(x, kh, kw)
    pred = _map_blocks(x, k, "auto")
    if b is not None:
        pred = pred + b
    r = (pred - y).rechunk(pred.chunks)  # g's blocks must line up with x's
    g = 2 * r
    xo = da.overlap.overlap(x, depth=_depth(x.ndim, kh, kw), boundary="none")
    chunk = _chunk_name(x)
    parts = [dask.delayed(_block_grad_k)(xb, gb, chunk)
             for xb, gb in zip(xo.to_delayed().ravel(), g.to_delayed().ravel(), strict=True)]
    dk = da.stack([da.from_delayed(p, (kh, kw), dtype=x.dtype, meta=x._meta)
                   for p in parts]).sum(axis=0)
    db = g.sum() if b is not None else None
    return dask.compute(((r * r).sum(), dk, db))[0]


def _conv_sse(x: da.Array, y: da.Array, k: da.Array, b: Any | None, geometry: Any
              ) -> tuple[Any, Any, Any | None]:
    x = x.rechunk({1: -1, 2: -1, 3: -1})  # whole images per block: a sum over them is exact
    y = y.rechunk((x.chunks[0], -1, -1, -1))
    chunk = _chunk_name(x)
    parts = [dask.delayed(_block_sse)(xb, yb, k, b, geometry, chunk)
             for xb, yb in zip(x.to_delayed().ravel(), y.to_delayed().ravel(), strict=True)]
    return dask.compute(dask.delayed(_sum_parts)(parts))[0]


def _block_sse(xb: Any, yb: Any, k: Any, b: Any | None, geometry: Any, chunk: str) -> Any:
    be = _chunk_module(chunk)
    return be.sse_value_and_grad(xb, yb, be.asarray(k), None if b is None else be.asarray(b),
                                 geometry)


def _sum_parts(parts: list[tuple[Any, Any, Any]]) -> tuple[Any, Any, Any]:
    loss, dk, db = parts[0]
    for part in parts[1:]:
        loss, dk = loss + part[0], dk + part[1]
        db = None if db is None else db + part[2]
    return loss, dk, db


# -- blocks -----------------------------------------------------------------------------------


def _chunk_name(x: da.Array) -> str:
    """Backend of the chunks: 'cupy' for CuPy blocks, else 'numpy'."""
    return "cupy" if _dispatch.array_backend(x._meta) == "cupy" else "numpy"


def _chunk_module(name: str) -> Any:
    return _dispatch.load(name)


def _depth(ndim: int, kh: int, kw: int) -> dict[int, Any]:
    # Valid mode needs the next kh-1 rows / kw-1 columns only: a trailing, asymmetric halo.
    return {ndim - 2: (0, kh - 1), ndim - 1: (0, kw - 1)}


def _rechunk_for(x: da.Array, kh: int, kw: int, stride: tuple[int, int] = (1, 1)
                 ) -> da.Array:
    """Blocks at least (kh, kw) in the image axes, so every halo comes from one neighbour.

    A block of ``c >= kh`` rows supplies the whole ``kh - 1``-row halo of the block above it,
    and the last block, padded by nothing, still yields ``c - kh + 1 >= 1`` output rows.  With
    a stride every block but the last starts on a multiple of it, so each block's outputs are
    those of the whole array.
    """
    *lead, rows, cols = x.chunks
    want = (*lead, _aligned(kh, rows, stride[0]), _aligned(kw, cols, stride[1]))
    return x if want == x.chunks else x.rechunk(want)


def _aligned(size: int, chunks: tuple[int, ...], multiple: int = 1) -> tuple[int, ...]:
    """Chunks of at least ``size`` whose boundaries fall on multiples of ``multiple``.

    Boundaries are rounded down to a multiple and dropped where the chunk before or after
    them would be shorter than ``size``, so a short tail joins the last chunk.  Unlike
    ``dask.array.overlap.ensure_minimum_chunksize`` this leaves no thin last block (``da.pad``
    adds a (kh-1)-row one for mode='full'), which would be a task of its own.  Requires
    ``sum(chunks) >= size``, which validation guarantees.
    """
    total = sum(chunks)
    bounds, edge = [], 0
    for c in chunks[:-1]:
        edge += c
        b = edge - edge % multiple
        if bounds and b == bounds[-1]:
            continue
        bounds.append(b)
    out: list[int] = []
    prev = 0
    for b in bounds:
        if b - prev >= size and total - b >= size:
            out.append(b - prev)
            prev = b
    out.append(total - prev)
    return tuple(out)


def _map_blocks(x: da.Array, k: da.Array, method: str) -> da.Array:
    kh, kw = (int(n) for n in k.shape[-2:])
    lead = broadcast_batch(tuple(x.shape), tuple(k.shape))
    if tuple(x.shape[:-2]) != lead:  # a bank of kernels: the image repeats (lazily, no copy)
        x = da.broadcast_to(x, (*lead, *x.shape[-2:]))
    chunk = _chunk_name(x)
    if chunk == "numpy" and _dispatch.array_backend(k._meta) == "cupy":
        raise TypeError("k has CuPy chunks but x has NumPy chunks; use the same chunk type "
                        "for both (k.map_blocks(cupy.asnumpy) or x.map_blocks(cupy.asarray))")
    x = _rechunk_for(x, kh, kw)
    *lead, rows, cols = x.chunks
    out_chunks = (*lead, (*rows[:-1], rows[-1] - kh + 1), (*cols[:-1], cols[-1] - kw + 1))
    # k goes in as one block of the graph (a keyword collection), so it is sent to each
    # worker once rather than embedded in every task.
    return da.map_overlap(_block_valid, x, depth=_depth(x.ndim, kh, kw), boundary="none",
                          trim=False, chunks=out_chunks, dtype=x.dtype, meta=x._meta,
                          k=k.rechunk(k.shape), method=method, chunk=chunk)


def _block_valid(xb: Any, *, k: Any, method: str, chunk: str,
                 block_info: dict[Any, Any] | None = None) -> Any:
    be = _chunk_module(chunk)
    if k.ndim > 2:  # per-image kernels: this block's slice of them
        k = k[_kernel_slices(k.shape, block_info[0]["array-location"][:-2])]
    k = be.asarray(k)  # NumPy k with CuPy chunks: the small kernel goes to the block's GPU
    if method == "auto":  # this block's own cost model and finiteness check
        return valid_auto(be, xb, k)
    if method in SPECTRAL and be.all_finite(xb, k) is False:  # seen only now, at compute time
        warn_fft_nonfinite(stacklevel=2, method=method)
    return be.corr2d_valid(xb, k, method)


def conv2d_blocked(x: da.Array, w: Any, geo: Any, method: str, integer: bool) -> da.Array:
    """``conv2d`` (no bias) of padded ``x (N, C, Hp, Wp)``, block by block.

    The channels are one chunk (every output needs all of them); each block runs the chunk
    backend's own ``conv2d`` on its rows and columns plus the halo (see ``_windowed``).
    """
    from .. import _conv

    x = x.rechunk({1: -1})
    w = w.rechunk(w.shape) if isinstance(w, da.Array) else w
    return _windowed(_block_conv, x, geo.span, geo.stride, {1: (int(w.shape[0]),)},
                     w=w, geo=geo, method=method, integer=integer, conv=_conv)


def pool2d_blocked(x: da.Array, win: Any, mode: str, fill: Any) -> da.Array:
    """``pool2d`` block by block (see ``_windowed``); the padding is added lazily first."""
    from .. import _pool

    if any(win.padding):
        x = pad(x, win.pads, "fill", fill)
    return _windowed(_block_pool, x, win.kernel, win.stride, {}, win=win, mode=mode,
                     pool=_pool)


def skipping_blocked(xpad: da.Array, k: Any, skipping: Any) -> da.Array:
    """``xcorr.ndimage``'s sum that skips near-zero weights, of padded ``xpad``, block by
    block: ``skipping(chunk_backend, block, k)`` on each block with its halo, so a block
    without NaN or Inf takes the plain correlation, whatever the other blocks hold (deciding
    for the whole array needs its values before the graph is built)."""
    k = k.rechunk(k.shape) if isinstance(k, da.Array) else k
    return _windowed(_block_skipping, xpad, tuple(int(n) for n in k.shape[-2:]), (1, 1), {},
                     k=k, skipping=skipping)


def box_sums(a: da.Array, window: tuple[int, int]) -> da.Array:
    """``xcorr._boxsum.box_sums`` block by block with the window's trailing halo (the same
    bits as the whole array: every window is summed by the same tree wherever it lies)."""
    from .. import _boxsum

    return _windowed(_block_box_sums, a, window, (1, 1), {}, window=window, boxsum=_boxsum)


def ncc_inv_norm(x: da.Array, window: tuple[int, int], tol: float,
                 phase: tuple[int, int] = (0, 0)) -> da.Array:
    """``xcorr._ncc.inv_norm`` block by block with the window's trailing halo, each block by
    its chunk backend; the blocks' phase keeps the whole array's summation order."""
    from .. import _ncc

    return _windowed(_block_inv_norm, x, window, (1, 1), {}, window=window, tol=tol,
                     phase=phase, ncc=_ncc)


def ncc_finish(x: da.Array, c: Any, num: da.Array, inv_t: Any, window: tuple[int, int],
               tol: float) -> da.Array:
    """``xcorr._ncc.finish`` (the same operations, so the same bits) block by block under
    ``np.errstate``: a window holding Inf gives NaN quietly, as on NumPy (as a lazy
    expression, its multiply warned in Dask's worker threads, outside the caller's
    ``errstate``)."""
    from .. import _ncc

    inv = _ncc.inv_norm(sys.modules[__name__], x - c, window, np.dtype(np.float64))
    inv = da.broadcast_to(inv, num.shape).rechunk(num.chunks)
    scale = da.broadcast_to(da.asarray(inv_t), (*num.shape[:-2], 1, 1))
    scale = scale.rechunk((*num.chunks[:-2], (1,), (1,)))
    return da.map_blocks(_block_finish, num, inv, scale, dtype=num.dtype, meta=num._meta)


def _block_finish(num: Any, inv: Any, scale: Any) -> Any:
    with np.errstate(invalid="ignore", over="ignore"):
        return np.clip(num * inv * scale, -1, 1)


def _windowed(fn: Any, x: da.Array, span: tuple[int, int], stride: tuple[int, int],
              lead_chunks: dict[int, tuple[int, ...]], **kw: Any) -> da.Array:
    """Map ``fn`` (a strided, valid, windowed operation) over blocks of ``x``.

    The image axes are chunked on multiples of the stride, each chunk at least the window's
    ``span``, and every block gets a trailing halo of ``span - 1`` rows and columns from its
    neighbours: so a block holds exactly the inputs of its outputs, which are those of the
    whole array (bit for bit).  ``lead_chunks`` gives output chunks of leading axes that
    change size (conv2d's channels).
    """
    x = _rechunk_for(x, span[0], span[1], stride)
    *lead, rows, cols = x.chunks
    for axis, chunks in lead_chunks.items():
        lead[axis] = chunks
    out_rows = tuple(-(-r // stride[0]) for r in rows[:-1]) + (
        (rows[-1] - span[0]) // stride[0] + 1,)
    out_cols = tuple(-(-c // stride[1]) for c in cols[:-1]) + (
        (cols[-1] - span[1]) // stride[1] + 1,)
    nd = x.ndim
    return da.map_overlap(fn, x, depth={nd - 2: (0, span[0] - 1), nd - 1: (0, span[1] - 1)},
                          boundary="none", trim=False, chunks=(*lead, out_rows, out_cols),
                          dtype=x.dtype, meta=x._meta, chunk=_chunk_name(x), **kw)


def _block_out(xb: Any, span: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    return ((xb.shape[-2] - span[0]) // stride[0] + 1, (xb.shape[-1] - span[1]) // stride[1] + 1)


def _block_conv(xb: Any, *, w: Any, geo: Any, method: str, integer: bool, chunk: str,
                conv: Any) -> Any:
    be = _chunk_module(chunk)
    block = replace(geo, pads=(0, 0, 0, 0), out=_block_out(xb, geo.span, geo.stride))
    return conv.forward(be, xb, be.asarray(w), block, method, integer)


def _block_pool(xb: Any, *, win: Any, mode: str, chunk: str, pool: Any) -> Any:
    block = replace(win, padding=(0, 0), out=_block_out(xb, win.kernel, win.stride))
    return pool.taps_pool(_chunk_module(chunk), xb, block, mode)


def _block_skipping(xb: Any, *, k: Any, skipping: Any, chunk: str) -> Any:
    be = _chunk_module(chunk)
    return skipping(be, xb, be.asarray(k))


def _block_box_sums(ab: Any, *, window: tuple[int, int], chunk: str, boxsum: Any) -> Any:
    with np.errstate(invalid="ignore", over="ignore"):  # Inf windows: NaN, quietly
        return boxsum.box_sums(_chunk_module(chunk), ab, window)


def _block_inv_norm(xb: Any, *, window: tuple[int, int], tol: float, phase: tuple[int, int],
                    chunk: str, ncc: Any, block_info: dict[Any, Any] | None = None) -> Any:
    row0, col0 = (start for start, _ in block_info[None]["array-location"][-2:])
    be = _chunk_module(chunk)
    here = (phase[0] + row0, phase[1] + col0)
    fast = getattr(be, "ncc_inv_norm", None)
    with np.errstate(invalid="ignore", over="ignore"):  # Inf windows: flat (0), quietly
        out = fast(xb, window, tol, here) if fast is not None else None
        return out if out is not None else ncc.generic_inv_norm(be, xb, window, tol,
                                                                np.dtype(np.float64))


def _kernel_slices(kshape: tuple[int, ...], location: list[tuple[int, int]]
                   ) -> tuple[slice, ...]:
    """The part of ``k (..., kh, kw)`` that meets a block at ``location`` in x's batch axes."""
    lead = kshape[:-2]
    trailing = location[len(location) - len(lead):]  # k's batch axes align with x's last ones
    return tuple(slice(None) if n == 1 else slice(a, b)
                 for n, (a, b) in zip(lead, trailing, strict=True))


def _block_grad_k(xb: Any, gb: Any, chunk: str) -> Any:
    return _grad.grad_k(_chunk_module(chunk), xb, gb)
