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


def model(be: Any, x: Any, k: Any, b: Any | None, geometry: Any = None) -> Any:
    """The trainer's model: ``corr2d(x, k) + b`` (valid), or with a conv2d ``geometry`` the
    convolution of the already padded ``x (N, C_in, Hp, Wp)`` by ``k`` plus a bias per output
    channel.  Autodiff backends differentiate this; the others use :func:`sse_value_and_grad`.
    """
    if geometry is None:
        pred = valid_auto(be, x, k)
        return pred if b is None else pred + b
    from ._conv import forward

    pred = forward(be, x, k, geometry, "auto", False)
    return pred if b is None else pred + be.xp.reshape(b, (1, -1, 1, 1))


def sse_value_and_grad(be: Any, x: Any, y: Any, k: Any, b: Any | None, geometry: Any = None
                       ) -> tuple[Any, Any, Any | None]:
    """Loss ``sum((model(x, k, b) - y)**2)`` and its gradients ``(loss, dk, db)``, analytic."""
    r = model(be, x, k, b, geometry) - y
    g = 2 * r
    if geometry is None:
        return (r * r).sum(), grad_k(be, x, g), (g.sum() if b is not None else None)
    from ._conv import stuff

    gs = stuff(be, stuff(be, g, geometry.stride[0], -2), geometry.stride[1], -1)
    db = be.xp.sum(g, axis=(0, 2, 3)) if b is not None else None
    return (r * r).sum(), _conv_dw(be, x, gs, g, k, geometry), db


# -- conv2d and pool2d -------------------------------------------------------------------------


def conv_vjp(p: Any, g: Any) -> tuple[Any, Any, Any | None]:
    """``(dL/dx, dL/dw, dL/dbias)`` of ``conv2d`` for the set-up problem ``p``
    (an ``xcorr._conv.Problem``); ``g`` has the output's shape.

    ``dx`` is the transposed convolution — ``g`` zero-stuffed by the stride, padded by the
    window's span, convolved with the flipped weights whose in/out channels are swapped per
    group — then the padding's adjoint; ``dw`` contracts ``g`` with the same windows of ``x``
    the forward pass read (one GEMM over the im2col matrix, or for one input channel per
    group a correlation of ``x`` with the stuffed ``g``); ``dbias`` sums ``g``.
    """
    from . import _conv

    be, xp, geo = p.be, p.be.xp, p.geo
    g = be.astype(g, p.x.dtype)
    if p.unbatched:
        g = xp.reshape(g, (1, *g.shape))
    n, cin, hp, wp = p.xpad.shape
    cout, cg, kh, kw = p.w.shape
    groups = geo.groups
    og = cout // groups
    sh, sw = geo.stride
    span = geo.span
    gs = _conv.stuff(be, _conv.stuff(be, g, sh, -2), sw, -1)  # (N, C_out, (Ho-1)s+1, ...)
    # dx: a stride-1 convolution of the stuffed, padded g with the adjoint weights.
    wt = xp.reshape(xp.moveaxis(xp.reshape(p.w, (groups, og, cg, kh, kw)), 1, 2),
                    (cin, og, kh, kw))
    wt = xp.flip(wt, axis=(-2, -1))
    full = be.pad(gs, (span[0] - 1, span[0] - 1, span[1] - 1, span[1] - 1), "fill", 0)
    rows, cols = gs.shape[-2] + span[0] - 1, gs.shape[-1] + span[1] - 1
    adj = _conv.Geometry((1, 1), geo.dilation, (0, 0, 0, 0), groups, "fill", (kh, kw),
                         (rows, cols))
    dxpad = _conv.forward(be, full, wt, adj, "auto", p.integer)
    # rows/columns past the last window (when the stride skips them) get no gradient
    dxpad = be.pad(dxpad, (0, hp - rows, 0, wp - cols), "fill", 0)
    dx = unpad(be, dxpad, geo.pads if any(geo.pads) else None, geo.boundary)
    dw = _conv_dw(be, p.xpad, gs, g, p.w, geo)
    db = xp.sum(g, axis=(0, 2, 3)) if p.bias is not None else None
    if p.unbatched:
        dx = dx[0]
    return dx, dw, db


def _conv_dw(be: Any, xpad: Any, gs: Any, g: Any, w: Any, geo: Any) -> Any:
    from . import _conv

    xp = be.xp
    n, cin = xpad.shape[:2]
    cout, cg, kh, kw = w.shape
    groups = geo.groups
    og = cout // groups
    ho, wo = geo.out
    if cg == 1:  # per-image correlations of x with the stuffed g, as corr2d's grad_k
        xs = xp.reshape(xpad, (n, groups, 1, *xpad.shape[-2:]))
        gg = xp.reshape(gs, (n, groups, og, *gs.shape[-2:]))
        span = geo.span
        xs = xs[..., :gs.shape[-2] + span[0] - 1, :gs.shape[-1] + span[1] - 1]
        dk = grad_k(be, xs, gg, (groups, og, *span))
        dk = dk[..., ::geo.dilation[0], ::geo.dilation[1]]
        return xp.reshape(dk, (cout, 1, kh, kw))
    xg = xp.moveaxis(xp.reshape(xpad, (n, groups, cg, *xpad.shape[-2:])), 0, 2)
    taps = _conv._taps(xg, geo)
    q = n * ho * wo
    gq = xp.reshape(xp.moveaxis(xp.reshape(g, (n, groups, og, ho * wo)), 0, 2),
                    (groups, og, q))
    cols = xp.reshape(xp.stack(taps, axis=2), (groups, cg * kh * kw, q))
    # half types summed in float32 and rounded once, as in the forward pass (ml_dtypes'
    # matmul gives float32, and Dask's blocks then failed to add up); g, x and w share a dtype
    dw = _conv._wide(be, _matmul_t, gq, cols)  # (G, Og, Cg·T)
    return xp.reshape(dw, (cout, cg, kh, kw))


def _matmul_t(be: Any, a: Any, b: Any) -> Any:
    """``a @ b.T`` over the last two axes."""
    return be.xp.matmul(a, be.xp.moveaxis(b, -1, -2))


def pool_vjp(p: Any, g: Any, mode: str) -> Any:
    """``dL/dx`` of ``pool2d``: each window's gradient goes to its first maximum in row-major
    order, or to its last NaN where it holds NaN (as ``F.max_pool2d``'s), or spread evenly
    over the window for averages (padding cells take their share and drop it)."""
    from . import _pool
    from ._conv import stuff

    be, xp, win = p.be, p.be.xp, p.win
    if be.kind(p.x) == "f":
        g = be.astype(g, p.x.dtype)
    elif be.kind(g) != "f":  # integers: exact in the backend's widest (int64; JAX without
        g, _ = be.promote(g, g)  # x64 int32), as vjp.conv2d's (x's dtype wrapped: uint8
        # data and g = -1 gave 255)
    # else integer data and a float g: the maxima are found on the exact integers (in g's
    # float dtype, 2**24 and 2**24 + 1 were a tie in float32), the values are g's
    h, w = p.x.shape[-2:]
    hp, wp = h + 2 * win.padding[0], w + 2 * win.padding[1]
    if mode == "avg":
        parts = [g / (win.kernel[0] * win.kernel[1])] * len(win.taps)
    else:
        views = _pool.taps(be, p.x, win, mode)
        best, idx = views[0], be.astype(xp.zeros_like(g), "int32")
        for t, v in enumerate(views[1:], start=1):
            better = (v > best) | xp.isnan(v)  # the last NaN, as F.max_pool2d
            best = xp.where(better, v, best)
            idx = xp.where(better, t, idx)
        zero = xp.zeros_like(g)
        parts = [xp.where(idx == t, g, zero) for t in range(len(win.taps))]
    sh, sw = win.stride
    dxpad = None
    for (a, b), part in zip(win.taps, parts, strict=True):
        placed = stuff(be, stuff(be, part, sh, -2), sw, -1)
        placed = be.pad(placed, (a, hp - a - placed.shape[-2], b, wp - b - placed.shape[-1]),
                        "fill", 0)
        dxpad = placed if dxpad is None else dxpad + placed
    ph, pw = win.padding
    return dxpad[..., ph:ph + h, pw:pw + w]
