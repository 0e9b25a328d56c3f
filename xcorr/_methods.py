"""The cost model behind ``method="auto"``: pure arithmetic on shapes and dtypes.

Each backend measures two straight lines on its own machine and keeps the constants
next to its code (``COSTS`` in ``backends/_<name>.py``)::

    direct ≈ tap · B·Ho·Wo·kh·kw  +  out · B·Ho·Wo
    fft    ≈ point · B·N·log2(N)  +  fixed          N = sH·sW, the transform size

The ``out`` term is the memory traffic of one pass over the output (what a 3×3 kernel
is bound by); the ``fixed`` term is the per-call price of planning and the kernel's own
transform.  ``auto`` takes the cheaper prediction.  Integer inputs always go direct
(FFT rounding would break exactness); non-finite inputs are steered away from FFT by
the caller, which can look at the values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import log2, prod


@dataclass(frozen=True)
class Cost:
    """Nanoseconds per unit for one backend and one dtype width (see module docstring)."""

    tap: float
    out: float
    point: float
    fixed: float

    def direct(self, batch: int, ho: int, wo: int, kh: int, kw: int) -> float:
        return batch * ho * wo * (self.tap * kh * kw + self.out)

    def fft(self, batch: int, h: int, w: int) -> float:
        n = fft_len(h) * fft_len(w)
        return self.point * batch * n * log2(max(n, 2)) + self.fixed


@lru_cache(maxsize=4096)  # on the dispatch path of every auto call
def fft_len(n: int) -> int:
    """Smallest 2·3·5-smooth integer >= n (a size every FFT library handles fast)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:  # multiply by 2 until the candidate reaches n
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def choose(costs: dict[int, Cost], shape: tuple[int, ...], kshape: tuple[int, int],
           itemsize: int, integer: bool) -> str:
    """'direct' or 'fft' for a valid correlation of ``shape`` (..., H, W) with ``kshape``."""
    if integer:
        return "direct"
    cost = costs.get(itemsize) or costs[max(costs)]
    *lead, h, w = shape
    kh, kw = kshape
    batch = prod(lead)
    ho, wo = h - kh + 1, w - kw + 1
    return "fft" if cost.fft(batch, h, w) < cost.direct(batch, ho, wo, kh, kw) else "direct"
