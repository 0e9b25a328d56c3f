"""NumPy backend specifics: both direct paths, the FFT, the cost model, memory."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest

import xcorr
from xcorr import _methods, _numba
from xcorr.backends import _numpy as be
from xcorr.reference import corr2d as reference

RNG = np.random.default_rng(7)
needs_numba = pytest.mark.skipif(_numba.kernel() is None,
                                 reason="numba: not installed (the 'fast' extra)")


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape, kshape", [((17, 23), (3, 3)), ((2, 9, 40), (4, 7)),
                                           ((5, 5), (5, 5)), ((300, 70), (1, 1))])
def test_numba_and_numpy_paths_are_bit_identical(monkeypatch, dtype, shape, kshape):
    x = (RNG.standard_normal(shape) * 100).astype(dtype)
    k = (RNG.standard_normal(kshape) * 10).astype(dtype)
    fast = be.corr2d_valid(x, k, "direct")
    monkeypatch.setattr(_numba, "DISABLED", True)
    assert _numba.kernel() is None
    slow = be.corr2d_valid(x, k, "direct")
    assert fast.dtype == slow.dtype == dtype
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("numba", ["1", "0"])
def test_direct_matches_reference_on_both_paths(monkeypatch, numba):
    monkeypatch.setattr(_numba, "DISABLED", numba == "1")
    x, k = RNG.standard_normal((40, 33)), RNG.standard_normal((6, 5))
    np.testing.assert_allclose(be.corr2d_valid(x, k, "direct"), reference(x, k), rtol=1e-12,
                               atol=1e-12)


def test_fft_without_scipy_uses_numpy_fft(monkeypatch):
    x, k = RNG.standard_normal((30, 31)).astype(np.float32), RNG.standard_normal((5, 4))
    k = k.astype(np.float32)
    with_scipy = be.corr2d_valid(x, k, "fft")
    monkeypatch.setitem(sys.modules, "scipy.fft", None)
    without = be.corr2d_valid(x, k, "fft")
    assert without.dtype == np.float32
    np.testing.assert_allclose(without, with_scipy, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(without, reference(x.astype(float), k.astype(float)),
                               rtol=1e-4, atol=1e-4)


def test_float16_accumulates_in_float32():
    x = RNG.standard_normal((64, 64)).astype(np.float16)
    k = RNG.standard_normal((5, 5)).astype(np.float16)
    y = xcorr.corr2d(x, k)
    assert y.dtype == np.float16
    exact = reference(x.astype(np.float64), k.astype(np.float64))
    # one rounding to half precision at the end, not 25 of them
    np.testing.assert_allclose(y, exact.astype(np.float16), rtol=2e-3, atol=2e-3)


def test_fft_len_is_the_smallest_5_smooth_size():
    def smooth(n: int) -> bool:
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 3000):
        m = _methods.fft_len(n)
        assert m >= n and smooth(m)
        assert not any(smooth(j) for j in range(n, m))


@pytest.mark.parametrize("numba", ["1", "0"])
def test_cost_model_choices(monkeypatch, numba):
    monkeypatch.setattr(_numba, "DISABLED", numba == "1")
    costs = be.costs()
    assert _methods.choose(costs, (1024, 1024), (3, 3), 4, False) == "direct"
    assert _methods.choose(costs, (1024, 1024), (31, 31), 4, False) in _methods.SPECTRAL
    assert _methods.choose(costs, (1024, 1024), (31, 31), 8, True) == "direct"  # integers
    assert _methods.choose(costs, (6, 8), (1, 2), 8, False) == "direct"


def test_peak_memory_of_direct_k3_is_bounded():
    """4096² float32, k 3×3: extra memory at most 2× the output (here: the output itself)."""
    x = RNG.standard_normal((4096, 4096), dtype=np.float32)
    k = RNG.standard_normal((3, 3), dtype=np.float32)
    xcorr.corr2d(x[:64, :64], k)  # compile/warm outside the measurement
    tracemalloc.start()
    y = xcorr.corr2d(x, k)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= 2 * y.nbytes, (peak, y.nbytes)
