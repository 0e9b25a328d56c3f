"""JAX backend specifics: transformations, gradients, dtypes, devices, the x64 switch."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from scipy import signal

jax = pytest.importorskip("jax", reason="jax: not installed (the 'jax' extra)")
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import xcorr  # noqa: E402
from xcorr import _auto, _grad, _methods  # noqa: E402
from xcorr._compat import jax_x64  # noqa: E402
from xcorr._dispatch import array_backend, load  # noqa: E402
from xcorr.backends import _jax as be  # noqa: E402

RNG = np.random.default_rng(3)
METHODS = ("auto", "direct", "fft", "native")
MODES = ("valid", "same", "full")
X64_AT_IMPORT = jax.config.jax_enable_x64


@pytest.fixture
def x64():
    """float64 for one test only: the user's switch, flipped in a scope that restores it."""
    with jax_x64(True):
        yield


@pytest.fixture
def x32():
    with jax_x64(False):
        yield


@pytest.fixture(autouse=True)
def library_never_flips_x64():
    before = jax.config.jax_enable_x64
    yield
    assert jax.config.jax_enable_x64 == before


def test_seed_examples_on_jax_arrays():
    x = jnp.arange(9.0).reshape(3, 3)
    y = xcorr.corr2d(x, jnp.array([[0.0, 1.0], [2.0, 3.0]]))
    assert isinstance(y, jax.Array)
    assert y.tolist() == [[19, 25], [37, 43]]
    edges = jnp.ones((6, 8)).at[:, 2:6].set(0)
    k = jnp.array([[1.0, -1.0]])
    assert xcorr.corr2d(edges, k)[0].tolist() == [0, 1, 0, 0, 0, -1, 0]
    assert not xcorr.corr2d(edges.T, k).any()


def test_tracers_are_detected_as_jax():
    seen = []

    def f(x, k):
        seen.append((array_backend(x), array_backend(k), be.all_finite(x, k)))
        return xcorr.corr2d(x, k).sum()  # no backend=: found from the tracer

    x, k = jnp.ones((6, 7)), jnp.ones((2, 3))
    jax.jit(f)(x, k)
    jax.grad(f, argnums=(0, 1))(x, k)
    jax.vmap(f, in_axes=(0, None))(jnp.ones((2, 6, 7)), k)
    jax.jit(jax.vmap(jax.grad(f), in_axes=(0, None)))(jnp.ones((2, 6, 7)), k)
    assert seen == [("jax", "jax", None)] * 4
    assert be.all_finite(x, k) is True
    assert be.all_finite(x.at[0, 0].set(jnp.inf), k) is False


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
def test_jit_with_static_mode_and_method(mode, method):
    x, k = RNG.standard_normal((2, 13, 11)), RNG.standard_normal((4, 3))
    f = jax.jit(partial(xcorr.corr2d, mode=mode, method=method))
    got = np.asarray(f(jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)))
    for i in range(2):
        np.testing.assert_allclose(got[i], signal.correlate2d(x[i], k, mode=mode),
                                   rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("method", METHODS)
def test_vmap_over_images_and_kernels(method):
    x = jnp.asarray(RNG.standard_normal((3, 12, 10)), jnp.float32)
    ks = jnp.asarray(RNG.standard_normal((3, 3, 2)), jnp.float32)
    f = partial(xcorr.corr2d, method=method)
    batched = f(x, ks[0])
    np.testing.assert_allclose(jax.vmap(f, in_axes=(0, None))(x, ks[0]), batched,
                               rtol=1e-5, atol=1e-5)
    per_pair = jax.vmap(f)(x, ks)
    for i in range(3):
        np.testing.assert_allclose(per_pair[i], f(x[i], ks[i]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
def test_check_grads(x64, method, mode):
    x = jnp.asarray(RNG.standard_normal((2, 9, 8)))
    k = jnp.asarray(RNG.standard_normal((3, 4)))
    # backend= because check_grads' finite differences feed NumPy arrays
    f = partial(xcorr.corr2d, mode=mode, method=method, backend="jax")
    # same/full only add a zero pad (linear) in front of valid: order 2 once is enough
    check_grads(f, (x, k), order=2 if mode == "valid" else 1, modes=("fwd", "rev"))
    check_grads(jax.jit(f), (x, k), order=1, modes=("fwd", "rev"))


@pytest.mark.slow
def test_check_grads_of_the_row_loop(x64):
    # 16×15 taps take the fori_loop path of "direct"
    assert 16 * 15 > be._UNROLL_TAPS
    x, k = jnp.asarray(RNG.standard_normal((18, 17))), jnp.asarray(RNG.standard_normal((16, 15)))
    f = partial(xcorr.corr2d, method="direct", backend="jax")
    check_grads(f, (x, k), order=2, modes=("fwd", "rev"))


@pytest.mark.slow
def test_check_grads_of_the_guarded_fft(x64):
    # what auto runs under a transformation when the cost model picks the FFT
    x, k = jnp.asarray(RNG.standard_normal((8, 7))), jnp.asarray(RNG.standard_normal((3, 3)))
    check_grads(be.guarded_fft, (x, k), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("method", METHODS)
def test_gradients_equal_the_analytic_vjp(x64, method):
    x = RNG.standard_normal((2, 15, 12))
    k = RNG.standard_normal((4, 5))
    g = RNG.standard_normal((2, 12, 8))
    npb = load("numpy")

    def loss(x, k):
        return jnp.sum(xcorr.corr2d(x, k, method=method) * g)

    dx, dk = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x), jnp.asarray(k))
    np.testing.assert_allclose(dx, _grad.grad_x(npb, k, g), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dk, _grad.grad_k(npb, x, g), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transform", ["jit", "vmap"])
def test_nonfinite_stays_local_under_auto_inside_transformations(transform, x32):
    x = RNG.standard_normal((2, 256, 256)).astype(np.float32)
    k = RNG.standard_normal((31, 31)).astype(np.float32)
    assert _methods.choose(be.costs(), (256, 256), (31, 31), 4, False) in _methods.SPECTRAL
    x[1, 100, 120] = np.nan
    f = jax.jit(xcorr.corr2d) if transform == "jit" else jax.vmap(xcorr.corr2d, (0, None))
    got = np.asarray(f(jnp.asarray(x), jnp.asarray(k)))
    assert np.isfinite(got[0]).all()  # the clean image (FFT path under jit: same program)
    touched = np.zeros(got.shape[1:], dtype=bool)
    touched[100 - 30:101, 120 - 30:121] = True
    assert np.isnan(got[1][touched]).all() and np.isfinite(got[1][~touched]).all()
    exact = signal.correlate2d(x[0].astype(float), k.astype(float), "valid")
    np.testing.assert_allclose(got[0], exact, rtol=1e-3, atol=1e-3)


def test_guarded_fft_picks_the_branch_by_value():
    x = jnp.asarray(RNG.standard_normal((40, 40)), jnp.float32)
    k = jnp.asarray(RNG.standard_normal((5, 5)), jnp.float32)
    np.testing.assert_array_equal(be.guarded_fft(x, k), be.corr2d_valid(x, k, "fft"))
    bad = x.at[3, 3].set(jnp.nan)
    np.testing.assert_array_equal(be.guarded_fft(bad, k), be.corr2d_valid(bad, k, "direct"))


@pytest.mark.parametrize("method", ["direct", "fft", "native"])
def test_float32_stays_float32_without_x64(x32, method):
    x = jnp.asarray(RNG.standard_normal((16, 16)), jnp.float32)
    y = xcorr.corr2d(x, np.ones((3, 3)), method=method)  # a float64 NumPy kernel: JAX makes f32
    assert y.dtype == jnp.float32
    assert xcorr.corr2d([[1.0, 2.0], [3.0, 4.0]], [[1.0]], backend="jax").dtype == jnp.float32


@pytest.mark.parametrize("method", ["direct", "fft", "native"])
def test_float64_and_half_precision(x64, method):
    x, k = RNG.standard_normal((12, 14)), RNG.standard_normal((3, 5))
    y = xcorr.corr2d(jnp.asarray(x), jnp.asarray(k), method=method)
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(y, signal.correlate2d(x, k, "valid"), rtol=1e-12, atol=1e-12)
    for half in (jnp.float16, jnp.bfloat16):
        y = xcorr.corr2d(jnp.asarray(x, half), jnp.asarray(k, half), method=method)
        assert y.dtype == half


def test_integers_are_exact_in_the_default_int(x64):
    x = RNG.integers(-(2**30), 2**30, size=(10, 9))
    k = RNG.integers(-(2**20), 2**20, size=(3, 3))
    y = xcorr.corr2d(x, k, backend="jax")
    assert y.dtype == jnp.int64
    assert (np.asarray(y) == signal.correlate2d(x, k, "valid")).all()


def test_integers_without_x64_are_int32_and_never_wrap_silently(x32):
    x = jnp.arange(30, dtype=jnp.int16).reshape(5, 6)
    assert xcorr.corr2d(x, jnp.ones((2, 2), jnp.uint8)).dtype == jnp.int32
    with pytest.raises(OverflowError, match="int32 range.*jax_enable_x64"):
        xcorr.corr2d(np.full((3, 3), 2**40), np.ones((2, 2), dtype=np.int64), backend="jax")


def test_the_x64_switch_decides_each_call_whatever_came_before():
    """The dispatch cache remembered a call's path without the x64 switch: after one int32
    call without x64, the same call under jax.enable_x64 skipped promotion to int64 and
    wrapped (a fresh process gave the exact int64)."""
    x, k = jnp.full((4, 4), 2**30, jnp.int32), jnp.ones((3, 3), jnp.int32)
    with jax_x64(False):
        assert xcorr.corr2d(x, k).dtype == jnp.int32  # the int32 range: 9 * 2**30 would wrap
    with jax_x64(True):
        y = xcorr.corr2d(x, k)
        assert y.dtype == jnp.int64 and (np.asarray(y) == 9 * 2**30).all()
    with jax_x64(False):
        assert xcorr.corr2d(x, k).dtype == jnp.int32


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_weak_typed_kernels_promote_as_jax_does(dtype):
    """A kernel built from a Python float (weak float32) keeps a half-precision image's
    dtype, as ``x * k`` and jax.scipy.signal do; it gave float32."""
    x = jnp.asarray(RNG.standard_normal((12, 12)), dtype)
    box = jnp.full((3, 3), 1 / 9)
    assert box.weak_type
    ref = jax.scipy.signal.correlate2d(x, box, mode="valid")
    for y in (xcorr.corr2d(x, box), jax.jit(xcorr.corr2d)(x, box),
              xcorr.conv2d(x[None, None], box[None, None])[0, 0]):
        assert y.dtype == ref.dtype == dtype
    np.testing.assert_allclose(np.asarray(xcorr.corr2d(x, box), np.float32),
                               np.asarray(ref, np.float32), rtol=2e-2, atol=2e-2)
    assert xcorr.corr2d(x, box.astype(jnp.float32)).dtype == jnp.float32  # strong: widens


def test_a_traced_fillvalue_is_refused_not_silently_constant():
    """Under jax.grad the fill value became a constant (``.item()``): a zero gradient with
    no word.  A traced fill value now raises, saying how to differentiate through it."""
    a, k = jnp.asarray(RNG.random((5, 5))), jnp.ones((3, 3))

    def f(fv):
        return xcorr.corr2d(a, k, mode="same", fillvalue=fv).sum()

    for transform in (jax.grad, jax.jit, jax.vmap):
        with pytest.raises(TypeError, match="fillvalue is a traced or differentiated.*pad"):
            transform(f)(jnp.asarray([2.0]) if transform is jax.vmap else 2.0)
    assert float(f(jnp.asarray(2.0))) == float(f(2.0))  # a concrete 0-d array is a number


def test_unsigned_values_beyond_the_default_int_raise_as_host_data_do():
    """A JAX uint32 array above 2**31 - 1 without x64 (uint64 above 2**63 - 1 with it) wrapped
    to negative in the int32 (int64) result; the same data as NumPy raised OverflowError."""
    with jax_x64(False):
        with pytest.raises(OverflowError, match="uint32 values above 2147483647.*64-bit"):
            xcorr.corr2d(jnp.full((3, 3), 2**31 + 5, jnp.uint32), jnp.ones((2, 2), jnp.int32))
        fits = xcorr.corr2d(jnp.full((3, 3), 2**31 - 1, jnp.uint32), jnp.ones((1, 1), jnp.int8))
        assert fits.dtype == jnp.int32 and int(fits[0, 0]) == 2**31 - 1
    with jax_x64(True):
        with pytest.raises(OverflowError, match="uint64 values above 9223372036854775807"):
            xcorr.corr2d(jnp.full((2, 2), 2**63 + 10, jnp.uint64), jnp.ones((1, 1), jnp.int64))
        wide = xcorr.corr2d(jnp.full((3, 3), 2**31 + 5, jnp.uint32), jnp.ones((2, 2), jnp.int32))
        assert (np.asarray(wide) == 4 * (2**31 + 5)).all()


def test_output_stays_on_the_input_device():
    for device in jax.devices():
        x = jax.device_put(jnp.asarray(RNG.standard_normal((2, 20, 20)), jnp.float32), device)
        for method in METHODS:
            y = xcorr.corr2d(x, np.ones((3, 3), np.float32), method=method, mode="same")
            assert y.devices() == {device}


def test_torch_cpu_tensor_converts_to_jax():
    torch = pytest.importorskip("torch", reason="torch: not installed (the 'torch' extra)")
    x = torch.arange(12.0).reshape(3, 4)
    y = xcorr.corr2d(x, [[1.0, 1.0]], backend="jax")
    assert isinstance(y, jax.Array)
    np.testing.assert_array_equal(y, signal.correlate2d(x.numpy(), [[1.0, 1.0]], "valid"))


@pytest.mark.parametrize("bias", [None, 0.5])
def test_sse_value_and_grad_matches_numpy_and_compiles_once(x64, bias):
    x, y = RNG.standard_normal((2, 20, 18)), RNG.standard_normal((2, 18, 15))
    k = RNG.standard_normal((3, 4))
    want = load("numpy").sse_value_and_grad(x, y, k, bias)
    b = None if bias is None else jnp.asarray(bias)
    args = (jnp.asarray(x), jnp.asarray(y), jnp.asarray(k), b)
    got = be.sse_value_and_grad(*args)
    for g, w in zip(got, want, strict=True):
        assert (g is None) == (w is None)
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=1e-11)
    compiled = be._sse_value_and_grad._cache_size()
    be.sse_value_and_grad(*args)
    assert be._sse_value_and_grad._cache_size() == compiled


def test_cost_model_choices():
    costs = be.costs()
    assert _methods.choose(costs, (1024, 1024), (3, 3), 4, False) == "direct"
    assert _methods.choose(costs, (1024, 1024), (31, 31), 4, False) in _methods.SPECTRAL
    assert _methods.choose(costs, (1024, 1024), (31, 31), 4, True) == "direct"


def test_x64_setting_is_untouched_by_the_whole_api():
    for flag in (False, True):
        with jax_x64(flag):
            xcorr.corr2d(np.ones((5, 5)), np.ones((2, 2)), backend="jax")
            xcorr.corr2d(jnp.ones((5, 5)), jnp.ones((2, 2)), method="fft")
            be.sse_value_and_grad(jnp.ones((5, 5)), jnp.ones((4, 4)), jnp.ones((2, 2)), None)
            assert jax.config.jax_enable_x64 is flag
    assert jax.config.jax_enable_x64 == X64_AT_IMPORT


# -- eager CPU calls on the NumPy backend's kernels ---------------------------------------------


def _spy_host(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record (method, result address) of each call the JAX backend hands to NumPy's kernels."""
    numpy_be = load("numpy")
    real, calls = numpy_be.corr2d_valid, []

    def spy(x: np.ndarray, k: np.ndarray, method: str) -> np.ndarray:
        out = real(x, k, method)
        calls.append((method, out.ctypes.data))
        return out

    monkeypatch.setattr(numpy_be, "corr2d_valid", spy)
    return calls


@pytest.mark.parametrize("method", ["direct", "fft", "overlap", "auto"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eager_cpu_calls_run_numpys_kernels_on_their_memory(monkeypatch, x64, method, dtype):
    """A large enough eager call on the CPU gives the NumPy backend's bits, as a JAX array on
    the input's device, its memory handed to XLA without a copy where XLA allows it."""
    big = method == "overlap"  # NumPy's overlap-save pays ~1.4 ms of planning and threads
    x = jnp.asarray(RNG.standard_normal((1024, 1000) if big else (3, 300, 310)), dtype)
    k = jnp.asarray(RNG.standard_normal((31, 29) if big else (9, 11)), dtype)
    calls = _spy_host(monkeypatch)
    y = xcorr.corr2d(x, k, method=method)
    chosen = _auto.choose(load("numpy"), np.asarray(x), np.asarray(k))
    assert [m for m, _ in calls] == [chosen if method == "auto" else method]
    monkeypatch.undo()
    assert isinstance(y, jax.Array) and y.dtype == dtype and y.devices() == x.devices()
    np.testing.assert_array_equal(y, xcorr.corr2d(np.asarray(x), np.asarray(k), method=method))
    if calls[0][0] != "fft":  # an FFT's result is a crop of its buffer: copied, aligned
        assert y.unsafe_buffer_pointer() == calls[0][1]
    assert y.unsafe_buffer_pointer() % load("numpy").ALIGNMENT == 0


def test_traced_small_and_half_calls_stay_in_xla(monkeypatch, x64):
    x = jnp.asarray(RNG.standard_normal((300, 300)))
    k = jnp.asarray(RNG.standard_normal((9, 9)))
    calls = _spy_host(monkeypatch)
    eager = xcorr.corr2d(x, k, method="direct")
    assert len(calls) == 1
    jitted = jax.jit(partial(xcorr.corr2d, method="direct"))(x, k)
    grads = jax.grad(lambda k: xcorr.corr2d(x, k, method="direct").sum())(k)
    batched = jax.vmap(partial(xcorr.corr2d, method="direct"), (0, None))(x[None], k)
    xcorr.corr2d(x[:64, :64], k[:3, :3], method="direct")  # below the handing-over cost
    xcorr.corr2d(x.astype(jnp.float16), k.astype(jnp.float16), method="direct")
    jax.block_until_ready((jitted, grads, batched))  # a callback would run asynchronously
    assert len(calls) == 1
    np.testing.assert_allclose(jitted, eager, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(batched[0], eager, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads, signal.correlate2d(np.asarray(x), np.ones((292, 292)),
                                                         "valid"), rtol=1e-10)


def test_host_choice_follows_the_cost_model(monkeypatch):
    """Where NumPy's kernels are predicted slower (no Numba: its fallback loop), the jitted
    program runs; auto prices the methods where they run."""
    from xcorr import _numba

    x, k = jnp.ones((512, 512), jnp.float32), jnp.ones((9, 9), jnp.float32)
    numpy_be = load("numpy")
    if _numba.kernel() is not None:
        assert be._runs_on_host(x, k, "direct")
        assert be.costs_for(x, k)[4].tap == numpy_be.costs()[4].tap
    assert be._runs_on_host(x, k, "fft")
    monkeypatch.setattr(_numba, "kernel", lambda: None)
    assert not be._runs_on_host(x, k, "direct") and be._runs_on_host(x, k, "fft")
    table = be.costs_for(x, k)[4]
    assert (table.tap, table.point) == (be.COSTS[4].tap, numpy_be.costs()[4].point)
    assert not be._runs_on_host(x, k, "native")
    seen = []  # traced float32 on the CPU: priced as eager arrays (a host callback)
    jax.jit(lambda a, b: seen.append(be.costs_for(a, b)[4].point) or a)(x, k)
    assert seen == [numpy_be.costs()[4].point]
    with jax_x64(True):  # traced float64: XLA's program, at its own prices
        jax.jit(lambda a, b: seen.append(be.costs_for(a, b) is be.COSTS) or a)(
            x.astype(jnp.float64), k.astype(jnp.float64))
    assert seen[1:] == [True]


@pytest.mark.parametrize("method", ["direct", "fft", "overlap"])
def test_traced_float32_on_the_cpu_runs_numpys_kernels_by_a_callback(monkeypatch, x32,
                                                                        method):
    """Under jit, vmap and inside lax.cond, float32 on a CPU program takes the NumPy
    backend's kernels where they are predicted faster (forced here for every shape), with
    their bits; derivatives come from XLA's program as before."""
    x = jnp.asarray(RNG.standard_normal((3, 40, 50)), jnp.float32)
    k = jnp.asarray(RNG.standard_normal((5, 4)), jnp.float32)
    monkeypatch.setattr(be, "_faster_on_host", lambda x, k, m, traced=False: traced)
    calls = _spy_host(monkeypatch)
    jitted = jax.jit(partial(xcorr.corr2d, method=method))(x, k)
    batched = jax.vmap(partial(xcorr.corr2d, method=method), (0, None))(x, k)
    spectral = "fft" if method == "direct" else method
    guarded = be.guarded_fft(x, k, spectral)  # lax.cond: the branch taken calls back
    jax.block_until_ready((jitted, batched, guarded))  # dispatch is asynchronous
    # jit, vmap (JAX 0.4.33: once per item, its callbacks' sequential mode), the cond
    assert [m for m, _ in calls] in ([method, method, spectral],
                                     [method] * (1 + len(x)) + [spectral])
    grads = jax.grad(lambda b: jnp.sum(xcorr.corr2d(x, b, method=method) ** 2))(k)
    monkeypatch.undo()
    want = xcorr.corr2d(np.asarray(x), np.asarray(k), method=method)
    for got in (jitted, batched):
        assert isinstance(got, jax.Array) and got.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_allclose(np.asarray(guarded), want, rtol=0, atol=1e-4)
    program = jax.grad(lambda b: jnp.sum(be._valid(x, b, method=method) ** 2))(k)
    np.testing.assert_array_equal(np.asarray(grads), np.asarray(program))


def test_programs_without_host_callbacks_can_be_exported(monkeypatch, x32):
    """``XCORR_JAX_CALLBACKS=0``: corr2d and match_template trace to XLA's own program, which
    ``jax.export`` serializes (a host callback it cannot); unset, the callback is there."""
    export = pytest.importorskip("jax.export", reason="jax.export: not importable here (JAX "
                                 "0.4.33's needs absl, which it does not require)")
    x, k = jnp.ones((512, 512), jnp.float32), jnp.ones((15, 15), jnp.float32)
    t = jnp.asarray(RNG.random((15, 15)), jnp.float32)
    with pytest.raises(NotImplementedError, match="host_callback"):
        export.export(jax.jit(lambda a, b: xcorr.corr2d(a, b)))(x, k)
    monkeypatch.setenv("XCORR_JAX_CALLBACKS", "0")  # read when a program is traced
    calls = _spy_host(monkeypatch)
    corr = jax.jit(lambda a, b: xcorr.corr2d(a, b))
    match = jax.jit(lambda a, b: xcorr.match_template(a, b))
    for f, args in ((corr, (x, k)), (match, (x, t))):
        exported = export.export(f)(*args)
        np.testing.assert_allclose(np.asarray(exported.call(*args)), np.asarray(f(*args)),
                                   rtol=0, atol=1e-3)
    assert calls == []


def test_the_callback_switch_counts_after_a_program_was_traced(monkeypatch, x32):
    """``auto``'s guarded FFT is a jitted program of the module, cached by shapes: setting
    ``XCORR_JAX_CALLBACKS=0`` after a same-shaped program had been traced kept the host
    callback in every later program (``jax.export`` refused them)."""
    export = pytest.importorskip("jax.export", reason="jax.export: not importable here (JAX "
                                 "0.4.33's needs absl, which it does not require)")
    x = jnp.asarray(RNG.standard_normal((256, 256)), jnp.float32)
    k = jnp.asarray(RNG.standard_normal((31, 31)), jnp.float32)
    jax.jit(lambda a, b: xcorr.corr2d(a, b))(x, k).block_until_ready()
    monkeypatch.setenv("XCORR_JAX_CALLBACKS", "0")
    f = jax.jit(lambda a, b: xcorr.corr2d(a, b))
    assert "callback" not in str(jax.make_jaxpr(f)(x, k))
    exported = export.export(f)(x, k)
    np.testing.assert_allclose(np.asarray(exported.call(x, k)), np.asarray(f(x, k)),
                               rtol=0, atol=1e-3)


def test_traced_host_choice_follows_the_cost_model(monkeypatch, x32):
    """Without forcing: under jit, a 512² image with 15×15 goes to NumPy's kernels, 64² with
    3×3 stays in XLA (below the call's cost), and so does float64 and a non-CPU program."""
    calls = _spy_host(monkeypatch)

    def run(x: jax.Array, k: jax.Array) -> jax.Array:  # waits: callbacks run asynchronously
        return jax.jit(xcorr.corr2d)(x, k).block_until_ready()

    run(jnp.ones((64, 64), jnp.float32), jnp.ones((3, 3), jnp.float32))
    assert calls == []
    big = run(jnp.ones((512, 512), jnp.float32), jnp.ones((15, 15), jnp.float32))
    assert len(calls) == 1
    np.testing.assert_allclose(np.asarray(big), 225.0, rtol=1e-5)
    with jax_x64(True):
        run(jnp.ones((512, 512)), jnp.ones((15, 15)))
    assert len(calls) == 1
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # what a GPU program asks
    run(jnp.ones((511, 512), jnp.float32), jnp.ones((15, 15), jnp.float32))
    assert len(calls) == 1


def test_host_choice_prices_xlas_fused_loop_and_its_fresh_pages(x32):
    """XLA's direct loop is cheap at 3×3 (memory-bound), dearer per tap as it fuses more
    (tap2); its outputs from 32 MiB are faulted in page by page each call.  So a 1024² 3×3
    stays in XLA, 11×11 goes to NumPy's loop, and so does 4096² 3×3."""
    small, large = jnp.zeros((1024, 1024), jnp.float32), jnp.zeros((4096, 4096), jnp.float32)
    assert not be._runs_on_host(small, jnp.ones((3, 3), jnp.float32), "direct")
    assert be._runs_on_host(small, jnp.ones((11, 11), jnp.float32), "direct")
    assert be._runs_on_host(large, jnp.ones((3, 3), jnp.float32), "direct")
    assert be._fresh_pages_ns(small, jnp.ones((3, 3), jnp.float32)) == 0.0
    assert be._fresh_pages_ns(large, jnp.ones((3, 3), jnp.float32)) == pytest.approx(
        be._FRESH_NS_PER_BYTE * 4094 * 4094 * 4)


def test_eager_host_results_keep_jaxs_placement(x32):
    """A committed input gives a committed result on its device; an uncommitted one an
    uncommitted result, as XLA's own would be."""
    x = RNG.standard_normal((300, 300)).astype(np.float32)
    k = np.ones((9, 9), np.float32)
    device = jax.devices()[-1]
    assert be._runs_on_host(jax.device_put(x, device), jnp.asarray(k), "direct")
    committed = xcorr.corr2d(jax.device_put(x, device), jnp.asarray(k))
    assert be.committed(committed) and committed.devices() == {device}
    assert not be.committed(xcorr.corr2d(jnp.asarray(x), jnp.asarray(k)))


def test_eager_host_auto_keeps_nan_local(x32):
    x = RNG.standard_normal((512, 512)).astype(np.float32)
    x[100, 200] = np.nan
    k = jnp.asarray(RNG.standard_normal((31, 31)), jnp.float32)
    assert be._runs_on_host(jnp.asarray(x), k, "fft")
    y = np.asarray(xcorr.corr2d(jnp.asarray(x), k))
    bad = np.zeros(y.shape, bool)
    bad[70:101, 170:201] = True
    assert np.isnan(y[bad]).all() and np.isfinite(y[~bad]).all()


@pytest.mark.parametrize("method", ["direct", "overlap"])
def test_vmap_through_the_host_callback_at_unequal_ranks(monkeypatch, x32, method):
    """vmap gives each operand of the callback a leading axis; where the other operand has
    its own batch axes, the vmapped one must not line up with them (it did: wrong values, or
    an error inside the callback when the sizes differed)."""
    monkeypatch.setattr(be, "_faster_on_host", lambda x, k, m, traced=False: traced)
    calls = _spy_host(monkeypatch)
    x = jnp.asarray(RNG.standard_normal((3, 40, 50)), jnp.float32)
    ks = jnp.asarray(RNG.standard_normal((2, 5, 4)), jnp.float32)
    per_kernel = jax.vmap(lambda k: xcorr.corr2d(x, k, method=method))(ks)
    per_image = jax.vmap(lambda a: xcorr.corr2d(a, ks, method=method))(x)
    nested = jax.vmap(jax.vmap(lambda a, k: xcorr.corr2d(a, k, method=method),
                               (None, 0)), (0, None))(x, ks)
    jax.block_until_ready((per_kernel, per_image, nested))
    assert len(calls) >= 3  # through the callback, as the test means (JAX 0.4.33: per item)
    monkeypatch.undo()
    xs, kk = np.asarray(x), np.asarray(ks)
    want = np.stack([xcorr.corr2d(xs, k, method=method) for k in kk])  # (2, 3, 36, 47)
    np.testing.assert_allclose(np.asarray(per_kernel), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(per_image), want.swapaxes(0, 1), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(nested), want.swapaxes(0, 1), rtol=1e-5, atol=1e-5)


def test_vmap_over_templates_through_the_host_callback(x32):
    """match_template's callback (traced float32 on the CPU) under vmap over templates of an
    image stack: each template against every image, as the loop gives."""
    x = jnp.asarray(RNG.standard_normal((3, 40, 50)), jnp.float32)
    ts = jnp.asarray(RNG.standard_normal((2, 7, 6)), jnp.float32)
    got = jax.vmap(lambda t: xcorr.match_template(x, t))(ts)
    want = np.stack([xcorr.match_template(np.asarray(x), t) for t in np.asarray(ts)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5)
