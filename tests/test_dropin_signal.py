"""``xcorr.signal``: SciPy's own ``correlate2d``/``convolve2d`` tests, ported, on every backend;
properties against SciPy on random inputs of every dtype SciPy accepts; and the behaviours a
drop-in must keep (framework in = framework out, wrapping integers, errors, no mutation).

The ports keep SciPy's expected values (``scipy/signal/tests/test_signaltools.py``, SciPy
1.17); each names the test it comes from.  Each runs on every available backend with the
inputs in that backend's framework, and checks the result's framework, dtype and values.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.signal
from _dropin_support import (
    LONG,
    assert_close,
    assert_same,
    assert_same_outcome,
    check_ported,
    magnitude,
    outcome,
    to_backend,
    unit_roundoff,
    x64,
)
from conftest import to_np
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xcorr
from xcorr import signal

FUNCS = {"correlate2d": signal.correlate2d, "convolve2d": signal.convolve2d}
SCIPY = {"correlate2d": scipy.signal.correlate2d, "convolve2d": scipy.signal.convolve2d}




# -- SciPy's tests, ported (TestConvolve2d and TestCorrelate2d) --------------------------------

A = np.array([[1, 2, 3], [3, 4, 5]])
B = np.array([[2, 3, 4], [4, 5, 6]])


def test_2d_arrays(backend: str) -> None:  # TestConvolve2d.test_2d_arrays
    d = [[2, 7, 16, 17, 12], [10, 30, 62, 58, 38], [12, 31, 58, 49, 30]]
    check_ported(backend, signal.convolve2d, (A, B), d)


def test_valid_mode(backend: str) -> None:  # TestConvolve2d.test_valid_mode
    e = np.array([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]])
    f = np.array([[1, 2, 3], [3, 4, 5]])
    h = [[62, 80, 98, 116, 134]]
    check_ported(backend, signal.convolve2d, (e, f), h, mode="valid")
    check_ported(backend, signal.convolve2d, (f, e), h, mode="valid")  # gh-5897


def test_valid_mode_complx(backend: str) -> None:  # TestConvolve2d.test_valid_mode_complx
    e = np.array([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]])
    f = np.array([[1, 2, 3], [3, 4, 5]], dtype=np.complex128) + 1j
    h = np.array([[62. + 24.j, 80. + 30.j, 98. + 36.j, 116. + 42.j, 134. + 48.j]])
    check_ported(backend, signal.convolve2d, (e, f), h, mode="valid")
    check_ported(backend, signal.convolve2d, (f, e), h, mode="valid")  # gh-5897


def test_fillvalue(backend: str) -> None:  # TestConvolve2d.test_fillvalue
    d = [[24, 26, 31, 34, 32], [28, 40, 62, 64, 52], [32, 46, 67, 62, 48]]
    check_ported(backend, signal.convolve2d, (A, B, "full", "fill", 1), d)


def test_fillvalue_errors() -> None:  # TestConvolve2d.test_fillvalue_errors
    with pytest.raises(ValueError, match="could not cast `fillvalue` directly to the output "):
        signal.convolve2d([[1]], [[1, 2]], fillvalue=1j)
    with pytest.raises(ValueError, match="`fillvalue` must be scalar or an array with "):
        signal.convolve2d([[1]], [[1, 2]], fillvalue=[1, 2])


def test_fillvalue_empty() -> None:  # TestConvolve2d.test_fillvalue_empty
    with pytest.raises(ValueError, match="`fillvalue` cannot be an empty array"):
        signal.convolve2d([[1]], [[1, 2]], fillvalue=[])


def test_wrap_boundary(backend: str) -> None:  # TestConvolve2d.test_wrap_boundary
    d = [[80, 80, 74, 80, 80], [68, 68, 62, 68, 68], [80, 80, 74, 80, 80]]
    check_ported(backend, signal.convolve2d, (A, B, "full", "wrap"), d)


def test_sym_boundary(backend: str) -> None:  # TestConvolve2d.test_sym_boundary
    d = [[34, 30, 44, 62, 66], [52, 48, 62, 80, 84], [82, 78, 92, 110, 114]]
    check_ported(backend, signal.convolve2d, (A, B, "full", "symm"), d)


@pytest.mark.parametrize("func", ["convolve2d", "correlate2d"])
@pytest.mark.parametrize("boundary, expected", [("symm", [[37.0, 42.0, 44.0, 45.0]]),
                                                ("wrap", [[43.0, 44.0, 42.0, 39.0]])])
def test_same_with_boundary(backend: str, func: str, boundary: str, expected: list) -> None:
    # TestConvolve2d.test_same_with_boundary: a kernel that extends the image more than once
    # (gh-8684, gh-8814).
    image = np.array([[2.0, -1.0, 3.0, 4.0]])
    kernel = np.ones((1, 21))
    check_ported(backend, FUNCS[func], (image, kernel), expected, mode="same",
                 boundary=boundary)


def test_boundary_extension_same(backend: str) -> None:
    # TestConvolve2d.test_boundary_extension_same (gh-12686)
    import scipy.ndimage as ndi

    a = np.arange(1, 10 * 3 + 1, dtype=np.float64).reshape(10, 3)
    b = np.arange(1, 10 * 10 + 1, dtype=np.float64).reshape(10, 10)
    want = ndi.convolve(a, b, mode="wrap", origin=(-1, -1))
    check_ported(backend, signal.convolve2d, (a, b), want, mode="same", boundary="wrap")


def test_boundary_extension_full(backend: str) -> None:
    # TestConvolve2d.test_boundary_extension_full (gh-12686)
    import scipy.ndimage as ndi

    a = np.arange(1, 3 * 3 + 1, dtype=np.float64).reshape(3, 3)
    b = np.arange(1, 6 * 6 + 1, dtype=np.float64).reshape(6, 6)
    apad = np.pad(a, ((3, 3), (3, 3)), "wrap")
    want = ndi.convolve(apad, b, mode="wrap")[:-1, :-1]
    check_ported(backend, signal.convolve2d, (a, b), want, mode="full", boundary="wrap")


@pytest.mark.parametrize("func", ["convolve2d", "correlate2d"])
def test_invalid_shapes(func: str) -> None:
    # TestConvolve2d.test_invalid_shapes, TestCorrelate2d.test_invalid_shapes
    a = np.arange(1, 7).reshape((2, 3))
    b = np.arange(-6, 0).reshape((3, 2))
    with pytest.raises(ValueError, match="one must be at least as large as the other"):
        FUNCS[func](a, b, mode="valid")
    with pytest.raises(ValueError, match="one must be at least as large as the other"):
        FUNCS[func](b, a, mode="valid")


def test_same_mode(backend: str) -> None:  # TestConvolve2d.test_same_mode
    e = np.array([[1, 2, 3], [3, 4, 5]])
    f = np.array([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]])
    check_ported(backend, signal.convolve2d, (e, f, "same"), [[22, 28, 34], [80, 98, 116]])


def test_valid_mode2(backend: str) -> None:  # TestConvolve2d.test_valid_mode2 (gh-5897)
    e = np.array([[1, 2, 3], [3, 4, 5]])
    f = np.array([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]])
    check_ported(backend, signal.convolve2d, (e, f, "valid"), [[62, 80, 98, 116, 134]])
    check_ported(backend, signal.convolve2d, (f, e, "valid"), [[62, 80, 98, 116, 134]])
    e = np.array([[1 + 1j, 2 - 3j], [3 + 1j, 4 + 0j]])
    f = np.array([[2 - 1j, 3 + 2j, 4 + 0j], [4 - 0j, 5 + 1j, 6 - 3j]])
    check_ported(backend, signal.convolve2d, (e, f, "valid"), [[27 - 1j, 46. + 2j]])
    check_ported(backend, signal.convolve2d, (f, e, "valid"), [[27 - 1j, 46. + 2j]])


@pytest.mark.parametrize("mode", ["full", "valid", "same"])
def test_consistency_convolve_funcs(mode: str) -> None:
    # TestConvolve2d.test_consistency_convolve_funcs
    a, b = np.arange(5), np.array([3.2, 1.4, 3])
    got = signal.convolve2d(a[None, :], b[None, :], mode=mode)[0]
    np.testing.assert_allclose(got, np.convolve(a, b, mode=mode), rtol=1e-14)
    np.testing.assert_allclose(got, scipy.signal.convolve(a, b, mode=mode), rtol=1e-14)


@pytest.mark.parametrize("func", ["convolve2d", "correlate2d"])
def test_invalid_dims(func: str) -> None:  # TestConvolve2d.test_invalid_dims
    for args in ((3, 4), ([3], [4]), ([[[3]]], [[[4]]])):
        with pytest.raises(ValueError, match=f"{func} inputs must both be 2-D arrays"):
            FUNCS[func](*args)


def test_strided_input_counts() -> None:
    # TestConvolve2d.test_large_array (gh-10761) at a size this suite can afford: a chequered
    # pattern read through as_strided rows that overlap, so no output may count above 1.
    n = 64
    a = np.zeros(1001 * n, dtype=np.int64)
    a[::2] = 1
    a = np.lib.stride_tricks.as_strided(a, shape=(n, 1000), strides=(8008, 8))
    count = signal.convolve2d(a, [[1, 1]])
    assert count.dtype == np.int64 and count.shape == (n, 1001)
    assert not (count > 1).any()
    np.testing.assert_array_equal(count, scipy.signal.convolve2d(a, [[1, 1]]))


@pytest.mark.parametrize("mode", ["full", "valid", "same"])
def test_consistency_correlate_funcs_2(mode: str) -> None:
    # TestCorrelate2d.test_consistency_correlate_funcs_2 (with gh-5897 in valid mode)
    a, b = np.arange(5), np.array([3.2, 1.4, 3])
    np.testing.assert_allclose(np.squeeze(signal.correlate2d([a], [b], mode=mode)),
                               scipy.signal.correlate(a, b, mode=mode), rtol=1e-14)
    if mode == "valid":
        np.testing.assert_allclose(np.squeeze(signal.correlate2d([b], [a], mode=mode)),
                                   scipy.signal.correlate(b, a, mode=mode), rtol=1e-14)


def test_complex_input(backend: str) -> None:  # TestCorrelate2d.test_complex_input
    one, two_j = np.array([[1]]), np.array([[2j]])
    check_ported(backend, signal.correlate2d, (one, two_j), [[-2j]])
    check_ported(backend, signal.correlate2d, (two_j, np.array([[3j]])), [[6 + 0j]])
    check_ported(backend, signal.correlate2d, (np.array([[3j]]), np.array([[4]])), [[12j]])


# -- properties against SciPy -----------------------------------------------------------------

REAL = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float32", "float64", "longdouble")
COMPLEX = ("complex64", "complex128", "clongdouble")
BOUNDARIES = ("fill", "pad", "wrap", "circular", "symm", "symmetric")
MODES = ("full", "same", "valid")
PROPS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])


def _elements(dtype: np.dtype, subnormal: bool = True) -> st.SearchStrategy:
    """Whole ranges for integers (wrapping is part of the contract), bounded floats (their
    sums stay finite) with NaN/±Inf now and then; subnormal ones unless ``subnormal`` is
    False (XLA on the CPU flushes them to zero, so ``inf · 1e-310j`` is NaN there)."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(int(info.min), int(info.max))
    finite = st.floats(-1e3, 1e3, width=32 if dtype == np.float32 else 64,
                       allow_subnormal=subnormal)
    special = st.sampled_from([np.nan, np.inf, -np.inf])
    real = st.one_of(finite, finite, finite, finite, finite, finite, finite, special)
    if dtype.kind == "c":
        return st.builds(complex, finite, finite)
    return real


def _array(dtype: np.dtype, shape: tuple[int, int],
           subnormal: bool = True) -> st.SearchStrategy[np.ndarray]:
    # longdouble data: float64 values widened (Hypothesis draws no extended floats).
    base = {"g": np.dtype(np.float64), "G": np.dtype(np.complex128)}.get(dtype.char, dtype)
    return hnp.arrays(base, shape, elements=_elements(base, subnormal)).map(
        lambda a: a.astype(dtype))


def _shape(max_side: int, min_side: int = 0) -> st.SearchStrategy[tuple[int, int]]:
    side = st.integers(min_side, max_side)
    return st.tuples(side, side)


def _fillvalue(dtype: np.dtype, subnormal: bool = True) -> st.SearchStrategy:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.one_of(st.just(0), st.integers(int(info.min), int(info.max)))
    finite = st.floats(-1e3, 1e3, allow_subnormal=subnormal)
    if dtype.kind == "c":
        return st.one_of(st.just(0), finite, st.builds(complex, finite, finite))
    return st.one_of(st.just(0), finite, st.just(np.nan))


def _scipy_crashes(mode: str, boundary: str, s1: tuple, s2: tuple) -> bool:
    """SciPy divides by an empty side of in1 (SIGFPE) when it must extend it by copying."""
    if mode == "valid":
        ok1 = all(a >= b for a, b in zip(s1, s2, strict=True))
        ok2 = all(b >= a for a, b in zip(s1, s2, strict=True))
        if not (ok1 or ok2):
            return False  # refused before any work
        if not ok1:
            s1, s2 = s2, s1
    out = {"full": (s1[0] + s2[0] - 1, s1[1] + s2[1] - 1), "same": s1,
           "valid": (s1[0] - s2[0] + 1, s1[1] - s2[1] + 1)}[mode]
    return boundary not in ("fill", "pad") and 0 in s1 and 0 not in out


def _bound(func: str, x: np.ndarray, k: np.ndarray, mode: str, boundary: str, fill: object,
           dtype: np.dtype) -> np.ndarray:
    """Allowed |xcorr - SciPy|: each within the dot-product bound ``2 (n+2) u (|x| * |k|)``
    of the exact result, with ``|x| * |k|`` the same operation on magnitudes (SciPy's own,
    in float64: the same padding, alignment and swap) and ``u`` of the output dtype.

    For a long double output, in long double: a product of float64 subnormals, or of two
    values below 1e-160, is a normal long double whose bound underflows to 0 in float64."""
    wide = np.longdouble if np.dtype(dtype).char in "gG" else np.float64
    fmag = float(magnitude(np.asarray(fill))) if boundary in ("fill", "pad") else 0.0
    mags = SCIPY[func](magnitude(x, wide), magnitude(k, wide), mode, boundary, fmag)
    n = k.size if mode != "valid" or all(a >= b for a, b in zip(x.shape, k.shape,
                                                                strict=True)) else x.size
    u = wide(unit_roundoff(dtype))
    tiny = np.finfo(dtype).smallest_normal.astype(wide)
    return 2 * (2 * (n + 2) * u * mags + n * tiny)


def _check_against_scipy(func: str, x: np.ndarray, k: np.ndarray, mode: str, boundary: str,
                         fill: object) -> None:
    xc, kc = x.copy(), k.copy()
    if _scipy_crashes(mode, boundary, x.shape, k.shape):
        with pytest.raises(ValueError, match="cannot extend an empty in1"):
            FUNCS[func](x, k, mode, boundary, fill)
        return
    want = outcome(SCIPY[func], x, k, mode, boundary, fill)
    got = outcome(FUNCS[func], x, k, mode, boundary, fill)
    np.testing.assert_array_equal(x, xc, strict=True)  # inputs are never mutated
    np.testing.assert_array_equal(k, kc, strict=True)
    if want[0] != "ok" or want[1].dtype.kind in "iu" or got[0] != "ok":
        assert_same_outcome(got, want, f"{func}({mode}, {boundary}, {fill!r})")
        return
    assert_close(got[1], want[1], _bound(func, x, k, mode, boundary, fill, want[1].dtype),
                 f"{func}({mode}, {boundary}, {fill!r})")


@st.composite
def _cases(draw: st.DrawFn, dtypes: tuple[str, ...], subnormal: bool = True) -> tuple:
    d1, d2 = (np.dtype(draw(st.sampled_from(dtypes))) for _ in range(2))
    s1 = draw(st.one_of(_shape(6, 1), _shape(6, 1), _shape(6),  # empty now and then
                        st.tuples(st.just(1), st.integers(1, 12))))
    s2 = draw(st.one_of(_shape(4), _shape(9, 1)))  # kernels up to larger than the image
    x, k = draw(_array(d1, s1, subnormal)), draw(_array(d2, s2, subnormal))
    fill = draw(_fillvalue(np.result_type(d1, d2), subnormal))
    return x, k, draw(st.sampled_from(MODES)), draw(st.sampled_from(BOUNDARIES)), fill


@pytest.mark.parametrize("func", list(FUNCS))
@pytest.mark.parametrize("kinds", ["real", "complex"])
def test_equals_scipy(func: str, kinds: str) -> None:
    """Every dtype pair, mode, boundary (with SciPy's synonyms) and fill value; shapes from
    empty to kernels larger than the image, 1×N; integers bit for bit (wrapping included),
    floats within the error bound, errors with SciPy's type and message."""
    dtypes = REAL if kinds == "real" else REAL + COMPLEX

    @PROPS
    @given(_cases(dtypes))
    def prop(case: tuple) -> None:
        x, k, mode, boundary, fill = case
        note(f"{x.dtype} {x.shape}, {k.dtype} {k.shape}")
        _check_against_scipy(func, x, k, mode, boundary, fill)

    prop()


@pytest.mark.parametrize("dtype", [*LONG])
@pytest.mark.parametrize("func", list(FUNCS))
def test_longdouble_equals_scipy(func: str, dtype: np.dtype) -> None:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((5, 6)) + (1j if dtype.kind == "c" else 0)).astype(dtype)
    k = rng.standard_normal((3, 2)).astype(dtype)
    for mode in MODES:
        for boundary in ("fill", "wrap", "symm"):
            _check_against_scipy(func, x, k, mode, boundary, 0.5)
            got = FUNCS[func](x, k, mode, boundary, 0.5)
            assert got.dtype == dtype


@pytest.mark.parametrize("func", list(FUNCS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
@pytest.mark.parametrize("s1, s2", [((0, 3), (2, 2)), ((3, 0), (1, 3)), ((0, 0), (5, 1)),
                                    ((0, 3), (1, 3)), ((0, 3), (3, 0)), ((2, 2), (0, 3)),
                                    ((3, 0), (0, 0)), ((0, 2), (0, 3)), ((2, 3), (2, 0))])
def test_empty_inputs(func: str, mode: str, boundary: str, s1: tuple, s2: tuple) -> None:
    """SciPy's shapes and zeros for empty inputs; where SciPy would crash, a ValueError."""
    _check_against_scipy(func, np.ones(s1), np.ones(s2), mode, boundary, 3)


def test_scipy_crashes_where_xcorr_refuses() -> None:
    """The case the ValueError stands for: SciPy dies with SIGFPE (in a child process)."""
    code = ("import numpy as np, scipy.signal as s; "
            "s.correlate2d(np.ones((0, 3)), np.ones((2, 2)), 'full', 'wrap')")
    rc = subprocess.run([sys.executable, "-c", code], capture_output=True).returncode
    assert rc != 0
    with pytest.raises(ValueError, match="boundary='wrap' cannot extend an empty in1"):
        signal.correlate2d(np.ones((0, 3)), np.ones((2, 2)), "full", "wrap")


FILLVALUES = [1.5, 300, -1, 2**70, [1, 2], [], [[2]], np.array([1.5]), np.array(5),
              np.array(5, np.int8), np.array([2], np.int8), np.float64(1e300), np.int64(300),
              np.float32(1.5), np.complex128(1j), 1j, 1 + 0j, "a", "2", None, True, np.nan,
              np.inf]


@pytest.mark.parametrize("dtype", ["int8", "uint8", "uint64", "float32", "complex64"])
@pytest.mark.parametrize("boundary", ["fill", "wrap"])
@pytest.mark.parametrize("fillvalue", FILLVALUES, ids=repr)
def test_fillvalue_as_scipy(fillvalue: object, boundary: str, dtype: str) -> None:
    """SciPy's conversion of ``fillvalue`` (arrays cast safely, scalars and lists assigned,
    then the retry via complex), its errors, and no check at all unless ``boundary='fill'``."""
    a = np.array([[1, 2], [3, 4]], dtype=dtype)
    want = outcome(scipy.signal.correlate2d, a, a, "full", boundary, fillvalue)
    got = outcome(signal.correlate2d, a, a, "full", boundary, fillvalue)
    assert_same_outcome(got, want, f"fillvalue={fillvalue!r}")


ERRORS = [
    (([[1, 2]], [[1]]), {"mode": "nope"}),
    (([[1, 2]], [[1]]), {"boundary": "reflect"}),
    (([[1, 2]], [[1]]), {"boundary": "nope", "mode": "nope"}),
    (([[1, 2]], [[1], [2]]), {"mode": "valid", "boundary": "nope"}),
    (([[True]], [[True]]), {}),
    ((np.ones((2, 2), np.float16), np.ones((1, 1), np.float16)), {}),
    ((np.ones((2, 2), object), [[1.0]]), {}),
    ((np.ones((2, 2), bool), [[1]]), {"fillvalue": [1, 2]}),
    (([1, 2], [[1]]), {}),
    (([[1, 2]], [[1]]), {"boundary": None}),
    (([[1, 2]], [[1]]), {"boundary": "reflect", "fillvalue": []}),
]


@pytest.mark.parametrize("func", list(FUNCS))
@pytest.mark.parametrize("args, kwargs", ERRORS)
def test_errors_as_scipy(func: str, args: tuple, kwargs: dict) -> None:
    """The exception (type and message) SciPy raises, also when several things are wrong."""
    want = outcome(SCIPY[func], *args, **kwargs)
    assert want[0] != "ok"
    assert_same_outcome(outcome(FUNCS[func], *args, **kwargs), want, f"{args} {kwargs}")


# -- other backends: framework in, framework out -----------------------------------------------

BACKEND_DTYPES = ("int8", "uint8", "int32", "uint64", "float32", "float64", "complex64",
                  "complex128")


def test_backends_equal_numpy(backend: str) -> None:
    """Random cases on each backend equal the NumPy drop-in (itself checked against SciPy
    above): integers bit for bit, floats within the bound; results in the input's framework."""

    share = 4 if backend in ("numpy", "torch") else 8  # JAX compiles, Dask builds graphs

    @settings(PROPS, max_examples=max(4, settings.default.max_examples // share))
    # XLA's CPU code flushes subnormal numbers to zero: no subnormal inputs for JAX.
    @given(_cases(BACKEND_DTYPES, subnormal=backend != "jax"), st.sampled_from(list(FUNCS)))
    def prop(case: tuple, func: str) -> None:
        x, k, mode, boundary, fill = case
        assume(not _scipy_crashes(mode, boundary, x.shape, k.shape))
        want = outcome(FUNCS[func], x, k, mode, boundary, fill)
        with x64(backend):
            got = outcome(FUNCS[func], to_backend(backend, x), to_backend(backend, k), mode,
                          boundary, fill)
            if want[0] != "ok" or got[0] != "ok":
                assert got[:1] == want[:1] and got[1] == want[1]
                return
            w = want[1]
            if w.dtype.kind in "iu":
                assert_same(got[1], w, backend)
                return
            assert xcorr._dispatch.array_backend(got[1]) == backend
            bound = _bound(func, x, k, mode, boundary, fill, w.dtype)
            assert_close(to_np(got[1]), w, bound, f"{func} on {backend}")

    prop()


@pytest.mark.parametrize("func", list(FUNCS))
def test_framework_in_framework_out(backend: str, func: str) -> None:
    """``from xcorr import signal``, then arrays of any framework: results in that framework,
    without ``backend=``."""
    x = np.arange(20, dtype=np.float64).reshape(4, 5)
    k = np.array([[1.0, -2.0], [0.5, 3.0]])
    want = SCIPY[func](x, k, "same", "symm")
    with x64(backend):
        got = FUNCS[func](to_backend(backend, x), to_backend(backend, k), "same", "symm")
        assert_same(got, want, backend, func)


def test_backend_keyword(backend: str) -> None:
    """``backend=`` sends NumPy (and list) input to that backend; the result is its array."""
    x = [[1, 2, 3], [4, 5, 6]]
    want = scipy.signal.correlate2d(x, [[1, -1]], "full", "wrap")
    with x64(backend):
        assert_same(signal.correlate2d(x, [[1, -1]], "full", "wrap", backend=backend),
                    want, backend)


def test_two_frameworks_refused() -> None:
    torch = pytest.importorskip("torch", reason="torch not installed")
    jnp = pytest.importorskip("jax.numpy", reason="jax not installed")
    with pytest.raises(TypeError, match="in1 and in2 belong to different frameworks"):
        signal.correlate2d(torch.ones(2, 2), jnp.ones((2, 2)))


# -- behaviours a drop-in must keep ------------------------------------------------------------


@pytest.mark.parametrize("func", list(FUNCS))
def test_uint64_above_2_63_wraps_as_scipy(backend: str, func: str) -> None:
    x = np.array([[2**64 - 1, 2**63 + 5, 3], [2**63, 7, 2**62]], dtype=np.uint64)
    k = np.array([[3, 2**63 + 1], [1, 2**64 - 2]], dtype=np.uint64)
    for mode in MODES:
        want = SCIPY[func](x, k, mode, "fill", 2**64 - 1)
        check_ported(backend, FUNCS[func], (x, k, mode, "fill", 2**64 - 1), want)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_small_integer_overflow_wraps_as_scipy(backend: str, dtype: str) -> None:
    info = np.iinfo(dtype)
    x = np.array([[info.max, info.max, info.min], [info.min, 1, info.max]], dtype=dtype)
    k = np.array([[info.max, 2], [3, info.min]], dtype=dtype)
    for func in FUNCS:
        want = SCIPY[func](x, k, "same", "symm")
        assert (want.astype(np.int64) != SCIPY[func](x.astype(np.int64), k.astype(np.int64),
                                                     "same", "symm")).any()  # it wrapped
        check_ported(backend, FUNCS[func], (x, k, "same", "symm"), want)


@pytest.mark.parametrize("func", list(FUNCS))
def test_complex_valid_swap_as_scipy(backend: str, func: str) -> None:
    """gh-5897 with complex data: SciPy swaps, conjugates the new ``in2`` and reverses; the
    drop-in does exactly that.  For a correlation the result is then the conjugate of the
    middle of the ``full`` output, not the middle itself."""
    small = np.array([[1 + 2j, -1j], [3, 2 - 1j]])
    big = np.array([[1j, 2, 3 - 1j], [4, 5j, 6], [7, 8 + 1j, 9]])
    want = SCIPY[func](small, big, "valid")
    check_ported(backend, FUNCS[func], (small, big, "valid"), want)
    middle = SCIPY[func](small, big, "full")[1:3, 1:3]
    np.testing.assert_array_equal(want, np.conj(middle) if func == "correlate2d" else middle)


def test_mixed_dtypes_follow_scipy() -> None:
    """Output dtypes are NumPy's promotion, as SciPy: int8 with uint8 is int16, int64 with
    uint64 float64, float32 with int64 float64, float32 with complex64 complex64."""
    for d1, d2 in [("int8", "uint8"), ("int64", "uint64"), ("float32", "int64"),
                   ("float32", "complex64"), ("int16", "complex64"), ("uint32", "int8")]:
        x = np.arange(1, 7).reshape(2, 3).astype(d1)
        k = np.array([[1, 2]]).astype(d2)
        assert_same(signal.convolve2d(x, k), scipy.signal.convolve2d(x, k), "numpy", d1 + d2)


@pytest.mark.parametrize("x", [[[1.5, 2, 3]], [[1, 2], [3, 4]], [[1 + 1j, 2]], [[True, 2]]])
def test_lists_as_scipy(x: list) -> None:
    assert_same(signal.correlate2d(x, [[1, 2]]), scipy.signal.correlate2d(x, [[1, 2]]))


def test_no_warnings_on_wrapping() -> None:
    x = np.full((3, 3), 127, dtype=np.int8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        signal.correlate2d(x, x)
        signal.convolve2d(x, x, "same", "wrap")
