"""NumPy backend specifics: both direct paths, the FFT, the cost model, memory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xcorr
from xcorr import _auto, _methods, _numba
from xcorr.backends import _numpy as be
from xcorr.backends._numpy import _direct
from xcorr.reference import corr2d as reference

RNG = np.random.default_rng(7)
needs_numba = pytest.mark.skipif(_numba.kernel() is None,
                                 reason="numba: not installed (the 'fast' extra)")


def both_paths(monkeypatch: pytest.MonkeyPatch, x: np.ndarray, k: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """``_direct`` on the compiled loop and on the pure-NumPy fallback."""
    fast = _direct(x, k)
    with monkeypatch.context() as m:
        m.setattr(_numba, "DISABLED", True)
        assert _numba.kernel() is None
        slow = _direct(x, k)
    return fast, slow


def force_tile(monkeypatch: pytest.MonkeyPatch, rule: Any) -> None:
    """Every overlap-save tile from ``rule(h, w, kh, kw) -> (bh, bw)`` instead of the cost
    model's (as ``tests/test_fft.py``'s fixture)."""
    monkeypatch.setattr(_methods.Cost, "overlap_tile",
                        lambda self, h, w, kh, kw, threads=1: rule(h, w, kh, kw))


def looped_reference(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The oracle, one image/kernel pair at a time over the broadcast leading dimensions."""
    lead = np.broadcast_shapes(x.shape[:-2], k.shape[:-2])
    xs = np.broadcast_to(x, lead + x.shape[-2:]).reshape(-1, *x.shape[-2:])
    ks = np.broadcast_to(k, lead + k.shape[-2:]).reshape(-1, *k.shape[-2:])
    out = np.stack([reference(a, b) for a, b in zip(xs, ks, strict=True)])
    return out.reshape(*lead, *out.shape[-2:])


def random(shape: tuple[int, ...], dtype: type, scale: float = 10.0) -> np.ndarray:
    if np.dtype(dtype).kind == "i":
        return RNG.integers(-1000, 1000, shape).astype(dtype)
    return (RNG.standard_normal(shape) * scale).astype(dtype)


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
    assert_same_bits(fast, slow)


@needs_numba
def test_auto_reprices_when_numba_is_switched_off(monkeypatch):
    """The dispatch cache kept auto's choice made with Numba's direct loop after Numba was
    switched off (tests and the benchmark's "no numba" row do): 512² with 11×11 stayed on the
    NumPy fallback's direct loop, ~13x slower than the FFT a fresh choice takes."""
    x = RNG.standard_normal((512, 512)).astype(np.float32)
    k = RNG.standard_normal((11, 11)).astype(np.float32)
    assert _auto.choose(be, x, k) == "direct"  # with Numba
    xcorr.corr2d(x, k)
    monkeypatch.setattr(_numba, "DISABLED", True)
    chosen = _auto.choose(be, x, k)
    assert chosen != "direct"
    assert_same_bits(xcorr.corr2d(x, k), xcorr.corr2d(x, k, method=chosen))


def assert_same_bits(a: np.ndarray, b: np.ndarray) -> None:
    """Equal to the bit: a -0 where the other has +0 fails (``assert_array_equal`` passes
    it), as does a different NaN."""
    assert a.dtype == b.dtype and a.shape == b.shape
    unsigned = np.dtype(f"u{a.dtype.itemsize}")
    np.testing.assert_array_equal(a.view(unsigned), b.view(unsigned))


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_paths_sum_signed_zeros_alike(monkeypatch, dtype):
    """The fallback multiplies its first tap straight into the accumulator, so an output whose
    every term is -0 sums to -0 there until the final copy adds +0; the compiled loop starts
    from +0.  Both must give +0, and keep the bits of every other output (NaN, Inf, values
    that cancel to zero)."""
    x = np.zeros((9, 12), dtype)
    x[2:5, 3:7] = -0.0
    x[6, 2] = 1.5
    x[7, 8] = np.inf
    x[1, 10] = np.nan
    x[4, 0], x[4, 1] = 2.0, 2.0  # with k's two columns below: 2*-1 + 2*1 cancels to +0
    for k in (-np.ones((2, 2), dtype), np.array([[-1, 1], [-1, 1]], dtype),
              np.array([[-3.0]], dtype)):
        fast, slow = both_paths(monkeypatch, x, k)
        assert_same_bits(fast, slow)
        assert not np.signbit(slow[slow == 0]).any()  # no -0 anywhere


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape, kshape", [((37, 23), (3, 3)), ((3, 21, 40), (4, 7))])
def test_the_fallback_by_many_blocks_is_the_compiled_loop(monkeypatch, dtype, shape, kshape):
    """Blocks of a row or two (the fallback's blocks shrunk), shared among threads and over a
    batch: the compiled loop's bits, and each block's end where the next begins."""
    monkeypatch.setattr(be, "_BLOCK_BYTES", 200)
    monkeypatch.setattr(be, "_FALLBACK_PARALLEL_TAPS", 1)  # into shares even when tiny
    x = (RNG.standard_normal(shape) * 100).astype(dtype)
    k = (RNG.standard_normal(kshape) * 10).astype(dtype)
    fast, slow = both_paths(monkeypatch, x, k)
    assert_same_bits(fast, slow)
    if dtype == np.int64:
        np.testing.assert_array_equal(slow, looped_reference(x, k))


def test_fallback_blocks_are_sized_by_bytes_and_threads(monkeypatch):
    monkeypatch.setattr(be, "_BLOCK_BYTES", 1 << 21)
    assert be._fallback_rows(1024, 8, 1022) == 256  # 2 MiB of float64 rows
    assert be._fallback_rows(256, 8, 254, 2) == 127  # one block per thread, not one in all
    assert be._fallback_rows(4096, 4, 4094, 2) == 128
    assert be._fallback_rows(300_000, 8, 5) == 1  # a row wider than a block: one at a time
    assert be._fallback_rows(10, 8, 1, 4) == 1  # never none


# Every kernel width and height the compiled loop is generated for (1 .. _WIDEST), one
# beyond (the generic loop), odd and even row counts, passes of 1, 2 and 3 kernel rows.
WIDTHS = [(k, k) for k in range(1, _numba._WIDEST + 2)] + [
    (1, 16), (16, 1), (2, 17), (17, 3), (5, 8), (8, 2), (3, 40), (40, 3)]


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kshape", WIDTHS, ids=[f"{a}x{b}" for a, b in WIDTHS])
def test_compiled_loop_is_bit_identical_to_numpy_for_every_width(monkeypatch, dtype, kshape):
    # 2 images, rows not a multiple of the 3-row blocks; random data: an FMA or any
    # reordering of the sum would change some of the last bits
    x = random((2, kshape[0] + 24, kshape[1] + 37), dtype)
    k = random(kshape, dtype, 1.0)
    fast, slow = both_paths(monkeypatch, x, k)
    assert fast.dtype == slow.dtype == dtype
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_allclose(fast, looped_reference(x.astype(float), k.astype(float)),
                               rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-3)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("kshape", [(3, 3), (7, 7), (4, 17)])
def test_parallel_loop_is_bit_identical_to_numpy(monkeypatch, dtype, kshape):
    x = random((2, 600, 610), dtype)
    k = random(kshape, dtype, 1.0)
    fast, slow = both_paths(monkeypatch, x, k)
    # B·Ho·Wo·kh·kw·itemsize: the compiled loop runs on threads
    assert fast.size * k.size * fast.itemsize >= be._parallel_min_tap_bytes()
    np.testing.assert_array_equal(fast, slow)


@needs_numba
@pytest.mark.parametrize("kshape", [(3, 3), (3, 9), (17, 18)])  # 3-row blocks, 1-row, generic
def test_any_range_of_blocks_writes_exactly_its_rows(kshape):
    # A thread's share of the compiled loop starts and ends anywhere, inside an image too:
    # every cut gives the bits of one whole call and writes no row outside its blocks.
    x = random((3, kshape[0] + 10, kshape[1] + 9), np.float32)
    k = random((2, *kshape), np.float32, 1.0)
    xi, ki = np.array([0, 1, 2, 2], np.intp), np.array([1, 0, 1, 0], np.intp)
    loop, rows = _numba.kernel()(*kshape, x.dtype)
    shape = (len(xi), x.shape[1] - kshape[0] + 1, x.shape[2] - kshape[1] + 1)
    blocks = len(xi) * -(-shape[1] // rows)
    whole = np.empty(shape, np.float32)
    loop(x, k, xi, ki, whole, np.float32(0), 0, blocks)
    np.testing.assert_allclose(whole, looped_reference(x[xi], k[ki]), rtol=1e-4, atol=1e-3)
    for first in range(blocks + 1):
        for last in range(first, blocks + 1):
            out = np.full(shape, np.nan, np.float32)
            loop(x, k, xi, ki, out, np.float32(0), first, last)
            mine = np.zeros(shape, bool).reshape(len(xi), -1)
            for t in range(first, last):  # block t: rows (t % nrb)·rows .. of batch t // nrb
                b, i = divmod(t, blocks // len(xi))
                mine[b, i * rows * shape[2]:(i + 1) * rows * shape[2]] = True
            mine = mine.reshape(shape)
            assert np.array_equal(out[mine], whole[mine]) and np.isnan(out[~mine]).all()


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_signed_zeros_and_non_finite_values_match_on_both_paths(monkeypatch, dtype):
    # -0 products: each output is 0 + t(0,0) + ..., so all--0 windows give +0 on both paths
    x = np.full((9, 12), -0.0, dtype)
    x[1, 1], x[5, 7], x[7, 2] = np.inf, np.nan, -np.inf
    k = np.array([[1.0, -2.0, 0.0], [3.0, 0.5, -1.0]], dtype)
    fast, slow = both_paths(monkeypatch, x, k)
    np.testing.assert_array_equal(np.signbit(fast), np.signbit(slow))
    np.testing.assert_array_equal(fast, slow)  # NaN == NaN here
    with np.errstate(invalid="ignore"):
        ref = reference(x, k)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))  # NaN/Inf stay local
    np.testing.assert_array_equal(fast[np.isfinite(ref)], 0)


@pytest.mark.parametrize("numba", ["1", "0"])
def test_integers_are_exact(monkeypatch, numba):
    monkeypatch.setattr(_numba, "DISABLED", numba == "1")
    x = RNG.integers(-2**40, 2**40, (3, 31, 29))
    k = RNG.integers(-2**16, 2**16, (3, 5, 6))
    np.testing.assert_array_equal(_direct(x, k), looped_reference(x, k))
    big = np.full((8, 8), 2**61, np.int64)  # wraps like int64 arithmetic, on both paths
    np.testing.assert_array_equal(_direct(big, np.ones((2, 2), np.int64)),
                                  np.full((7, 7), -2**63, np.int64))


@pytest.mark.parametrize("numba", ["1", "0"])
@pytest.mark.parametrize("xshape, kshape, shape", [
    ((2, 3, 20, 22), (4, 5), (2, 3)),          # one kernel for all
    ((2, 3, 20, 22), (3, 4, 5), (2, 3)),       # one kernel per channel
    ((20, 22), (6, 4, 5), (6,)),               # a bank of kernels over one image
    ((2, 1, 20, 22), (3, 4, 5), (2, 3)),       # images broadcast over the kernels
    ((3, 1, 20, 22), (1, 2, 4, 5), (3, 2)),    # both broadcast
    ((4, 20, 22), (1, 4, 5), (4,)),
])
def test_direct_broadcasts_leading_dimensions(monkeypatch, numba, xshape, kshape, shape):
    monkeypatch.setattr(_numba, "DISABLED", numba == "1")
    x, k = random(xshape, np.float64), random(kshape, np.float64)
    y = _direct(x, k)
    assert y.shape == (*shape, 17, 18)
    np.testing.assert_allclose(y, looped_reference(x, k), rtol=1e-12, atol=1e-10)
    xi, ki = x.astype(np.int64), k.astype(np.int64)
    np.testing.assert_array_equal(_direct(xi, ki), looped_reference(xi, ki))


@pytest.mark.parametrize("numba", ["1", "0"])
def test_broadcast_views_are_not_copied(monkeypatch, numba):
    """A bank of 32 kernels over one image given as a ``broadcast_to`` view: the peak
    extra memory is the output, not the 32 copies of the image."""
    monkeypatch.setattr(_numba, "DISABLED", numba == "1")
    img, k = random((256, 256), np.float32), random((32, 3, 3), np.float32)
    x = np.broadcast_to(img, (32, 256, 256))
    want = looped_reference(img, k)
    _direct(x[:1, :16, :16], k[:1])  # compile outside the measurement
    tracemalloc.start()
    y = _direct(x, k)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1.25 * y.nbytes, (peak, y.nbytes)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("numba", ["1", "0"])
@pytest.mark.parametrize("view", ["reversed", "strided", "transposed", "kernel-reversed"])
def test_non_contiguous_inputs_are_read_not_mutated(monkeypatch, numba, view):
    monkeypatch.setattr(_numba, "DISABLED", numba == "1")
    base, kbase = random((2, 30, 40), np.float64), random((5, 6), np.float64)
    x, k = {"reversed": (base[:, ::-1, ::-1], kbase),
            "strided": (base[:, ::2, 1::2], kbase[:4, :3]),
            "transposed": (base.transpose(0, 2, 1), kbase.T),
            "kernel-reversed": (base, kbase[::-1, ::-1])}[view]
    before, kbefore = x.copy(), k.copy()
    y = _direct(x, k)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(k, kbefore)
    np.testing.assert_allclose(y, looped_reference(before, kbefore), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("method", ["direct", "auto", "fft"])
def test_longdouble_is_computed_on_the_numpy_path(method):
    """issue 16, defect 4: Numba has no long double; it raised a TypingError."""
    x = RNG.standard_normal((20, 21)).astype(np.longdouble)
    k = RNG.standard_normal((3, 4)).astype(np.longdouble)
    y = xcorr.corr2d(x, k, method=method)
    assert y.dtype == np.longdouble
    np.testing.assert_allclose(y.astype(float), reference(x, k).astype(float), rtol=1e-12,
                               atol=1e-12)
    assert not _numba.supports(np.dtype(np.longdouble))


@pytest.mark.parametrize("numba", ["1", "0"])
def test_large_problems_use_several_threads_small_ones_one(monkeypatch, numba):
    if numba == "0" and _numba.kernel() is None:
        pytest.skip("numba: not installed (the 'fast' extra)")
    monkeypatch.setattr(_numba, "DISABLED", numba == "1")
    monkeypatch.setattr(be, "_thread_count", lambda: 2)
    threads: set[int] = set()

    def spying(loop):
        def spy(*args, **kwargs):
            threads.add(threading.get_ident())
            loop(*args, **kwargs)
        return spy

    if numba == "1":
        monkeypatch.setattr(be, "_shift_add", spying(be._shift_add))
    else:
        prepare = _numba.kernel()
        monkeypatch.setattr(_numba, "kernel", lambda: lambda *a: (spying(prepare(*a)[0]),
                                                                   prepare(*a)[1]))
    k = np.ones((5, 5))
    for n, want in ((8, 1), (40, 1), (700, 2)):
        threads.clear()
        np.testing.assert_array_equal(_direct(np.ones((n, n)), k), np.full((n - 4, n - 4), 25.0))
        assert len(threads) == want, n


@pytest.mark.parametrize("dtype", [">f8", ">i8", "<f4"])
def test_any_byte_order_is_computed(dtype):
    x, k = random((13, 14), np.float64).astype(dtype), random((3, 4), np.float64).astype(dtype)
    got = _direct(x, k)
    if x.dtype.kind == "i":  # exact
        np.testing.assert_array_equal(got, reference(x.astype(np.int64), k.astype(np.int64)))
    else:  # the direct sum's rounding bound: taps · eps · sum|x·k| (data-independent)
        x64, k64 = x.astype(np.float64), k.astype(np.float64)
        bound = k.size * np.finfo(x.dtype).eps * reference(np.abs(x64), np.abs(k64))
        assert np.all(np.abs(got - reference(x64, k64)) <= bound)
    assert _numba.supports(np.dtype(dtype)) == np.dtype(dtype).isnative


CACHE_SCRIPT = """
import sys, threading
import numpy as np
from xcorr import _numba
from xcorr.backends._numpy import _direct

prepare, threads = _numba.kernel(), set()


def spying(kh, kw, dtype):  # the compiled loop, noting which threads run it
    loop, rows = prepare(kh, kw, dtype)

    def spy(*args):
        threads.add(threading.get_ident())
        loop(*args)

    return spy, rows


_numba.kernel = lambda: spying
k = np.ones((3, 3), np.float32)
for size in sys.argv[1:]:
    threads.clear()
    n = {"small": 8, "large": 1024}[size]
    y = _direct(np.ones((n, n), np.float32), k)
    np.testing.assert_array_equal(y, np.full((n - 2, n - 2), 9, np.float32))
    loop = _numba._loops[(3, 3, "float32")][0]
    hits, misses = sum(loop.stats.cache_hits.values()), sum(loop.stats.cache_misses.values())
    print(size, len(threads), hits, misses)
"""


@needs_numba
def test_large_call_runs_in_parallel_after_a_small_one_was_cached(tmp_path):
    """issue 13: a serial and a parallel variant used to share one on-disk cache entry, so a
    large call in a later process ran serially once a small call had been cached.  Now one
    compiled loop serves both, and a large call runs it on several threads."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "2"}
    root = Path(xcorr.__file__).resolve().parents[1]

    def run(*sizes: str) -> dict[str, list[int]]:
        proc = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, *sizes], cwd=root, env=env,
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        return {line.split()[0]: [int(v) for v in line.split()[1:]]
                for line in proc.stdout.splitlines()}

    # threads that ran the loop, loads from the cache, compilations
    assert run("small") == {"small": [1, 0, 1]}  # compiled, and written to the cache
    assert run("small", "large") == {"small": [1, 1, 0], "large": [2, 1, 0]}
    assert run("large") == {"large": [2, 1, 0]}


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


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int64"])
def test_all_finite_tells_overflow_from_nan_and_inf(dtype):
    """The quick sum in the array's own dtype decides only when it is finite; a sum that
    overflows there (float16 and float32 here) is redone in float64."""
    from xcorr.backends import _numpy as backend

    big = {"float16": 6e4, "float32": 3e38, "float64": 1e308, "int64": 2**62}[dtype]
    x = np.full((4, 5), big, dtype=dtype)
    k = np.ones((2, 2), dtype=dtype)
    assert backend.all_finite(x, k) is (dtype != "float64")  # float64: the sum overflows
    assert backend.all_finite(np.ones((4, 5), dtype=dtype), k) is True
    if dtype != "int64":
        for bad in (np.nan, np.inf, -np.inf):
            y = np.ones((4, 5), dtype=dtype)
            y[2, 3] = bad
            assert backend.all_finite(y, k) is False
            assert backend.all_finite(k, y) is False


@pytest.mark.parametrize(("xs", "ks"), [((3, 70, 90), (3, 9, 7)), ((70, 90), (4, 9, 7)),
                                        ((2, 1, 70, 90), (1, 3, 9, 7)), ((70, 90), (9, 7))])
def test_kernel_spectrum_in_column_blocks(monkeypatch, xs, ks):
    """The FFT's kernel spectrum a block of columns at a time, on the pool's threads (tiny
    blocks and a low threshold here, so both the blocks and the threads are exercised):
    the same product as the whole spectrum, for one kernel per image, one for all, and a
    bank that broadcasts the image's spectrum up."""
    from xcorr import _fft
    from xcorr.backends import _numpy as backend

    rng = np.random.default_rng(3)
    x, k = rng.random(xs), rng.random(ks)
    s = (96, 100)
    want = _fft.mul_conj(backend.rfft2(x, s), backend.rfft2(k, s))
    monkeypatch.setattr(backend, "_PRODUCT_BLOCK_BYTES", 4096)
    monkeypatch.setattr(backend, "_FFT_THREADED_MIN", 1)
    spectrum = backend.rfft2(x, s)
    got = backend._product(spectrum, k, s)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    assert (got is spectrum) == (got.shape == spectrum.shape)  # in place where it fits
    for method in ("fft", "overlap"):
        np.testing.assert_allclose(xcorr.corr2d(x, k, method=method),
                                   xcorr.corr2d(x, k, method="direct"), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(70, 90), (3, 37, 21)])
def test_inverse_transform_in_place(monkeypatch, dtype, shape):
    """irfft2 of a spectrum we own writes its rows back into the spectrum's memory (a block
    of rows at a time, on the pool's threads: tiny blocks and a low threshold here): the
    result is a view of it, with the bits of scipy.fft's columns-then-rows inverse."""
    scipy_fft = pytest.importorskip("scipy.fft", reason="scipy: not installed")
    from xcorr.backends import _numpy as backend

    if not backend._NUMPY_FFT_OUT:
        pytest.skip(f"numpy {np.__version__}: numpy.fft has no out= (NumPy >= 2.0)")
    monkeypatch.setattr(backend, "_ROW_BLOCK_BYTES", 1000)
    monkeypatch.setattr(backend, "_FFT_THREADED_MIN", 1)
    rng = np.random.default_rng(5)
    s = shape[-2:]
    spectrum = scipy_fft.rfft2(rng.random(shape).astype(dtype))
    want = scipy_fft.irfft(scipy_fft.ifft(spectrum, s[0], axis=-2), s[1], axis=-1)
    got = backend._irfft2_owned(spectrum, s)
    assert got.dtype == dtype and got.shape == want.shape
    assert np.shares_memory(got, spectrum)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("method", ["fft", "overlap"])
@pytest.mark.parametrize(("xs", "ks"), [((70, 90), (9, 7)), ((3, 61, 45), (5, 6)),
                                        ((2, 1, 40, 50), (3, 7, 7))])
def test_centred_correlation_has_the_bits_of_the_centred_image(monkeypatch, method, xs, ks):
    """corr2d_valid_centred(x, c, k) centres x a block of rows at a time as it transforms
    it: the bits of corr2d_valid(x - c, k), whatever the blocks, tiles and threads (tiny
    ones here; the overlap tiles pad past the image with the centre)."""
    from xcorr.backends import _numpy as backend

    rng = np.random.default_rng(6)
    x = (rng.random(xs) + 1e3).astype(np.float32)
    c = (1e3 + rng.random((*xs[:-2], 1, 1))).astype(np.float32)  # one per image
    k = rng.random(ks).astype(np.float32) - 0.5
    monkeypatch.setattr(backend, "_ROW_BLOCK_BYTES", 700)
    monkeypatch.setattr(backend, "_FFT_THREADED_MIN", 1)
    # several tiles a side, the last ones past the image's end
    force_tile(monkeypatch, lambda h, w, kh, kw: (kh + 10, kw + 12))
    got = backend.corr2d_valid_centred(x, c, k, method)
    want = backend.corr2d_valid(x - c, k, method)
    np.testing.assert_array_equal(got, want)
    direct = backend.corr2d_valid((x - c).astype(np.float64), k.astype(np.float64), "direct")
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-4 * np.abs(direct).max())
    assert backend.corr2d_valid_centred(x, c, k, "direct") is None


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def test_fft_results_are_views_unless_they_would_pin_much_more():
    """An FFT correlation returns its crop of the transform's buffer (as
    scipy.signal.fftconvolve does), unless the buffer is over 1.5x the result."""
    from xcorr.backends import _numpy as backend

    if not backend._NUMPY_FFT_OUT:
        pytest.skip(f"numpy {np.__version__}: numpy.fft has no out= (NumPy >= 2.0)")
    rng = np.random.default_rng(7)
    x = rng.random((128, 128))
    small = backend.corr2d_valid(x, rng.random((5, 5)), "fft")
    large = backend.corr2d_valid(x, rng.random((64, 64)), "fft")
    assert small.base is not None and not small.flags.c_contiguous
    assert large.flags.c_contiguous and _root(large).nbytes == large.nbytes  # a copy
    with backend.for_xla():  # for the JAX backend: aligned, so that XLA can alias it
        aligned = backend.corr2d_valid(x, rng.random((64, 64)), "fft")
    assert aligned.flags.c_contiguous
    assert _root(aligned).nbytes == aligned.nbytes + backend.ALIGNMENT
    assert aligned.ctypes.data % backend.ALIGNMENT == 0
    for k in (rng.random((5, 5)), rng.random((64, 64))):
        np.testing.assert_allclose(backend.corr2d_valid(x, k, "fft"),
                                   backend.corr2d_valid(x, k, "direct"), rtol=1e-10)


def test_match_template_makes_one_image_sized_array():
    """NumPy's match_template (FFT) centres the image as it transforms it and as the
    normaliser reads it, and transforms back in place: the peak extra memory is the one
    spectrum that becomes the result, and each thread's cache-sized blocks (fresh pages
    cost more than the FFT's passes; before, the image, its inverse transform and the crop's
    copy came on top)."""
    from xcorr.backends import _numpy as backend

    if not backend._NUMPY_FFT_OUT or _numba.kernel() is None:
        pytest.skip("needs numpy.fft's out= (NumPy >= 2.0) and Numba's compiled normaliser")
    x, t = random((1024, 1000), np.float32) + 100, random((15, 15), np.float32)
    # compile outside the measurement, at the full size: a first run there also compiles
    # the normaliser's shared path, and Numba's compiler allocates (traced) memory
    xcorr.match_template(x, t, method="fft")
    tracemalloc.start()
    y = xcorr.match_template(x, t, method="fft")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    spectrum = 1024 * (1000 // 2 + 1) * 8
    blocks = backend._thread_count() * max(3 * backend._ROW_BLOCK_BYTES,
                                           4 * backend._PRODUCT_BLOCK_BYTES)
    assert peak < spectrum + blocks + (1 << 16), (peak, spectrum, blocks)
    want = xcorr.match_template(x.astype(np.float64), t.astype(np.float64), method="direct")
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("xs", "ks"), [((70, 90), (9, 7)), ((3, 61, 45), (5, 6)),
                                        ((2, 1, 40, 50), (3, 7, 7)), ((33, 40), (33, 3))])
def test_overlap_by_parts_has_the_bits_of_one_batch(monkeypatch, dtype, xs, ks):
    """Overlap-save a few tiles at a time on the pool's threads (here one tile a part, every
    part on its own, the last ones past the image's end) gives the bits of all tiles in one
    batch, for plain and centred correlations, and for kernel banks that broadcast."""
    rng = np.random.default_rng(7)
    x = (rng.random(xs) + 10).astype(dtype)
    c = np.full((*xs[:-2], 1, 1), 10, dtype)
    k = rng.random(ks).astype(dtype) - 0.5

    force_tile(monkeypatch, lambda h, w, kh, kw: (min(h, kh + 10), kw + 12))
    results = []
    for part_bytes in (1, 1 << 62):  # one tile a part, then all tiles at once
        monkeypatch.setattr(be, "_OVERLAP_PART_BYTES", part_bytes)
        results.append((be.corr2d_valid(x, k, "overlap"),
                        be.corr2d_valid_centred(x, c, k, "overlap")))
    (parts, parts_c), (whole, whole_c) = results
    assert parts.shape == whole.shape and parts.dtype == whole.dtype == dtype
    assert parts.flags.c_contiguous  # written into one output, not a view of a spectrum
    np.testing.assert_array_equal(parts, whole)
    np.testing.assert_array_equal(parts_c, whole_c)
    direct = be.corr2d_valid(x.astype(np.float64), k.astype(np.float64), "direct")
    np.testing.assert_allclose(parts, direct, rtol=0, atol=1e-4 * np.abs(direct).max())


def test_overlap_parts_run_each_transform_on_one_thread(monkeypatch):
    """Inside a part the FFTs and the inner loops do not hand work to the pool (each part is
    one thread's work already; a nested share would wait on the pool it runs on)."""
    seen = []
    real = be._fft_module

    def spy(size):
        fft, opts, inplace = real(size)
        seen.append((be._serial(), opts.get("workers", 1)))
        return fft, opts, inplace

    monkeypatch.setattr(be, "_fft_module", spy)
    force_tile(monkeypatch, lambda h, w, kh, kw: (64, 64))
    monkeypatch.setattr(be, "_OVERLAP_PART_BYTES", 1)
    monkeypatch.setattr(be, "_FFT_THREADED_MIN", 1)
    x = np.random.default_rng(8).random((300, 300))
    got = be.corr2d_valid(x, np.ones((21, 21)), "overlap")
    np.testing.assert_allclose(got, be.corr2d_valid(x, np.ones((21, 21)), "direct"),
                               rtol=1e-12, atol=1e-9)
    inside = [workers for serial, workers in seen if serial]
    assert inside and set(inside) == {1}
    assert not be._serial()  # restored on the caller's thread
    assert getattr(be._local, "scratch", None) is None  # the parts' scratch is let go


def test_overlap_parts_reuse_one_scratch(monkeypatch):
    """Every part of a share transforms back into the same scratch (fresh pages for every
    part were 33k page faults a call at 4096² k15), and each part's outputs are copied out
    before the next one overwrites it: the result is still every part's own."""
    if not be._NUMPY_FFT_OUT:
        pytest.skip("numpy < 2: numpy.fft has no out= (scipy.fft's fresh arrays instead)")
    made = []
    real = be._scratch

    def spy(shape, dtype):
        out = real(shape, dtype)
        made.append(out.base if out.base is not None else out)
        return out

    monkeypatch.setattr(be, "_scratch", spy)
    monkeypatch.setattr(be, "_thread_count", lambda: 1)  # all parts in one share
    force_tile(monkeypatch, lambda h, w, kh, kw: (64, 64))
    monkeypatch.setattr(be, "_OVERLAP_PART_BYTES", 1)
    x = np.random.default_rng(9).random((2, 200, 150))
    k = np.random.default_rng(10).random((9, 7))
    got = be.corr2d_valid(x, k, "overlap")
    assert len(made) > 4 and all(b is made[0] for b in made)
    np.testing.assert_allclose(got, looped_reference(x, k), rtol=1e-10, atol=1e-10)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_mean_equals_numpy(dtype):
    """ncc_mean (compiled column totals, then NumPy's sum of them) is NumPy's float64 mean
    up to the order of the additions; NaN/Inf come through."""
    rng = np.random.default_rng(9)
    for shape in ((1, 1), (7, 3), (2, 3, 130, 70), (1000, 33)):
        x = (rng.random(shape) * 5 + 1e4).astype(dtype)
        got = be.ncc_mean(x, np.float64)
        want = np.mean(x, axis=(-2, -1), keepdims=True, dtype=np.float64)
        assert got.shape == want.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)
    x = rng.random((2, 70, 80)).astype(dtype)
    x[1, 3, 4] = np.nan
    got = be.ncc_mean(x, np.float64)
    assert np.isfinite(got[0, 0, 0]) and np.isnan(got[1, 0, 0])
    assert be.ncc_mean(x, np.float32) is None  # other accumulators: the caller's xp.mean


def test_hosting_costs_take_the_hosted_methods_and_numbas_state(monkeypatch):
    """A backend handing some methods to NumPy's kernels (torch's and JAX's CPU arrays)
    prices those at NumPy's constants, as they are now (its fallback's without Numba), and
    the rest, the native convolution included, at its own."""
    from dataclasses import replace

    own = {4: replace(be.COSTS[4], tap=9.0, point=9.0, tile_pix=9.0, native_tap=1.0)}
    table = be.hosting_costs(own, ("direct", "overlap"))[4]
    assert (table.tap, table.point, table.native_tap) == (be.costs()[4].tap, 9.0, 1.0)
    assert table.tile_pix == be.costs()[4].tile_pix
    monkeypatch.setattr(_numba, "kernel", lambda: None)
    assert be.hosting_costs(own, ("direct", "overlap"))[4].tap == be.FALLBACK_COSTS[4].tap
    assert be.hosting_costs(own, ("fft",))[4].tap == 9.0
    # the direct method's quadratic term goes with it: the host's, or the backend's own
    own = {4: replace(be.COSTS[4], tap2=0.5)}
    assert be.hosting_costs(own, ("direct",))[4].tap2 == be.costs()[4].tap2 == 0.0
    assert be.hosting_costs(own, ("fft",))[4].tap2 == 0.5


def test_direct_cost_terms():
    from dataclasses import replace

    from xcorr._methods import Cost

    c = Cost(tap=1.0, out=10.0, point=0, fixed=0, tile_point=0, tile_pix=0, tile_fixed=0,
             tap_call=100.0)
    assert c.direct(2, 3, 4, 5, 5) == 24 * (25 + 10) + 100 * 25
    assert replace(c, tap2=0.5).direct(2, 3, 4, 5, 5) == 24 * (25 + 0.5 * 625 + 10) + 2500


def test_outputs_are_aligned_only_for_xla() -> None:
    """Kernel outputs start on a 64-byte boundary inside ``for_xla`` (and ``output_into``),
    so that XLA can alias them; elsewhere they are plain ``np.empty`` (cheaper to make)."""
    before = be._hints
    with be.for_xla():
        outs = [be.empty((n, 3), np.float32) for n in range(1, 40)]
        assert all(o.ctypes.data % be.ALIGNMENT == 0 for o in outs)
        with pytest.raises(RuntimeError), be.for_xla():
            raise RuntimeError
        assert be._hints == before + 1
    assert be._hints == before
    if before == 0:  # (no other thread inside for_xla now)
        assert be.empty((5, 3), np.float32).base is None  # np.empty's own array


def test_output_into_gives_the_first_output_of_its_shape_and_dtype() -> None:
    """``output_into(dst)``: the first kernel output of dst's shape and dtype on this thread
    is dst (taken once), other shapes, dtypes and threads are not; the hint is gone after the
    block, an exception included; ``deliver`` copies only what is not already there."""
    x = RNG.standard_normal((12, 15))
    k = RNG.standard_normal((3, 4))
    want = _direct(x, k)
    dst = np.full((10, 12), np.nan)
    other: list[np.ndarray] = []
    with be.output_into(dst):
        assert be.empty((10, 12), np.float32) is not dst  # another dtype
        worker = threading.Thread(target=lambda: other.append(be.empty((10, 12), np.float64)))
        worker.start()
        worker.join()
        assert other[0] is not dst  # another thread
        got = _direct(x, k)
        assert np.shares_memory(got, dst)
        assert not np.shares_memory(be.empty((10, 12), np.float64), dst)  # taken once
    np.testing.assert_array_equal(dst, want)
    be.deliver(got, dst)  # already there: nothing to do
    with pytest.raises(RuntimeError), be.output_into(dst):
        raise RuntimeError
    assert not np.shares_memory(_direct(x, k), dst)  # the hint did not outlive the block
    flipped = dst[::-1]  # overlapping memory, another layout: copied through a temporary
    want = flipped.copy()
    be.deliver(flipped, dst)
    np.testing.assert_array_equal(dst, want)
    strided = np.zeros((10, 24))[:, ::2]  # not contiguous: never taken
    with be.output_into(strided):
        assert not np.shares_memory(_direct(x, k), strided)
