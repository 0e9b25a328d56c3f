"""The ``auto`` method at run time: the cost model's pick, and the FFT only on finite input.

Shared by ``corr2d`` and by the code paths that correlate already-prepared arrays (the
analytic gradient, JAX's and torch's guarded FFT, Dask's blocks).
"""

from __future__ import annotations

import warnings
from typing import Any

from . import _methods
from ._broadcast import group_plan


def choose(be: Any, x: Any, k: Any) -> str:
    """The cost model's method for prepared (promoted, padded) ``x`` and ``k``.

    ``k`` may carry leading dimensions that broadcast against ``x``'s: the model sees the
    broadcast batch and one (kh, kw) kernel per image.
    """
    xs, ks = tuple(x.shape), tuple(k.shape)
    shape = (*_broadcast_lead(xs[:-2], ks[:-2]), *xs[-2:])
    plan = group_plan(xs[:-2], ks[:-2]) if len(ks) > 2 else None
    costs_for = getattr(be, "costs_for", None)  # a backend whose kernels depend on the data's
    table = costs_for(x, k) if costs_for is not None else be.costs()  # device (torch)
    return _methods.choose(table, shape, ks[-2:], x.dtype.itemsize, be.kind(x) == "i",
                           grouped=plan is not None and plan.g > 1)


def fft_if_finite(be: Any, x: Any, k: Any, method: str = "fft") -> Any:
    """``method`` (an FFT method), unless a value is non-finite (then direct, so NaN/Inf
    stay local)."""
    finite = be.all_finite(x, k)
    if finite is None:  # values unknown (a JAX tracer, a lazy Dask array): decide at run time
        return be.guarded_fft(x, k, method)
    return be.corr2d_valid(x, k, method if finite else "direct")


def valid_auto(be: Any, x: Any, k: Any) -> Any:
    """Valid correlation of prepared arrays by the cheaper method; finite input only for FFT."""
    chosen = choose(be, x, k)
    if chosen in _methods.SPECTRAL:
        return fft_if_finite(be, x, k, chosen)
    return be.corr2d_valid(x, k, chosen)


def _broadcast_lead(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    return tuple(max(p, q) for p, q in zip(a, b, strict=True))


def warn_fft_nonfinite(stacklevel: int, method: str = "fft") -> None:
    """The warning for an explicit FFT ``method`` on input holding NaN/Inf."""
    warnings.warn(f"x or k holds NaN/Inf: method={method!r} spreads them over the whole output"
                  f"{' (its tile)' if method == 'overlap' else ''}; use method='direct' (or "
                  "'auto') to keep them local", RuntimeWarning, stacklevel=stacklevel)
