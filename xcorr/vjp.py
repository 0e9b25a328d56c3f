"""Analytic vector-Jacobian products for backends without autodiff (NumPy, CuPy, Dask).

``dx, dk = xcorr.vjp.corr2d(x, k, g, ...)`` is the gradient of ``sum(g * corr2d(x, k, ...))``
with respect to ``x`` and ``k``, for every mode, boundary, axes and kernel broadcast that
``corr2d`` accepts — what a framework's autodiff would give, for arrays of any backend.  JAX
and PyTorch users can simply differentiate ``xcorr.corr2d`` itself; these functions give the
same numbers there too (the test suite checks it), and central differences check them in
float64.  The cotangent ``g`` takes part in choosing the backend as the other arrays do, and
integer data with a float ``g`` give float gradients (an integer ``g``: exact integers).
"""

from __future__ import annotations

from typing import Any

from . import _conv, _corr, _dispatch, _grad, _pool
from ._api import join, prepare

__all__ = ["conv2d", "convolve2d", "corr2d", "pool2d"]


def corr2d(x: Any, k: Any, g: Any, *, mode: str = "valid", boundary: str = "fill",
           fillvalue: Any = 0, axes: tuple[int, int] = (-2, -1),
           backend: str | None = None) -> tuple[Any, Any]:
    """Gradients ``(dL/dx, dL/dk)`` of ``L = sum(g * xcorr.corr2d(x, k, ...))``.

    Parameters
    ----------
    x, k, mode, boundary, fillvalue, axes, backend
        As for :func:`xcorr.corr2d`.
    g : array_like
        The upstream gradient ``dL/dout``, shaped like ``corr2d``'s output.

    Returns
    -------
    (dx, dk) : arrays of the backend
        Shaped like ``x`` and ``k``, in the promoted dtype.  ``fill`` cells come from
        ``fillvalue``, not from ``x``: they add nothing to ``dx``; the copying boundaries add
        each border cell's gradient to the pixel it copied.

    Raises
    ------
    ValueError, TypeError
        As ``corr2d``; and a ``g`` whose shape is not the output's.

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> x = np.arange(12.0).reshape(3, 4)
    >>> dx, dk = xcorr.vjp.corr2d(x, [[1.0, -1.0]], np.ones((3, 3)))
    >>> dk.tolist()
    [[45.0, 54.0]]
    >>> dx.tolist()[0]
    [1.0, 0.0, 0.0, -1.0]
    """
    return _vjp(x, k, g, mode, boundary, fillvalue, axes, backend, False)


def convolve2d(x: Any, k: Any, g: Any, *, mode: str = "valid", boundary: str = "fill",
               fillvalue: Any = 0, axes: tuple[int, int] = (-2, -1),
               backend: str | None = None) -> tuple[Any, Any]:
    """Gradients ``(dL/dx, dL/dk)`` of ``L = sum(g * xcorr.convolve2d(x, k, ...))``.

    Parameters
    ----------
    x, k, mode, boundary, fillvalue, axes, backend
        As for :func:`xcorr.convolve2d`.
    g : array_like
        The upstream gradient ``dL/dout``, shaped like ``convolve2d``'s output.

    Returns
    -------
    (dx, dk) : arrays of the backend
        Shaped like ``x`` and ``k``, in the promoted dtype; ``dk`` is the gradient with
        respect to the kernel as given (not flipped).

    Raises
    ------
    ValueError, TypeError
        As ``convolve2d``; and a ``g`` whose shape is not the output's.

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> dx, dk = xcorr.vjp.convolve2d(np.arange(12.0).reshape(3, 4), [[1.0, -1.0]],
    ...                               np.ones((3, 3)))
    >>> dk.tolist()
    [[54.0, 45.0]]
    """
    return _vjp(x, k, g, mode, boundary, fillvalue, axes, backend, True)


def _vjp(x: Any, k: Any, g: Any, mode: str, boundary: str, fillvalue: Any, axes: Any,
         backend: str | None, convolve: bool) -> tuple[Any, Any]:
    be = _dispatch.resolve_all((x, k, g), backend, ("x", "k", "g"))
    p = _corr.setup(x, k, mode, boundary, fillvalue, axes, "auto", be.NAME, convolve)
    g = join(be, prepare(be, g, "g"), p.k)
    if _floats_for(p.integer, be, g):
        p = _corr.setup(_like(be, x, "x", g), _like(be, k, "k", g), mode, boundary, fillvalue,
                        axes, "auto", be.NAME, convolve)
    want = p.output_shape()
    if tuple(g.shape) != want:
        raise ValueError(f"g has shape {tuple(g.shape)}, but the output of this correlation "
                         f"has shape {want}; pass the gradient of the loss w.r.t. that output")
    return _grad.corr_vjp(p, g)


def conv2d(x: Any, w: Any, g: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1, padding_mode: str = "zeros",
           backend: str | None = None) -> tuple[Any, Any, Any | None]:
    """Gradients ``(dL/dx, dL/dw, dL/dbias)`` of ``L = sum(g * xcorr.conv2d(x, w, bias, ...))``.

    Parameters
    ----------
    x, w, bias, stride, padding, dilation, groups, padding_mode, backend
        As for :func:`xcorr.conv2d`.
    g : array_like
        The upstream gradient, shaped like ``conv2d``'s output.

    Returns
    -------
    (dx, dw, dbias) : arrays of the backend
        Shaped like ``x``, ``w`` and ``bias``; ``dbias`` is None when ``bias`` is None.

    Raises
    ------
    ValueError, TypeError
        As ``conv2d``; and a ``g`` whose shape is not the output's.

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> dx, dw, db = xcorr.vjp.conv2d(x, np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)),
    ...                               bias=np.zeros(1))
    >>> dw.tolist(), db.tolist()
    ([[[[45.0, 54.0], [81.0, 90.0]]]], [9.0])
    """
    be = _dispatch.resolve_all((x, w, bias, g), backend, ("x", "w", "bias", "g"))
    p = _conv.setup(x, w, bias, stride, padding, dilation, groups, padding_mode, "direct",
                    be.NAME)
    g = join(be, prepare(be, g, "g"), p.x)
    if _floats_for(p.integer, be, g):
        p = _conv.setup(_like(be, x, "x", g), _like(be, w, "w", g),
                        None if bias is None else _like(be, bias, "bias", g), stride, padding,
                        dilation, groups, padding_mode, "direct", be.NAME)
    want = (*((p.x.shape[0],) if not p.unbatched else ()), p.w.shape[0], *p.geo.out)
    if tuple(g.shape) != want:
        raise ValueError(f"g has shape {tuple(g.shape)}, but conv2d's output has shape "
                         f"{want}; pass the gradient of the loss w.r.t. that output")
    return _grad.conv_vjp(p, g)


def pool2d(x: Any, g: Any, kernel_size: Any, *, stride: Any = None, padding: Any = 0,
           mode: str = "max", backend: str | None = None) -> Any:
    """Gradient ``dL/dx`` of ``L = sum(g * xcorr.pool2d(x, kernel_size, ...))``.

    Max pooling routes each window's gradient to one maximum (the first in row-major order,
    as ``F.max_pool2d`` on tie-free input); average pooling spreads it over the window.

    Parameters
    ----------
    x, kernel_size, stride, padding, mode, backend
        As for :func:`xcorr.pool2d`.
    g : array_like
        The upstream gradient, shaped like ``pool2d``'s output.

    Returns
    -------
    array of the backend
        ``dL/dx``, shaped like ``x``.  Windows that overlap (stride smaller than the window)
        add their contributions.

    Raises
    ------
    ValueError, TypeError
        As ``pool2d``; and a ``g`` whose shape is not the output's.

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> x = np.array([[1.0, 3.0], [2.0, 0.0]])
    >>> xcorr.vjp.pool2d(x, np.ones((1, 1)), 2).tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    """
    be = _dispatch.resolve_all((x, g), backend, ("x", "g"))
    p = _pool.setup(x, kernel_size, stride, padding, mode, be.NAME)
    g = join(be, prepare(be, g, "g"), p.x)  # (integer data stay integers: see pool_vjp)
    want = (*p.x.shape[:-2], *p.win.out)
    if tuple(g.shape) != want:
        raise ValueError(f"g has shape {tuple(g.shape)}, but pool2d's output has shape "
                         f"{want}; pass the gradient of the loss w.r.t. that output")
    return _grad.pool_vjp(p, g, mode)


def _floats_for(integer: bool, be: Any, g: Any) -> bool:
    """Whether a float cotangent meets integer data: the gradients are then float (cast to
    the data's integers, ``g = 0.5`` gave all zeros)."""
    return integer and be.kind(g) == "f"


def _like(be: Any, a: Any, name: str, g: Any) -> Any:
    """The user's integer array ``a`` in the float cotangent's dtype."""
    return be.astype(prepare(be, a, name), g.dtype)
