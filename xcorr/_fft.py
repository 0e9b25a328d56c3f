"""The FFT correlations, written once for every framework's ``rfft2``/``irfft2``.

``fft_valid`` transforms the whole image; ``overlap_valid`` cuts it into overlapping tiles
(overlap-save) and transforms all tiles as one batch: small transforms whose cost grows with
log2 of the tile, not of the image, and a kernel spectrum the size of a tile.  Both take the
framework's transforms as callables acting on the last two axes, ``rfft2(a, s)`` and
``irfft2(a, s)`` (``s`` the transform shape; ``rfft2`` zero-pads ``a`` up to it), and
optionally ``mul(a, b)`` for ``a * conj(b)`` (CuPy's writes in place) or
``product(spectrum, k, s)`` for the whole ``spectrum * conj(rfft2(k, s))`` (NumPy's).
``k`` may carry leading dimensions (a kernel per channel, a bank of kernels): they
broadcast against x's leading dimensions by NumPy rules, and the output has shape
``(*broadcast(x.shape[:-2], k.shape[:-2]), Ho, Wo)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._methods import ceil_div, fft_len
from ._validate import broadcast_batch

Transform = Callable[[Any, tuple[int, int]], Any]
Pair = tuple[int, int]


def mul_conj(a: Any, b: Any) -> Any:
    """``a * conj(b)``: the spectrum of a correlation (frameworks that fuse it lazily)."""
    return a * b.conj()


def mul_conj_inplace(xp: Any) -> Callable[[Any, Any], Any]:
    """``a * conj(b)`` for a NumPy-like namespace ``xp``, overwriting the operands.

    For spectra the caller owns (fresh transforms): ``b`` is conjugated in place and the
    product written into whichever operand already has the result's shape (the image's
    spectrum, unless a bank of kernels broadcasts it up), so no temporary is made.
    """
    def mul(a: Any, b: Any) -> Any:
        xp.conjugate(b, out=b)
        shape = (*broadcast_batch(a.shape, b.shape), *a.shape[-2:])
        return xp.multiply(a, b, out=a if a.shape == shape else b if b.shape == shape else None)
    return mul


Product = Callable[[Any, Any, Pair], Any]


def fft_valid(x: Any, k: Any, rfft2: Transform, irfft2: Transform,
              mul: Callable[[Any, Any], Any] = mul_conj, product: Product | None = None) -> Any:
    """Valid correlation ``irfft2(rfft2(x) * conj(rfft2(k)))[:Ho, :Wo]`` over the last two axes.

    A transform of size ``fft_len(H) × fft_len(W)`` suffices (no padding to H+kh-1): the
    circular wrap-around of correlation only reaches outputs at index >= Ho, which are
    cropped.
    """
    h, w = x.shape[-2:]
    kh, kw = k.shape[-2:]
    s = (fft_len(h), fft_len(w))
    spectrum = _product(rfft2(x, s), k, s, rfft2, mul, product)
    return irfft2(spectrum, s)[..., : h - kh + 1, : w - kw + 1]


def _product(xspec: Any, k: Any, s: Pair, rfft2: Transform, mul: Callable[[Any, Any], Any],
             product: Product | None) -> Any:
    return mul(xspec, rfft2(k, s)) if product is None else product(xspec, k, s)


def overlap_valid(x: Any, k: Any, tile: Pair, rfft2: Transform, irfft2: Transform,
                  tiles: Callable[[Any, Pair, Pair, Pair], Any],
                  mul: Callable[[Any, Any], Any] = mul_conj, product: Product | None = None
                  ) -> Any:
    """Valid correlation by overlap-save: FFTs of ``tile``-sized pieces of x, all in one batch.

    A ``bh × bw`` tile at ``(i·sh, j·sw)``, with steps ``sh = bh-kh+1`` and ``sw = bw-kw+1``,
    holds every input the outputs ``[i·sh, (i+1)·sh) × [j·sw, (j+1)·sw)`` need, so its
    circular correlation with k (transform size = tile size) is exact there and wrapped only
    in the last ``kh-1`` rows and ``kw-1`` columns, which are dropped.  ``tiles(x, tile,
    step, count)`` returns the ``count = (nh, nw)`` tiles of x, zero-padded past its end, as
    an array ``(..., nh, nw, bh, bw)`` (a strided view where the framework has one; see
    ``tiles_by_reshape``).  The kernel's spectrum is computed once, broadcast over the tiles.
    The tile comes from ``Cost.overlap_tile``.
    """
    h, w = x.shape[-2:]
    kh, kw = k.shape[-2:]
    y = overlap_tiles(x, k, tile, rfft2, irfft2, tiles, mul, product)
    # (..., nh, nw, sh, sw) -> (..., nh, sh, nw, sw) -> (..., nh·sh, nw·sw): tiles side by side.
    nh, nw, sh, sw = y.shape[-4:]
    y = y.swapaxes(-3, -2).reshape(*y.shape[:-4], nh * sh, nw * sw)
    return y[..., : h - kh + 1, : w - kw + 1]


def overlap_tiles(x: Any, k: Any, tile: Pair, rfft2: Transform, irfft2: Transform,
                  tiles: Callable[[Any, Pair, Pair, Pair], Any],
                  mul: Callable[[Any, Any], Any] = mul_conj, product: Product | None = None
                  ) -> Any:
    """``overlap_valid``'s outputs tile by tile, ``(..., nh, nw, sh, sw)`` (a view of the
    inverse transform; the last row and column of tiles may pass the output's end): for a
    caller that places them itself, without merging them into one array first."""
    h, w = x.shape[-2:]
    kh, kw = k.shape[-2:]
    bh, bw = tile
    sh, sw = bh - kh + 1, bw - kw + 1
    nh, nw = ceil_div(h - kh + 1, sh), ceil_div(w - kw + 1, sw)
    # One kernel spectrum for all tiles: (..., 1, 1, bh, bw//2+1) broadcasts over the
    # (nh, nw) grid.
    k = k.reshape(*k.shape[:-2], 1, 1, kh, kw)
    spectrum = _product(rfft2(tiles(x, tile, (sh, sw), (nh, nw)), tile), k, tile, rfft2, mul,
                        product)
    return irfft2(spectrum, tile)[..., :sh, :sw]


def tiles_by_view(x: Any, tile: Pair, step: Pair, count: Pair,
                  pad: Callable[[Any, tuple[int, int, int, int]], Any],
                  windows: Callable[[Any, Pair], Any]) -> Any:
    """The overlap-save tiles of x as a strided view (no copy beyond the zero padding).

    ``windows(a, (bh, bw))`` is the framework's view of every ``bh × bw`` window of the last
    two axes, ``(..., H-bh+1, W-bw+1, bh, bw)`` (``sliding_window_view``, torch's
    ``unfold``); every ``step``-th is kept.  x is padded only if the last tiles pass its end.
    """
    (bh, bw), (sh, sw), (nh, nw) = tile, step, count
    bottom, right = (nh - 1) * sh + bh - x.shape[-2], (nw - 1) * sw + bw - x.shape[-1]
    if bottom or right:
        x = pad(x, (0, bottom, 0, right))
    return windows(x, tile)[..., ::sh, ::sw, :, :]


def tiles_by_reshape(x: Any, tile: Pair, step: Pair, count: Pair,
                     pad: Callable[[Any, tuple[int, int, int, int]], Any],
                     concat: Callable[[Sequence[Any], int], Any]) -> Any:
    """The overlap-save tiles of x from a reshape and one concatenation per axis.

    For frameworks without strided views (JAX).  Along an axis cut into ``n > 1`` tiles of
    ``b = step + halo`` points, the padded axis of ``(n+1)·step`` points reshaped to
    ``(n+1, step)`` holds each tile's first ``step`` points in row ``i`` and its last
    ``halo`` points at the start of row ``i+1``; ``Cost.overlap_tile`` keeps ``halo <= step``
    so one concatenation suffices.  A single tile (``n == 1``) is the padded axis itself.
    ``pad(a, (top, bottom, left, right))`` is the backend's zero padding.
    """
    (bh, bw), (sh, sw), (nh, nw) = tile, step, count
    if (nh > 1 and bh - sh > sh) or (nw > 1 and bw - sw > sw):
        raise ValueError(f"tile {tile} with step {step}: the halo exceeds the step")
    h, w = x.shape[-2:]
    hp = bh if nh == 1 else (nh + 1) * sh
    wp = bw if nw == 1 else (nw + 1) * sw
    a = pad(x, (0, hp - h, 0, wp - w))
    lead = a.shape[:-2]
    if nw == 1:
        a = a.reshape(*lead, hp, 1, bw)
    else:
        r = a.reshape(*lead, hp, nw + 1, sw)
        a = concat([r[..., :nw, :], r[..., 1:, : bw - sw]], -1)
    if nh == 1:
        a = a.reshape(*lead, 1, bh, nw, bw)
    else:  # the same along the rows, with (nw, bw) trailing
        r = a.reshape(*lead, nh + 1, sh, nw, bw)
        a = concat([r[..., :nh, :, :, :], r[..., 1:, : bh - sh, :, :]], -3)
    return a.swapaxes(-3, -2)
