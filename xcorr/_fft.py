"""The FFT correlation, written once for every framework's ``rfft2``/``irfft2``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._methods import fft_len


def fft_valid(x: Any, k: Any, rfft2: Callable[[Any, tuple[int, int]], Any],
              irfft2: Callable[[Any, tuple[int, int]], Any]) -> Any:
    """Valid correlation ``irfft2(rfft2(x) * conj(rfft2(k)))[:Ho, :Wo]`` over the last two axes.

    A transform of size ``fft_len(H) × fft_len(W)`` suffices (no padding to H+kh-1): the
    circular wrap-around of correlation only reaches outputs at index >= Ho, which are
    cropped.  ``rfft2(a, s)``/``irfft2(a, s)`` act on the last two axes with shape ``s``.
    """
    h, w = x.shape[-2:]
    kh, kw = k.shape[-2:]
    s = (fft_len(h), fft_len(w))
    spectrum = rfft2(x, s) * rfft2(k, s).conj()
    return irfft2(spectrum, s)[..., : h - kh + 1, : w - kw + 1]
