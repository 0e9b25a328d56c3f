"""The seed's plain double loop, kept as the oracle for tests (slow on purpose)."""

from __future__ import annotations

from typing import Any

import numpy as np


def corr2d(x: Any, k: Any) -> np.ndarray:
    """Valid 2-D cross-correlation of 2-D ``x`` with ``k``, exactly as the d2l chapter writes it.

    Integer inputs give integer results; floats are summed in their own dtype.
    """
    x, k = np.asarray(x), np.asarray(k)
    h, w = k.shape
    y = np.zeros((x.shape[0] - h + 1, x.shape[1] - w + 1), dtype=np.result_type(x, k))
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] = (x[i:i + h, j:j + w] * k).sum()
    return y
