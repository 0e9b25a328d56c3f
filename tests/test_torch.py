"""PyTorch backend: seed examples, autograd, gradcheck, half types, torch.compile, devices."""

from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch: not installed")

import xcorr  # noqa: E402
from xcorr import _auto, _grad, _numba, _validate, reference  # noqa: E402
from xcorr._methods import SPECTRAL, choose  # noqa: E402
from xcorr.backends import _numpy  # noqa: E402
from xcorr.backends import _torch as tb  # noqa: E402

METHODS = ("direct", "fft", "native")
MODES = ("valid", "same", "full")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch: no CUDA device")


def rand(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0, **kw) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=dtype).to(**kw)


def ref(x: torch.Tensor, k: torch.Tensor, mode: str = "valid") -> np.ndarray:
    """The seed's double loop on float64 copies, per image of the batch."""
    xs = x.detach().cpu().double().numpy()
    ks = k.detach().cpu().double().numpy()
    pads = _validate.pads(mode, *ks.shape)  # 'same' itself is checked against SciPy elsewhere
    if pads is not None:
        xs = _numpy.pad(xs, pads)
    flat = xs.reshape(-1, *xs.shape[-2:])
    out = np.stack([reference.corr2d(img, ks) for img in flat])
    return out.reshape(*xs.shape[:-2], *out.shape[-2:])


# -- seed examples ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ("auto", *METHODS))
def test_seed_examples(method):
    # FFT rounds (errors ~1e-7 here); every other method is exact on these small integers.
    same = (torch.testing.assert_close if method == "fft" else
            lambda a, b: torch.testing.assert_close(a, b, rtol=0, atol=0))
    x = torch.arange(9.0).reshape(3, 3)
    k = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    same(xcorr.corr2d(x, k, method=method), torch.tensor([[19.0, 25.0], [37.0, 43.0]]))
    edges = torch.ones(6, 8)
    edges[:, 2:6] = 0
    y = xcorr.corr2d(edges, torch.tensor([[1.0, -1.0]]), method=method)
    same(y, torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0]] * 6))
    same(xcorr.corr2d(edges.t(), torch.tensor([[1.0, -1.0]]), method=method), torch.zeros(8, 5))


def test_seed_training_learns_the_edge_kernel():
    from xcorr.train import learn_kernel

    x = torch.ones(6, 8)
    x[:, 2:6] = 0
    y = xcorr.corr2d(x, torch.tensor([[1.0, -1.0]]))
    res = learn_kernel(x, y, (1, 2), lr=3e-2, epochs=10)
    assert isinstance(res.kernel, torch.Tensor) and res.kernel.dtype == torch.float32
    assert res.losses[-1] < res.losses[0] / 100
    assert torch.allclose(res.kernel, torch.tensor([[1.0, -1.0]]), atol=0.05)


# -- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kshape", [(1, 1), (3, 3), (2, 5), (4, 1)])
def test_methods_match_the_seed_loop(method, mode, kshape):
    x, k = rand(2, 7, 9), rand(*kshape, seed=1)
    out = xcorr.corr2d(x, k, mode=mode, method=method)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ref(x, k, mode), rtol=1e-12, atol=1e-12)


def test_integers_are_exact_int64_for_every_exact_method():
    # Products near 2**58: float64 would round them.
    x = torch.randint(-(2**30), 2**30, (5, 6), dtype=torch.int32)
    k = torch.randint(-(2**28), 2**28, (2, 3), dtype=torch.int32)
    want = reference.corr2d(x.numpy().astype(np.int64), k.numpy().astype(np.int64))
    for method in ("auto", "direct"):
        out = xcorr.corr2d(x, k, method=method)
        assert out.dtype == torch.int64
        np.testing.assert_array_equal(out.numpy(), want)
    with pytest.raises(ValueError, match="cannot give exact integer"):  # cuDNN has no int64
        xcorr.corr2d(x, k, method="native")


def test_auto_calls_f_conv2d_where_it_wins_and_never_for_integers(monkeypatch):
    # Without the NumPy backend's compiled loop (Numba), torch's direct method makes two
    # dispatches per tap (~7 µs each), which on small images cost more than one F.conv2d; on
    # large ones F.conv2d's single-channel path is slow (1024² k3: 22 ms).
    monkeypatch.setattr(_numba, "DISABLED", True)
    calls = []
    native = tb._native

    def spy(x, k):
        calls.append(tuple(x.shape))
        return native(x, k)

    monkeypatch.setattr(tb, "_native", spy)
    for dtype in (torch.float32, torch.float64, torch.int64):
        for n, kk in ((16, 3), (64, 31), (300, 11), (40, 1), (1024, 3)):
            calls.clear()
            x = torch.ones(n, n, dtype=dtype)
            out = xcorr.corr2d(x, torch.ones(kk, kk, dtype=dtype))
            assert abs(float(out[0, 0]) - kk * kk) < 1e-3
            picked = bool(calls)
            if dtype == torch.int64 or n >= 300:  # exact integers; large images
                assert not picked, (dtype, n, kk)
            elif (n, kk) == (16, 3):
                assert picked, (dtype, n, kk)


def test_cost_model_picks_direct_for_small_and_fft_for_large_kernels():
    for itemsize in (2, 4, 8):
        assert choose(tb.costs(), (1024, 1024), (3, 3), itemsize, False) == "direct"
        assert choose(tb.costs(), (1024, 1024), (31, 31), itemsize, False) in SPECTRAL


# -- autograd ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(method, mode):
    x = rand(2, 6, 7).requires_grad_()
    k = rand(3, 2, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, k: xcorr.corr2d(x, k, mode=mode, method=method), (x, k))


@pytest.mark.parametrize("method", METHODS)
def test_gradgradcheck(method):
    x = rand(5, 6).requires_grad_()
    k = rand(2, 3, seed=1).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x, k: xcorr.corr2d(x, k, method=method), (x, k))


@pytest.mark.parametrize("method", ("auto", *METHODS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grads_equal_the_analytic_vjp(method, dtype):
    x = rand(3, 20, 17, dtype=dtype).requires_grad_()
    k = rand(4, 5, dtype=dtype, seed=1).requires_grad_()
    y = xcorr.corr2d(x, k, method=method)
    g = rand(*y.shape, dtype=dtype, seed=2)
    y.backward(g)
    gx = _grad.grad_x(_numpy, k.detach().numpy(), g.numpy())
    gk = _grad.grad_k(_numpy, x.detach().numpy(), g.numpy())
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert x.grad.dtype == k.grad.dtype == dtype
    np.testing.assert_allclose(x.grad.numpy(), gx, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(k.grad.numpy(), gk, rtol=tol, atol=tol * 100)


def test_grad_only_where_required():
    x, k = rand(6, 6).requires_grad_(), rand(3, 3, seed=1)
    xcorr.corr2d(x, k, method="direct").sum().backward()
    assert x.grad is not None and k.grad is None


@pytest.mark.parametrize("method", ("direct", "fft", "overlap"))
def test_cpu_tensors_run_the_numpy_backends_kernels(method, monkeypatch):
    """float32/float64 CPU tensors are correlated by the NumPy backend's kernels on their
    memory (its exact bits), with or without autograd; gradients by the analytic adjoint
    (gradcheck, gradgradcheck); integers and torch.compile keep torch's own path."""
    if method == "direct" and _numba.kernel() is None:
        pytest.skip("numba: not installed (torch's own direct method runs instead)")
    seen = []
    real = _numpy.corr2d_valid
    monkeypatch.setattr(_numpy, "corr2d_valid", lambda a, b, m: seen.append(m) or real(a, b, m))
    if method != "direct":  # the FFTs go to the host from 2**22 points; here from any size
        xcorr.corr2d(rand(12, 11), rand(4, 3, seed=1), method=method)
        assert seen == []
        monkeypatch.setattr(tb, "_HOST_FFT_POINTS", 0)
    for dtype in (torch.float32, torch.float64):
        x, k = rand(2, 12, 11, dtype=dtype), rand(4, 3, seed=1, dtype=dtype)
        want = real(x.numpy(), k.numpy(), method)
        seen.clear()
        got = xcorr.corr2d(x, k, method=method)
        assert seen == [method] and got.dtype == dtype
        np.testing.assert_array_equal(got.numpy(), want)
        recorded = xcorr.corr2d(x.requires_grad_(), k, method=method)
        assert recorded.requires_grad and torch.equal(recorded.detach(), got)
    x, k = rand(9, 8).requires_grad_(), rand(3, 2, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: xcorr.corr2d(a, b, method=method), (x, k))
    assert torch.autograd.gradgradcheck(lambda a, b: xcorr.corr2d(a, b, method=method), (x, k))
    seen.clear()
    xcorr.corr2d(torch.ones(6, 6, dtype=torch.int64), torch.ones(2, 2, dtype=torch.int64),
                 method="direct")
    assert seen == []



def test_negative_views_are_read_as_their_values():
    """A tensor with torch's negative bit (``z.conj().imag``) holds ``-data`` lazily: the
    NumPy kernels read its resolved values, never the raw memory."""
    z = torch.complex(rand(9, 8), rand(9, 8, seed=2))
    view, k = z.conj().imag, rand(3, 2, seed=1)
    assert view.is_neg()
    for method in ("direct", "fft", "overlap"):
        assert torch.equal(xcorr.corr2d(view, k, method=method),
                           xcorr.corr2d(-z.imag, k, method=method))

def test_auto_on_cpu_tensors_uses_the_numpy_backends_model():
    """On the CPU, auto weighs the kernels that run there: NumPy's constants, and torch's own
    for F.conv2d (on other devices torch's)."""
    x, k = torch.ones(64, 64), torch.ones(3, 3)
    table = tb.costs_for(x, k)
    assert table[4].point == tb.COSTS[4].point  # small transforms: torch.fft's
    assert tb.costs_for(torch.ones(4, 1024, 1024), k)[4].point == _numpy.costs()[4].point
    assert table[4].native_tap == tb.COSTS[4].native_tap
    if _numba.kernel() is not None:
        assert table[4].tap == _numpy.costs()[4].tap
        assert _auto.choose(tb, x, k) == "direct"  # one compiled call, not F.conv2d


@pytest.mark.parametrize("method", ("auto", *METHODS))
def test_no_grad_and_inference_mode(method):
    x, k = rand(8, 8).requires_grad_(), rand(3, 3, seed=1).requires_grad_()
    want = xcorr.corr2d(x, k, method=method)
    assert want.requires_grad
    with torch.no_grad():
        out = xcorr.corr2d(x, k, method=method)
    assert not out.requires_grad and torch.equal(out, want.detach())
    with torch.inference_mode():
        assert torch.equal(xcorr.corr2d(x, k, method=method), want.detach())


def test_sse_value_and_grad_matches_the_analytic_gradient():
    x, y, k = rand(2, 9, 8), rand(2, 7, 6, seed=1), rand(3, 3, seed=2)
    for b in (None, torch.tensor(0.25, dtype=torch.float64)):
        loss, dk, db = tb.sse_value_and_grad(x, y, k, b)
        want = _numpy.sse_value_and_grad(x.numpy(), y.numpy(), k.numpy(),
                                         None if b is None else b.numpy())
        np.testing.assert_allclose(loss.numpy(), want[0], rtol=1e-12)
        np.testing.assert_allclose(dk.numpy(), want[1], rtol=1e-11)
        assert (db is None) == (b is None)
        if b is not None:
            np.testing.assert_allclose(db.numpy(), want[2], rtol=1e-12)
        assert not (loss.requires_grad or dk.requires_grad or k.requires_grad)


# -- inputs, dtypes, conversion ---------------------------------------------------------------


@pytest.mark.parametrize("method", ("auto", *METHODS))
def test_inputs_never_mutated_even_with_grad(method):
    base = rand(3, 10, 12)
    x = base[:, ::2, 1::2].requires_grad_()  # a non-contiguous leaf view
    k = rand(3, 3, seed=1).t().requires_grad_()
    before = x.detach().clone(), k.detach().clone()
    xcorr.corr2d(x, k, mode="same", method=method).square().sum().backward()
    assert torch.equal(x.detach(), before[0]) and torch.equal(k.detach(), before[1])
    np.testing.assert_allclose(
        xcorr.corr2d(x, k, method=method).detach().numpy(), ref(x, k), rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ("auto", *METHODS))
def test_half_types_keep_their_dtype_and_accumulate_in_float32(dtype, method):
    x, k = rand(2, 40, 40, dtype=dtype), rand(5, 5, dtype=dtype, seed=1)
    out = xcorr.corr2d(x, k, method=method)
    assert out.dtype == dtype
    want = xcorr.corr2d(x.float(), k.float(), method="direct").to(dtype)
    # One rounding at the end: at most one half-precision ulp from the float32 result.
    ulp = torch.finfo(dtype).eps * want.float().abs().clamp_min(1)
    assert ((out.float() - want.float()).abs() <= ulp).all()
    xg, kg = x.clone().requires_grad_(), k.clone().requires_grad_()
    xcorr.corr2d(xg, kg, method=method).sum().backward()
    assert xg.grad.dtype == kg.grad.dtype == dtype


def test_asarray_conversions():
    assert tb.asarray([[1.0, 2.0]]).dtype == torch.float64  # as numpy.asarray
    assert tb.asarray([[1, 2]]).dtype == torch.int64
    t = torch.ones(2, 2)
    assert tb.asarray(t) is t
    a = np.arange(12.0).reshape(3, 4)
    a.flags.writeable = False
    assert torch.equal(tb.asarray(a), torch.from_numpy(a.copy()))
    assert torch.equal(tb.asarray(a[::-1, ::-2]), torch.from_numpy(a[::-1, ::-2].copy()))
    big = a.astype(">f8")
    assert torch.equal(tb.asarray(big), torch.from_numpy(a.copy()))
    assert tb.asarray(np.array([[70000]], dtype=np.uint32)).dtype == torch.int64
    with pytest.raises(TypeError, match="torch has no .* \\(long double\\); cast to float64"):
        tb.asarray(np.ones((2, 2), np.longdouble))


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "uint64"])
def test_wide_unsigned_tensors_compute_as_their_numpy_twins(dtype):
    """torch's uint16-64 have almost no kernels (no flip, max or matmul): such tensors are
    taken as int64, as NumPy's are on this backend, and give NumPy's results bit for bit,
    drop-ins' wrap-around included; uint64 beyond int64 is refused as on NumPy."""
    import xcorr.ndimage
    import xcorr.signal

    rng = np.random.default_rng(1)
    x, k = rng.integers(0, 300, (2, 6, 7)).astype(dtype), rng.integers(0, 300, (3, 2)).astype(dtype)
    tx, tk = torch.from_numpy(x), torch.from_numpy(k)
    assert tb.asarray(tx).dtype == torch.int64
    calls = [
        lambda a, b: xcorr.corr2d(a, b, mode="full", boundary="symm"),
        lambda a, b: xcorr.convolve2d(a, b, mode="same", boundary="wrap"),  # flips k
        lambda a, b: xcorr.pool2d(a, 2),
        lambda a, b: xcorr.signal.correlate2d(a[0], b, "full", "symm"),
        lambda a, b: xcorr.signal.correlate2d(b, a[0], "valid"),  # swapped: flips the output
        lambda a, b: xcorr.signal.convolve2d(a[1], b, "same", "wrap"),
        lambda a, b: xcorr.ndimage.correlate(a[0], b, mode="mirror"),
    ]
    for call in calls:
        want, got = call(x, k), call(tx, tk)
        assert isinstance(got, torch.Tensor)
        np.testing.assert_array_equal(got.numpy(), want, strict=True)
    if dtype == "uint64":
        top = np.array([[2**64 - 1]], np.uint64)  # SciPy's modular arithmetic, kept
        got = xcorr.signal.correlate2d(torch.from_numpy(top), torch.from_numpy(top + 4))
        np.testing.assert_array_equal(got.numpy(), xcorr.signal.correlate2d(top, top + 4))
        signed = np.array([[1, -2]], np.int8)  # with uint64, SciPy computes in float64
        high = np.array([[2**63]], np.uint64)
        long = high.astype(np.ulonglong)  # NumPy 1.x: a twin dtype torch.from_numpy refuses
        want = xcorr.signal.correlate2d(signed, high, "full")
        for pair in ((signed, high), (signed, long),
                     (torch.from_numpy(signed), torch.from_numpy(high))):
            got = xcorr.signal.correlate2d(*pair, "full", backend="torch")
            np.testing.assert_array_equal(got.numpy(), want, strict=True)
        with pytest.raises(OverflowError, match="above 2\\*\\*63 - 1"):
            xcorr.corr2d(torch.from_numpy(top), tk)


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_narrow_floats_cross_between_torch_and_numpy(dtype):
    """bfloat16 and float8 go both ways between torch's types and ml_dtypes' (NumPy has no
    others; float8_e5m2 is even of kind 'f' there), by their bits: the same correlation,
    in the same dtype, whichever framework holds the data and whichever backend computes."""
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes (a JAX dependency): absent")
    a = np.random.default_rng(3).random((6, 7)).astype(np.float32)
    host = a.astype(getattr(ml_dtypes, dtype))
    tensor = torch.from_numpy(a).to(getattr(torch, dtype))
    want = xcorr.corr2d(host, host[:3, :3])
    assert want.dtype == host.dtype
    for x in (host, tensor):
        on_numpy = xcorr.corr2d(x, x[:3, :3], backend="numpy")
        assert on_numpy.dtype == host.dtype
        np.testing.assert_array_equal(on_numpy.astype(np.float32), want.astype(np.float32))
        on_torch = xcorr.corr2d(x, x[:3, :3], backend="torch")
        assert on_torch.dtype == tensor.dtype
        np.testing.assert_array_equal(on_torch.float().numpy(), want.astype(np.float32))


def test_torch_func_vmap_and_grad():
    """``torch.func.vmap`` (batched tensors have no memory to hand to the NumPy kernels, and
    no Python bool for the FFT's finiteness: decided per example) and ``torch.func.grad``
    give the per-example results and autograd's gradient."""
    x, k = rand(4, 40, 40, seed=1), rand(13, 13, seed=2)
    x[1, 5, 5] = float("nan")  # auto keeps this example's NaN local (direct); not the others
    calls = {
        "auto": lambda a: xcorr.corr2d(a, k),
        "direct": lambda a: xcorr.corr2d(a, k, method="direct"),
        "overlap": lambda a: xcorr.corr2d(a, k, method="overlap"),
        "match_template": lambda a: xcorr.match_template(a, k[:4, :4]),
        "conv2d": lambda a: xcorr.conv2d(a[None], k[None, None]),
        "pool2d": lambda a: xcorr.pool2d(a, 3),
    }
    for name, call in calls.items():
        finite = name != "overlap"  # an explicit FFT spreads the NaN, by design
        got = torch.func.vmap(call)(x if finite else x[[0, 2, 3]])
        want = torch.stack([call(a) for a in (x if finite else x[[0, 2, 3]])])
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, equal_nan=True,
                                   msg=name)
    for method in ("direct", "fft", "native"):
        got = torch.func.grad(lambda kk, m=method: xcorr.corr2d(x[0], kk, method=m).sum())(k)
        kk = k.clone().requires_grad_()
        xcorr.corr2d(x[0], kk, method=method).sum().backward()
        torch.testing.assert_close(got, kk.grad, rtol=1e-12, atol=1e-12)


def test_legacy_batched_autograd():
    """``is_grads_batched=True``, ``jacobian(vectorize=True)`` and gradcheck's batched check
    run backward on torch's legacy batched tensors, which were handed to the NumPy kernels
    ("Batching rule not implemented for aten::detach"), or, off them, to an ``out=`` loop."""
    x = rand(6, 7).requires_grad_()
    k = rand(3, 3, seed=1).requires_grad_()
    cotangents = torch.eye(20, dtype=x.dtype).reshape(-1, 4, 5)
    for method in ("direct", "auto", "fft"):
        out = xcorr.corr2d(x, k, method=method)
        dx, dk = torch.autograd.grad(out, (x, k), cotangents, is_grads_batched=True,
                                     retain_graph=True)
        for i, g in enumerate(cotangents):
            gx, gk = torch.autograd.grad(out, (x, k), g, retain_graph=True)
            torch.testing.assert_close(dx[i], gx, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(dk[i], gk, rtol=1e-12, atol=1e-12)
    jx, jk = torch.autograd.functional.jacobian(xcorr.corr2d, (x, k), vectorize=True)
    assert jx.shape == (4, 5, 6, 7) and jk.shape == (4, 5, 3, 3)
    assert torch.autograd.gradcheck(lambda a, b: xcorr.match_template(a, b, mask=b > 0),
                                    (x, k), check_batched_grad=True)
    w = rand(2, 1, 3, 3, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: xcorr.conv2d(a, b, groups=2),
                                    (rand(1, 2, 6, 6, seed=3).requires_grad_(), w),
                                    check_batched_grad=True)


def test_cast_advice_is_torchs_own():
    """The casts the messages suggest were NumPy's ``x.astype('float32')``, which a tensor
    does not have."""
    with pytest.raises(TypeError, match=r"e\.g\. x\.to\(torch\.float32\) or "
                                        r"x\.to\(torch\.int64\)"):
        xcorr.corr2d(torch.ones(3, 3, dtype=torch.bool), torch.ones(2, 2))
    with pytest.raises(TypeError, match=r"e\.g\. x\.to\(torch\.float32\)"):
        xcorr.pool2d(torch.ones(4, 4, dtype=torch.int32), 2, mode="avg")
    with pytest.raises(TypeError, match=r"e\.g\. x\.astype\('float32'\)"):
        xcorr.pool2d(np.ones((4, 4), np.int32), 2, mode="avg")


def test_a_fillvalue_that_requires_grad_is_refused():
    """A fill value that autograd tracks became a constant (``.item()``), so its gradient was
    lost without a word; it now raises, saying how to differentiate through it."""
    fv = torch.tensor(2.0, requires_grad=True)
    with pytest.raises(TypeError, match="fillvalue is a traced or differentiated.*pad"):
        xcorr.corr2d(rand(5, 5), rand(3, 3), mode="same", fillvalue=fv)
    got = xcorr.corr2d(rand(5, 5), rand(3, 3), mode="same", fillvalue=fv.detach())
    want = xcorr.corr2d(rand(5, 5), rand(3, 3), mode="same", fillvalue=2.0)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_torch_func_vmap_over_kernels_and_templates():
    """vmap over the kernel (or template, or mask) only: the FFT wrote the mapped kernel's
    spectrum into the unmapped image's in place ("vmap: inplace arithmetic(self,
    *extra_args) is not possible"), in corr2d's fft/overlap/auto and match_template."""
    x, ks = rand(2, 40, 40, seed=1), rand(3, 13, 13, seed=2)
    masks = rand(3, 13, 13, seed=3) > 0.3
    calls = {
        "auto": (lambda k: xcorr.corr2d(x, k), (0,)),
        "fft": (lambda k: xcorr.corr2d(x, k, method="fft", mode="same"), (0,)),
        "overlap": (lambda k: xcorr.convolve2d(x, k, method="overlap"), (0,)),
        "nested": (lambda k: torch.func.vmap(lambda a: xcorr.corr2d(a, k, method="fft"))(x),
                   (0,)),
        "match_template": (lambda k: xcorr.match_template(x, k, method="fft"), (0,)),
        "masked": (lambda k, m: xcorr.match_template(x, k, mask=m, method="fft"), (0, 0)),
    }
    for name, (call, dims) in calls.items():
        args = (ks, masks)[:len(dims)]
        got = torch.func.vmap(call, in_dims=dims)(*args)
        want = torch.stack([call(*a) for a in zip(*args, strict=True)])
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_forward_mode_ad_on_cpu_tensors(requires_grad):
    """Dual tensors (``torch.autograd.forward_ad``): the NumPy kernels that compute CPU
    tensors see no tangent, so a dual input lost its derivative without a word (tangent
    None: direct, auto, match_template), and one that also required grad raised (no jvp on
    xcorr's autograd Functions).  Now every method gives the bilinear derivative
    ``corr(dx, k) + corr(x, dk)``, and match_template torch.func.jvp's."""
    fw = torch.autograd.forward_ad
    x, k = rand(2, 30, 33), rand(5, 4, seed=1)
    dx, dk = rand(2, 30, 33, seed=2), rand(5, 4, seed=3)
    calls = {m: (lambda a, b, m=m: xcorr.corr2d(a, b, method=m))
             for m in ("auto", "direct", "fft", "overlap", "native")}
    calls["same wrap"] = lambda a, b: xcorr.corr2d(a, b, mode="same", boundary="wrap")
    calls["match_template"] = lambda a, b: xcorr.match_template(a, b)
    for name, call in calls.items():
        if name == "match_template":
            want = torch.func.jvp(call, (x, k), (dx, dk))[1]
        else:  # bilinear: the derivative is exact
            want = call(dx, k) + call(x, dk)
        for tangents in ((dx, dk), (dx, None), (None, dk)):
            if tangents[1] is None and name != "match_template":
                want_t = call(dx, k)
            elif tangents[0] is None and name != "match_template":
                want_t = call(x, dk)
            elif name == "match_template" and None in tangents:
                continue
            else:
                want_t = want
            with fw.dual_level():
                duals = [p.clone().requires_grad_(requires_grad) if t is None else
                         fw.make_dual(p.clone().requires_grad_(requires_grad), t)
                         for p, t in zip((x, k), tangents, strict=True)]
                got = fw.unpack_dual(call(*duals)).tangent
            assert got is not None, name
            torch.testing.assert_close(got.detach(), want_t, rtol=1e-10, atol=1e-10, msg=name)


def test_torch_func_hessian_of_the_direct_method():
    """jacfwd of jacrev vmaps over xcorr's direct autograd Function, which had no vmap rule
    ("You tried to vmap over _Direct"): under torch.func the plain loop is differentiated."""
    x, k = rand(9, 11), rand(3, 4, seed=1)
    for method in ("direct", "auto"):
        def loss(kk, m=method):
            return (xcorr.corr2d(x, kk, method=m) ** 3).sum()
        got = torch.func.hessian(loss)(k)
        want = torch.autograd.functional.hessian(loss, k)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_host_side_bias_mask_and_cotangent_join_the_device():
    """A bias, mask or vjp cotangent given as NumPy data (or a CPU tensor) joins the device
    of the other tensors, as a NumPy kernel does; they raised "Tensor on device cpu is not on
    the expected device".  Meta tensors stand in for CUDA here."""
    x, w = rand(1, 2, 8, 8).to("meta"), rand(3, 2, 3, 3).to("meta")
    img, t = rand(8, 8).to("meta"), rand(3, 3).to("meta")
    results = [
        xcorr.conv2d(x, w, [1.0, 2.0, 3.0]),
        xcorr.conv2d(x, w, torch.ones(3, dtype=torch.float64)),
        xcorr.match_template(img, t, mask=np.ones((3, 3), bool)),
        xcorr.match_template(img, t, mask=torch.rand(3, 3, dtype=torch.float64)),
        *xcorr.vjp.corr2d(img, t, np.ones((6, 6))),
        *xcorr.vjp.conv2d(x, w, np.ones((1, 3, 6, 6)), bias=np.zeros(3)),
        xcorr.vjp.pool2d(x, np.ones((1, 2, 4, 4)), 2),
    ]
    assert all(r.is_meta for r in results)


def test_meta_fake_and_subclass_tensors():
    """Meta and fake tensors (shapes, no values: shape inference, as ``F.conv2d`` does on
    them) go through every operation and method; the FFT's NaN/Inf guard and the drop-ins'
    checks of values decided on values they do not have ("Tensor.item() cannot be called on
    meta tensors"), and CPU fake tensors and other subclasses were handed to NumPy
    ("``.numpy()`` is not supported for tensor subclasses").  A subclass gives a plain
    tensor's values."""
    import xcorr.ndimage
    import xcorr.signal

    rng = np.random.default_rng(3)
    real_x, real_k = torch.tensor(rng.random((2, 20, 24))), torch.tensor(rng.random((3, 4)))
    calls = [lambda x, k, m=m: xcorr.corr2d(x, k, method=m) for m in tb.METHODS] + [
        lambda x, k: xcorr.corr2d(x, k, mode="same", boundary="symm", method="fft"),
        lambda x, k: xcorr.convolve2d(x, k, mode="full", method="overlap"),
        lambda x, k: xcorr.match_template(x, x[0, 3:8, 4:9]),
        lambda x, k: xcorr.match_template(x, x[0, 3:8, 4:9], mode="same", method="fft",
                                          mask=x[0, :5, :5] > 0.5),
        lambda x, k: xcorr.local_ncc(x, x, 3),
        lambda x, k: xcorr.conv2d(x[:, None], k[None, None], padding=1, method="fft"),
        lambda x, k: xcorr.pool2d(x, 2, mode="avg"),
        lambda x, k: xcorr.ndimage.correlate(x[0], k, mode="mirror"),
        lambda x, k: xcorr.signal.correlate2d(x[0], k, boundary="wrap"),
    ]
    from torch._subclasses.fake_tensor import FakeTensorMode

    class Sub(torch.Tensor):  # a subclass has no NumPy view: torch operations run for it
        pass

    for call in calls:
        want = call(real_x, real_k)
        got = call(real_x.to("meta"), real_k.to("meta"))
        assert got.is_meta and got.shape == want.shape and got.dtype == want.dtype
        with FakeTensorMode() as mode:  # the fake tensors of torch's shape propagation
            got = call(mode.from_tensor(real_x), mode.from_tensor(real_k))
        assert got.shape == want.shape and got.dtype == want.dtype
        got = call(real_x.as_subclass(Sub), real_k.as_subclass(Sub))
        torch.testing.assert_close(got.as_subclass(torch.Tensor), want, rtol=1e-12,
                                   atol=1e-12)


def test_asarray_refuses_lazy_dask_arrays():
    da = pytest.importorskip("dask.array", reason="dask: not installed")
    with pytest.raises(TypeError, match="Dask array is lazy"):
        tb.asarray(da.ones((2, 2)))


def test_numpy_arrays_follow_numpy_and_tensors_torch_promotion():
    x32 = torch.ones(4, 4)
    assert xcorr.corr2d(x32, torch.ones(2, 2, dtype=torch.float64)).dtype == torch.float64
    assert xcorr.corr2d(x32, torch.ones(2, 2, dtype=torch.int32)).dtype == torch.float32
    assert xcorr.corr2d(x32, [[1.0, 2.0]]).dtype == torch.float64  # a float list is float64
    out = xcorr.corr2d(np.ones((4, 4), np.int32), np.ones((2, 2), np.uint8), backend="torch")
    assert out.dtype == torch.int64 and out[0, 0] == 4


def test_jax_cpu_array_goes_through_dlpack():
    jnp = pytest.importorskip("jax.numpy", reason="jax: not installed")
    jax = pytest.importorskip("jax")
    x = jax.device_put(jnp.arange(12.0, dtype=jnp.float32).reshape(3, 4), jax.devices("cpu")[0])
    out = xcorr.corr2d(x, [[1.0, 1.0]], backend="torch")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert out.device.type == "cpu"  # a GPU array would give a CUDA tensor (same device)
    np.testing.assert_array_equal(out.numpy(), reference.corr2d(np.asarray(x), [[1.0, 1.0]]))
    with pytest.raises(TypeError):  # a tracer has no values to hand over
        jax.jit(lambda x: xcorr.corr2d(x, [[1.0]], backend="torch"))(x)


# -- TF32 and devices -------------------------------------------------------------------------


def _flags() -> tuple:
    return (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision,
            torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())


def test_tf32_is_off_only_inside_our_block_and_restored(monkeypatch):
    fake_cuda = types.SimpleNamespace(is_cuda=True, dtype=torch.float32)
    before = _flags()
    with tb._ieee_fp32(fake_cuda):
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert _flags() == before
    with pytest.raises(RuntimeError), tb._ieee_fp32(fake_cuda):
        raise RuntimeError  # restored on errors too
    assert _flags() == before
    monkeypatch.setenv("XCORR_TORCH_TF32", "1")  # the documented opt-in leaves flags alone
    with tb._ieee_fp32(fake_cuda):
        assert _flags() == before
    for method in ("auto", *METHODS):
        xcorr.corr2d(torch.ones(5, 5), torch.ones(2, 2), method=method)
    assert _flags() == before


@cuda
@pytest.mark.parametrize("method", ("auto", *METHODS))
def test_cuda_output_on_device_ieee_accurate_and_differentiable(method):
    before = _flags()
    x = rand(2, 64, 64, dtype=torch.float32, device="cuda").requires_grad_()
    k = rand(7, 7, dtype=torch.float32, seed=1, device="cuda").requires_grad_()
    out = xcorr.corr2d(x, k, mode="same", method=method)
    assert out.device == x.device and out.dtype == torch.float32
    want = ref(x, k, "same")
    # TF32 (10-bit mantissa) would miss this by ~1e-3 relative.
    np.testing.assert_allclose(out.detach().cpu().numpy(), want, rtol=2e-5, atol=2e-5)
    out.sum().backward()
    assert x.grad.device == x.device and k.grad.device == k.device
    assert _flags() == before


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_types(dtype):
    x, k = rand(32, 32, dtype=dtype, device="cuda"), rand(3, 3, dtype=dtype, device="cuda")
    for method in ("auto", *METHODS):
        out = xcorr.corr2d(x, k, method=method)
        assert out.device == x.device and out.dtype == dtype
        np.testing.assert_allclose(out.float().cpu().numpy(), ref(x, k), rtol=2e-2, atol=5e-2)


@cuda
def test_cuda_with_a_host_kernel_stays_on_the_device():
    x = rand(8, 8, dtype=torch.float64, device="cuda")
    out = xcorr.corr2d(x, [[1.0, 2.0], [3.0, 4.0]])
    assert out.device == x.device


# -- torch.compile ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ("auto", *METHODS))
def test_torch_compile_traces_every_method(method):
    # aot_eager runs Dynamo and AOTAutograd (forward and backward graphs) without Inductor's
    # C++ compile, so this stays fast; the Inductor run is the slow test below.
    x, k = rand(2, 9, 9, dtype=torch.float32), rand(3, 3, dtype=torch.float32, seed=1)
    torch._dynamo.reset()
    fn = torch.compile(lambda x, k: xcorr.corr2d(x, k, mode="same", method=method),
                       backend="aot_eager")
    kg = k.clone().requires_grad_()
    out = fn(x, kg)
    np.testing.assert_allclose(out.detach().numpy(), ref(x, k, "same"), rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    k2 = k.clone().requires_grad_()
    xcorr.corr2d(x, k2, mode="same", method=method).square().sum().backward()
    torch.testing.assert_close(kg.grad, k2.grad)


def test_torch_compile_fullgraph():
    """``fullgraph=True`` traces corr2d (every method), convolve2d, conv2d and pool2d, with
    gradients, once xcorr's torch backend is loaded (its first import is not traceable).
    The plan cache read the ``use_backend`` ContextVar (Dynamo: "Unsupported method call"),
    the overlap tile's ``min()`` of a generator failed to trace, and a ``jvp`` on the
    direct method's autograd Function is one Dynamo refuses."""
    xcorr.corr2d(torch.ones(4, 4), torch.ones(2, 2))  # loads the backend
    x = rand(2, 2, 40, 40, dtype=torch.float32)
    w = rand(3, 2, 3, 3, dtype=torch.float32, seed=1)
    methods = ["auto", "direct", "native"]
    if tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 13):
        # the explicit FFTs' NaN/Inf check is bool() of a tensor, which torch 2.9's Dynamo
        # cannot trace with fullgraph (2.13's can; versions between not tried)
        methods += ["fft", "overlap"]
    calls = {f"corr2d {m}": (lambda a, b, m=m: xcorr.corr2d(a, b[0], mode="same", method=m))
             for m in methods}
    calls["convolve2d wrap"] = lambda a, b: xcorr.convolve2d(a, b[0, 0], mode="same",
                                                              boundary="wrap")
    calls["conv2d"] = lambda a, b: xcorr.conv2d(a, b, stride=2, padding=1,
                                                padding_mode="reflect")
    calls["pool2d"] = lambda a, b: xcorr.pool2d(a * b.sum(), 3, stride=2, padding=1)
    # NumPy's errstate, its pad of the window counts and the widest dtype's probe did not
    # trace ("Can't find numpy function errstate", "Unsupported ndarray attribute access")
    calls["match_template"] = lambda a, b: xcorr.match_template(a, b[:2, :, :5])
    calls["match_template masked same"] = lambda a, b: xcorr.match_template(
        a, b[:2, 0], mode="same", mask=b[0, 0] >= b[0, 0].median())  # half of it, at least
    calls["local_ncc"] = lambda a, b: xcorr.local_ncc(a, a * b.sum(), (3, 5))
    # A second shape makes Dynamo recompile with dynamic sizes (its automatic dynamic): the
    # cost models' min() of symbolic costs did not trace there (auto, conv2d, same mode).
    second = rand(2, 2, 37, 45, dtype=torch.float32, seed=2)
    for name, call in calls.items():
        torch._dynamo.reset()
        fn = torch.compile(call, fullgraph=True, backend="aot_eager")
        for image in (x, second):
            wg, we = w.clone().requires_grad_(), w.clone().requires_grad_()
            got, want = fn(image, wg), call(image, we)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=name)
            got.square().sum().backward()
            want.square().sum().backward()
            torch.testing.assert_close(wg.grad, we.grad, rtol=1e-4, atol=1e-4, msg=name)
    for name in ("corr2d auto", "conv2d", "local_ncc"):  # sizes and eps symbolic from the start
        torch._dynamo.reset()
        fn = torch.compile(calls[name], fullgraph=True, dynamic=True, backend="aot_eager")
        torch.testing.assert_close(fn(second, w), calls[name](second, w), rtol=1e-5, atol=1e-5,
                                   msg=name)


def test_torch_export():
    """``torch.export`` (strict and not) of every operation: under the non-strict export the
    FFT's NaN/Inf guard and the ndimage drop-in branched on values ("Could not guard on
    data-dependent expression"); they now decide inside the graph."""
    import xcorr.ndimage

    xcorr.corr2d(torch.ones(4, 4), torch.ones(2, 2))  # loads the backend
    x = rand(2, 24, 30, dtype=torch.float32)
    calls = {f"corr2d {m}": (lambda a, b, m=m: xcorr.corr2d(a, b, method=m))
             for m in ("auto", "direct", "fft", "overlap", "native")}
    calls["match_template"] = lambda a, b: xcorr.match_template(a, b, mask=b > 0.2)
    calls["local_ncc"] = lambda a, b: xcorr.local_ncc(a, a * b.sum(), 3)
    calls["conv2d"] = lambda a, b: xcorr.conv2d(a[:, None], b[None, None], padding=1)
    calls["ndimage"] = lambda a, b: xcorr.ndimage.correlate(a[0], b)  # not strict (dtypes)

    class Model(torch.nn.Module):
        def __init__(self, call):
            super().__init__()
            self.call, self.k = call, torch.nn.Parameter(rand(3, 4, dtype=torch.float32))

        def forward(self, a):
            return self.call(a, self.k)

    for name, call in calls.items():
        model = Model(call)
        for strict in (False, True) if name != "ndimage" else (False,):
            program = torch.export.export(model, (x,), strict=strict)
            torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5,
                                       msg=f"{name} strict={strict}")


@pytest.mark.slow
def test_torch_compile_inductor_direct_forward_and_backward():
    x, k = rand(9, 9, dtype=torch.float32), rand(3, 3, dtype=torch.float32, seed=1)
    torch._dynamo.reset()
    fn = torch.compile(lambda x, k: xcorr.corr2d(x, k, method="direct").square().sum())
    kg = k.clone().requires_grad_()
    fn(x, kg).backward()
    k2 = k.clone().requires_grad_()
    xcorr.corr2d(x, k2, method="direct").square().sum().backward()
    torch.testing.assert_close(kg.grad, k2.grad)


@pytest.mark.parametrize("fill", [2**53 + 1, 2**63 - 1, -(2**62) - 5])
def test_an_int64_fill_past_2_53_is_exact(fill):
    # F.pad takes its value through a double: 2**53 + 1 came out as 2**53, 2**63 - 1 as -2**63
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    k = np.ones((1, 3), np.int64)
    want = xcorr.corr2d(x, k, mode="full", fillvalue=fill)  # NumPy's, SciPy's bits
    got = xcorr.corr2d(torch.from_numpy(x), torch.from_numpy(k), mode="full", fillvalue=fill)
    np.testing.assert_array_equal(got.numpy(), want)
    batched = torch.func.vmap(lambda a: xcorr.corr2d(a, torch.from_numpy(k), mode="full",
                                                     fillvalue=fill))(torch.from_numpy(x)[None])
    np.testing.assert_array_equal(batched[0].numpy(), want)


@pytest.mark.parametrize(("dtype", "fill"), [(torch.float32, 1e39), (torch.float16, 1e5),
                                             (torch.bfloat16, -1e39)])
def test_a_fill_past_the_dtypes_range_pads_inf_as_numpy(dtype, fill):
    # F.pad refused it ("value cannot be converted to type float without overflow")
    x = torch.zeros((1, 2), dtype=dtype)
    got = xcorr.corr2d(x, torch.ones((1, 3), dtype=dtype), mode="same", fillvalue=fill)
    assert got.dtype == dtype
    assert torch.all(torch.isinf(got)) and torch.all(torch.sign(got) == np.sign(fill))
