"""Boundary rules: their names, the padding each output mode needs, and index maps.

Every boundary except ``"fill"`` extends an axis by *copying* pixels, so it is fully described
by an index map: the padded axis is ``x[index_map(n, before, after, boundary)]``.  The map is
computed once, in NumPy, by padding ``arange(n)`` with :func:`numpy.pad` — so whatever the
backend, a boundary means exactly what ``numpy.pad`` means by it, including padding wider than
the axis (a kernel larger than the image).  Backends whose own pad agrees with ``numpy.pad``
(NumPy, CuPy, JAX) call it; the others gather with the map.  The same map gives the adjoint of
padding (the gradient of each padded cell is added back onto the pixel it copied).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The boundary names ``corr2d``/``convolve2d`` accept, and their ``numpy.pad`` modes.
NUMPY_MODES = {
    "fill": "constant",
    "wrap": "wrap",
    "symm": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
}
BOUNDARIES = tuple(NUMPY_MODES)

_REFLECT = ("boundary='reflect' is ambiguous: scipy.ndimage's 'reflect' repeats the edge pixel "
            "(d c b a | a b c d), which xcorr calls 'symm', while NumPy's and PyTorch's "
            "'reflect' does not (d c b | a b c d), which xcorr calls 'mirror'; choose one of "
            "those")


def check(boundary: Any) -> str:
    """``boundary`` if it is one of :data:`BOUNDARIES`, else a ``ValueError`` saying which."""
    if isinstance(boundary, str) and boundary in NUMPY_MODES:
        return boundary
    if boundary == "reflect":
        raise ValueError(_REFLECT)
    raise ValueError(f"unknown boundary {boundary!r}; choose one of {', '.join(BOUNDARIES)}")


def pads(mode: str, kh: int, kw: int, convolve: bool = False
         ) -> tuple[int, int, int, int] | None:
    """Padding (top, bottom, left, right) that turns ``mode`` into a valid correlation.

    ``full`` pads ``k - 1`` on every side.  ``same`` keeps the part of ``full`` that
    ``scipy.signal`` keeps: for a correlation it starts at ``k // 2`` of ``full``, for a
    convolution at ``(k - 1) // 2`` — the two differ for even kernel sides.
    """
    if mode == "valid":
        return None
    if mode == "full":
        return kh - 1, kh - 1, kw - 1, kw - 1
    if convolve:
        return kh // 2, (kh - 1) // 2, kw // 2, (kw - 1) // 2
    return kh - 1 - kh // 2, kh // 2, kw - 1 - kw // 2, kw // 2


def index_map(n: int, before: int, after: int, boundary: str) -> np.ndarray:
    """Source index of each cell of an axis of length ``n`` padded by ``before``/``after``."""
    return np.pad(np.arange(n), (before, after), mode=NUMPY_MODES[boundary])


def fold_matrix(n: int, before: int, after: int, boundary: str) -> np.ndarray:
    """0/1 matrix ``M`` (n, before + after) with ``M[i, p] = 1`` if border cell ``p`` copies ``i``.

    The adjoint of padding one axis is ``g_interior + M @ g_border``: the border is a handful
    of rows, so this stays cheap and works on every backend (a matmul, no scatter).
    """
    idx = index_map(n, before, after, boundary)
    border = np.concatenate([idx[:before], idx[before + n:]])
    m = np.zeros((n, border.size))
    m[border, np.arange(border.size)] = 1.0
    return m
