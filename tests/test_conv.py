"""Issue 14: ``conv2d`` on every backend and method, against ``F.conv2d`` in float64."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import to_np, x64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xcorr
from xcorr._compat import jax_x64
from xcorr._conv import PADDING_MODES, geometry
from xcorr._dispatch import load

torch = pytest.importorskip("torch", reason="torch: the float64 oracle (F.conv2d) needs it")
F = torch.nn.functional

RNG = np.random.default_rng(14)
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow], deadline=None)
TORCH_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
             "circular": "circular"}


def methods(backend: str) -> tuple[str, ...]:
    return ("auto", "direct", "fft", *(("native",) if hasattr(load(backend), "conv2d_native")
                                       else ()))


def oracle(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, **kw: Any) -> np.ndarray:
    """``F.conv2d`` in float64 after padding with torch's own ``F.pad`` modes."""
    stride, dilation = kw.get("stride", 1), kw.get("dilation", 1)
    groups, mode = kw.get("groups", 1), kw.get("padding_mode", "zeros")
    xs = x.shape if x.ndim == 4 else (1, *x.shape)
    geo = geometry(xs, w.shape, stride, kw.get("padding", 0), dilation, groups,
                   PADDING_MODES[mode])
    t, bt, lf, r = geo.pads
    xt = torch.tensor(x.reshape(xs), dtype=torch.float64)
    xt = F.pad(xt, (lf, r, t, bt), mode=TORCH_PAD[mode]) if any(geo.pads) else xt
    y = F.conv2d(xt, torch.tensor(w, dtype=torch.float64),
                 None if b is None else torch.tensor(b, dtype=torch.float64),
                 stride=stride, dilation=dilation, groups=groups).numpy()
    return y if x.ndim == 4 else y[0]


# -- the chapter's examples (d2l 7.3-7.5) ----------------------------------------------------


def test_chapter_padding_and_stride_shapes(backend: str) -> None:
    x = RNG.uniform(size=(1, 1, 8, 8))
    cases = [((3, 3), {"padding": 1}, (8, 8)), ((5, 3), {"padding": (2, 1)}, (8, 8)),
             ((3, 3), {"padding": 1, "stride": 2}, (4, 4)),
             ((3, 5), {"padding": (0, 1), "stride": (3, 4)}, (2, 2))]
    for kshape, kw, out in cases:
        y = xcorr.conv2d(x, RNG.uniform(size=(1, 1, *kshape)), backend=backend, **kw)
        assert tuple(y.shape[-2:]) == out, (kshape, kw)


def test_chapter_multiple_channels(backend: str) -> None:
    x = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    k = np.array([[[0, 1], [2, 3]], [[1, 2], [3, 4]]])
    y = to_np(xcorr.conv2d(x, k[None], backend=backend))
    assert y.tolist() == [[[56, 72], [104, 120]]]
    ks = np.stack([k, k + 1, k + 2])  # three output channels
    y3 = to_np(xcorr.conv2d(x, ks, backend=backend))
    assert y3.shape == (3, 2, 2)
    assert y3[0].tolist() == [[56, 72], [104, 120]]
    assert y3.tolist() == oracle(x, ks, None).astype(np.int64).tolist()


def test_chapter_one_by_one_is_a_matmul(backend: str) -> None:
    x = RNG.normal(size=(3, 3, 3))
    k = RNG.normal(size=(2, 3, 1, 1))
    want = (k.reshape(2, 3) @ x.reshape(3, 9)).reshape(2, 3, 3)
    for method in methods(backend):
        with x64(backend):
            got = to_np(xcorr.conv2d(x, k, method=method, backend=backend))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=method)


# -- against F.conv2d ----------------------------------------------------------------------


@st.composite
def conv_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    mode = draw(st.sampled_from(list(PADDING_MODES)))
    span = (d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1)
    h = draw(st.integers(max(span[0], 2), 9))
    w = draw(st.integers(max(span[1], 2), 9))
    form = draw(st.sampled_from(["int", "pair", "pairs", "valid", "same"]))
    cap = min(h, w) - 1 if mode == "reflect" else min(h, w)
    p = draw(st.integers(0, min(cap, 3)))
    padding = {"int": p, "pair": (p, draw(st.integers(0, min(cap, 3)))),
               "pairs": ((p, draw(st.integers(0, min(cap, 3)))),
                         (draw(st.integers(0, min(cap, 3))), p)),
               "valid": "valid", "same": "same"}[form]
    if form == "same" and mode == "reflect" and max(span) > min(h, w):
        padding = "valid"
    batched = draw(st.booleans())
    n = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.uniform(-1, 1, (n, groups * cg, h, w) if batched else (groups * cg, h, w))
    wt = rng.uniform(-1, 1, (groups * og, cg, kh, kw))
    b = rng.uniform(-1, 1, groups * og) if draw(st.booleans()) else None
    kw_ = {"stride": s, "padding": padding, "dilation": d, "groups": groups,
           "padding_mode": mode}
    return x, wt, b, kw_


def test_matches_f_conv2d(backend: str) -> None:
    budget = {"jax": 10, "dask": 8}.get(backend, 40)

    @settings(FUZZ, max_examples=budget)
    @given(case=conv_cases())
    def run(case):
        x, w, b, kw = case
        try:
            want = oracle(x, w, b, **kw)
        except (RuntimeError, ValueError):  # torch refuses the geometry: so must xcorr
            with pytest.raises(ValueError):
                xcorr.conv2d(x, w, b, backend=backend, **kw)
            return
        for method in methods(backend):
            with x64(backend):
                got = to_np(xcorr.conv2d(x, w, b, method=method, backend=backend, **kw))
            assert got.shape == want.shape, (method, kw)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9,
                                       err_msg=f"{method} {kw}")

    run()


def test_float32_and_integers(backend: str) -> None:
    x = RNG.integers(-50, 50, (2, 4, 9, 8))
    w = RNG.integers(-50, 50, (6, 2, 3, 3))
    with x64(backend):
        got = to_np(xcorr.conv2d(x, w, groups=2, padding=1, stride=2, backend=backend))
    assert got.dtype.kind == "i"
    np.testing.assert_array_equal(got, np.rint(oracle(x, w, None, groups=2, padding=1,
                                                      stride=2)).astype(np.int64))
    for method in ("fft", *(("native",) if "native" in methods(backend) else ())):
        with pytest.raises(ValueError, match="exact integer"):
            xcorr.conv2d(x, w, groups=2, method=method, backend=backend)
    xf, wf = x.astype(np.float32), w.astype(np.float32)
    got = to_np(xcorr.conv2d(xf, wf, groups=2, backend=backend))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, oracle(xf, wf, None, groups=2), rtol=1e-5, atol=1e-3)


def jnp_cast(v: np.float32, dtype: np.dtype) -> Any:
    import jax.numpy as jnp

    return jnp.asarray(v).astype(dtype).astype(jnp.float32)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_half_types_are_summed_in_float32_and_rounded_once(backend: str, dtype: str) -> None:
    """Half types keep their dtype, on every method, with a bias, in pooling and in corr2d,
    and each output is a float32 sum rounded once to the type: within half its spacing of
    the exact sum, plus float32's error (a sum in the type's own width, as ml_dtypes' matmul
    makes, misses that; torch has no float8 arithmetic and no FFT takes half types).
    ml_dtypes' arrays on NumPy, JAX and Dask, torch's own types on torch."""
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes (a JAX dependency): absent")
    dt = np.dtype(np.float16 if dtype == "float16" else getattr(ml_dtypes, dtype))
    x, b = RNG.random((1, 8, 10, 10)).astype(dt), RNG.random(4).astype(dt)
    dense, depthwise = RNG.random((4, 8, 3, 3)).astype(dt), RNG.random((8, 1, 3, 3)).astype(dt)

    def native(a: np.ndarray) -> Any:  # torch: its own dtype (ml_dtypes' float8 is none)
        if backend != "torch":
            return a
        return torch.from_numpy(a.astype(np.float32)).to(getattr(torch, dtype))

    def values(r: Any) -> np.ndarray:
        assert str(r.dtype).removeprefix("torch.") == dtype
        return (r.float().numpy() if backend == "torch" else to_np(r)).astype(np.float64)

    # JAX 0.4 rounds float32 to float8 through float16 (2.12597656 became 2.0, not 2.25):
    # a second rounding, of up to half a spacing more, which is JAX's
    twice = backend == "jax" and dt.itemsize == 1 and float(
        jnp_cast(np.float32(2.12597656), dt)) != 2.25

    def check(got: np.ndarray, exact: np.ndarray, terms: int, fft: bool, what: str) -> None:
        # the inputs are positive, so the exact sum is its own magnitude
        spacing = 2.0 ** (np.floor(np.log2(exact)) - ml_dtypes.finfo(dt).nmant)
        slack = 1e-5 if fft else (terms + 2) * 2.0**-24  # float32's FFT or sum
        half = 1.5 if fft else 1.0 if twice else 0.5
        over = np.abs(got - exact) > half * spacing + slack * exact
        assert not over.any(), f"{what}: {got[over][:4]} against exact {exact[over][:4]}"

    for w, groups in ((dense, 1), (depthwise, 8)):
        exact = oracle(x.astype(np.float64), w.astype(np.float64), None, padding=1,
                       groups=groups)
        for method in methods(backend):
            got = values(xcorr.conv2d(native(x), native(w), padding=1, groups=groups,
                                      method=method, backend=backend))
            # auto may give a depthwise convolution to corr2d's FFTs
            fft = method == "fft" or (method == "auto" and groups > 1)
            check(got, exact, w[0].size, fft, f"{method}, groups={groups}")
    # with a bias, the bias too is added before the one rounding (F.conv2d's; rounding the
    # convolution first took bfloat16 1 + 2**-8 with a bias of 2**-8 to 1.0)
    exact = oracle(x.astype(np.float64), dense.astype(np.float64), b.astype(np.float64),
                   padding=1)
    for method in methods(backend):
        got = values(xcorr.conv2d(native(x), native(dense), native(b), padding=1,
                                  method=method, backend=backend))
        check(got, exact, dense[0].size + 1, method == "fft", f"{method}, with a bias")
    for mode in ("max", "avg"):
        values(xcorr.pool2d(native(x), 2, padding=1, mode=mode, backend=backend))
    values(xcorr.convolve2d(native(x[0, 0]), native(dense[0, 0]), mode="same",
                            boundary="symm", backend=backend))  # flips the kernel
    got = values(xcorr.corr2d(native(x[0]), native(dense[0, 0]), method="direct",
                              backend=backend))
    exact = xcorr.corr2d(x[0].astype(np.float64), dense[0, 0].astype(np.float64))
    check(got, exact, 9, False, "corr2d")


def test_nan_stays_in_its_windows(backend: str) -> None:
    x = RNG.uniform(size=(1, 2, 40, 40))
    x[0, 1, 20, 20] = np.nan
    w = RNG.uniform(size=(3, 2, 15, 15))  # large: the FFT's territory if the data were finite
    with x64(backend):
        ys = [to_np(xcorr.conv2d(x, w, backend=backend))]
        if backend == "jax":  # traced values: the FFT's NaN guard runs on the device
            import jax
            import jax.numpy as jnp

            ys.append(to_np(jax.jit(xcorr.conv2d)(jnp.asarray(x), jnp.asarray(w))))
    bad = np.zeros(ys[0].shape[-2:], bool)
    bad[6:21, 6:21] = True  # outputs whose window covers (20, 20)
    for y in ys:
        assert np.isnan(y[:, :, bad]).all()
        assert np.isfinite(y[:, :, ~bad]).all()


@pytest.mark.parametrize("kw, match", [
    ({"groups": 3}, "groups=3 must divide both C_in=4"),
    ({"groups": 2, "w": (4, 4, 3, 3)}, "4 input channels per group but x has C_in=4 and "
                                       "groups=2, i.e. 2"),
    ({"stride": 0}, "stride must be a positive integer"),
    ({"dilation": (1, -1)}, "dilation must be a positive integer"),
    ({"padding": -1}, "padding must be non-negative"),
    ({"padding": 8, "padding_mode": "reflect"}, "smaller than the input height"),
    ({"padding": 9, "padding_mode": "circular"}, "wraps around more than once"),
    ({"padding_mode": "symmetric"}, "unknown padding_mode 'symmetric'"),
    ({"method": "overlap"}, "unknown method 'overlap' for conv2d"),
    ({"bias": np.ones(3)}, r"bias must have shape \(C_out,\) = \(4,\)"),
    ({"w": (4, 4, 9, 9)}, "larger than the padded input"),
])
def test_errors_name_the_numbers(backend: str, kw: dict, match: str) -> None:
    kw = dict(kw)
    w = np.ones(kw.pop("w", (4, 4, 3, 3)))
    b = kw.pop("bias", None)
    with pytest.raises(ValueError, match=match):
        xcorr.conv2d(np.ones((1, 4, 8, 8)), w, b, backend=backend, **kw)


def test_depthwise_direct_is_a_direct_sum_and_auto_may_take_an_fft(monkeypatch) -> None:
    """``method="direct"`` on a depthwise layer sums directly (corr2d's direct loop), even
    where corr2d's auto would take an FFT (31² taps); ``auto`` agrees to rounding."""
    be = load("numpy")
    seen: list[str] = []
    real = be.corr2d_valid
    monkeypatch.setattr(be, "corr2d_valid", lambda x, k, m: (seen.append(m), real(x, k, m))[1])
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 96, 96)), rng.standard_normal((3, 1, 31, 31))
    direct = xcorr.conv2d(x, w, groups=3, method="direct")
    assert seen and set(seen) == {"direct"}
    assert be.costs()[8].direct(6, 66, 66, 31, 31) > be.costs()[8].fft(6, 96, 96)
    auto = xcorr.conv2d(x, w, groups=3)
    np.testing.assert_allclose(auto, direct, rtol=1e-9, atol=1e-9)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"x must be \(N, C_in, H, W\) or \(C_in, H, W\)"):
        xcorr.conv2d(np.ones((4, 4)), np.ones((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="w must be"):
        xcorr.conv2d(np.ones((1, 4, 4)), np.ones((2, 2)))


# -- gradients -------------------------------------------------------------------------------

GRAD_CASES = [
    ((2, 4, 9, 10), (6, 2, 3, 3), {"groups": 2}),
    ((1, 3, 11, 12), (4, 3, 3, 2), {"stride": 2, "padding": 1}),
    ((2, 4, 9, 9), (8, 1, 3, 3), {"groups": 4, "dilation": (2, 1), "stride": (1, 2),
                                  "padding": 2}),
    ((1, 3, 7, 8), (6, 3, 3, 3), {"padding": "same", "padding_mode": "reflect"}),
    ((1, 2, 8, 8), (2, 2, 3, 3), {"padding": 2, "padding_mode": "circular",
                                  "stride": (2, 3)}),
    ((3, 5, 6), (2, 3, 2, 2), {"padding": 1, "padding_mode": "replicate"}),
]


def _torch_grads(x, w, b, g, kw) -> list[np.ndarray]:
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    (xcorr.conv2d(xt, wt, bt, **kw) * torch.from_numpy(g)).sum().backward()
    return [xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()]


def test_gradients_on_every_backend(backend: str) -> None:
    """torch autograd, JAX grad and the analytic VJP (NumPy/CuPy/Dask) give one answer."""
    for xs, ws, kw in GRAD_CASES:
        x, w, b = RNG.normal(size=xs), RNG.normal(size=ws), RNG.normal(size=ws[0])
        g = RNG.normal(size=oracle(x, w, b, **kw).shape)
        want = _torch_grads(x, w, b, g, kw)
        if backend == "jax":
            import jax
            import jax.numpy as jnp

            with jax_x64(True):
                got = jax.grad(lambda a, c, d: jnp.sum(xcorr.conv2d(a, c, d, **kw) * g),  # noqa: B023
                               argnums=(0, 1, 2))(jnp.asarray(x), jnp.asarray(w),
                                                  jnp.asarray(b))
        elif backend == "torch":
            got = want
        else:
            got = xcorr.vjp.conv2d(x, w, g, b, backend=backend, **kw)
        for a, e, name in zip(got, want, ("dx", "dw", "dbias"), strict=True):
            np.testing.assert_allclose(to_np(a), e, rtol=1e-9, atol=1e-9,
                                       err_msg=f"{name} {kw}")


def test_vjp_matches_central_differences() -> None:
    x, w, b = RNG.normal(size=(1, 2, 6, 7)), RNG.normal(size=(2, 1, 3, 2)), RNG.normal(size=2)
    kw = {"groups": 2, "stride": (2, 1), "padding": 1, "padding_mode": "replicate",
          "dilation": (1, 2)}
    g = RNG.normal(size=xcorr.conv2d(x, w, b, **kw).shape)
    dx, dw, db = xcorr.vjp.conv2d(x, w, g, b, **kw)

    def loss(a, c, d):
        return float((g * xcorr.conv2d(a, c, d, **kw)).sum())

    for got, arg in ((dx, 0), (dw, 1), (db, 2)):
        args = [x, w, b]
        num = np.zeros_like(args[arg])
        for idx in np.ndindex(num.shape):
            up = [a.copy() for a in args]
            dn = [a.copy() for a in args]
            up[arg][idx] += 1e-6
            dn[arg][idx] -= 1e-6
            num[idx] = (loss(*up) - loss(*dn)) / 2e-6
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-7)


def test_vjp_checks_the_gradient_shape() -> None:
    with pytest.raises(ValueError, match=r"g has shape \(1, 1, 2, 2\).*\(1, 1, 3, 3\)"):
        xcorr.vjp.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))


# -- Dask ------------------------------------------------------------------------------------


def test_dask_chunked_along_n_and_space_is_bit_equal() -> None:
    da = pytest.importorskip("dask.array", reason="dask: not installed")

    @settings(FUZZ, max_examples=15)
    @given(case=conv_cases(), cn=st.integers(1, 2), ch=st.integers(1, 5), cw=st.integers(1, 5))
    def run(case, cn, ch, cw):
        x, w, b, kw = case
        try:
            want = xcorr.conv2d(x, w, b, method="direct", **kw)
        except ValueError:
            return
        chunks = (cn, 1, ch, cw) if x.ndim == 4 else (1, ch, cw)
        got = xcorr.conv2d(da.from_array(x, chunks=chunks), w, b, method="direct",
                           **kw).compute()
        np.testing.assert_array_equal(got, want)

    run()


def test_vjp_of_half_types_keeps_the_weights_dtype(backend: str) -> None:
    """``dw`` of dense weights was ml_dtypes' matmul of bfloat16: float32 on NumPy, and on
    Dask a float32 block that failed to add to its bfloat16 neighbours."""
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes (a JAX dependency): absent")
    if backend == "torch":
        pytest.skip("torch: its own bfloat16, tested through autograd")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    x = RNG.random((2, 2, 8, 8)).astype(bf16)
    w = RNG.random((3, 2, 3, 3)).astype(bf16)
    g = RNG.random((2, 3, 6, 6)).astype(bf16)
    xs = x
    if backend == "dask":
        import dask.array as da

        xs = da.from_array(x, chunks=(1, 2, 4, 4))
    dx, dw, _ = xcorr.vjp.conv2d(xs, w, g, backend=backend)
    dx, dw = to_np(dx), to_np(dw)
    assert dx.dtype == dw.dtype == bf16
    want = xcorr.vjp.conv2d(x.astype(np.float32), w.astype(np.float32), g.astype(np.float32),
                            backend="numpy")[1]
    np.testing.assert_array_equal(dw, want.astype(bf16))  # float32 sums, rounded once
