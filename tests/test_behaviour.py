"""The foundation's behaviour rules, written once and run on every backend (fixture ``backend``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import to_np, x64
from scipy import signal

import xcorr
from xcorr.reference import corr2d as reference

RNG = np.random.default_rng(20261126)


def edge_image() -> np.ndarray:
    x = np.ones((6, 8))
    x[:, 2:6] = 0
    return x


def float_dtype(backend: str, requested: type) -> np.dtype:
    """The dtype a backend returns for ``requested`` floats (JAX keeps float32 without x64)."""
    if requested is np.float64 and backend == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return np.dtype(np.float32)
    return np.dtype(requested)


def tol(dtype: np.dtype) -> dict[str, float]:
    return {"rtol": 2e-5, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


# -- the seed -------------------------------------------------------------------------------


def test_seed_3x3(backend):
    y = xcorr.corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]], backend=backend)
    assert to_np(y).tolist() == [[19, 25], [37, 43]]


def test_seed_edges(backend):
    x = edge_image()
    y = to_np(xcorr.corr2d(x, np.array([[1.0, -1.0]]), backend=backend))
    assert y.shape == (6, 7)
    assert (y == np.array([0, 1, 0, 0, 0, -1, 0])).all()


def test_seed_transposed_is_zero(backend):
    y = to_np(xcorr.corr2d(edge_image().T, np.array([[1.0, -1.0]]), backend=backend))
    assert y.shape == (8, 5)
    assert (y == 0).all()


def test_result_type_is_the_backends(backend):
    y = xcorr.corr2d(np.ones((4, 4)), np.ones((2, 2)), backend=backend)
    module = type(y).__module__.split(".")[0]
    expected = {"numpy": "numpy", "jax": "jax", "torch": "torch", "cupy": "cupy", "dask": "dask"}
    assert module.startswith(expected[backend]) or (backend == "jax" and "jax" in module)


# -- modes, methods, batches -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("kshape", [(1, 1), (2, 3), (3, 3), (4, 2), (5, 5)])
def test_modes_match_scipy(backend, mode, kshape):
    x = RNG.standard_normal((9, 11))
    k = RNG.standard_normal(kshape)
    want = signal.correlate2d(x, k, mode=mode)
    dt = float_dtype(backend, np.float64)
    for method in ("auto", "direct", "fft"):
        got = to_np(xcorr.corr2d(x, k, mode=mode, method=method, backend=backend))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, **tol(dt), err_msg=f"{method=}")


def test_kernel_larger_than_image_in_same_and_full(backend):
    x, k = RNG.standard_normal((3, 4)), RNG.standard_normal((5, 6))
    for mode in ("same", "full"):
        got = to_np(xcorr.corr2d(x, k, mode=mode, backend=backend))
        np.testing.assert_allclose(got, signal.correlate2d(x, k, mode=mode),
                                   **tol(float_dtype(backend, np.float64)))


def test_batch_dimensions(backend):
    x = RNG.standard_normal((2, 3, 7, 6)).astype(np.float32)
    k = RNG.standard_normal((3, 2)).astype(np.float32)
    got = to_np(xcorr.corr2d(x, k, backend=backend))
    assert got.shape == (2, 3, 5, 5)
    for idx in np.ndindex(2, 3):
        np.testing.assert_allclose(got[idx], reference(x[idx], k), rtol=1e-5, atol=1e-5)


def test_the_reference_refuses_what_its_docstring_says():
    """A kernel larger than x gave an empty array and 1-D input an IndexError; its docstring
    promised ValueError for both."""
    with pytest.raises(ValueError, match="larger than x"):
        reference(np.ones((3, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="must be 2-D"):
        reference(np.ones(5), np.ones(2))


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_methods_agree_with_reference(backend, method):
    x = RNG.standard_normal((20, 17))
    k = RNG.standard_normal((4, 5))
    got = to_np(xcorr.corr2d(x, k, method=method, backend=backend))
    np.testing.assert_allclose(got, reference(x, k), **tol(float_dtype(backend, np.float64)))


# -- dtypes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_dtype_is_kept(backend, dtype):
    x = RNG.standard_normal((8, 8)).astype(dtype)
    k = RNG.standard_normal((3, 3)).astype(dtype)
    for method in ("auto", "direct", "fft"):
        got = to_np(xcorr.corr2d(x, k, method=method, backend=backend))
        assert got.dtype == float_dtype(backend, dtype), method


def test_integers_are_exact(backend):
    # Values that float32 cannot hold exactly, sums that still fit in int32 (JAX without x64).
    x = RNG.integers(-(2**14), 2**14, size=(12, 13))
    k = RNG.integers(-(2**8), 2**8, size=(3, 3))
    got = to_np(xcorr.corr2d(x, k, backend=backend))
    assert got.dtype.kind == "i"
    assert (got == reference(x, k)).all()
    assert to_np(xcorr.corr2d(x.astype(np.uint16) % 1000, k, backend=backend)).dtype.kind == "i"


def test_integer_fft_and_native_are_refused(backend):
    # The same answer on every device: cuDNN (torch/XLA on a GPU) has no int64 convolution.
    for method in {"fft", "native"} & {*xcorr._dispatch.load(backend).METHODS}:
        with pytest.raises(ValueError, match=f"method='{method}' cannot give exact integer"):
            xcorr.corr2d(np.ones((4, 4), dtype=np.int64), np.ones((2, 2), dtype=np.int64),
                         method=method, backend=backend)


@pytest.mark.parametrize("bad, match", [
    (np.ones((4, 4), dtype=complex), "complex"),
    (np.ones((4, 4), dtype=bool), "boolean"),
    (np.array([[1, "a"], [2, "b"]]), "not a number type"),
    (np.array([[1, None], [2, 3]], dtype=object), "not a number type|cannot convert"),
])
def test_unsupported_dtypes(backend, bad, match):
    with pytest.raises(TypeError, match=match):
        xcorr.corr2d(bad, np.ones((2, 2)), backend=backend)
    with pytest.raises(TypeError, match=match):
        xcorr.corr2d(np.ones((4, 4)), bad[:2, :2], backend=backend)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("x, k, exc, match", [
    (np.ones(5), np.ones((1, 1)), ValueError, "at least 2 dimensions"),
    (np.ones((4, 4)), np.ones(3), ValueError, "k must have at least 2 dimensions"),
    (np.ones((2, 4, 4)), np.ones((3, 2, 2)), ValueError, "do not broadcast"),
    (np.ones((0, 4)), np.ones((1, 1)), ValueError, "x is empty"),
    (np.ones((4, 4)), np.ones((0, 1)), ValueError, "k is empty"),
    (np.ones((3, 8)), np.ones((4, 1)), ValueError, "kernel height 4 exceeds image height 3"),
    (np.ones((8, 3)), np.ones((1, 4)), ValueError, "kernel width 4 exceeds image width 3"),
    ("abc", np.ones((1, 1)), TypeError, "x must be an array"),
    (np.ones((4, 4)), None, TypeError, "k must be an array"),
    ([[1, 2], [3]], np.ones((1, 1)), TypeError, "rectangular"),
])
def test_validation_messages(backend, x, k, exc, match):
    with pytest.raises(exc, match=match):
        xcorr.corr2d(x, k, backend=backend)


def test_unknown_mode_and_method(backend):
    with pytest.raises(ValueError, match="unknown mode 'nope'; choose one of valid, same, full"):
        xcorr.corr2d(np.ones((3, 3)), np.ones((2, 2)), mode="nope", backend=backend)
    with pytest.raises(ValueError, match="unknown method 'nope'.*auto, direct, fft"):
        xcorr.corr2d(np.ones((3, 3)), np.ones((2, 2)), method="nope", backend=backend)


def test_inputs_not_mutated_and_strided_views(backend):
    base = RNG.standard_normal((12, 14))
    kbase = RNG.standard_normal((4, 6))
    x, k = base[::-2, 1::2], kbase[::-2, ::-2]  # negative strides, non-contiguous
    x_before, k_before = x.copy(), k.copy()
    for mode in ("valid", "same", "full"):
        for method in ("direct", "fft"):
            got = to_np(xcorr.corr2d(x, k, mode=mode, method=method, backend=backend))
            np.testing.assert_allclose(got, signal.correlate2d(x_before, k_before, mode=mode),
                                       **tol(float_dtype(backend, np.float64)))
    assert (x == x_before).all() and (k == k_before).all()


# -- non-finite values -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_stays_local_under_auto(backend, bad):
    # A large kernel on a large image: the cost model would pick the FFT for finite data.
    x = RNG.standard_normal((256, 256))
    k = RNG.standard_normal((31, 31))
    x[100, 120] = bad
    got = to_np(xcorr.corr2d(x, k, backend=backend))
    touched = np.zeros(got.shape, dtype=bool)
    touched[100 - 30:101, 120 - 30:121] = True
    assert np.isfinite(got[~touched]).all()
    assert not np.isfinite(got[touched]).any()
    clean = x.copy()
    clean[100, 120] = 0
    want = to_np(xcorr.corr2d(clean, k, method="direct", backend=backend))
    np.testing.assert_allclose(got[~touched], want[~touched], rtol=1e-4, atol=1e-3)


def test_explicit_fft_on_nonfinite_warns(backend):
    x = np.ones((8, 8))
    x[2, 2] = np.nan
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):  # Dask: when the NaN block computes
        to_np(xcorr.corr2d(x, np.ones((3, 3)), method="fft", backend=backend))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xcorr.corr2d(x, np.ones((3, 3)), method="direct", backend=backend)


def test_uint64_beyond_int64_is_refused(backend):
    """Integers are exact in int64; uint64 values that do not fit must not wrap silently."""
    k = np.ones((1, 1), dtype=np.uint64)
    x = np.full((2, 2), 2**63 - 1, dtype=np.uint64)
    if backend != "jax" or _jax_x64():
        assert (to_np(xcorr.corr2d(x, k, backend=backend)) == 2**63 - 1).all()
    x[1, 1] = 2**63
    with pytest.raises(OverflowError, match="above 2\\*\\*63 - 1"):
        xcorr.corr2d(x, k, backend=backend)


def test_uint64_beyond_int64_beside_a_float_is_read_as_float64(backend):
    """With a float operand the result is float, so uint64 values past int64 have nothing to
    wrap: read as float64, NumPy's promotion (they were refused with int64's OverflowError),
    in corr2d, conv2d and the NCC (float whatever the input)."""
    x = np.array([[2**63, 1, 7], [2, 3, 2**64 - 1], [5, 5, 2**63 + 2**20]], np.uint64)
    k = np.array([[0.5, 0.25]])
    with x64(backend):
        got = to_np(xcorr.corr2d(x, k, backend=backend))
        conv = to_np(xcorr.conv2d(x[None, None], k[None, None], backend=backend))
        ncc = to_np(xcorr.match_template(x, np.array([[1.0, 2.0]]), backend=backend))
        with pytest.raises(OverflowError, match="above 2\\*\\*63 - 1"):  # integer result
            xcorr.corr2d(x, k.astype(np.int64), backend=backend)
    np.testing.assert_array_equal(got, reference(x.astype(np.float64), k))
    np.testing.assert_array_equal(conv[0, 0], got)
    want = xcorr.match_template(x.astype(np.float64), np.array([[1.0, 2.0]]))
    np.testing.assert_allclose(ncc, want, atol=1e-6 if backend == "jax" else 1e-12)


def _jax_x64() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


@pytest.mark.parametrize("dtype", [">f8", ">i4", "<f4"])
def test_any_byte_order_is_accepted(backend: str, dtype: str) -> None:
    # Issue 16, defect 5: big-endian NumPy input raised TypeError on the JAX backend.
    x = np.arange(30).reshape(5, 6).astype(dtype)
    k = np.array([[1, -2], [3, 1]]).astype(dtype)
    got = to_np(xcorr.corr2d(x, k, backend=backend))
    np.testing.assert_array_equal(got, reference(x.astype(np.int64), k.astype(np.int64)))


@pytest.mark.parametrize("dtype", [">f8", ">f4", ">i2", ">u2"])
def test_big_endian_gives_native_results_of_every_operation(backend: str, dtype: str) -> None:
    """Every operation reads byte-swapped input as its values and answers in native order,
    as NumPy's own arithmetic does (pool2d kept '>f8' for average pooling on NumPy and Dask,
    and Dask's pool2d declared '>i2' for blocks that computed int16)."""
    x = (np.arange(64).reshape(8, 8) % 9).astype(dtype)
    native = x.astype(x.dtype.newbyteorder("="))
    calls = {
        "corr2d": lambda a: xcorr.corr2d(a, a[:2, :3], backend=backend),
        "pool2d max": lambda a: xcorr.pool2d(a, 2, backend=backend),
        "conv2d": lambda a: xcorr.conv2d(a[None], a[None, None, :2, :2], backend=backend),
        "match_template": lambda a: xcorr.match_template(a, a[:3, :3], backend=backend),
    }
    if x.dtype.kind == "f":
        calls["pool2d avg"] = lambda a: xcorr.pool2d(a, 2, mode="avg", backend=backend)
    for name, call in calls.items():
        got, want = call(x), call(native)
        assert str(got.dtype) == str(want.dtype), name
        if backend == "dask":
            assert got.compute().dtype == got.dtype, f"{name}: Dask's declared dtype"
        host = to_np(got)
        assert host.dtype.isnative, f"{name}: {host.dtype.str}"
        np.testing.assert_array_equal(host, to_np(want), err_msg=name)


def test_integer_fill_past_float64_is_an_infinity(backend):
    """An integer fillvalue past float64's range, for float data, rounds to an infinity (as
    one past float32's range does for float32 data); np.pad raised Python's OverflowError."""
    x, k = np.ones((3, 3)), np.ones((2, 2))
    for sign in (1, -1):
        got = to_np(xcorr.corr2d(x, k, mode="same", fillvalue=sign * 10**400, backend=backend))
        want = to_np(xcorr.corr2d(x, k, mode="same", fillvalue=sign * np.inf, backend=backend))
        np.testing.assert_array_equal(got, want)
        assert np.isinf(got[-1]).all() and (got[:2, :2] == 4).all()
