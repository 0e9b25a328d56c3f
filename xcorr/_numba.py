"""Optional compiled direct loop for the NumPy backend (the ``fast`` extra: Numba).

``kernel()`` returns the jitted function, or None when Numba is missing or disabled with
``XCORR_DISABLE_NUMBA=1`` (checked on each call, so tests can exercise both paths).
The loop is exact IEEE arithmetic (no fastmath): each output accumulates its taps in
row-major order, vectorised across the output row.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable

_lock = threading.Lock()
_compiled: list[Callable[..., None]] = []


def _build() -> Callable[..., None]:
    import numba

    @numba.njit(parallel=True, cache=True, nogil=True)
    def corr_valid(x, k, out):  # x (B, H, W), k (kh, kw), out (B, Ho, Wo) zero-filled
        nb, ho, wo = out.shape
        kh, kw = k.shape
        for r in numba.prange(nb * ho):
            b = r // ho
            i = r - b * ho
            row = out[b, i]
            for a in range(kh):
                src = x[b, i + a]
                for c in range(kw):
                    tap = k[a, c]
                    for j in range(wo):
                        row[j] += src[j + c] * tap

    return corr_valid


def kernel() -> Callable[..., None] | None:
    if os.environ.get("XCORR_DISABLE_NUMBA", "") not in ("", "0"):
        return None
    if not _compiled:
        if importlib.util.find_spec("numba") is None:
            return None
        with _lock:
            if not _compiled:
                _compiled.append(_build())
    return _compiled[0]
