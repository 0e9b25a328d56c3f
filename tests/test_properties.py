"""Property suite (issue 6): every backend, method and mode against independent oracles.

Examples per property come from the Hypothesis profile (``HYPOTHESIS_PROFILE=ci`` by default,
``thorough`` for 10,000), divided for the costly backends and properties (see ``fuzz``).
Floating-point results are compared with the per-element bounds of
``xcorr.testing.error_bound`` (float64 oracles), integers exactly.  Backends that cannot run
here skip with the reason the conftest ``backend`` fixture gives.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
import pytest
import scipy.signal
from conftest import x64
from hypothesis import HealthCheck, assume, example, given, note, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import xcorr
import xcorr.testing as xt
from xcorr import _grad, _methods
from xcorr._compat import jax_x64
from xcorr._dispatch import load
from xcorr._validate import MODES, pads

# The `backend` fixture is a plain string: reusing it across generated examples is safe.
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
U64 = np.finfo(np.float64).eps / 2


# -- helpers -----------------------------------------------------------------------------------


def run(backend: str, x: Any, k: Any, **kw: Any) -> np.ndarray:
    return xt.as_numpy(xcorr.corr2d(x, k, backend=backend, **kw))


def pad_np(x: np.ndarray, mode: str, kshape: tuple[int, ...]) -> np.ndarray:
    p = pads(mode, *kshape)
    if p is None:
        return x
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p[0], p[1]), (p[2], p[3])])


def per_slice(f: Any, x: np.ndarray) -> np.ndarray:
    """Apply a 2-D function to every image of a batch."""
    flat = x.reshape(-1, *x.shape[-2:])
    outs = [f(s) for s in flat]
    return np.stack(outs).reshape(*x.shape[:-2], *outs[0].shape)


def wide(a: np.ndarray) -> np.ndarray:
    return a.astype(np.int64 if a.dtype.kind in "iu" else np.float64)


def oracle(x: np.ndarray, k: np.ndarray, mode: str) -> np.ndarray:
    """The seed's double loop (valid) or SciPy (same/full), in float64 or int64."""
    x, k = wide(x), wide(k)
    if mode == "valid":
        return per_slice(lambda s: xcorr.reference.corr2d(s, k), x)
    return per_slice(lambda s: scipy.signal.correlate2d(s, k, mode=mode), x)


def methods(backend: str) -> tuple[str, ...]:
    return ("auto", *load(backend).METHODS)


def check(got: np.ndarray, want: np.ndarray, x: np.ndarray, k: np.ndarray, mode: str,
          method: str, extra: Any = 0.0) -> None:
    """``got`` (computed) against the float64 oracle ``want`` within both their bounds."""
    bound = (xt.error_bound(x, k, mode, got.dtype, method)
             + xt.error_bound(x, k, mode, np.float64) + extra)
    xt.assert_within_bound(got, want, bound, f"mode={mode} method={method}")


def fuzz(backend: str, share: int = 1, **strategies: Any) -> Any:
    """``given(**strategies)`` with the profile's examples divided by ``share``, and by 4 more
    on JAX (each new shape compiles) and 2 on Dask (each call builds a graph); at least 5.

    Use on a function defined inside the test, then call it: the budget depends on the
    ``backend`` fixture, which a module-level ``@settings`` cannot see.
    """
    share *= {"jax": 4, "dask": 2}.get(backend, 1)
    budget = max(5, settings.default.max_examples // share)
    return lambda f: settings(FUZZ, max_examples=budget)(given(**strategies)(f))


DTYPES = ("float32", "float64", "int32", "int64")


# -- 1. every backend × method × mode against the oracle ---------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_oracle(backend: str, dtype: str) -> None:
    """Every method and mode against the seed's loop (valid) or SciPy (same/full): floats
    within the error bound, integers exactly, ``fft``/``native`` on integers refused.  On JAX
    half the examples run with x64 off, where float64 input computes (and is compared) in
    float32."""

    @fuzz(backend, data=st.data())
    def prop(data: st.DataObject) -> None:
        mode = data.draw(st.sampled_from(MODES), label="mode")
        method = data.draw(st.sampled_from(methods(backend)), label="method")
        x, k = data.draw(xt.corr2d_cases(dtype, mode=mode, max_side=8, max_batch_dims=2),
                         label="case")
        enable = data.draw(st.booleans(), label="jax x64") if backend == "jax" else True
        with x64(backend, enable):
            if method in ("fft", "overlap", "native") and dtype.startswith("int"):
                with pytest.raises(ValueError, match="exact integer"):
                    xcorr.corr2d(x, k, mode=mode, method=method, backend=backend)
                return
            got = run(backend, x, k, mode=mode, method=method)
        if dtype.startswith("int"):
            assert got.dtype.kind == "i" and got.dtype.itemsize >= 4
        else:
            assert got.dtype.kind == "f"
        check(got, oracle(x, k, mode), x, k, mode, method)

    prop()


def test_xcorr_testing_agrees_on_every_backend() -> None:
    """The public helper runs every available backend (and would fail on a wrong one)."""
    rng = np.random.default_rng(6)
    x, k = rng.standard_normal((2, 9, 7)), rng.standard_normal((3, 4))
    results = xt.assert_backends_agree(x, k, mode="same")
    assert set(results) == set(xcorr.available_backends())
    with pytest.raises(AssertionError, match="exceed the error bound"):
        xt.assert_within_bound(results["numpy"] + 1e-9, oracle(x, k, "same"),
                               xt.error_bound(x, k, "same"))


def test_xcorr_testing_checks_what_a_non_finite_fill_leaves_finite(monkeypatch) -> None:
    """With fillvalue=NaN or Inf every bound was NaN or Inf, so a wrong backend passed; now
    the fill counts as 0 in the bound (its outputs are compared by value)."""
    rng = np.random.default_rng(8)
    x, k = rng.standard_normal((9, 8)), rng.standard_normal((3, 3))
    for fill in (np.nan, np.inf):
        for method in ("auto", "direct", "fft"):
            assert np.isfinite(xt.error_bound(x, k, "same", method=method,
                                              fillvalue=fill)).all()
        xt.assert_backends_agree(x, k, backends=["numpy"], mode="same", fillvalue=fill)
    pytest.importorskip("torch", reason="torch: not installed (the 'torch' extra)")
    be = load("torch")  # a wrong backend (the reference is NumPy's)
    real = be.corr2d_valid
    monkeypatch.setattr(be, "corr2d_valid", lambda a, b, m: real(a, b, m) * 1.01 + 0.5)
    for fill in (np.nan, np.inf):
        with pytest.raises(AssertionError, match="exceed the error bound"):
            xt.assert_backends_agree(x, k, backends=["torch"], mode="same", fillvalue=fill)


def test_assert_within_bound_names_the_worst_failing_output() -> None:
    """A zero or NaN bound elsewhere made the message name an output that passed; and a
    NaN bound let any error through."""
    got, want = np.array([[1.0, 2.0]]), np.array([[1.0, 2.0 + 1e-12]])
    with pytest.raises(AssertionError, match=r"1 of 2 outputs .* worst at \(0, 1\)"):
        xt.assert_within_bound(got, want, 0.0)
    with pytest.raises(AssertionError, match=r"1 of 2 outputs .* worst at \(0, 1\)"):
        xt.assert_within_bound(got, want, [[1.0, np.nan]])


def test_xcorr_testing_is_quiet_on_infinite_outputs() -> None:
    """Matching infinite outputs pass without NumPy's "invalid value encountered in
    subtract" (inf - inf, which the helper printed to its users), and a non-finite mismatch
    names the dtype the backend computed in."""
    want = np.array([[np.inf, -np.inf, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xt.assert_within_bound(want.astype(np.float32), want, 1e-6)
        xt.assert_backends_agree(np.array([[np.inf, 1.0, 2.0], [0.0, -np.inf, 1.0]]),
                                 np.array([[1.0, 0.5]]), backends=["numpy"])
    with pytest.raises(AssertionError, match=r"non-finite .* got nan, expected inf; dtype float32"):
        xt.assert_within_bound(np.array([[np.nan, -np.inf, 1.0]], np.float32), want, 1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float8_e4m3fn"])
def test_xcorr_testing_bounds_half_types_by_their_own_roundoff(dtype: str) -> None:
    """Half types on every backend pass the helper (torch's half results reach NumPy as
    float32, but their bound is their own type's), and ml_dtypes' and torch's half dtypes
    give ``error_bound`` the same bound; one output twice the bound off fails it."""
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes (a JAX dependency): absent")
    dt = np.dtype(np.float16 if dtype == "float16" else getattr(ml_dtypes, dtype))
    x = np.random.default_rng(7).random((2, 8, 9)).astype(dt)
    k = x[0, :3, :4]
    for method in ("auto", "direct", "fft"):
        assert set(xt.assert_backends_agree(x, k, method=method)) == set(
            xcorr.available_backends())
    bound = xt.error_bound(x, k, dtype=dt)
    assert (xt.error_bound(x, k, dtype=np.complex128) > 0).all()  # complex: float64's bound
    torch = sys.modules.get("torch")
    if torch is not None:
        np.testing.assert_array_equal(xt.error_bound(x, k, dtype=getattr(torch, dtype)), bound)
    exact = oracle(x.astype(np.float64), k.astype(np.float64), "valid")
    got = xcorr.corr2d(x, k).astype(np.float64)
    got[0, 0, 0] += 2 * bound[0, 0, 0]
    with pytest.raises(AssertionError, match="exceed the error bound"):
        xt.assert_within_bound(got, exact, bound)


@pytest.mark.parametrize(("x_dtype", "k_dtype", "want"), [
    ("bfloat16", "int64", "float64"), ("bfloat16", "int32", "float64"),
    ("bfloat16", "int16", "float32"), ("bfloat16", "uint8", "bfloat16"),
    ("bfloat16", "float16", "float32"), ("float8_e4m3fn", "float16", "float32"),
    ("float8_e4m3fn", "bfloat16", "float32"), ("float8_e4m3fn", "int64", "float64")])
def test_ml_dtypes_pairs_numpy_cannot_promote(x_dtype: str, k_dtype: str, want: str) -> None:
    """NumPy has no promotion for ml_dtypes' types with float16, with each other, or with
    integers over 8 bits (DTypePromotionError from np.result_type, on NumPy and Dask): as
    float8_e5m2's rules, float16's with integers, float32 for two half formats."""
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes (a JAX dependency): absent")

    def dtype(name: str) -> np.dtype:
        return np.dtype(getattr(ml_dtypes, name, None) or name)

    x = (np.arange(20).reshape(4, 5) % 7).astype(dtype(x_dtype))
    k = np.array([[1, 2], [3, -1]]).astype(dtype(k_dtype)) if "u" not in k_dtype else \
        np.array([[1, 2], [3, 1]], k_dtype)
    exact = oracle(x.astype(np.float64), k.astype(np.float64), "valid")
    for backend in ("numpy", "dask"):
        if backend not in xcorr.available_backends():  # (NumPy's checked already)
            pytest.skip(f"{backend}: not available here")
        got = xcorr.corr2d(x, k, backend=backend)
        got = got.compute() if backend == "dask" else got
        assert got.dtype == dtype(want), backend
        np.testing.assert_array_equal(got.astype(np.float64), exact)  # small integers: exact
        assert xt.error_bound(x, k).shape == exact.shape


@pytest.mark.parametrize(("dtype", "m"), [("float32", 0.1), ("float16", 0.1), ("float16", 1e5),
                                          ("float32", 1e39), ("float64", 0.1)])
def test_strategies_take_any_max_magnitude(dtype: str, m: float) -> None:
    """A bound the dtype does not hold exactly (0.1 in float32) or past its range: rounded
    down to the dtype (hypothesis raised InvalidArgument, or OverflowError packing 1e39)."""
    bound = min(m, float(np.finfo(dtype).max))

    @settings(max_examples=30, deadline=None)
    @given(a=xt.images(dtype, max_magnitude=m))
    def check(a: np.ndarray) -> None:
        assert a.dtype == dtype and (np.abs(a.astype(np.float64)) <= bound).all()

    check()


@pytest.mark.parametrize("dtype", ["longdouble", "bfloat16"])
def test_elements_refuses_what_it_cannot_draw(dtype: str) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes (a JAX dependency): absent")
    dt = np.dtype(getattr(ml_dtypes, dtype, None) or dtype)
    if dt.itemsize == 8:
        pytest.skip("long double is float64 on this platform")
    with pytest.raises(TypeError, match="use float16, float32, float64 or an integer dtype"):
        xt.elements(dt)


def test_assert_within_bound_edges() -> None:
    """A shape mismatch is the helper's AssertionError (the bound, broadcast to the expected
    shape first, raised NumPy's ValueError); equal uint64 past int64 pass (their int64 cast
    differed from the expected values); any framework's result is read (torch bfloat16)."""
    with pytest.raises(AssertionError, match=r"shape \(3, 2\), expected \(2, 3\)"):
        xt.assert_within_bound(np.zeros((3, 2)), np.zeros((2, 3)), np.zeros((3, 2)))
    big = np.array([2**63 + 5, 7], np.uint64)
    xt.assert_within_bound(big, big.copy(), 0.0)
    with pytest.raises(AssertionError, match="integer result differs at 1 of 2"):
        xt.assert_within_bound(big, big - np.array([1, 0], np.uint64), 0.0)
    torch = pytest.importorskip("torch", reason="torch: not installed (its bfloat16 case)")
    xt.assert_within_bound(torch.ones(3, dtype=torch.bfloat16), np.ones(3), 0.0)
    with pytest.raises(AssertionError, match="exceed the error bound"):
        xt.assert_within_bound(torch.full((3,), 2.0, dtype=torch.bfloat16), np.ones(3), 0.5)


# -- 2. laws -----------------------------------------------------------------------------------

LAW_DTYPES = st.sampled_from(("float32", "float64", "int64"))


def _law_case(data: st.DataObject, mode: str | None = None, **kw: Any
              ) -> tuple[str, str, np.ndarray, np.ndarray]:
    dtype = data.draw(LAW_DTYPES, label="dtype")
    mode = mode or data.draw(st.sampled_from(MODES), label="mode")
    kw.setdefault("max_side", 7)
    x, k = data.draw(xt.corr2d_cases(dtype, mode=mode, **kw), label="case")
    return dtype, mode, x, k


def _bound(x: np.ndarray, k: np.ndarray, mode: str, got: np.ndarray) -> np.ndarray:
    return xt.error_bound(x, k, mode, got.dtype, "auto")


def test_linear_in_x_and_k(backend: str) -> None:
    """corr(a·x1 + x2, k) = a·corr(x1, k) + corr(x2, k), and likewise in k."""
    @fuzz(backend, data=st.data(), which=st.sampled_from(("x", "k")),
          a=st.sampled_from((-3, 2, 0.5, 0)))
    def prop(data: st.DataObject, which: str, a: float) -> None:
        dtype, mode, x1, k1 = _law_case(data)
        if dtype == "int64":
            a = int(a) if a == int(a) else 2
        other = x1 if which == "x" else k1
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
        if dtype == "int64":
            o2 = rng.integers(-100, 101, other.shape)
        else:
            o2 = rng.uniform(-100, 100, other.shape).astype(dtype)
        s = (a * other + o2).astype(dtype)
        xs, ks = (s, k1) if which == "x" else (x1, s)
        x2, k2 = (o2, k1) if which == "x" else (x1, o2)
        lhs = run(backend, xs, ks, mode=mode)
        r1, r2 = run(backend, x1, k1, mode=mode), run(backend, x2, k2, mode=mode)
        if dtype == "int64":
            np.testing.assert_array_equal(lhs, a * r1 + r2)
            return
        u = np.finfo(lhs.dtype).eps / 2
        # Each side's computation, plus rounding of s = a·x1 + x2 and of a·r1 + r2.
        abs_in = np.abs(a * other.astype(np.float64)) + np.abs(o2)
        xa, ka = (abs_in, k1) if which == "x" else (x1, abs_in)
        tol = (_bound(xs, ks, mode, lhs) + abs(a) * _bound(x1, k1, mode, r1)
               + _bound(x2, k2, mode, r2) + 4 * u * xt.error_bound(xa, ka, mode, np.float64) / U64)
        xt.assert_within_bound(lhs, a * r1.astype(np.float64) + r2, tol, "linearity")

    prop()


def test_transpose_law(backend: str) -> None:
    """corr(xᵀ, kᵀ) = corr(x, k)ᵀ over the last two axes, in every mode."""
    @fuzz(backend, data=st.data())
    def prop(data: st.DataObject) -> None:
        _, mode, x, k = _law_case(data, max_batch_dims=1)
        xt_, kt = np.swapaxes(x, -1, -2), k.T
        lhs = run(backend, xt_, kt, mode=mode)
        rhs = np.swapaxes(run(backend, x, k, mode=mode), -1, -2)
        tol = np.swapaxes(_bound(x, k, mode, rhs), -1, -2) + _bound(xt_, kt, mode, lhs)
        xt.assert_within_bound(lhs, rhs, tol, "transpose")

    prop()


def test_shift_law(backend: str) -> None:
    """Shifting x by one shifts the output: dropping x's first row (column) drops the output's
    first row (column) in valid mode; prepending a zero row (column) prepends one in full mode."""
    @fuzz(backend, data=st.data(), axis=st.sampled_from((-2, -1)))
    def prop(data: st.DataObject, axis: int) -> None:
        _, mode, x, k = _law_case(data, mode=data.draw(st.sampled_from(("valid", "full"))))
        if mode == "valid":
            assume(x.shape[axis] > k.shape[axis])
            cut = (slice(None),) * (x.ndim + axis) + (slice(1, None),)
            lhs = run(backend, x[cut], k, mode="valid")
            full = run(backend, x, k, mode="valid")
            rhs, tol = full[cut], _bound(x, k, mode, full)[cut]
        else:
            widths = [(0, 0)] * x.ndim
            widths[axis] = (1, 0)
            padded = np.pad(x, widths)
            lhs = run(backend, padded, k, mode="full")
            rhs = np.pad(run(backend, x, k, mode="full"), widths)
            # each side's own bound: auto may take an FFT for one of the two shapes, and an
            # FFT's rounding reaches the prepended row, which the direct sum leaves 0
            tol = _bound(padded, k, mode, lhs) + np.pad(_bound(x, k, mode, rhs), widths)
            xt.assert_within_bound(lhs, rhs, tol, "shift")
            return
        xt.assert_within_bound(lhs, rhs, 2 * tol, "shift")

    prop()


def test_one_by_one_kernel_scales(backend: str) -> None:
    """The 1×1 kernel [[c]] returns c·x; exactly (one rounded product) with method='direct'."""
    @fuzz(backend, data=st.data())
    def prop(data: st.DataObject) -> None:
        dtype = data.draw(LAW_DTYPES, label="dtype")
        mode = data.draw(st.sampled_from(MODES), label="mode")
        method = data.draw(st.sampled_from(methods(backend)), label="method")
        assume(not (method in ("fft", "overlap", "native") and dtype == "int64"))
        x = data.draw(xt.images(dtype, max_side=8, max_batch_dims=2), label="x")
        c = data.draw(xt.elements(dtype), label="c")
        k = np.array([[c]], dtype=dtype)
        got = run(backend, x, k, mode=mode, method=method)
        want = x.astype(got.dtype) * got.dtype.type(c)  # c·x rounded once, in the result dtype
        if method == "direct" or dtype == "int64":
            np.testing.assert_array_equal(got, want)
        else:
            xt.assert_within_bound(got, wide(x) * c, _bound(x, k, mode, got), "1x1")

    prop()


def test_full_mode_sums_to_product_of_sums(backend: str) -> None:
    """In full mode every product x[p]·k[q] appears exactly once: Σ out = Σx · Σk per image."""
    @fuzz(backend, data=st.data())
    def prop(data: st.DataObject) -> None:
        dtype, _, x, k = _law_case(data, mode="full")
        out = run(backend, x, k, mode="full")
        total = wide(out).sum(axis=(-1, -2))
        want = wide(x).sum(axis=(-1, -2)) * wide(k).sum()
        if dtype == "int64":
            np.testing.assert_array_equal(total, want)
            return
        # The outputs' bounds, plus float64 rounding of both sums (Σ|out| ≤ Σ|x|·Σ|k|).
        scale = np.abs(wide(x)).sum(axis=(-1, -2)) * np.abs(wide(k)).sum()
        tol = (_bound(x, k, "full", out).sum(axis=(-1, -2))
               + 2 * (out.shape[-1] * out.shape[-2] + x.shape[-1] * x.shape[-2] + k.size) * U64
               * scale)
        xt.assert_within_bound(total, want, tol, "sum")

    prop()


def test_equals_convolution_with_flipped_kernel(backend: str) -> None:
    """corr2d(x, k) == scipy.signal.convolve2d(x, flip(k)) in every mode.

    For 'same' with an even kernel side the two 'same' conventions differ by one: xcorr (like
    ``correlate2d``) starts at full[kh // 2], ``convolve2d`` at full[(kh - 1) // 2].  Odd sides
    compare with ``convolve2d(mode='same')``, even ones with the crop of its full result.
    """
    @fuzz(backend, data=st.data())
    def prop(data: st.DataObject) -> None:
        _, mode, x, k = _law_case(data)
        got = run(backend, x, k, mode=mode)
        kf = wide(k)[::-1, ::-1]
        kh, kw = k.shape
        h, w = x.shape[-2:]
        if mode == "same" and (kh % 2 == 0 or kw % 2 == 0):
            want = per_slice(lambda s: scipy.signal.convolve2d(s, kf, mode="full"), wide(x))
            want = want[..., kh // 2:kh // 2 + h, kw // 2:kw // 2 + w]
        else:
            want = per_slice(lambda s: scipy.signal.convolve2d(s, kf, mode=mode), wide(x))
        check(got, want, x, k, mode, "auto")

    prop()


# -- 3. direct vs fft, and NaN locality --------------------------------------------------------


def test_direct_and_fft_agree_on_finite_input(backend: str) -> None:
    @fuzz(backend, data=st.data())
    def prop(data: st.DataObject) -> None:
        if "fft" not in load(backend).METHODS:
            pytest.skip(f"{backend} offers no fft method")
        dtype = data.draw(st.sampled_from(("float32", "float64")), label="dtype")
        mode = data.draw(st.sampled_from(MODES), label="mode")
        x, k = data.draw(xt.corr2d_cases(dtype, mode=mode, max_side=16, max_batch_dims=1),
                         label="case")
        with x64(backend):
            d = run(backend, x, k, mode=mode, method="direct")
            f = run(backend, x, k, mode=mode, method="fft")
        tol = xt.error_bound(x, k, mode, d.dtype) + xt.error_bound(x, k, mode, f.dtype, "fft")
        xt.assert_within_bound(f, wide(d), tol, "fft vs direct")

    prop()


def _window_hits(bad: np.ndarray, kshape: tuple[int, int], mode: str) -> np.ndarray:
    """Outputs whose window covers a True of ``bad``."""
    return sliding_window_view(pad_np(bad, mode, kshape), kshape, axis=(-2, -1)).any((-1, -2))


def _check_nan_locality(backend: str, x: np.ndarray, k: np.ndarray, mode: str) -> None:
    """NaN/Inf reach exactly the outputs whose window covers them; the rest are unaffected,
    and no RuntimeWarning escapes (the non-finite values are the caller's, not an accident)."""
    with x64(backend), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = run(backend, x, k, mode=mode)
    # A NaN/Inf in k meets every window (Inf·0 is NaN too).
    hit = _window_hits(~np.isfinite(x), k.shape, mode) | (not np.isfinite(k).all())
    assert np.array_equal(~np.isfinite(got), hit), (
        f"{int((~np.isfinite(got)).sum())} non-finite outputs, {int(hit.sum())} expected")
    clean, kclean = np.where(np.isfinite(x), x, 0), np.where(np.isfinite(k), k, 0)
    want = run("numpy", wide(clean), wide(kclean), mode=mode, method="direct")
    bound = (xt.error_bound(clean, kclean, mode, got.dtype, "auto")
             + xt.error_bound(clean, kclean, mode))
    xt.assert_within_bound(np.where(hit, 0, got), np.where(hit, 0, want), bound, "finite part")


def test_nan_stays_local_under_auto(backend: str) -> None:
    @fuzz(backend, data=st.data())
    def prop(data: st.DataObject) -> None:
        dtype = data.draw(st.sampled_from(("float32", "float64")), label="dtype")
        mode = data.draw(st.sampled_from(MODES), label="mode")
        x, k = data.draw(xt.corr2d_cases(dtype, mode=mode, max_side=10, allow_nonfinite=True),
                         label="case")
        _check_nan_locality(backend, x, k, mode)

    prop()


NONFINITE = st.sampled_from((np.nan, np.inf, -np.inf))


def test_nan_stays_local_under_auto_at_fft_sizes(backend: str) -> None:
    """The same at sizes where the cost models pick the FFT for finite data, so the guard
    must step in."""

    @fuzz(backend, share=4, dtype=st.sampled_from(("float32", "float64")),
          mode=st.sampled_from(MODES),
          hw=st.tuples(st.integers(120, 136), st.integers(120, 136)),
          khw=st.tuples(st.integers(36, 44), st.integers(36, 44)), seed=st.integers(0, 2**16),
          bad=st.lists(st.tuples(st.integers(0, 119), st.integers(0, 119), NONFINITE),
                       min_size=1, max_size=3))
    # Inf and -Inf in one image: NumPy's all_finite summed them and warned "invalid value".
    @example(dtype="float64", mode="valid", hw=(128, 128), khw=(40, 40), seed=0,
             bad=[(0, 0, np.inf), (0, 1, -np.inf)])
    def prop(dtype: str, mode: str, hw: tuple[int, int], khw: tuple[int, int], seed: int,
             bad: list[Any]) -> None:
        rng = np.random.default_rng(seed)
        x = rng.uniform(-8, 8, hw).astype(dtype)
        k = rng.uniform(-8, 8, khw).astype(dtype)
        for i, j, v in bad:
            x[i, j] = v
        picked = _methods.choose(load(backend).costs(), pad_np(x, mode, khw).shape, khw,
                                 x.itemsize, False)
        note(f"auto on finite data would choose {picked}")
        _check_nan_locality(backend, x, k, mode)

    prop()


def test_overflowing_sum_does_not_warn() -> None:
    """Finite input whose float64 sum overflows: 'auto' must not leak an overflow warning."""
    x = np.full((128, 128), 1e308)
    k = np.full((40, 40), 1e-300)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = xcorr.corr2d(x, k)
    assert np.isfinite(got).all()


def test_nan_guard_is_exercised() -> None:
    """The sizes of the test above really are ones where NumPy's auto picks the FFT."""
    be = load("numpy")
    for itemsize in (4, 8):
        for mode in MODES:
            shape = pad_np(np.zeros((120, 120)), mode, (44, 44)).shape
            picked = _methods.choose(be.costs(), shape, (44, 44), itemsize, False)
            assert picked in _methods.SPECTRAL


# -- 4. gradients ------------------------------------------------------------------------------


def _grads(backend: str, x: np.ndarray, k: np.ndarray, g: np.ndarray, mode: str
           ) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx, dL/dk) of L = Σ g · corr2d(x, k, mode) on ``backend``, as float64 NumPy."""
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        with jax_x64(True):
            def loss(a, b):
                return jnp.sum(jnp.asarray(g) * xcorr.corr2d(a, b, mode=mode, backend="jax"))

            dx, dk = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x), jnp.asarray(k))
            return np.asarray(dx), np.asarray(dk)
    if backend == "torch":
        import torch

        xt_ = torch.tensor(x, requires_grad=True)
        kt = torch.tensor(k, requires_grad=True)
        (torch.from_numpy(g) * xcorr.corr2d(xt_, kt, mode=mode)).sum().backward()
        return xt_.grad.numpy(), kt.grad.numpy()
    # Backends without autodiff: the analytic VJP of xcorr._grad on the padded image.
    be = load(backend)
    xp = pad_np(x, mode, k.shape)
    xb, kb, gb = be.asarray(xp), be.asarray(k), be.asarray(g)
    dxp = xt.as_numpy(_grad.grad_x(be, kb, gb))
    dk = xt.as_numpy(_grad.grad_k(be, xb, gb))
    p = pads(mode, *k.shape) or (0, 0, 0, 0)
    h, w = x.shape[-2:]
    return dxp[..., p[0]:p[0] + h, p[2]:p[2] + w], dk


def _grad_case(data: st.DataObject) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    mode = data.draw(st.sampled_from(MODES), label="mode")
    x, k = data.draw(xt.corr2d_cases("float64", mode=mode, max_side=4, max_batch_dims=1),
                     label="case")
    out_shape = oracle(x, k, mode).shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    g = rng.uniform(-4, 4, out_shape)
    return mode, x, k, g


def _grad_tol(x: np.ndarray, k: np.ndarray, g: np.ndarray) -> float:
    # Every gradient entry is a sum of at most x.size·k.size products g·x or g·k.
    n = x.size + k.size + g.size
    return 8 * n * U64 * float(np.abs(g).sum() * max(np.abs(x).max(), 1.0)
                               * max(np.abs(k).max(), 1.0))


# Every example compiles (JAX) or builds new graphs: a quarter of the profile keeps CI fast.
def test_gradients_agree_across_backends(backend: str) -> None:
    """JAX grad / torch autograd / the analytic VJP all give NumPy's analytic gradient."""
    @fuzz(backend, share=4, data=st.data())
    def prop(data: st.DataObject) -> None:
        mode, x, k, g = _grad_case(data)
        dx, dk = _grads(backend, x, k, g, mode)
        dx0, dk0 = _grads("numpy", x, k, g, mode)
        assert dx.shape == x.shape and dk.shape == k.shape
        tol = _grad_tol(x, k, g)
        np.testing.assert_allclose(dx, dx0, rtol=0, atol=tol)
        np.testing.assert_allclose(dk, dk0, rtol=0, atol=tol)

    prop()


@given(data=st.data())
def test_gradients_match_central_differences(data: st.DataObject) -> None:
    """NumPy's analytic gradient against central differences of L = Σ g·corr2d(x, k) in
    float64 (the other backends are held to NumPy's by the test above).  L is linear in each
    argument, so a step of 1 has no truncation error and only rounding is left."""
    mode, x, k, g = _grad_case(data)
    dx, dk = _grads("numpy", x, k, g, mode)

    def loss(a: np.ndarray, b: np.ndarray) -> float:
        return float((g * run("numpy", a, b, mode=mode, method="direct")).sum())

    def central(a: np.ndarray, f: Any) -> np.ndarray:
        out = np.empty(a.shape)
        for i in np.ndindex(a.shape):
            e = np.zeros(a.shape)
            e[i] = 1.0
            out[i] = (f(a + e) - f(a - e)) / 2
        return out

    tol = 4 * _grad_tol(x + 1, k + 1, g)
    np.testing.assert_allclose(dx, central(x, lambda a: loss(a, k)), rtol=0, atol=tol)
    np.testing.assert_allclose(dk, central(k, lambda b: loss(x, b)), rtol=0, atol=tol)


# -- 5. training trajectories ------------------------------------------------------------------


def _learn_kernel() -> Any:
    try:
        from xcorr.train import learn_kernel
    except ImportError as exc:
        pytest.skip(f"xcorr.train.learn_kernel cannot be imported yet ({exc})")
    return learn_kernel


# Each example trains twice: a quarter of the profile's examples keeps the file fast.
def test_training_trajectories_agree(backend: str) -> None:
    """From one seed, every backend follows NumPy's float64 trajectory (losses and kernel)."""
    @fuzz(backend, share=4, data=st.data())
    def prop(data: st.DataObject) -> None:
        learn_kernel = _learn_kernel()
        x, k_true = data.draw(xt.corr2d_cases("float64", max_side=6, max_batch_dims=1,
                                              max_magnitude=4), label="case")
        bias = data.draw(st.booleans(), label="bias")
        seed = data.draw(st.integers(0, 2**16), label="seed")
        y = oracle(x, k_true, "valid") + (0.5 if bias else 0.0)
        # Half the stability limit of gradient descent on this quadratic (Lipschitz <= 2·n·Σx²).
        lr = 0.25 / (k_true.size * max(float((x**2).sum()), 1.0) + x.size)
        runs = {}
        for name in ("numpy", backend):
            losses: list[float] = []
            with x64(name):
                r = learn_kernel(x, y, k_true.shape, backend=name, lr=lr, epochs=6, bias=bias,
                                 seed=seed, callback=lambda _e, v, out=losses: out.append(v))
            runs[name] = (np.array(losses), xt.as_numpy(r.kernel).astype(np.float64))
        (l0, k0), (l1, k1) = runs["numpy"], runs[backend]
        assert len(l1) == len(l0) == 6
        scale = float(l0[0]) + 1.0
        np.testing.assert_allclose(l1, l0, rtol=1e-9, atol=1e-9 * scale)
        np.testing.assert_allclose(k1, k0, rtol=1e-9, atol=1e-9)


    prop()
