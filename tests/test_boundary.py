"""Issue 12's correlation surface on every backend: boundary rules, ``convolve2d``, per-image
kernels, ``axes``, and the gradients of all of them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.signal
from conftest import to_np, x64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import xcorr
import xcorr.testing as xt
from xcorr._boundary import BOUNDARIES, NUMPY_MODES, pads
from xcorr._compat import jax_x64
from xcorr._dispatch import load

RNG = np.random.default_rng(12)
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow], deadline=None)


def oracle(x: np.ndarray, k: np.ndarray, mode: str, boundary: str, fill: float = 0.0,
           convolve: bool = False) -> np.ndarray:
    """``numpy.pad`` with the boundary's mode, then a float64 valid correlation per image."""
    x = x.astype(np.float64 if x.dtype.kind == "f" else np.int64)
    k = k.astype(x.dtype)
    if convolve:
        k = k[..., ::-1, ::-1]
    w = pads(mode, *k.shape[-2:], convolve)
    if w is not None:
        spec = [(0, 0)] * (x.ndim - 2) + [(w[0], w[1]), (w[2], w[3])]
        if boundary == "fill":
            x = np.pad(x, spec, constant_values=fill)
        else:
            x = np.pad(x, spec, mode=NUMPY_MODES[boundary])
    win = sliding_window_view(x, k.shape[-2:], axis=(-2, -1))
    return np.einsum("...ijab,...ab->...ij", win, k)


def padded(x: np.ndarray, k: np.ndarray, mode: str, boundary: str, fill: float = 0.0,
           convolve: bool = False) -> np.ndarray:
    w = pads(mode, *k.shape[-2:], convolve)
    if w is None:
        return x
    spec = [(0, 0)] * (x.ndim - 2) + [(w[0], w[1]), (w[2], w[3])]
    if boundary == "fill":
        return np.pad(x, spec, constant_values=fill)
    return np.pad(x, spec, mode=NUMPY_MODES[boundary])


def methods(backend: str) -> tuple[str, ...]:
    return ("auto", *load(backend).METHODS)


# -- boundaries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("convolve", [False, True])
def test_each_boundary_is_numpy_pad_then_valid(backend: str, convolve: bool) -> None:
    """Every boundary, mode and method equals np.pad(mode) + valid, kernels wider than x too."""
    fn = xcorr.convolve2d if convolve else xcorr.corr2d
    budget = {"jax": 6, "dask": 8}.get(backend, 25)

    @settings(FUZZ, max_examples=budget)
    @given(h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 9), kw=st.integers(1, 9),
           batch=st.sampled_from([(), (2,)]), mode=st.sampled_from(["same", "full"]),
           boundary=st.sampled_from(BOUNDARIES), fill=st.sampled_from([0.0, -1.5, 3.0]),
           seed=st.integers(0, 2**31))
    def run(h, w, kh, kw, batch, mode, boundary, fill, seed):
        rng = np.random.default_rng(seed)
        x = rng.uniform(-2, 2, (*batch, h, w))
        k = rng.uniform(-2, 2, (kh, kw))
        want = oracle(x, k, mode, boundary, fill, convolve)
        for method in methods(backend):
            with x64(backend):
                got = to_np(fn(x, k, mode=mode, boundary=boundary, fillvalue=fill,
                               method=method, backend=backend))
            xp = padded(x, k[..., ::-1, ::-1] if convolve else k, mode, boundary, fill,
                        convolve)
            kk = k[..., ::-1, ::-1] if convolve else k
            bound = xt.error_bound(xp, kk, "valid", got.dtype, method) + xt.error_bound(
                xp, kk, "valid", np.float64)
            xt.assert_within_bound(got, want, bound, f"{boundary} {mode} {method}")

    run()


def test_boundary_table_on_a_row(backend: str) -> None:
    """The issue's table: row ``a b c d`` extended by three cells on each side."""
    row = np.array([[1, 2, 3, 4]])
    want = {"fill": [9, 9, 9, 1, 2, 3, 4, 9, 9, 9], "wrap": [2, 3, 4, 1, 2, 3, 4, 1, 2, 3],
            "symm": [3, 2, 1, 1, 2, 3, 4, 4, 3, 2], "mirror": [4, 3, 2, 1, 2, 3, 4, 3, 2, 1],
            "nearest": [1, 1, 1, 1, 2, 3, 4, 4, 4, 4]}
    for boundary, ext in want.items():
        # 'same' with a 1×7 kernel pads three cells on each side, and the one-hot kernel e_j
        # reads cell i + j of the extension into output i.
        got = [0] * 10
        for j in range(7):
            kj = np.zeros((1, 7), dtype=np.int64)
            kj[0, j] = 1
            y = to_np(xcorr.corr2d(row, kj, mode="same", boundary=boundary, fillvalue=9,
                                   backend=backend))[0]
            got[j] = int(y[0])
            got[3 + j] = int(y[3])
        assert got == ext, boundary


def test_reflect_is_refused_naming_both_meanings(backend: str) -> None:
    with pytest.raises(ValueError, match="ambiguous.*'symm'.*'mirror'"):
        xcorr.corr2d(np.ones((4, 4)), np.ones((3, 3)), mode="same", boundary="reflect",
                     backend=backend)
    with pytest.raises(ValueError, match="unknown boundary 'circular'; choose one of fill"):
        xcorr.corr2d(np.ones((4, 4)), np.ones((3, 3)), boundary="circular", backend=backend)


def test_any_boundary_is_irrelevant_in_valid_mode(backend: str) -> None:
    x, k = RNG.uniform(size=(6, 7)), RNG.uniform(size=(3, 2))
    ref = to_np(xcorr.corr2d(x, k, backend=backend))
    for boundary in BOUNDARIES:
        got = to_np(xcorr.corr2d(x, k, boundary=boundary, fillvalue=7, backend=backend))
        np.testing.assert_array_equal(got, ref)


def test_fillvalue_rules(backend: str) -> None:
    xi = np.arange(12).reshape(3, 4)
    with pytest.raises(ValueError, match="fillvalue=2.5 is not an integer"):
        xcorr.corr2d(xi, np.ones((2, 2), np.int64), mode="same", fillvalue=2.5,
                     backend=backend)
    # integral floats are fine, and the result stays exact
    got = to_np(xcorr.corr2d(xi, np.ones((2, 2), np.int64), mode="full", fillvalue=2.0,
                             backend=backend))
    assert got.dtype.kind == "i"
    np.testing.assert_array_equal(got, oracle(xi, np.ones((2, 2), np.int64), "full", "fill",
                                              2))
    # beyond the integer result's range: wrapped silently (torch) or "Python int too large
    # to convert to C long", which names nothing
    for big in (2**63, -(2**63) - 1, 2.0**64):
        with pytest.raises(ValueError, match=r"fillvalue=.* is outside the int(64|32) range"):
            xcorr.corr2d(xi, np.ones((2, 2), np.int64), mode="same", fillvalue=big,
                         backend=backend)
    with pytest.raises(TypeError, match="fillvalue must be a real number"):
        xcorr.corr2d(np.ones((3, 3)), np.ones((2, 2)), mode="same", fillvalue=1j,
                     backend=backend)
    with pytest.raises(TypeError, match="fillvalue must be a real scalar"):
        xcorr.corr2d(np.ones((3, 3)), np.ones((2, 2)), mode="same", fillvalue=[1, 2],
                     backend=backend)
    # ignored for the copying boundaries, as SciPy ignores it
    a = to_np(xcorr.corr2d(xi, np.ones((2, 2), np.int64), mode="same", boundary="wrap",
                           fillvalue=2.5, backend=backend))
    np.testing.assert_array_equal(a, oracle(xi, np.ones((2, 2), np.int64), "same", "wrap"))


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_integers_stay_exact_under_every_boundary(backend: str, boundary: str) -> None:
    x = RNG.integers(-1000, 1000, (2, 5, 6))
    k = RNG.integers(-1000, 1000, (3, 4))
    with x64(backend):
        got = to_np(xcorr.corr2d(x, k, mode="full", boundary=boundary, fillvalue=-3,
                                 backend=backend))
    assert got.dtype.kind == "i"
    np.testing.assert_array_equal(got, oracle(x, k, "full", boundary, -3))


def test_nan_fillvalue_counts_as_nonfinite(backend: str) -> None:
    """A NaN fill only reaches the border windows: auto must not take the FFT."""
    x = RNG.uniform(size=(64, 64))
    k = RNG.uniform(size=(31, 31))  # large enough that the FFT is the cost model's pick
    with x64(backend):
        got = to_np(xcorr.corr2d(x, k, mode="same", fillvalue=np.nan, backend=backend))
    assert np.isnan(got[0, 0]) and np.isnan(got[-1, -1])
    valid = to_np(xcorr.corr2d(x, k, backend=backend))
    assert np.isfinite(valid).all()
    # outputs whose window stays inside x are finite in 'same' mode too
    top, _, left, _ = pads("same", 31, 31)
    np.testing.assert_allclose(got[top:top + 34, left:left + 34], valid, rtol=1e-5)


# -- convolve2d ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("kshape", [(1, 1), (2, 2), (3, 4), (4, 3), (5, 5)])
def test_convolve_matches_scipy(backend: str, mode: str, kshape: tuple[int, int]) -> None:
    x, k = RNG.uniform(-1, 1, (7, 8)), RNG.uniform(-1, 1, kshape)
    with x64(backend):
        got = to_np(xcorr.convolve2d(x, k, mode=mode, backend=backend))
    want = scipy.signal.convolve2d(x, k, mode=mode)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_convolve_is_correlation_with_the_flipped_kernel(backend: str) -> None:
    x, k = RNG.integers(-9, 9, (2, 6, 7)), RNG.integers(-9, 9, (3, 2))
    for mode in ("valid", "full"):
        a = to_np(xcorr.convolve2d(x, k, mode=mode, backend=backend))
        b = to_np(xcorr.corr2d(x, k[::-1, ::-1].copy(), mode=mode, backend=backend))
        np.testing.assert_array_equal(a, b)


# -- per-image kernels ---------------------------------------------------------------------------


def _loop(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    lead = np.broadcast_shapes(x.shape[:-2], k.shape[:-2])
    xb = np.broadcast_to(x, (*lead, *x.shape[-2:])).reshape(-1, *x.shape[-2:])
    kb = np.broadcast_to(k, (*lead, *k.shape[-2:])).reshape(-1, *k.shape[-2:])
    outs = [xcorr.reference.corr2d(a, b) for a, b in zip(xb, kb, strict=True)]
    return np.stack(outs).reshape(*lead, *outs[0].shape)


@pytest.mark.parametrize("xshape, kshape, out", [
    ((2, 3, 8, 9), (3, 3, 2), (2, 3, 6, 8)),     # depthwise: one kernel per channel
    ((8, 9), (4, 3, 2), (4, 6, 8)),              # a bank of kernels
    ((2, 1, 8, 9), (3, 3, 2), (2, 3, 6, 8)),     # every image with every kernel
    ((3, 8, 9), (2, 1, 3, 2), (2, 3, 6, 8)),     # bank over a batch (k's 1 broadcasts)
    ((2, 3, 8, 9), (2, 1, 3, 2), (2, 3, 6, 8)),  # per-image, shared across channels
    ((2, 3, 8, 9), (2, 3, 3, 2), (2, 3, 6, 8)),  # one kernel per image
])
def test_per_image_kernels_equal_a_loop(backend: str, xshape, kshape, out) -> None:
    x = RNG.integers(-9, 9, xshape).astype(np.float64)
    k = RNG.integers(-9, 9, kshape).astype(np.float64)
    want = _loop(x, k)
    assert want.shape == out
    for method in methods(backend):
        with x64(backend):
            got = to_np(xcorr.corr2d(x, k, method=method, backend=backend))
        assert got.shape == out, method
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=method)


def test_per_image_kernels_with_modes_and_integers(backend: str) -> None:
    x = RNG.integers(-99, 99, (2, 3, 5, 6))
    k = RNG.integers(-99, 99, (3, 2, 4))
    with x64(backend):
        got = to_np(xcorr.corr2d(x, k, mode="same", boundary="symm", backend=backend))
    assert got.dtype.kind == "i"
    np.testing.assert_array_equal(got, oracle(x, k, "same", "symm"))


def test_kernel_batch_that_does_not_broadcast_names_both_shapes(backend: str) -> None:
    with pytest.raises(ValueError, match=r"k \(4, 2, 2\).*x \(2, 3, 5, 5\)"):
        xcorr.corr2d(np.ones((2, 3, 5, 5)), np.ones((4, 2, 2)), backend=backend)


# -- axes ----------------------------------------------------------------------------------------


def test_channel_last_images(backend: str) -> None:
    x = RNG.uniform(size=(9, 8, 3))
    k = RNG.uniform(size=(3, 2, 3))  # one kernel per channel: k's batch meets x's C axis
    with x64(backend):
        got = to_np(xcorr.corr2d(x, k, mode="same", boundary="wrap", axes=(0, 1),
                                 backend=backend))
    want = np.moveaxis(oracle(np.moveaxis(x, -1, 0), k, "same", "wrap"), 0, -1)
    assert got.shape == (9, 8, 3)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_axes_in_any_order_and_negative(backend: str) -> None:
    x = RNG.uniform(size=(2, 7, 5))
    k = RNG.uniform(size=(3, 2))
    with x64(backend):
        a = to_np(xcorr.corr2d(x, k, axes=(-1, -2), backend=backend))  # correlate x^T
        b = to_np(xcorr.corr2d(x, k, axes=(1, 2), backend=backend))
    want_t = oracle(np.swapaxes(x, -1, -2), k, "valid", "fill")
    np.testing.assert_allclose(a, np.swapaxes(want_t, -1, -2), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b, oracle(x, k, "valid", "fill"), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("axes, match", [
    ((0, 0), "same axis twice"), ((0, 3), "out of range"), ((0,), "two integers"),
    ("ab", "two integers"), ((0.0, 1), "two integers"), ((True, False), "two integers"),
])
def test_bad_axes(backend: str, axes: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        xcorr.corr2d(np.ones((4, 4, 2)), np.ones((2, 2)), axes=axes, backend=backend)


# -- gradients -----------------------------------------------------------------------------------

GRAD_CASES = [
    # (x shape, k shape, axes)
    ((5, 6), (2, 3), (-2, -1)),
    ((2, 3, 5, 4), (3, 3, 2), (-2, -1)),
    ((5, 4, 3), (3, 2, 3), (0, 1)),
    ((4, 3), (2, 6, 5), (-2, -1)),  # a bank of kernels larger than the image
]


def _central_differences(f, a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    out = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        up, down = a.copy(), a.copy()
        up[idx] += eps
        down[idx] -= eps
        out[idx] = (f(up) - f(down)) / (2 * eps)
    return out


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("convolve", [False, True])
def test_vjp_matches_central_differences(boundary: str, convolve: bool) -> None:
    fn = xcorr.convolve2d if convolve else xcorr.corr2d
    vjp = xcorr.vjp.convolve2d if convolve else xcorr.vjp.corr2d
    for xs, ks, axes in GRAD_CASES:
        for mode in ("valid", "same", "full"):
            if mode == "valid" and (ks[-2] > xs[axes[0]] or ks[-1] > xs[axes[1]]):
                continue
            x, k = RNG.uniform(-1, 1, xs), RNG.uniform(-1, 1, ks)
            kw = {"mode": mode, "boundary": boundary, "fillvalue": 0.7, "axes": axes}
            g = RNG.uniform(-1, 1, fn(x, k, **kw).shape)
            dx, dk = vjp(x, k, g, **kw)
            nx = _central_differences(lambda a: float((g * fn(a, k, **kw)).sum()), x)  # noqa: B023
            nk = _central_differences(lambda b: float((g * fn(x, b, **kw)).sum()), k)  # noqa: B023
            np.testing.assert_allclose(dx, nx, rtol=1e-6, atol=1e-7, err_msg=f"{mode} dx")
            np.testing.assert_allclose(dk, nk, rtol=1e-6, atol=1e-7, err_msg=f"{mode} dk")


@pytest.mark.parametrize("convolve", [False, True])
def test_autodiff_and_the_analytic_vjp_agree(backend: str, convolve: bool) -> None:
    """JAX and torch differentiate through the backend; the others give xcorr.vjp's numbers."""
    fn = xcorr.convolve2d if convolve else xcorr.corr2d
    vjp = xcorr.vjp.convolve2d if convolve else xcorr.vjp.corr2d
    for xs, ks, axes in GRAD_CASES:
        for boundary in BOUNDARIES:
            mode = "same" if boundary != "fill" else "full"
            x, k = RNG.uniform(-1, 1, xs), RNG.uniform(-1, 1, ks)
            kw = {"mode": mode, "boundary": boundary, "axes": axes}
            g = RNG.uniform(-1, 1, fn(x, k, **kw).shape)
            want = vjp(x, k, g, **kw)
            got = _backend_grads(backend, fn, vjp, x, k, g, kw)
            for a, b, name in zip(got, want, ("dx", "dk"), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10,
                                           err_msg=f"{boundary} {xs} {ks} {name}")


def _backend_grads(backend: str, fn, vjp, x, k, g, kw) -> tuple[np.ndarray, np.ndarray]:
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        with jax_x64(True):
            dx, dk = jax.grad(lambda a, b: jnp.sum(fn(a, b, **kw) * g), argnums=(0, 1))(
                jnp.asarray(x), jnp.asarray(k))
            return np.asarray(dx), np.asarray(dk)
    if backend == "torch":
        import torch

        xt_, kt = torch.tensor(x, requires_grad=True), torch.tensor(k, requires_grad=True)
        (fn(xt_, kt, **kw) * torch.from_numpy(g)).sum().backward()
        return xt_.grad.numpy(), kt.grad.numpy()
    dx, dk = vjp(x, k, g, backend=backend, **kw)
    return to_np(dx), to_np(dk)


def test_vjp_checks_the_gradient_shape() -> None:
    with pytest.raises(ValueError, match=r"g has shape \(3, 3\).*output.*\(4, 4\)"):
        xcorr.vjp.corr2d(np.ones((5, 5)), np.ones((2, 2)), np.ones((3, 3)))


def test_vjp_of_integer_data_with_a_float_cotangent_is_float() -> None:
    """The cotangent was cast to the data's integers: g = 0.5 gave all-zero gradients."""
    xi, ki = np.arange(30).reshape(5, 6), np.ones((2, 2), np.int64)
    g = np.full((4, 5), 0.5)
    dx, dk = xcorr.vjp.corr2d(xi, ki, g)
    fx, fk = xcorr.vjp.corr2d(xi.astype(float), ki.astype(float), g)
    assert dx.dtype == dk.dtype == np.float64
    np.testing.assert_array_equal(dk, fk)
    np.testing.assert_array_equal(dx, fx)
    exact = xcorr.vjp.corr2d(xi, ki, np.ones((4, 5), np.int64))[1]  # integers stay exact
    assert exact.dtype == np.int64 and (exact == 2 * fk).all()
    x4, w4 = np.arange(32).reshape(1, 2, 4, 4), np.ones((1, 2, 2, 2), np.int64)
    got = xcorr.vjp.conv2d(x4, w4, np.full((1, 1, 3, 3), 0.5), bias=np.zeros(1, np.int64))
    want = xcorr.vjp.conv2d(x4 * 1.0, w4 * 1.0, np.full((1, 1, 3, 3), 0.5), bias=np.zeros(1))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        xcorr.vjp.pool2d(np.arange(16).reshape(4, 4), np.full((2, 2), 0.5), 2),
        xcorr.vjp.pool2d(np.arange(16.0).reshape(4, 4), np.full((2, 2), 0.5), 2))


def test_vjp_cotangent_takes_part_in_choosing_the_backend() -> None:
    """``g`` was converted to the backend of x and k: a torch cotangent with NumPy data gave
    NumPy, and a JAX one with torch data was silently converted instead of refused."""
    torch = pytest.importorskip("torch", reason="torch: not installed (the 'torch' extra)")
    dx, dk = xcorr.vjp.corr2d(np.ones((5, 6)), np.ones((2, 2)), torch.ones(4, 5))
    assert isinstance(dx, torch.Tensor) and isinstance(dk, torch.Tensor)
    dx, *_ = xcorr.vjp.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)),
                              torch.ones(1, 1, 3, 3))
    assert isinstance(dx, torch.Tensor)
    assert isinstance(xcorr.vjp.pool2d(np.ones((4, 4)), torch.ones(2, 2), 2), torch.Tensor)
    jnp = pytest.importorskip("jax.numpy", reason="jax: not installed (the 'jax' extra)")
    with pytest.raises(TypeError, match="x and g belong to different frameworks"):
        xcorr.vjp.corr2d(torch.ones(5, 6), np.ones((2, 2)), jnp.ones((4, 5)))


# -- Dask: boundaries across chunk edges ---------------------------------------------------------


def test_dask_boundaries_bit_equal_numpy_for_any_chunking() -> None:
    da = pytest.importorskip("dask.array", reason="dask: not installed")

    @settings(FUZZ, max_examples=30)
    @given(h=st.integers(2, 13), w=st.integers(2, 13), kh=st.integers(1, 9),
           kw=st.integers(1, 9), ch=st.integers(1, 6), cw=st.integers(1, 6),
           boundary=st.sampled_from(BOUNDARIES), mode=st.sampled_from(["same", "full"]),
           convolve=st.booleans(), seed=st.integers(0, 2**31))
    def run(h, w, kh, kw, ch, cw, boundary, mode, convolve, seed):
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1, 1, (2, h, w))
        k = rng.uniform(-1, 1, (kh, kw))
        fn = xcorr.convolve2d if convolve else xcorr.corr2d
        want = fn(x, k, mode=mode, boundary=boundary, fillvalue=0.5, method="direct")
        got = fn(da.from_array(x, chunks=(1, ch, cw)), k, mode=mode, boundary=boundary,
                 fillvalue=0.5, method="direct").compute()
        np.testing.assert_array_equal(got, want)

    run()


def test_dask_per_channel_kernels_across_batch_chunks() -> None:
    da = pytest.importorskip("dask.array", reason="dask: not installed")
    x = RNG.uniform(size=(3, 4, 10, 11))
    k = RNG.uniform(size=(4, 3, 3))
    want = xcorr.corr2d(x, k, mode="same", boundary="nearest", method="direct")
    got = xcorr.corr2d(da.from_array(x, chunks=(2, 3, 4, 5)), k, mode="same",
                       boundary="nearest", method="direct").compute()
    np.testing.assert_array_equal(got, want)
    bank = RNG.uniform(size=(5, 2, 2))
    want = xcorr.corr2d(x[0, 0], bank, method="direct")
    got = xcorr.corr2d(da.from_array(x[0, 0], chunks=4), bank, method="direct").compute()
    np.testing.assert_array_equal(got, want)


# -- the public strategies (xcorr.testing) over the whole surface --------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
def test_surface_cases_agree_with_numpy_float64(backend: str, dtype: str) -> None:
    """xcorr.testing.surface_cases: every mode, boundary, fill value and per-image kernel."""
    budget = {"jax": 6, "dask": 6}.get(backend, 20)

    @settings(FUZZ, max_examples=budget)
    @given(case=xt.surface_cases(dtype), convolve=st.booleans())
    def run(case, convolve):
        x, k, options = case
        with x64(backend):
            xt.assert_backends_agree(x, k, backends=[backend], convolve=convolve, **options)

    run()
