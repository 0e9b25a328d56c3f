"""Dask backend: lazy block-wise results equal the NumPy backend's on every chunking."""

from __future__ import annotations

import numpy as np
import pytest

import xcorr

da = pytest.importorskip("dask.array", reason="dask is not installed (pip install 'xcorr[dask]')")
import dask  # noqa: E402

from xcorr.backends import _dask, _numpy  # noqa: E402

RNG = np.random.default_rng(20261126)
X = RNG.standard_normal((37, 29))
K = RNG.standard_normal((5, 4))

CHUNKINGS = {
    "one-row": (1, 29),
    "one-column": (37, 1),
    "1x1": (1, 1),
    "smaller-than-kernel": (2, 3),
    "uneven": ((10, 1, 3, 23), (3, 20, 6)),
    "regular": (8, 8),
    "single": (37, 29),
}


@pytest.fixture(autouse=True)
def _sync_scheduler():
    # Deterministic, single-threaded runs (the machine is shared); the cluster test overrides.
    with dask.config.set(scheduler="sync"):
        yield


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("chunks", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_direct_matches_numpy_bit_for_bit(chunks, mode):
    xd = da.from_array(X, chunks=chunks)
    out = xcorr.corr2d(xd, K, mode=mode, method="direct")
    assert isinstance(out, da.Array)
    want = xcorr.corr2d(X, K, mode=mode, method="direct")
    got = out.compute()
    assert got.dtype == want.dtype
    # Every output sums the same taps in the same order whatever block it lands in.
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("method", ["auto", "fft"])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("chunks", [(1, 29), (2, 3), ((10, 1, 3, 23), (3, 20, 6))],
                         ids=["one-row", "smaller-than-kernel", "uneven"])
def test_other_methods_match_numpy(chunks, mode, method):
    xd = da.from_array(X.astype(np.float32), chunks=chunks)
    got = xcorr.corr2d(xd, K.astype(np.float32), mode=mode, method=method).compute()
    want = xcorr.corr2d(X, K, mode=mode, method="direct")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kshape", [(1, 1), (37, 29), (37, 1), (1, 29)])
def test_extreme_kernel_shapes(kshape):
    k = RNG.standard_normal(kshape)
    got = xcorr.corr2d(da.from_array(X, chunks=(6, 7)), k, method="direct").compute()
    np.testing.assert_array_equal(got, xcorr.corr2d(X, k, method="direct"))


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_batch_dimensions(mode):
    x = RNG.standard_normal((2, 3, 40, 33)).astype(np.float32)
    k = RNG.standard_normal((3, 6)).astype(np.float32)
    xd = da.from_array(x, chunks=(1, 2, 7, 10))
    got = xcorr.corr2d(xd, k, mode=mode, method="direct")
    want = xcorr.corr2d(x, k, mode=mode, method="direct")
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.compute(), want)


def test_integers_exact():
    x = RNG.integers(-(2**20), 2**20, size=(3, 31, 26), dtype=np.int32)
    k = RNG.integers(-(2**12), 2**12, size=(4, 7), dtype=np.int16)
    got = xcorr.corr2d(da.from_array(x, chunks=(2, 5, 4)), k, mode="full").compute()
    assert got.dtype == np.int64
    # |sum| < 28 * 2**32: every partial sum is exact in int64, so a plain tap loop is an oracle.
    xp = np.pad(x.astype(np.int64), [(0, 0), (3, 3), (6, 6)])
    ref = sum(xp[:, a:a + 34, c:c + 32] * int(k[a, c]) for a in range(4) for c in range(7))
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got, xcorr.corr2d(x, k, mode="full"))


def test_nan_stays_local_with_auto(monkeypatch):
    # Blocks large enough that their own cost model picks the FFT: a NaN must still only reach
    # the outputs whose window covers it (the block holding it, with its halo, goes direct).
    x = RNG.standard_normal((300, 300))
    k = RNG.standard_normal((31, 31))
    x[140, 200] = np.nan
    calls = {"fft": 0}

    def counting(real):
        def fn(a, b):
            calls["fft"] += 1
            return real(a, b)
        return fn

    for name in ("_fft", "_overlap"):  # either FFT method
        monkeypatch.setattr(_numpy, name, counting(getattr(_numpy, name)))
    got = xcorr.corr2d(da.from_array(x, chunks=128), k).compute()
    assert calls["fft"] > 0, "no block chose an FFT: the test would not exercise the guard"
    expected_nan = np.zeros(got.shape, dtype=bool)
    expected_nan[140 - 30:141, 200 - 30:201] = True
    np.testing.assert_array_equal(np.isnan(got), expected_nan)
    want = xcorr.corr2d(x, k, method="direct")
    np.testing.assert_allclose(got[~expected_nan], want[~expected_nan], rtol=1e-9, atol=1e-9)


def test_result_is_lazy_and_values_are_not_read():
    computed = []

    def touch(block):
        computed.append(block.shape)
        return block

    xd = da.from_array(X, chunks=10).map_blocks(touch, meta=np.empty((0, 0)))
    for method in ("auto", "fft", "direct"):
        for mode in ("valid", "same", "full"):
            out = xcorr.corr2d(xd, K, mode=mode, method=method)
            assert isinstance(out, da.Array)
    assert computed == []  # neither all_finite nor the method choice computed anything
    out.compute()
    assert computed


def test_backend_dask_with_numpy_input():
    out = xcorr.corr2d(X.tolist(), K, backend="dask", mode="same")
    assert isinstance(out, da.Array)
    np.testing.assert_allclose(out.compute(), xcorr.corr2d(X, K, mode="same"),
                               rtol=1e-12, atol=1e-12)
    with xcorr.use_backend("dask"):
        assert isinstance(xcorr.corr2d(X, K), da.Array)


def test_inputs_not_mutated_and_views_work():
    base = RNG.standard_normal((50, 60))
    view = base[::-2, 5::3]  # negative and non-unit strides
    before = base.copy()
    got = xcorr.corr2d(view, K, backend="dask", method="direct").compute()
    np.testing.assert_array_equal(got, xcorr.corr2d(np.ascontiguousarray(view), K,
                                                    method="direct"))
    np.testing.assert_array_equal(base, before)


def test_validation_rules_apply():
    xd = da.from_array(X, chunks=8)
    with pytest.raises(ValueError, match="exceeds image height"):
        xcorr.corr2d(xd, np.ones((40, 2)))
    with pytest.raises(TypeError, match="boolean"):
        xcorr.corr2d(xd > 0, K)
    with pytest.raises(TypeError, match="complex"):
        xcorr.corr2d(xd + 1j, K)
    with pytest.raises(ValueError, match="unknown method"):
        xcorr.corr2d(xd, K, method="native")
    unknown = xd[xd[:, 0] > 0]  # rows selected by value: sizes unknown until computed
    with pytest.raises(ValueError, match=r"^x has unknown .* x = x.compute_chunk_sizes\(\)"):
        xcorr.corr2d(unknown, K)
    kd = da.from_array(K, chunks=1)
    with pytest.raises(ValueError, match=r"^k has unknown .* k = k.compute_chunk_sizes\(\)"):
        xcorr.corr2d(xd, kd[kd[:, 0] > -1])  # the kernel's name, not x's
    with pytest.raises(ValueError, match=r"^template has unknown"):
        xcorr.match_template(xd, kd[kd[:, 0] > -1])


def test_sse_value_and_grad_matches_numpy():
    x = RNG.standard_normal((2, 30, 27))
    y = RNG.standard_normal((2, 28, 23))
    k = RNG.standard_normal((3, 5))
    for b in (None, 0.25):
        loss, dk, db = _dask.sse_value_and_grad(da.from_array(x, chunks=(1, 7, 9)), y, k, b)
        wl, wk, wb = _numpy.sse_value_and_grad(x, y, k, b)
        np.testing.assert_allclose(loss, wl, rtol=1e-10)
        np.testing.assert_allclose(dk, wk, rtol=1e-10, atol=1e-10)
        assert isinstance(dk, np.ndarray)
        if b is None:
            assert db is None
        else:
            np.testing.assert_allclose(db, wb, rtol=1e-10)


@pytest.mark.slow
def test_local_cluster_two_processes():
    distributed = pytest.importorskip("distributed", reason="distributed is not installed")
    with (distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None,
                                   memory_limit="1GiB") as cluster,
          distributed.Client(cluster) as client,
          dask.config.set(scheduler=client)):
        x = da.random.default_rng(7).standard_normal((4096, 4096), dtype=np.float32,
                                                     chunks=1024)
        k = RNG.standard_normal((3, 3)).astype(np.float32)
        out = xcorr.corr2d(x, k, mode="same", method="direct")
        assert any("distributed" in d for d in xcorr.backend_info()["dask"]["devices"])
        got, x_np = dask.compute(out, x)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, xcorr.corr2d(x_np, k, mode="same", method="direct"))


def test_training_on_dask_matches_numpy():
    train = pytest.importorskip("xcorr.train", reason="xcorr.train is not in this checkout")
    x = RNG.standard_normal((40, 48))
    y = xcorr.corr2d(x, [[1.0, -1.0], [0.5, 0.25]])
    kw = {"epochs": 30, "lr": 2e-4, "seed": 3}
    lazy = train.learn_kernel(da.from_array(x, chunks=(9, 20)), y, (2, 2), **kw)
    eager = train.learn_kernel(x, y, (2, 2), **kw)
    np.testing.assert_allclose(np.asarray(lazy.kernel), eager.kernel, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lazy.losses, eager.losses, rtol=1e-9)


def test_ndimage_decides_nan_handling_per_block_and_stays_lazy(monkeypatch):
    """xcorr.ndimage skips near-zero weights (as SciPy): where such a tap may meet NaN/Inf
    it rebuilds the IEEE products (six correlations).  On Dask it took that path for every
    block whenever a weight was 0 (a Sobel kernel: 5-8x slower), since the values were
    unknown, and it computed Dask weights at call time.  Now each block decides from its
    own values, and nothing runs before compute()."""
    import scipy.ndimage

    import xcorr.ndimage as xn
    from xcorr import _dropin

    x = RNG.standard_normal((40, 36))
    x[37, 5], x[38, 20] = np.nan, np.inf  # both in the last block of rows, not its halo
    sobel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    computed = []

    def touch(block):
        computed.append(block.shape)
        return block

    weights = da.from_array(sobel, chunks=2).map_blocks(touch, meta=np.empty((0, 0)))
    out = xn.correlate(da.from_array(x, chunks=(10, 36)), weights, mode="reflect")
    assert isinstance(out, da.Array) and computed == []
    rebuilt = []
    real = _dropin.valid_of_padded
    monkeypatch.setattr(_dropin, "valid_of_padded", lambda be, x, k, *a: (
        rebuilt.append(k.ndim == 3), real(be, x, k, *a))[1])
    np.testing.assert_array_equal(out.compute(), scipy.ndimage.correlate(x, sobel,
                                                                         mode="reflect"))
    assert len(rebuilt) >= 3 and sorted(rebuilt) == [False] * (len(rebuilt) - 1) + [True]
    for chunks in ((7, 5), (1, 36), ((3, 30, 7), (20, 16))):
        for mode in ("constant", "wrap", "nearest"):
            got = xn.correlate(da.from_array(x, chunks=chunks), sobel, mode=mode, cval=np.nan)
            np.testing.assert_array_equal(got.compute(), scipy.ndimage.correlate(
                x, sobel, mode=mode, cval=np.nan))


def test_uint64_beyond_int64_raises_when_computed():
    """NumPy data refuse uint64 values above 2**63 - 1 for the exact int64 result at the
    call; lazily held ones wrapped to negative without a word.  Now the blocks that hold
    them raise the same OverflowError when computed (nothing is read at the call)."""
    big = np.full((4, 4), 2**63 + 1, np.uint64)
    k = np.ones((1, 1), np.int64)
    for lazy in (xcorr.corr2d(da.from_array(big, chunks=2), k),
                 xcorr.conv2d(da.from_array(big[None, None], chunks=2), k[None, None]),
                 xcorr.corr2d(np.ones((4, 4), np.int64), da.from_array(big[:1, :1]))):
        with pytest.raises(OverflowError, match=r"holds uint64 values above 2\*\*63 - 1"):
            lazy.compute()
    small = xcorr.corr2d(da.from_array(np.full((4, 4), 7, np.uint64), chunks=2), k)
    assert small.dtype == np.int64 and (small.compute() == 7).all()
