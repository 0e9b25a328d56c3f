"""The cost model behind ``conv2d(method="auto")``: arithmetic on shapes, one rate per method.

Each backend keeps its measured constants next to its code (``CONV_COSTS`` in
``backends/_<name>.py``; the NumPy backend's serve where a backend has none), in nanoseconds:

    gemm    per multiply-add of the im2col/implicit GEMM (the backend's matmul rate)
    copy    per byte written into the im2col matrix
    native  per multiply-add of the framework's layer, for dense channel contractions
    native_thin  the same for thin ones (one input channel per group: depthwise, 1 -> 1)
    dense_planes  images × groups from which the layer runs thin ones at the dense rate
                  (it parallelises over planes: PyTorch's depthwise 8×64 planes ran at 0.014
                  ns per multiply-add, a single 1 -> 1 plane at 0.31); None: never
    fixed   per call of each method (launches, planning)

Depthwise convolutions (one input channel per group) run as per-image 2-D correlations, so
their direct/FFT costs come from ``corr2d``'s model (``_methods``).  The FFT's cost is the
transforms (``corr2d``'s ``point`` constant) plus the contraction per frequency (``gemm``
with four real multiply-adds per complex one).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import log2
from typing import Any

from ._methods import cheapest, fft_len


@dataclass(frozen=True)
class ConvCost:
    gemm: float
    copy: float
    native: float | None
    native_thin: float | None
    fixed: float
    dense_planes: int | None = None


def choose(be: Any, xshape: tuple[int, ...], wshape: tuple[int, ...], geo: Any,
           integer: bool) -> str:
    """'direct', 'fft' or 'native' for padded ``x (N, C_in, Hp, Wp)`` and ``w``."""
    costs = estimate(be, xshape, wshape, geo, integer)
    return cheapest([(cost, name) for name, cost in costs.items()])


def estimate(be: Any, xshape: tuple[int, ...], wshape: tuple[int, ...], geo: Any,
             integer: bool) -> dict[str, float]:
    """Predicted nanoseconds of each method ``auto`` may take here."""
    n, cin, hp, wp = xshape
    cout, cg, kh, kw = wshape
    ho, wo = geo.out
    itemsize = 8 if integer else 4
    table = getattr(be, "conv_costs", None)
    c: ConvCost = (table() if table else _numpy_costs())[itemsize if not integer else 8]
    macs = n * cout * cg * kh * kw * ho * wo
    out: dict[str, float] = {}
    if cg == 1:  # per-image correlations: corr2d's own model
        corr = be.costs().get(itemsize) or be.costs()[max(be.costs())]
        sh, sw = geo.stride
        span = geo.span
        h1, w1 = (ho - 1) * sh + 1, (wo - 1) * sw + 1  # the stride-1 rows and columns kept
        out["direct"] = corr.direct(n * cout, h1, w1, *span) + c.fixed
        if not integer:
            out["fft"] = corr.fft(n * cout, hp, wp) + corr.fft(cout, hp, wp)
    else:
        out["direct"] = macs * c.gemm + n * cin * kh * kw * ho * wo * itemsize * c.copy \
            + c.fixed
        if not integer:
            f = fft_len(hp) * fft_len(wp)
            corr = be.costs().get(itemsize) or be.costs()[max(be.costs())]
            transforms = (n * cin + n * cout + cout * cg) * corr.point * f * log2(max(f, 2))
            out["fft"] = transforms + 4 * n * cout * cg * (f // 2 + 1) * c.gemm + corr.fixed
    if c.native is not None and not integer and hasattr(be, "conv2d_native"):
        thin = (cg == 1 or cin * cout < 64) and not (
            c.dense_planes is not None and n * geo.groups >= c.dense_planes)
        rate = c.native_thin if thin else c.native
        out["native"] = macs * rate + c.fixed
    return out


def _numpy_costs() -> dict[int, ConvCost]:
    from .backends import _numpy

    return _numpy.conv_costs()
