"""The seed's plain double loop, kept as the oracle for tests (slow on purpose)."""

from __future__ import annotations

from typing import Any

import numpy as np


def corr2d(x: Any, k: Any) -> np.ndarray:
    """Valid 2-D cross-correlation of 2-D ``x`` with ``k``, exactly as the d2l chapter writes it.

    Integer inputs give integer results; floats are summed in their own dtype.

    Parameters
    ----------
    x : array_like, 2-D
        The image.
    k : array_like, 2-D
        The kernel, no larger than ``x``.

    Returns
    -------
    numpy.ndarray, shape (H - kh + 1, W - kw + 1)
        dtype ``numpy.result_type(x, k)``; each output is ``(window * k).sum()``.

    Raises
    ------
    ValueError
        ``x`` or ``k`` not 2-D, or a kernel larger than ``x`` on either axis.

    Examples
    --------
    >>> from xcorr.reference import corr2d
    >>> corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]]).tolist()
    [[19, 25], [37, 43]]
    """
    x, k = np.asarray(x), np.asarray(k)
    if x.ndim != 2 or k.ndim != 2:
        raise ValueError(f"x and k must be 2-D, got shapes {x.shape} and {k.shape}")
    h, w = k.shape
    if h > x.shape[0] or w > x.shape[1]:
        raise ValueError(f"the kernel {k.shape} is larger than x {x.shape}")
    y = np.zeros((x.shape[0] - h + 1, x.shape[1] - w + 1), dtype=np.result_type(x, k))
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] = (x[i:i + h, j:j + w] * k).sum()
    return y
