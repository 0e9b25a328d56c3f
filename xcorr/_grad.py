"""The analytic gradient of cross-correlation, written once over the backends' primitives.

With ``Y = corr2d(X, K)`` (valid) and upstream gradient ``G = dL/dY``::

    dL/dK = corr2d(X, G)                       (summed to K's shape)
    dL/dX = corr2d(pad(G, kh-1, kw-1), flip(K)) (a full correlation with the flipped kernel)
    dL/db = sum(G)

Boundary modes, ``convolve2d``, moved axes and per-image kernels are steps before and after
that valid correlation (``xcorr._corr.setup``); their adjoints are applied here in reverse:
the padding's adjoint folds each border cell's gradient back onto the pixel it copied
(``_boundary.fold_matrix``), broadcasting's sums over the broadcast dimensions, a flip's is a
flip.  NumPy, CuPy and Dask use this (they have no autodiff; ``xcorr.vjp`` is its public
face); JAX and PyTorch use their own autodiff and are tested against it.
"""

from __future__ import annotations

from typing import Any

from ._auto import valid_auto
from ._boundary import fold_matrix
from ._broadcast import unbroadcast

_TAP_DOT_MAX = 64  # kernels up to 8×8: one dot product per tap beats any correlation


def grad_x(be: Any, k: Any, g: Any) -> Any:
    """``dL/dx`` for ``L = sum(g * corr2d(x, k))`` (valid mode), in the broadcast batch shape."""
    kh, kw = k.shape[-2:]
    return valid_auto(be, be.pad(g, (kh - 1, kh - 1, kw - 1, kw - 1)),
                      be.xp.flip(k, axis=(-2, -1)))


def grad_k(be: Any, x: Any, g: Any, kshape: tuple[int, ...] | None = None) -> Any:
    """``dL/dk`` for ``L = sum(g * corr2d(x, k))`` (valid mode), summed to ``kshape``.

    ``kshape`` defaults to a single ``(kh, kw)`` kernel for all of x's batch.  This
    correlation has a huge "kernel" ``g`` and a tiny kh×kw output, a shape the direct loops
    (vectorised along an output row) handle badly: 50 ms at 1024² for a 3×3 kernel, against
    2 ms for nine dot products.  Small kernels therefore take one contraction per tap; larger
    ones one correlation of ``x`` with ``g`` through ``valid_auto`` (the FFT for big images).
    """
    xp = be.xp
    ho, wo = g.shape[-2:]
    kh, kw = x.shape[-2] - ho + 1, x.shape[-1] - wo + 1
    lead = tuple(kshape[:-2]) if kshape is not None else ()
    if kh * kw <= _TAP_DOT_MAX:
        views = [x[..., a:a + ho, b:b + wo] for a in range(kh) for b in range(kw)]
        if not lead and x.ndim == g.ndim:  # one kernel: a full contraction per tap
            taps = [xp.tensordot(v, g, axes=g.ndim) for v in views]
        else:
            taps = [unbroadcast(xp, xp.sum(v * g, axis=(-2, -1)), lead) for v in views]
        return xp.reshape(xp.stack(taps, axis=-1), (*lead, kh, kw))
    return unbroadcast(xp, valid_auto(be, x, g), (*lead, kh, kw))


def unpad(be: Any, d: Any, widths: tuple[int, int, int, int] | None, boundary: str) -> Any:
    """Adjoint of ``be.pad(x, widths, boundary)``: the gradient w.r.t. the unpadded ``x``."""
    if widths is None:
        return d
    top, bottom, left, right = widths
    h, w = d.shape[-2] - top - bottom, d.shape[-1] - left - right
    if boundary == "fill":  # fill cells come from fillvalue, not from x
        return d[..., top:top + h, left:left + w]
    d = _fold(be, d, d.ndim - 2, h, top, bottom, boundary)
    return _fold(be, d, d.ndim - 1, w, left, right, boundary)


def _fold(be: Any, d: Any, axis: int, n: int, before: int, after: int, boundary: str) -> Any:
    """Add the gradient of the border cells along ``axis`` onto the pixels they copied."""
    if not (before or after):
        return d
    xp = be.xp
    inner = _slice(d, axis, before, before + n)
    border = xp.concatenate([_slice(d, axis, 0, before), _slice(d, axis, before + n, None)],
                            axis=axis)
    m = be.from_host(fold_matrix(n, before, after, boundary), d)
    spec = "ip,...pw->...iw" if axis == d.ndim - 2 else "ip,...hp->...hi"
    return inner + xp.einsum(spec, m, border)


def _slice(d: Any, axis: int, start: int, stop: int | None) -> Any:
    index = [slice(None)] * d.ndim
    index[axis] = slice(start, stop)
    return d[tuple(index)]


def corr_vjp(p: Any, g: Any) -> tuple[Any, Any]:
    """``(dL/dx, dL/dk)`` of ``corr2d``/``convolve2d`` for the set-up problem ``p``.

    ``p`` is an ``xcorr._corr.Problem``; ``g`` has the shape of the operation's output.
    The results have the shapes (and the promoted dtype) of the user's ``x`` and ``k``.
    """
    be, xp = p.be, p.be.xp
    g = p.moved(be.astype(g, p.x.dtype))
    dxpad = unbroadcast(xp, grad_x(be, p.k, g), tuple(p.xpad.shape))
    dx = p.restore(unpad(be, dxpad, p.widths, p.boundary))
    dk = grad_k(be, p.xpad, g, tuple(p.k.shape))
    if p.convolve:
        dk = xp.flip(dk, axis=(-2, -1))
    return dx, dk


def sse_value_and_grad(be: Any, x: Any, y: Any, k: Any, b: Any | None
                       ) -> tuple[Any, Any, Any | None]:
    """Loss ``sum((corr2d(x, k) + b - y)**2)`` and its gradients ``(loss, dk, db)``."""
    pred = valid_auto(be, x, k)
    if b is not None:
        pred = pred + b
    r = pred - y
    g = 2 * r
    return (r * r).sum(), grad_k(be, x, g), (g.sum() if b is not None else None)
