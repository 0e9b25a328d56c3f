"""``xcorr.ndimage``: ``scipy.ndimage``'s own ``correlate``/``convolve`` tests, ported (2-D; the
1-D and N-D ones become checks that xcorr says it does not do them), on every backend;
properties against ``scipy.ndimage`` on random inputs; and a drop-in's behaviours (``output=``,
warnings, errors, framework in = framework out, no mutation).

The ports keep SciPy's expected values (``scipy/ndimage/tests/test_filters.py``, SciPy 1.17);
each names the test it comes from.  A 1-D case ``[a, b, c]`` becomes the 2-D ``[[a, b, c]]``
(its origin ``o`` the pair ``(0, o)``); ``correlate1d(..., axis=0)`` with weights ``[p, q, r]``
becomes ``correlate`` with weights ``[[p], [q], [r]]``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import scipy.ndimage
from _dropin_support import (
    assert_close,
    assert_same,
    check_ported,
    holds,
    magnitude,
    to_backend,
    unit_roundoff,
    x64,
)
from conftest import to_np
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xcorr
from xcorr import ndimage
from xcorr._dispatch import array_backend

FUNCS = {"correlate": ndimage.correlate, "convolve": ndimage.convolve}
SCIPY = {"correlate": scipy.ndimage.correlate, "convolve": scipy.ndimage.convolve}

# scipy/ndimage/tests/__init__.py
INTEGER_TYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
FLOAT_TYPES = ["float32", "float64"]
COMPLEX_TYPES = ["complex64", "complex128"]
TYPES = INTEGER_TYPES + FLOAT_TYPES
SLOW = ("jax", "dask")  # backends where each new call compiles (JAX) or builds a graph (Dask)


def types_for(backend: str) -> list[str]:
    """The dtypes a per-dtype loop of a port visits: all of them on NumPy and torch; a few on
    JAX and Dask, where each call compiles or builds a graph (the suite must stay fast)."""
    return ["uint64", "float32"] if backend in SLOW else TYPES


def both(backend: str, array: Any, weights: Any, tcor: Any, tcov: Any | None = None,
         **kwargs: Any) -> None:
    """``correlate`` gives ``tcor`` and ``convolve`` ``tcov`` (default: the same) on
    ``backend``, in the input's dtype unless ``output`` says otherwise."""
    array, weights = np.asarray(array), np.asarray(weights)
    dtype = kwargs.get("output", array.dtype)
    tcov = tcor if tcov is None else tcov
    check_ported(backend, ndimage.correlate, (array, weights), np.asarray(tcor, dtype), **kwargs)
    check_ported(backend, ndimage.convolve, (array, weights), np.asarray(tcov, dtype), **kwargs)


# -- SciPy's tests, ported (TestNdimageFilters and module-level tests) -------------------------


def test_correlate01(backend: str) -> None:  # test_correlate01
    both(backend, [[1, 2]], [[2]], [[2, 4]])


def test_correlate01_overlap() -> None:  # test_correlate01_overlap: output is the input
    array = np.arange(256).reshape(16, 16)
    expected = 2 * array
    out = ndimage.correlate(array, [[2]], output=array)
    assert out is array
    np.testing.assert_array_equal(array, expected)


def test_correlate02(backend: str) -> None:  # test_correlate02
    both(backend, [[1, 2, 3]], [[1]], [[1, 2, 3]])


def test_correlate03(backend: str) -> None:  # test_correlate03
    both(backend, [[1]], [[1, 1]], [[2]])


def test_correlate04(backend: str) -> None:  # test_correlate04
    both(backend, [[1, 2]], [[1, 1]], [[2, 3]], [[3, 4]])


def test_correlate05(backend: str) -> None:  # test_correlate05
    both(backend, [[1, 2, 3]], [[1, 1]], [[2, 3, 5]], [[3, 5, 6]])


def test_correlate06(backend: str) -> None:  # test_correlate06
    both(backend, [[1, 2, 3]], [[1, 2, 3]], [[9, 14, 17]], [[7, 10, 15]])


def test_correlate07(backend: str) -> None:  # test_correlate07
    both(backend, [[1, 2, 3]], [[1, 2, 1]], [[5, 8, 11]])


def test_correlate08(backend: str) -> None:  # test_correlate08
    both(backend, [[1, 2, 3]], [[1, 2, -1]], [[1, 2, 5]], [[3, 6, 7]])


def test_correlate09_and_other_1d_cases_are_not_implemented() -> None:
    # test_correlate01..09 and 17 in their 1-D form: xcorr.ndimage is 2-D only.
    for array, weights in (([1, 2], [2]), ([], [1, 1]), ([1, 2, 3], [1, 1])):
        for func in FUNCS.values():
            with pytest.raises(NotImplementedError, match="handles 2-D input and weights"):
                func(np.asarray(array), np.asarray(weights))


def test_correlate10(backend: str) -> None:  # test_correlate10: empty input
    both(backend, np.zeros((1, 0)), [[1, 1]], np.zeros((1, 0)))


ARRAY = [[1, 2, 3], [4, 5, 6]]


def test_correlate11(backend: str) -> None:  # test_correlate11
    both(backend, ARRAY, [[1, 1], [1, 1]], [[4, 6, 10], [10, 12, 16]],
         [[12, 16, 18], [18, 22, 24]])


def test_correlate12(backend: str) -> None:  # test_correlate12
    both(backend, ARRAY, [[1, 0], [0, 1]], [[2, 3, 5], [5, 6, 8]], [[6, 8, 9], [9, 11, 12]])


def test_correlate13(backend: str) -> None:  # test_correlate13: output=dtype, every pair
    for dtype_array in types_for(backend):
        for dtype_output in types_for(backend):
            both(backend, np.array(ARRAY, dtype_array), [[1, 0], [0, 1]],
                 [[2, 3, 5], [5, 6, 8]], [[6, 8, 9], [9, 11, 12]],
                 output=np.dtype(dtype_output).type)


@pytest.mark.parametrize("dtype_array", TYPES)
@pytest.mark.parametrize("dtype_output", TYPES)
def test_correlate14(dtype_array: str, dtype_output: str) -> None:
    # test_correlate14: output arrays (NumPy input only)
    array = np.array(ARRAY, dtype=dtype_array)
    output = np.zeros(array.shape, dtype=dtype_output)
    assert ndimage.correlate(array, [[1, 0], [0, 1]], output=output) is output
    np.testing.assert_array_equal(output, np.array([[2, 3, 5], [5, 6, 8]], dtype_output))
    assert ndimage.convolve(array, [[1, 0], [0, 1]], output=output) is output
    np.testing.assert_array_equal(output, np.array([[6, 8, 9], [9, 11, 12]], dtype_output))


def test_correlate15(backend: str) -> None:  # test_correlate15
    for dtype_array in types_for(backend):
        both(backend, np.array(ARRAY, dtype_array), [[1, 0], [0, 1]], [[2, 3, 5], [5, 6, 8]],
             [[6, 8, 9], [9, 11, 12]], output=np.float32)


def test_correlate16(backend: str) -> None:  # test_correlate16
    for dtype_array in types_for(backend):
        both(backend, np.array(ARRAY, dtype_array), [[0.5, 0], [0, 0.5]],
             [[1, 1.5, 2.5], [2.5, 3, 4]], [[3, 4, 4.5], [4.5, 5.5, 6]], output=np.float32)


def test_correlate17(backend: str) -> None:  # test_correlate17 (origin -1 on the row)
    both(backend, [[1, 2, 3]], [[1, 1]], [[3, 5, 6]], [[2, 3, 5]], origin=(0, -1))


def test_correlate18(backend: str) -> None:  # test_correlate18
    for dtype_array in types_for(backend):
        both(backend, np.array(ARRAY, dtype_array), [[1, 0], [0, 1]],
             [[6, 8, 9], [9, 11, 12]], [[2, 3, 5], [5, 6, 8]], output=np.float32,
             mode="nearest", origin=-1)


def test_a_sum_past_float32s_range_is_inf_without_a_warning() -> None:
    x = np.full((3, 3), 3e38, np.float32)
    want = scipy.ndimage.correlate(x, np.ones((2, 2)))  # C's cast: inf, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ndimage.correlate(x, np.ones((2, 2)))
    np.testing.assert_array_equal(got, want)
    assert np.all(np.isinf(got)) and got.dtype == np.float32


def test_a_bool_origin_and_a_read_only_output_fail_as_in_ndimage() -> None:
    x, w = np.ones((3, 3)), np.ones((3, 3))
    for lib in (scipy.ndimage, ndimage):  # (True was taken as the origin 1)
        with pytest.raises(TypeError, match="an integer is required"):
            lib.correlate(x, w, origin=True)
        out = np.ones((3, 3))
        out.flags.writeable = False
        with pytest.raises(ValueError, match=r"^output array is read-only\.$"):
            lib.correlate(x, w, output=out)


@pytest.mark.parametrize("func", list(FUNCS))
def test_correlate_mode_sequence(func: str) -> None:  # test_correlate_mode_sequence
    with pytest.raises(RuntimeError, match="A sequence of modes is not supported"):
        FUNCS[func](np.ones((3, 3)), np.ones((2, 2)), mode=["nearest", "reflect"])


def test_correlate19(backend: str) -> None:  # test_correlate19
    for dtype_array in types_for(backend):
        both(backend, np.array(ARRAY, dtype_array), [[1, 0], [0, 1]],
             [[5, 6, 8], [8, 9, 11]], [[3, 5, 6], [6, 8, 9]], output=np.float32,
             mode="nearest", origin=[-1, 0])


COLUMN = [[1], [2], [1]]  # correlate1d's weights [1, 2, 1] along axis 0
ARRAY2 = [[1, 2, 3], [2, 4, 6]]


@pytest.mark.parametrize("case, kwargs, tcor, tcov", [
    ("20", {}, [[5, 10, 15], [7, 14, 21]], None),
    ("22", {"mode": "wrap"}, [[6, 12, 18], [6, 12, 18]], None),
    ("23", {"mode": "nearest"}, [[5, 10, 15], [7, 14, 21]], None),
    ("24", {"mode": "nearest", "origin": (-1, 0)}, [[7, 14, 21], [8, 16, 24]],
     [[4, 8, 12], [5, 10, 15]]),
    ("25", {"mode": "nearest", "origin": (1, 0)}, [[4, 8, 12], [5, 10, 15]],
     [[7, 14, 21], [8, 16, 24]]),
])
def test_correlate20_22_to_25(case: str, kwargs: dict, tcor: list, tcov: list | None) -> None:
    # test_correlate20, 22, 23, 24, 25: correlate1d(axis=0) into output arrays, every pair
    tcov = tcor if tcov is None else tcov
    for dtype_array in TYPES:
        array = np.array(ARRAY2, dtype=dtype_array)
        for dtype_output in TYPES:
            output = np.zeros((2, 3), dtype=dtype_output)
            ndimage.correlate(array, COLUMN, output=output, **kwargs)
            np.testing.assert_array_equal(output, np.array(tcor, dtype_output), err_msg=case)
            ndimage.convolve(array, COLUMN, output=output, **kwargs)
            np.testing.assert_array_equal(output, np.array(tcov, dtype_output), err_msg=case)


def test_correlate21(backend: str) -> None:  # test_correlate21
    both(backend, ARRAY2, COLUMN, [[5, 10, 15], [7, 14, 21]])


def test_correlate26(backend: str) -> None:
    # test_correlate26: mirror extension of a length-1 signal (gh-11661)
    both(backend, np.ones((1, 1)), np.ones((1, 5)), [[5.0]], mode="mirror")


# The complex tests check against SciPy's own recipe: real correlations of the parts.


def _complex_reference(array: np.ndarray, kernel: np.ndarray, real_dtype: np.dtype,
                       convolve: bool, mode: str, cval: complex) -> np.ndarray:
    """``_complex_correlate`` of SciPy's test module, with scipy.ndimage on the parts."""
    func = scipy.ndimage.convolve if convolve else scipy.ndimage.correlate
    kernel = kernel if convolve else np.conj(kernel)
    re_cval, im_cval = np.real(cval), np.imag(cval)
    ar, ai = array.real, array.imag if array.dtype.kind == "c" else None
    kr, ki = kernel.real, kernel.imag if kernel.dtype.kind == "c" else None

    def f(a: np.ndarray, k: np.ndarray, c: Any) -> np.ndarray:
        return func(a, k, output=real_dtype, mode=mode, cval=c)

    if ai is not None and ki is not None:
        return (f(ar, kr, re_cval) - f(ai, ki, im_cval)
                + 1j * f(ai, kr, im_cval) + 1j * f(ar, ki, re_cval))
    if ai is not None:
        return f(ar, kernel, re_cval) + 1j * f(ai, kernel, im_cval)
    return f(array, kr, cval) + 1j * f(array, ki, cval)


def _validate_complex(backend: str, array: np.ndarray, kernel: np.ndarray, type2: str,
                      mode: str = "reflect", cval: Any = 0) -> None:
    """TestNdimageFilters._validate_complex: output dtypes, output arrays, the warning for a
    real output dtype and the error for a real output array."""
    type2 = np.dtype(type2)
    real_dtype = np.empty(0, type2).real.dtype
    for convolve, func in ((False, ndimage.correlate), (True, ndimage.convolve)):
        expected = _complex_reference(array, kernel, real_dtype, convolve, mode, cval)
        with x64(backend):
            out = func(to_backend(backend, array), to_backend(backend, kernel),
                       output=type2.type, mode=mode, cval=cval, backend=backend)
            assert array_backend(out) == backend
            got = to_np(out)
        assert got.dtype == type2
        np.testing.assert_array_almost_equal(got, expected)
        with pytest.warns(UserWarning, match="promoting specified output dtype to complex"):
            with x64(backend):
                func(to_backend(backend, array), to_backend(backend, kernel),
                     output=real_dtype.type, mode=mode, cval=cval, backend=backend)
        if backend != "numpy":
            continue
        output = np.zeros_like(array, dtype=type2)
        assert func(array, kernel, output=output, mode=mode, cval=cval) is output
        np.testing.assert_array_almost_equal(output, expected)
        with pytest.raises(RuntimeError, match="output must have complex dtype"):
            func(array, kernel, output=np.zeros_like(array, dtype=real_dtype))


KERNEL_2D = [[1, 0], [0, 1 + 1j]]


def thin(backend: str, *dtypes: str) -> None:
    """Run a complex port's dtype grid in full on NumPy and torch, and its complex128 corner
    on JAX and Dask, where every call compiles or builds a graph."""
    if backend in SLOW and any(d != "complex128" for d in dtypes):
        pytest.skip(f"{backend}: the complex128 case only (each call compiles or builds a "
                    "graph); the full dtype grid runs on numpy and torch")


@pytest.mark.parametrize("dtype_kernel", COMPLEX_TYPES)
@pytest.mark.parametrize("dtype_output", COMPLEX_TYPES)
@pytest.mark.parametrize("mode, cval", [("reflect", 0), ("grid-constant", 5.0),
                                        ("constant", 5.0)])
def test_correlate_complex_kernel(backend: str, dtype_kernel: str, dtype_output: str,
                                  mode: str, cval: float) -> None:
    # test_correlate_complex_kernel, test_correlate_complex_kernel_cval
    thin(backend, dtype_kernel, dtype_output)
    for dtype_input in types_for(backend):
        _validate_complex(backend, np.array(ARRAY, dtype_input),
                          np.array(KERNEL_2D, dtype_kernel), dtype_output, mode, cval)


@pytest.mark.parametrize("dtype_kernel", COMPLEX_TYPES)
@pytest.mark.parametrize("dtype_output", COMPLEX_TYPES)
@pytest.mark.parametrize("mode, cval", [("reflect", 0), ("constant", 5.0)])
def test_correlate1d_complex_kernel(backend: str, dtype_kernel: str, dtype_output: str,
                                    mode: str, cval: float) -> None:
    # test_correlate1d_complex_kernel, test_correlate1d_complex_kernel_cval, as rows
    thin(backend, dtype_kernel, dtype_output)
    for dtype_input in types_for(backend):
        _validate_complex(backend, np.array([[1, 2, 3, 4, 5, 6]], dtype_input),
                          np.array([[1, 1 + 1j]], dtype_kernel), dtype_output, mode, cval)


@pytest.mark.parametrize("dtype_kernel", COMPLEX_TYPES)
@pytest.mark.parametrize("func", list(FUNCS))
def test_correlate_complex_kernel_invalid_cval(dtype_kernel: str, func: str) -> None:
    # test_correlate_complex_kernel_invalid_cval: no complex cval with a real image
    for dtype_input in TYPES:
        array = np.array(ARRAY, dtype_input)
        for kernel in (np.array(KERNEL_2D, dtype_kernel),
                       np.array([[1, 1 + 1j]], dtype_kernel)):
            with pytest.raises(ValueError, match="Cannot provide a complex-valued cval"):
                FUNCS[func](array, kernel, mode="constant", cval=5.0 + 1.0j,
                            output=np.complex64)


COMPLEX_ARRAY = [[1, 2j, 3], [1 + 4j, 5, 6j]]


@pytest.mark.parametrize("dtype_input", COMPLEX_TYPES)
@pytest.mark.parametrize("dtype_output", COMPLEX_TYPES)
def test_correlate_complex_input(backend: str, dtype_input: str, dtype_output: str) -> None:
    # test_correlate_complex_input, test_correlate1d_complex_input(_cval) as rows
    thin(backend, dtype_input, dtype_output)
    for dtype_kernel in types_for(backend):
        _validate_complex(backend, np.array(COMPLEX_ARRAY, dtype_input),
                          np.array([[1, 0], [0, 1]], dtype_kernel), dtype_output)
        row = np.array([[1, 2j, 3, 1 + 4j, 5, 6j]], dtype_input)
        _validate_complex(backend, row, np.array([[1, 0, 1]], dtype_kernel), dtype_output)
        _validate_complex(backend, row, np.array([[1, 0, 1]], dtype_kernel), dtype_output,
                          mode="constant", cval=5 - 3j)


@pytest.mark.parametrize("dtype", COMPLEX_TYPES)
@pytest.mark.parametrize("dtype_output", COMPLEX_TYPES)
def test_correlate_complex_input_and_kernel(backend: str, dtype: str, dtype_output: str
                                            ) -> None:
    # test_correlate_complex_input_and_kernel(_cval), test_correlate1d_... as rows
    thin(backend, dtype, dtype_output)
    kernel = np.array(KERNEL_2D, dtype)
    _validate_complex(backend, np.array(COMPLEX_ARRAY, dtype), kernel, dtype_output)
    _validate_complex(backend, np.array(ARRAY, dtype), kernel, dtype_output,
                      mode="constant", cval=5.0 + 2.0j)
    row, k1 = np.array([[1, 2j, 3, 1 + 4j, 5, 6j]], dtype), np.array([[1, 1 + 1j]], dtype)
    _validate_complex(backend, row, k1, dtype_output)
    _validate_complex(backend, row, k1, dtype_output, mode="constant", cval=5.0 + 2.0j)


NINE = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize("mode, expected", [
    ("nearest", [[1, 1, 2], [1, 1, 2], [4, 4, 5]]),
    ("wrap", [[9, 7, 8], [3, 1, 2], [6, 4, 5]]),
    ("reflect", [[1, 1, 2], [1, 1, 2], [4, 4, 5]]),
    ("mirror", [[5, 4, 5], [2, 1, 2], [5, 4, 5]]),
    ("constant", [[0, 0, 0], [0, 1, 2], [0, 4, 5]])])
def test_extend05(backend: str, mode: str, expected: list) -> None:  # test_extend05
    check_ported(backend, ndimage.correlate, (np.array(NINE), np.array([[1, 0], [0, 0]])),
                 expected, mode=mode, cval=0)


@pytest.mark.parametrize("mode, expected", [
    ("nearest", [[5, 6, 6], [8, 9, 9], [8, 9, 9]]),
    ("wrap", [[5, 6, 4], [8, 9, 7], [2, 3, 1]]),
    ("reflect", [[5, 6, 6], [8, 9, 9], [8, 9, 9]]),
    ("mirror", [[5, 6, 5], [8, 9, 8], [5, 6, 5]]),
    ("constant", [[5, 6, 0], [8, 9, 0], [0, 0, 0]])])
def test_extend06(backend: str, mode: str, expected: list) -> None:  # test_extend06
    weights = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 1]])
    check_ported(backend, ndimage.correlate, (np.array(NINE), weights), expected, mode=mode,
                 cval=0)


@pytest.mark.parametrize("mode, expected", [
    ("nearest", [3, 3, 3]), ("wrap", [2, 3, 1]), ("reflect", [2, 1, 1]),
    ("mirror", [1, 2, 3]), ("constant", [0, 0, 0])])
def test_extend07_to_10(backend: str, mode: str, expected: list) -> None:
    # test_extend07/09 as a row, test_extend08/10 as a column: weights longer than the input
    weights = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1])
    check_ported(backend, ndimage.correlate, (np.array([[1, 2, 3]]), weights[None, :]),
                 [expected], mode=mode, cval=0)
    check_ported(backend, ndimage.correlate, (np.array([[1], [2], [3]]), weights[:, None]),
                 [[v] for v in expected], mode=mode, cval=0)


def test_bad_convolve_and_correlate_origins() -> None:
    # test_bad_convolve_and_correlate_origins (gh-822), the 1-D cases as rows
    msg = "Invalid origin; origin must satisfy"
    with pytest.raises(ValueError, match=msg):
        ndimage.correlate([[0, 1, 2, 3, 4, 5]], [[0, 1, 2]], origin=[0, 2])
    with pytest.raises(ValueError, match=msg):
        ndimage.correlate(np.ones((3, 5)), np.ones((2, 2)), origin=[0, 1])
    with pytest.raises(ValueError, match=msg):
        ndimage.convolve(np.arange(10)[None, :], np.ones((1, 3)), origin=[0, -2])
    with pytest.raises(ValueError, match=msg):
        ndimage.convolve(np.ones((3, 5)), np.ones((2, 2)), origin=[0, -2])


@pytest.mark.parametrize("func", list(FUNCS))
def test_valid_origins(backend: str, func: str) -> None:
    # test_valid_origins1/2 (#1311) for these filters: every origin in range works and equals
    # SciPy, one past either end raises
    x = np.arange(35, dtype=np.float64).reshape(5, 7)
    for n in range(1, 6) if backend not in SLOW else (2, 3):  # even and odd on JAX, Dask
        w = np.arange(1.0, 1.0 + 2 * n).reshape(2, n)
        lo, hi = -(n // 2), (n - 1) // 2
        for o in range(lo, hi + 1):
            want = SCIPY[func](x, w, origin=(0, o))
            check_ported(backend, FUNCS[func], (x, w), want, origin=(0, o))
        for o in (lo - 1, hi + 1):
            with pytest.raises(ValueError, match="Invalid origin"):
                FUNCS[func](x, w, origin=(0, o))


@pytest.mark.parametrize("func", list(FUNCS))
@pytest.mark.parametrize("n_mismatch", [1, 3])
def test_filter_tuple_length_mismatch(func: str, n_mismatch: int) -> None:
    # test_filter_tuple_length_mismatch for correlate/convolve (origin), without axes
    with pytest.raises(RuntimeError, match="sequence argument must have length equal to"):
        FUNCS[func](np.ones((6, 8)), np.ones((5, 5)), origin=(0,) * n_mismatch)


@pytest.mark.parametrize("func", list(FUNCS))
@pytest.mark.parametrize("axes", [(0, 1), (-2, -1), (1,), 0])
def test_axes_are_not_implemented(func: str, axes: Any) -> None:
    # test_correlate_convolve_axes, test_filter_weights_subset_axes_origins,
    # test_filter_invalid_axes, test_filter_invalid_footprint_ndim: axes= is N-D territory
    with pytest.raises(NotImplementedError, match="axes= is not supported"):
        FUNCS[func](np.ones((6, 8)), np.ones((3, 5)), axes=axes)


@pytest.mark.parametrize("func", list(FUNCS))
def test_nd_is_not_implemented(func: str) -> None:
    # N-D input and weights (ndimage filters them; xcorr.ndimage is 2-D)
    with pytest.raises(NotImplementedError, match="got 3-D input and 3-D weights"):
        FUNCS[func](np.ones((6, 8, 12)), np.ones((3, 3, 3)))


@pytest.mark.parametrize("func", list(FUNCS))
@pytest.mark.parametrize("xshape, wshape", [((6, 8), (3,)), ((6, 8, 12), (3, 3)),
                                            ((3, 3), (0, 2)), ((3, 3), (0, 0))])
def test_weights_ndim_mismatch_as_scipy(func: str, xshape: tuple, wshape: tuple) -> None:
    # ndimage's own error where weights and input disagree (test_filter_invalid_footprint_ndim)
    want = _outcome(SCIPY[func], np.ones(xshape), np.ones(wshape))
    assert want[0] == "RuntimeError" and "must match len(axes)" in want[1]
    assert _outcome(FUNCS[func], np.ones(xshape), np.ones(wshape))[:2] == want[:2]


@pytest.mark.parametrize("func", list(FUNCS))
@pytest.mark.parametrize("mode, cval", [("constant", 0.1), ("constant", 0.5), ("constant", 1e300),
                                        ("constant", np.nan), ("reflect", 0.1), ("wrap", 0.0)])
def test_float32_input_gives_ndimages_float64_sums(func: str, mode: str, cval: float) -> None:
    # float32 input is padded before it is widened where that keeps every value: a fill
    # float32 cannot hold (0.1, 1e300) must still enter the float64 sums as itself
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 11)).astype(np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    want = SCIPY[func](x, w, output=np.float64, mode=mode, cval=cval)
    got = FUNCS[func](x, w, output=np.float64, mode=mode, cval=cval)
    np.testing.assert_array_equal(got, want)


# -- properties against scipy.ndimage ----------------------------------------------------------

INPUTS = ("bool", *TYPES, *COMPLEX_TYPES)
UNSUPPORTED = ("float16", "longdouble", "clongdouble")  # ndimage refuses these inputs
WEIGHTS = ("bool", *TYPES, "float16", "longdouble", *COMPLEX_TYPES)
OUTPUTS = ("bool", *TYPES, *COMPLEX_TYPES, "float16")
MODES = ("reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror", "grid-constant",
         "grid-wrap")
PROPS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[str, Any, list[str]]:
    """``(status, result or message, warnings)``: status "ok" or the exception's type name;
    the warnings as "Category: message" strings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status, value = "ok", fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - compared, not swallowed
            status, value = type(exc).__name__, str(exc)
    # NumPy's cast warnings (invalid value in the C casts) are SciPy's and NumPy's business.
    shown = sorted({f"{w.category.__name__}: {w.message}" for w in caught
                    if issubclass(w.category, UserWarning)})
    return status, value, shown


def _elements(dtype: np.dtype, subnormal: bool = True) -> st.SearchStrategy:
    """Values of ``dtype``: subnormal floats unless ``subnormal`` is False (XLA on the CPU
    flushes them to zero, so ``inf · 5e-324`` is NaN there, as ``scipy.signal``'s drop-in
    tests say too)."""
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(int(info.min), int(info.max))
    finite = st.floats(-1e3, 1e3, width=16 if dtype == np.float16 else 32
                       if dtype == np.float32 else 64, allow_subnormal=subnormal)
    if dtype.kind == "c":
        return st.builds(complex, finite, finite)
    return st.one_of(finite, finite, finite, finite, finite, finite,
                     st.sampled_from([np.nan, np.inf, -np.inf]))


def _array(dtype: np.dtype, shape: tuple[int, int], subnormal: bool = True
           ) -> st.SearchStrategy[np.ndarray]:
    base = {"g": np.dtype(np.float64), "G": np.dtype(np.complex128)}.get(dtype.char, dtype)
    return hnp.arrays(base, shape, elements=_elements(base, subnormal)).map(
        lambda a: a.astype(dtype))


@st.composite
def _cases(draw: st.DrawFn, inputs: tuple[str, ...] = INPUTS + UNSUPPORTED,
           outputs: tuple[str, ...] = OUTPUTS, output_arrays: bool = True,
           weights: tuple[str, ...] = WEIGHTS, subnormal: bool = True) -> dict:
    supported = tuple(d for d in inputs if d not in UNSUPPORTED)
    dx = np.dtype(draw(st.one_of(*[st.sampled_from(supported)] * 5,
                                 st.sampled_from(inputs))))
    dw = np.dtype(draw(st.sampled_from(weights)))
    side, side0 = st.integers(1, 6), st.integers(0, 6)  # empty now and then
    x = draw(_array(dx, draw(st.one_of(st.tuples(side, side), st.tuples(side, side),
                                       st.tuples(side0, side0),
                                       st.tuples(st.just(1), st.integers(1, 12)))),
                    subnormal))
    wside = st.integers(1, 7)
    w = draw(_array(dw, draw(st.tuples(wside, wside)), subnormal))
    complex_out = dx.kind == "c" or dw.kind == "c"
    finite = st.floats(-1e3, 1e3, allow_subnormal=subnormal)
    cval = draw(st.one_of(finite, st.builds(complex, finite, finite)) if dx.kind == "c"
                else st.one_of(st.just(0.0), finite, st.just(np.nan)))
    # Origins in range (now and then one beyond), as a scalar or a pair.
    lo, hi = [-(n // 2) for n in w.shape], [(n - 1) // 2 for n in w.shape]
    inside = st.tuples(*(st.integers(a, b) for a, b in zip(lo, hi, strict=True)))
    beyond = st.tuples(*(st.integers(a - 1, b + 1) for a, b in zip(lo, hi, strict=True)))
    origin = draw(st.one_of(st.just(0), inside, inside, beyond,
                            st.integers(min(lo), max(hi))))
    kind = draw(st.sampled_from(["none", "type", "str", "array"] if output_arrays
                                else ["none", "type", "str"]))
    output: Any = None
    if kind != "none":
        dout = np.dtype(draw(st.sampled_from(outputs)))
        if kind == "array" and complex_out and draw(st.booleans()):
            dout = np.dtype(draw(st.sampled_from(COMPLEX_TYPES)))
        output = {"type": dout.type, "str": dout.name, "array": np.zeros(x.shape, dout)}[kind]
    return {"input": x, "weights": w, "output": output,
            "mode": draw(st.sampled_from(MODES)), "cval": cval, "origin": origin}


def _magnitude_sums(func: str, case: dict) -> np.ndarray:
    """``|x| ⋆ |w|`` as ndimage computes it (same modes, origins, alignment), in float64."""
    cval = case["cval"]
    cmag = float(abs(complex(cval).real) + abs(complex(cval).imag))
    return SCIPY[func](magnitude(case["input"]), magnitude(case["weights"]),
                       output=np.float64, mode=case["mode"],
                       cval=0.0 if np.isnan(cmag) else cmag, origin=case["origin"])


def _defined(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Where ndimage's C cast of ``v`` (already truncated) to ``dtype`` is not undefined
    behaviour that compilers resolve as they like: within 32-bit range (every x86 conversion
    goes through a 32-bit one there), 64-bit range for the 64-bit types and uint32."""
    if dtype == np.uint64:
        return (v >= -2.0**63) & (v < 2.0**64)
    if dtype in (np.dtype(np.int64), np.dtype(np.uint32)):
        return (v >= -2.0**63) & (v < 2.0**63)
    return (v >= -2.0**31) & (v < 2.0**31)


def _compare(func: str, case: dict, got: np.ndarray, want: np.ndarray) -> None:
    """Floats within the error bound; integers and booleans equal wherever the float64 sum
    truncates to one integer whatever the rounding (and the C cast is defined)."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype)
    if got.size == 0:
        return
    n = case["weights"].size
    sums = _magnitude_sums(func, case)
    x_dtype = case["input"].dtype
    if got.dtype.kind in "fc":
        # ndimage rounds the parts of complex data to the output's real dtype and, for
        # complex input and weights, one of them to the input's real dtype first.
        u = max(unit_roundoff(got.dtype), unit_roundoff(x_dtype) if x_dtype.kind == "c"
                else 0.0)
        tiny = float(np.finfo(got.dtype).smallest_normal)
        assert_close(got, want, 2 * (2 * (n + 2) * u * sums + n * tiny), f"{func}")
        return
    exact = SCIPY[func](case["input"], case["weights"], output=np.float64, mode=case["mode"],
                        cval=case["cval"], origin=case["origin"])
    b = 2 * (2 * (n + 2) * unit_roundoff(np.float64) * sums)
    with np.errstate(invalid="ignore"):
        lo, hi = np.trunc(exact - b), np.trunc(exact + b)
        sure = (lo == hi) & _defined(lo, got.dtype)
    np.testing.assert_array_equal(got[sure], want[sure], err_msg=f"{func} {got.dtype}")


def _check_against_ndimage(func: str, case: dict) -> None:
    kw = {k: v for k, v in case.items() if k not in ("input", "weights", "output")}
    x, w, output = case["input"], case["weights"], case["output"]
    xc, wc = x.copy(), w.copy()
    out_s = output.copy() if isinstance(output, np.ndarray) else output
    want = _outcome(SCIPY[func], x, w, output=out_s, **kw)
    got = _outcome(FUNCS[func], x, w, output=output, **kw)
    np.testing.assert_array_equal(x, xc, strict=True)  # inputs are never mutated
    np.testing.assert_array_equal(w, wc, strict=True)
    assert got[0] == want[0], f"xcorr {got[:2]}, ndimage {want[:2]}"
    assert got[2] == want[2], f"warnings: xcorr {got[2]}, ndimage {want[2]}"
    if got[0] != "ok":
        assert got[1] == want[1], f"message: xcorr {got[1]!r}, ndimage {want[1]!r}"
        return
    if isinstance(output, np.ndarray):
        assert got[1] is output
    _compare(func, case, got[1], want[1])


@pytest.mark.parametrize("func", list(FUNCS))
def test_equals_ndimage(func: str) -> None:
    """Every input dtype ndimage takes (and the ones it refuses), weights of any dtype,
    every mode name, origins (in range and one beyond), cval, output as None, type, string or
    array; shapes from empty to weights larger than the input, 1×N."""

    @PROPS
    @given(_cases())
    def prop(case: dict) -> None:
        note(f"{case['input'].dtype} {case['input'].shape}, {case['weights'].dtype} "
             f"{case['weights'].shape}, output {case['output']!r}")
        _check_against_ndimage(func, case)

    prop()


ODD_VALUES = [
    {"cval": "a"}, {"cval": None}, {"cval": [1]}, {"cval": 1j}, {"cval": np.array(2.0)},
    {"cval": np.array([2.0])}, {"cval": True}, {"cval": 2**70},
    {"origin": 0.5}, {"origin": [2]}, {"origin": [0, 0, 0]}, {"origin": np.array([1, 0])},
    {"origin": [[0, 0]]}, {"origin": "a"}, {"origin": None}, {"origin": np.int64(-1)},
    {"mode": "nope"}, {"mode": None}, {"mode": ("wrap", "wrap")}, {"mode": "grid-wrap"},
    {"output": "bool"}, {"output": "object"}, {"output": object}, {"output": "complex64"},
    {"output": np.complex64}, {"output": np.float16}, {"output": np.longdouble},
    {"output": float}, {"output": int}, {"output": bool}, {"output": np.zeros((2, 2))},
    {"output": np.zeros((3, 3), np.float16)}, {"output": np.zeros((3, 3), np.complex64)},
]


@pytest.mark.parametrize("func", list(FUNCS))
@pytest.mark.parametrize("dtype", ["float64", "int8", "complex128"])
@pytest.mark.parametrize("kwargs", ODD_VALUES, ids=repr)
def test_odd_arguments_as_ndimage(func: str, dtype: str, kwargs: dict) -> None:
    """Odd ``cval``/``origin``/``mode``/``output`` values: ndimage's result or exception."""
    case = {"input": np.arange(9).reshape(3, 3).astype(dtype), "weights": np.ones((3, 3)),
            "output": None, "mode": "constant", "cval": 1.0, "origin": 0, **kwargs}
    _check_against_ndimage(func, case)


# -- other backends: framework in, framework out -----------------------------------------------


def test_backends_equal_numpy(backend: str) -> None:
    """Random cases on each backend equal the NumPy drop-in (itself checked against ndimage
    above); results in the input's framework."""

    share = 4 if backend in ("numpy", "torch") else 8  # JAX compiles, Dask builds graphs
    weights = tuple(d for d in WEIGHTS if holds(backend, d))

    @settings(PROPS, max_examples=max(4, settings.default.max_examples // share))
    @given(_cases(INPUTS, OUTPUTS, output_arrays=False, weights=weights,
                  subnormal=backend != "jax"),  # XLA flushes subnormals to zero
           st.sampled_from(list(FUNCS)))
    def prop(case: dict, func: str) -> None:
        x, w = case["input"], case["weights"]
        kw = {k: v for k, v in case.items() if k not in ("input", "weights")}
        want = _outcome(FUNCS[func], x, w, **kw)
        assume(want[0] == "ok")
        with x64(backend):
            got = _outcome(FUNCS[func], to_backend(backend, x), to_backend(backend, w), **kw)
            assert got[0] == "ok", got[1]
            assert array_backend(got[1]) == backend
            assert got[2] == want[2]
            dtype = str(got[1].dtype).removeprefix("torch.")
            assert dtype == str(want[1].dtype), (dtype, want[1].dtype)
            # to_np widens torch's half types to float32: back to the dtype just checked
            _compare(func, case, to_np(got[1]).astype(want[1].dtype, copy=False), want[1])

    prop()


@pytest.mark.parametrize("func", list(FUNCS))
def test_framework_in_framework_out(backend: str, func: str) -> None:
    """``from xcorr import ndimage``, then arrays of any framework: results in it."""
    x = np.arange(20, dtype=np.float64).reshape(4, 5)
    w = np.array([[1.0, -2.0], [0.5, 3.0]])
    want = SCIPY[func](x, w, mode="mirror", origin=(0, -1))
    with x64(backend):
        got = FUNCS[func](to_backend(backend, x), to_backend(backend, w), mode="mirror",
                          origin=(0, -1))
        assert_same(got, want, backend, func)


def test_backend_keyword(backend: str) -> None:
    x = [[1, 2, 3], [4, 5, 6]]
    want = scipy.ndimage.correlate(x, [[1, -1]], mode="wrap")
    with x64(backend):
        assert_same(ndimage.correlate(x, [[1, -1]], mode="wrap", backend=backend), want,
                    backend)


def test_output_array_must_match_the_framework(backend: str) -> None:
    """An output array only for NumPy input and of NumPy: else a ValueError naming the fix."""
    if backend == "numpy":
        pytest.skip("numpy: output arrays are allowed (test_output_array_filled_in_place)")
    x = np.ones((3, 3))
    with x64(backend):
        with pytest.raises(ValueError, match="use the returned array"):
            ndimage.correlate(to_backend(backend, x), x, output=np.zeros((3, 3)))
        with pytest.raises(ValueError, match="use the returned array"):
            ndimage.correlate(x, x, output=to_backend(backend, np.zeros((3, 3))))
        with pytest.raises(ValueError, match="needs the NumPy backend.*backend='numpy'"):
            ndimage.correlate(x, x, output=np.zeros((3, 3)), backend=backend)
        # the default backend chose it: the message said "for NumPy input" of NumPy input
        with xcorr.use_backend(backend):
            with pytest.raises(ValueError, match="needs the NumPy backend.*backend='numpy'"):
                ndimage.correlate(x, x, output=np.zeros((3, 3)))


def test_output_dtype_of_torch() -> None:
    """``output=torch.float32`` was refused as an output array."""
    torch = pytest.importorskip("torch", reason="torch: not installed (the 'torch' extra)")
    x = np.arange(12.0).reshape(3, 4)
    for dtype in (torch.float32, torch.int16):
        got = ndimage.correlate(torch.from_numpy(x), x[:2, :2], output=dtype)
        assert got.dtype == dtype
        want = scipy.ndimage.correlate(x, x[:2, :2], output=str(dtype)[6:])
        np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("func", list(FUNCS))
def test_output_array_filled_in_place(func: str) -> None:
    x = np.arange(12.0).reshape(3, 4)
    w = np.array([[1.0, 2.0, -1.0]])
    out = np.full((3, 4), -7, dtype=np.int16)
    res = FUNCS[func](x, w, output=out, mode="nearest")
    assert res is out
    np.testing.assert_array_equal(out, SCIPY[func](x, w, output=np.int16, mode="nearest"))
    view = np.zeros((3, 8))[:, ::2]  # a strided view is written through
    assert FUNCS[func](x, w, output=view) is view
    np.testing.assert_array_equal(view, SCIPY[func](x, w))


def test_output_dtype_promotion_warns(backend: str) -> None:
    """ndimage's UserWarning when a real output dtype meets complex data; then complex."""
    x = np.array([[1 + 2j, 3], [4, 5j]])
    with x64(backend):
        with pytest.warns(UserWarning, match="promoting specified output dtype to complex"):
            got = ndimage.convolve(to_backend(backend, x), to_backend(backend, np.eye(2)),
                                   output=np.float32)
    assert str(got.dtype).removeprefix("torch.") == "complex64"
    with pytest.raises(RuntimeError, match="output must have complex dtype"):
        ndimage.convolve(x, np.eye(2), output="float32")


@pytest.mark.parametrize("shape", [(1, 0), (0, 3), (0, 0), (4, 0)])
@pytest.mark.parametrize("mode", MODES)
def test_empty_input(backend: str, shape: tuple, mode: str) -> None:
    """Empty input gives an empty result of the output dtype, for every mode, as ndimage."""
    for func in FUNCS:
        want = SCIPY[func](np.zeros(shape, np.int16), np.ones((3, 2)), mode=mode)
        check_ported(backend, FUNCS[func], (np.zeros(shape, np.int16), np.ones((3, 2))),
                     want, mode=mode)


def test_uint64_output_above_2_63(backend: str) -> None:
    """ndimage converts sums in [2**63, 2**64) to uint64 exactly (not through int64)."""
    x = np.array([[2.0**63, 2.0**63 + 2**11, 2.0**64 - 2**11, 5.0]])
    want = scipy.ndimage.correlate(x, [[1.0]], output=np.uint64)
    assert want[0, 0] == 2**63
    check_ported(backend, ndimage.correlate, (x, np.array([[1.0]])), want, output=np.uint64)


def test_integer_output_truncates_and_wraps(backend: str) -> None:
    x = np.array([[100, -100, 3, -3], [127, -128, 7, 1]], dtype=np.int8)
    w = np.array([[1.5, 1.25]])
    for mode in ("reflect", "wrap"):
        for func in FUNCS:
            want = SCIPY[func](x, w, mode=mode)
            check_ported(backend, FUNCS[func], (x, w), want, mode=mode)


@pytest.mark.parametrize("func", list(FUNCS))
def test_weights_at_most_eps_are_skipped(backend: str, func: str) -> None:
    """ndimage leaves out weights with |w| <= DBL_EPSILON (and NaN): they add nothing, not
    even 0 * inf = nan where they meet an infinite or NaN pixel (or cval)."""
    eps = np.finfo(np.float64).eps
    x = np.array([[1e20, np.inf, 2.0, -np.inf], [np.nan, 3.0, 0.0, 5.0], [1.0, 2.0, 3.0, 4.0]])
    for w in ([[1e-17, 1.0], [0.0, eps]], [[np.nan, 1.0], [2.0, -eps]],
              [[0.0, np.inf], [1.0, 0.0]], [[1.1 * eps, 0.0], [0.0, -1.0]]):
        w = np.array(w)
        for mode, cval in (("reflect", 0.0), ("constant", np.nan), ("constant", -np.inf),
                           ("wrap", 0.0)):
            want = SCIPY[func](x, w, mode=mode, cval=cval)
            check_ported(backend, FUNCS[func], (x, w), want, mode=mode, cval=cval)


@pytest.mark.parametrize("dtype", [">f8", ">f4", ">i2", ">u4", ">c16"])
def test_big_endian_input(backend: str, dtype: str) -> None:
    """Byte-swapped NumPy input is read as ndimage reads it, and the default output is the
    input's type in native byte order (ndimage's); xcorr refused it as "array type not
    supported"."""
    x = (np.arange(30).reshape(5, 6) % 7).astype(dtype)
    w = np.array([[1, 2], [3, 1]], dtype=dtype)
    for func in FUNCS:
        want = SCIPY[func](x, w, mode="nearest")
        assert want.dtype.isnative
        with x64(backend):
            got = FUNCS[func](x, w, mode="nearest", backend=backend)
            assert_same(got, want, backend, f"{func} {dtype} on {backend}")


def test_big_endian_output_dtype() -> None:
    """A byte-swapped ``output`` dtype or array is kept, as ndimage keeps it (NumPy); other
    frameworks have no byte order and give the native type."""
    x = np.arange(30.0).reshape(5, 6)
    w = np.array([[1.0, -2.0], [3.0, 1.0]])
    for output in (">f4", np.dtype(">i2")):
        want = scipy.ndimage.correlate(x, w, output=output)
        assert not want.dtype.isnative
        assert_same(ndimage.correlate(x, w, output=output), want)
        got = ndimage.correlate(x, w, output=output, backend="torch")
        assert_same(got, want.astype(want.dtype.newbyteorder("=")), "torch")
    out = np.zeros((5, 6), ">f4")
    assert ndimage.correlate(x, w, output=out) is out
    np.testing.assert_array_equal(out, scipy.ndimage.correlate(x, w, output=np.float32))
