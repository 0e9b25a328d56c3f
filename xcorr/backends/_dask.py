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
from typing import Any

import dask
import dask.array as da
import numpy as np

from .. import _dispatch, _grad
from .._auto import valid_auto, warn_fft_nonfinite
from .._boundary import index_map
from .._interop import to_numpy
from .._methods import Cost
from .._validate import broadcast_batch, numpy_kind, numpy_result_dtype

NAME = "dask"
xp = da  # the array namespace the operations are written against
METHODS = ("direct", "fft")


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
    return arr


def kind(arr: da.Array) -> str:
    return numpy_kind(arr.dtype)


def promote(x: da.Array, k: da.Array) -> tuple[da.Array, da.Array]:
    """Common dtype as NumPy (and CuPy) chunks promote: floats by ``result_type``, ints to int64."""
    dt = numpy_result_dtype(x.dtype, k.dtype)
    return x.astype(dt), k.astype(dt)  # lazy; a no-op when the dtype is already right


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


def corr2d_valid(x: da.Array, k: da.Array, method: str) -> da.Array:
    """Lazy valid correlation of promoted ``x`` (..., H, W) with ``k`` (kh, kw), block by block."""
    return _map_blocks(x, k, method)


def guarded_fft(x: da.Array, k: da.Array, method: str = "fft") -> da.Array:
    """``auto`` decided per block: FFT only where the block's cost model and values allow it."""
    return _map_blocks(x, k, "auto")


def sse_value_and_grad(x: Any, y: Any, k: Any, b: Any | None) -> tuple[Any, Any, Any | None]:
    """Loss ``sum((corr2d(x, k) + b - y)**2)`` and ``(dk, db)``, computed in one pass.

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


# -- blocks -----------------------------------------------------------------------------------


def _chunk_name(x: da.Array) -> str:
    """Backend of the chunks: 'cupy' for CuPy blocks, else 'numpy'."""
    return "cupy" if _dispatch.array_backend(x._meta) == "cupy" else "numpy"


def _chunk_module(name: str) -> Any:
    return _dispatch.load(name)


def _depth(ndim: int, kh: int, kw: int) -> dict[int, Any]:
    # Valid mode needs the next kh-1 rows / kw-1 columns only: a trailing, asymmetric halo.
    return {ndim - 2: (0, kh - 1), ndim - 1: (0, kw - 1)}


def _rechunk_for(x: da.Array, kh: int, kw: int) -> da.Array:
    """Blocks at least (kh, kw) in the image axes, so every halo comes from one neighbour.

    A block of ``c >= kh`` rows supplies the whole ``kh - 1``-row halo of the block above it,
    and the last block, padded by nothing, still yields ``c - kh + 1 >= 1`` output rows.
    """
    *lead, rows, cols = x.chunks
    want = (*lead, _at_least(kh, rows), _at_least(kw, cols))
    return x if want == x.chunks else x.rechunk(want)


def _at_least(size: int, chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Merge runs of chunks shorter than ``size`` forward; a short tail joins the last chunk.

    Unlike ``dask.array.overlap.ensure_minimum_chunksize`` this leaves no thin last block
    (``da.pad`` adds a (kh-1)-row one for mode='full'), which would be a task of its own.
    Requires ``sum(chunks) >= size``, which validation guarantees.
    """
    out: list[int] = []
    run = 0
    for c in chunks:
        run += c
        if run >= size:
            out.append(run)
            run = 0
    if run:
        out[-1] += run
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
    if method == "fft" and be.all_finite(xb, k) is False:  # seen only now, at compute time
        warn_fft_nonfinite(stacklevel=2)
    return be.corr2d_valid(xb, k, method)


def _kernel_slices(kshape: tuple[int, ...], location: list[tuple[int, int]]
                   ) -> tuple[slice, ...]:
    """The part of ``k (..., kh, kw)`` that meets a block at ``location`` in x's batch axes."""
    lead = kshape[:-2]
    trailing = location[len(location) - len(lead):]  # k's batch axes align with x's last ones
    return tuple(slice(None) if n == 1 else slice(a, b)
                 for n, (a, b) in zip(lead, trailing, strict=True))


def _block_grad_k(xb: Any, gb: Any, chunk: str) -> Any:
    return _grad.grad_k(_chunk_module(chunk), xb, gb)
