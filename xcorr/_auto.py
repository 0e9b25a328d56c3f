"""The ``auto`` method at run time: the cost model's pick, and the FFT only on finite input.

Shared by ``corr2d`` and by the code paths that correlate already-prepared arrays (the
analytic gradient, JAX's and torch's guarded FFT, Dask's blocks).
"""

from __future__ import annotations

import warnings
from typing import Any

from . import _methods


def choose(be: Any, x: Any, k: Any) -> str:
    """The cost model's method for prepared (promoted, padded) ``x`` and ``k``."""
    return _methods.choose(be.costs(), tuple(x.shape), tuple(k.shape), x.dtype.itemsize,
                           be.kind(x) == "i")


def fft_if_finite(be: Any, x: Any, k: Any) -> Any:
    """The FFT, unless a value is non-finite (then direct, so NaN/Inf stay local)."""
    finite = be.all_finite(x, k)
    if finite is None:  # values unknown (a JAX tracer, a lazy Dask array): decide at run time
        return be.guarded_fft(x, k)
    return be.corr2d_valid(x, k, "fft" if finite else "direct")


def valid_auto(be: Any, x: Any, k: Any) -> Any:
    """Valid correlation of prepared arrays by the cheaper method; finite input only for FFT."""
    if choose(be, x, k) == "fft":
        return fft_if_finite(be, x, k)
    return be.corr2d_valid(x, k, "direct")


def warn_fft_nonfinite(stacklevel: int) -> None:
    """The warning for an explicit ``method="fft"`` on input holding NaN/Inf."""
    warnings.warn("x or k holds NaN/Inf: method='fft' spreads them over the whole output; "
                  "use method='direct' (or 'auto') to keep them local", RuntimeWarning,
                  stacklevel=stacklevel)
