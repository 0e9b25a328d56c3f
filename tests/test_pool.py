"""Issue 14: ``pool2d`` on every backend against ``F.max_pool2d``/``F.avg_pool2d``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import to_np, x64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xcorr
from xcorr._compat import jax_x64

torch = pytest.importorskip("torch", reason="torch: the oracle (F.max_pool2d) needs it")
F = torch.nn.functional

RNG = np.random.default_rng(142)
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow], deadline=None)


def oracle(x: np.ndarray, k, stride, padding, mode: str) -> np.ndarray:
    xt = torch.tensor(x).reshape(-1, *x.shape[-2:])
    pool = F.max_pool2d if mode == "max" else F.avg_pool2d
    y = pool(xt, k, stride, padding).numpy()
    return y.reshape(*x.shape[:-2], *y.shape[-2:])


def test_chapter_values(backend: str) -> None:
    x = np.arange(9).reshape(3, 3)
    assert to_np(xcorr.pool2d(x, 2, stride=1, backend=backend)).tolist() == [[4, 5], [7, 8]]
    avg = xcorr.pool2d(x.astype(np.float64), 2, stride=1, mode="avg", backend=backend)
    assert to_np(avg).tolist() == [[2, 3], [5, 6]]
    x16 = np.arange(16).reshape(1, 1, 4, 4)
    assert to_np(xcorr.pool2d(x16, 3, backend=backend)).tolist() == [[[[10]]]]
    assert to_np(xcorr.pool2d(x16, 3, padding=1, stride=2, backend=backend)).tolist() == [
        [[[5, 7], [13, 15]]]]
    assert to_np(xcorr.pool2d(x16, (2, 3), padding=(0, 1), stride=(2, 3),
                              backend=backend)).tolist() == [[[[5, 7], [13, 15]]]]


@st.composite
def pool_cases(draw: st.DrawFn):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h = draw(st.integers(max(kh - 2 * p[0], 1), 10))
    w = draw(st.integers(max(kw - 2 * p[1], 1), 10))
    lead = draw(st.sampled_from([(), (2,), (2, 3)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    return rng.uniform(-1, 1, (*lead, h, w)), (kh, kw), s, p


def test_matches_torch(backend: str) -> None:
    budget = {"jax": 12, "dask": 10}.get(backend, 40)

    @settings(FUZZ, max_examples=budget)
    @given(case=pool_cases(), mode=st.sampled_from(["max", "avg"]))
    def run(case, mode):
        x, k, s, p = case
        want = oracle(x, k, s, p, mode)
        got = xcorr.pool2d(x, k, stride=s, padding=p, mode=mode, backend=backend)
        if backend == "jax":
            got = to_np(got).astype(np.float64)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # float32 unless x64
        else:
            np.testing.assert_allclose(to_np(got), want, rtol=1e-12, atol=1e-12)

    run()


def test_integers_stay_exact_with_padding(backend: str) -> None:
    x = RNG.integers(-(2**20), -(2**19), (2, 5, 7)).astype(np.int32)  # all negative
    got = to_np(xcorr.pool2d(x, 3, stride=2, padding=1, backend=backend))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, oracle(x.astype(np.int64), 3, 2, 1, "max"))


def test_nan_propagates(backend: str) -> None:
    x = RNG.uniform(size=(6, 6))
    x[1, 1] = np.nan
    y = to_np(xcorr.pool2d(x, 2, backend=backend))
    assert np.isnan(y[0, 0]) and np.isfinite(y.ravel()[1:]).all()


def test_vjp_routes_a_nan_window_as_torch_does() -> None:
    """A window with several NaNs sent its gradient to the first; F.max_pool2d (and so the
    torch backend's autograd) sends it to the last."""
    torch = pytest.importorskip("torch", reason="torch: not installed (the 'torch' extra)")
    nan = np.nan
    for x in ([[nan, nan], [1.0, 1.0]], [[1.0, nan], [nan, 2.0]], [[nan, 3.0], [3.0, 1.0]],
              [[3.0, 3.0], [1.0, nan]], [[2.0, 2.0], [2.0, 1.0]]):
        x = np.array(x)
        t = torch.tensor(x, requires_grad=True)
        torch.nn.functional.max_pool2d(t[None], 2).sum().backward()
        np.testing.assert_array_equal(xcorr.vjp.pool2d(x, np.ones((1, 1)), 2), t.grad.numpy(),
                                      err_msg=str(x))


def test_half_precision_average(backend: str) -> None:
    if backend == "dask":
        pytest.skip("dask: float16 average is covered by the NumPy backend it runs")
    x = (RNG.uniform(size=(4, 8, 8)) * 100).astype(np.float16)
    y = xcorr.pool2d(x, 2, mode="avg", backend=backend)
    assert str(y.dtype).endswith("float16")
    want = oracle(x.astype(np.float32), 2, 2, 0, "avg").astype(np.float16)
    np.testing.assert_array_equal(to_np(y).astype(np.float16), want)


@pytest.mark.parametrize("kw, exc, match", [
    ({"mode": "avg", "x": np.ones((4, 4), np.int64)}, TypeError, "cast x to a float"),
    ({"padding": 2, "kernel_size": 3}, ValueError, "at most half the window"),
    ({"kernel_size": 0}, ValueError, "kernel_size must be a positive"),
    ({"stride": (1, 0)}, ValueError, "stride must be a positive"),
    ({"mode": "min"}, ValueError, "unknown mode 'min'"),
    ({"kernel_size": 9}, ValueError, "larger than the padded input"),
])
def test_errors(backend: str, kw: dict, exc: type, match: str) -> None:
    kw = dict(kw)
    x = kw.pop("x", np.ones((4, 4)))
    k = kw.pop("kernel_size", 2)
    with pytest.raises(exc, match=match):
        xcorr.pool2d(x, k, backend=backend, **kw)


def test_gradients_on_every_backend(backend: str) -> None:
    """Max pooling routes each window's gradient to its maximum, as F.max_pool2d does."""
    for shape, k, s, p in [((2, 3, 9, 10), 3, 2, 1), ((5, 7), (2, 3), (1, 2), (1, 1)),
                           ((1, 2, 11, 13), (3, 4), (3, 2), (1, 2))]:
        x = RNG.normal(size=shape)  # continuous: no ties
        for mode in ("max", "avg"):
            g = RNG.normal(size=oracle(x, k, s, p, mode).shape)
            xt = torch.tensor(x, requires_grad=True)
            (xcorr.pool2d(xt, k, stride=s, padding=p, mode=mode) * torch.from_numpy(g)
             ).sum().backward()
            want = xt.grad.numpy()
            if backend == "jax":
                import jax
                import jax.numpy as jnp

                with jax_x64(True):
                    got = jax.grad(lambda a: jnp.sum(  # noqa: B023
                        xcorr.pool2d(a, k, stride=s, padding=p, mode=mode) * g))(  # noqa: B023
                        jnp.asarray(x))
            elif backend == "torch":
                got = want
            else:
                got = xcorr.vjp.pool2d(x, g, k, stride=s, padding=p, mode=mode,
                                       backend=backend)
            np.testing.assert_allclose(to_np(got), want, rtol=1e-12, atol=1e-12,
                                       err_msg=f"{mode} {shape}")


def test_dask_chunked_is_bit_equal() -> None:
    da = pytest.importorskip("dask.array", reason="dask: not installed")

    @settings(FUZZ, max_examples=20)
    @given(case=pool_cases(), mode=st.sampled_from(["max", "avg"]), ch=st.integers(1, 5),
           cw=st.integers(1, 5))
    def run(case, mode, ch, cw):
        x, k, s, p = case
        want = xcorr.pool2d(x, k, stride=s, padding=p, mode=mode)
        chunks = (1,) * (x.ndim - 2) + (ch, cw)
        got = xcorr.pool2d(da.from_array(x, chunks=chunks), k, stride=s, padding=p,
                           mode=mode).compute()
        np.testing.assert_array_equal(got, want)

    run()


def test_vjp_of_integer_data_routes_on_the_exact_integers(backend: str) -> None:
    """An integer g gives exact int64 gradients (uint8 data with g = -1 gave 255, int8 with
    four windows of 100 gave -112); a float g meets the maxima of the exact integers (2**24
    and 2**24 + 1 were a tie once cast to float32, and 70000 and 100000 one in float16)."""
    x = np.zeros((3, 3), np.int8)
    x[1, 1] = 5
    got = to_np(xcorr.vjp.pool2d(x, np.full((2, 2), 100), 2, stride=1, backend=backend))
    want = np.zeros((3, 3))
    want[1, 1] = 400
    np.testing.assert_array_equal(got, want)
    assert got.dtype.kind == "i"
    small = to_np(xcorr.vjp.pool2d(np.array([[1, 2], [3, 4]], np.uint8), np.array([[-1]]), 2,
                                   backend=backend))
    np.testing.assert_array_equal(small, [[0, 0], [0, -1]])
    for xs, g in (([[2**24, 2**24 + 1]], np.ones((1, 1), np.float32)),
                  ([[70000, 100000]], np.ones((1, 1), np.float16))):
        got = to_np(xcorr.vjp.pool2d(np.array(xs, np.int32), g, (1, 2), backend=backend))
        np.testing.assert_array_equal(got, [[0, 1]])
        assert got.dtype.kind == "f"


def test_uint64_maxima_above_int64_are_exact(backend: str) -> None:
    """Max pooling only compares, so uint64 from 2**63 up pools exactly on every backend
    (NumPy refused them with int64's OverflowError, Dask and JAX pooled them); torch, which
    holds uint64 as int64, compares them with the sign bit flipped."""
    x = np.array([[2**64 - 1, 5, 7], [3, 2**63 + 1, 2**63], [0, 1, 2**63 - 1]], np.uint64)
    pad = np.zeros((5, 5), np.uint64)  # uint64's minimum, the padding of max pooling
    pad[1:-1, 1:-1] = x
    want = np.array([[pad[i:i + 2, j:j + 2].max() for j in range(4)] for i in range(4)])
    with x64(backend):  # JAX's uint64
        got = to_np(xcorr.pool2d(x, 2, stride=1, padding=1, backend=backend))
        # the gradient goes to each window's maximum, found in uint64's order
        g = to_np(xcorr.vjp.pool2d(x, np.ones((4, 4)), 2, stride=1, padding=1,
                                   backend=backend))
        with pytest.raises(TypeError, match="mode='avg' on integer input"):
            xcorr.pool2d(x, 2, mode="avg", backend=backend)
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(g, [[4, 0, 2], [1, 3, 2], [0, 1, 2]])


def test_torch_uint64_tensor_pools_exactly() -> None:
    if not hasattr(torch, "uint64"):
        pytest.skip(f"torch {torch.__version__} has no uint64 (from 2.3)")
    x = np.array([[2**64 - 1, 2**63], [2**63 - 1, 0]], np.uint64)
    t = torch.from_numpy(x.view(np.int64)).view(torch.uint64)
    got = xcorr.pool2d(t, (1, 2))
    assert got.dtype == torch.uint64
    bits = got.view(torch.int64).numpy().view(np.uint64)
    assert bits.ravel().tolist() == [2**64 - 1, 2**63 - 1]


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_jax_gradients_under_jit_checkpoint_and_jacfwd(mode: str) -> None:
    """Traced, the pooling's initial value was a tracer: lax.reduce_window then became its
    generic form, with no transpose or batched JVP rule (jit(grad) raised "Linearization
    failed", jit(jacfwd) an out_axes error); eager gradients were fine."""
    jax = pytest.importorskip("jax", reason="jax: not installed")
    import jax.numpy as jnp

    x = jnp.asarray(RNG.random((2, 6, 7)), jnp.float32)

    def f(a):
        return (xcorr.pool2d(a, 3, stride=2, padding=1, mode=mode) ** 2).sum()

    want = jax.grad(f)(x)  # eager, checked against torch in test_gradients_on_every_backend
    for got in (jax.jit(jax.grad(f))(x), jax.grad(jax.jit(f))(x),
                jax.grad(jax.checkpoint(f))(x), jax.jit(jax.jacfwd(f))(x)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
