"""CuPy backend: why it is unavailable (tested everywhere) and its GPU results (on a GPU)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

import xcorr
from xcorr import _dispatch
from xcorr._methods import SPECTRAL, choose
from xcorr.backends import _cupy, _numpy

NO_DEVICE = "cupy installed, no CUDA device: cupy.is_available() is False"


def _gpu_skip_reason() -> str | None:
    if _cupy.cupy is None:
        return f"CuPy: {_cupy.unavailable_reason()}"
    if _cupy.unavailable_reason() is not None:
        return "CuPy: no CUDA device (cupy.is_available() is False)"
    return None


needs_gpu = pytest.mark.skipif(_gpu_skip_reason() is not None,
                               reason=_gpu_skip_reason() or "CuPy has a CUDA device")


# -- without a device: these run everywhere -------------------------------------------------


@pytest.fixture
def no_device(monkeypatch):
    """Make CuPy report no CUDA device, whatever this machine has; restore the caches after."""
    if _cupy.cupy is None:
        pytest.skip("CuPy is not installed: the 'not installed' test covers this machine")
    monkeypatch.setattr(_cupy.cupy, "is_available", lambda: False)
    _cupy.unavailable_reason.cache_clear()
    yield
    _cupy.unavailable_reason.cache_clear()


def test_reason_without_device(no_device):
    assert _cupy.unavailable_reason() == NO_DEVICE
    info = xcorr.backend_info()["cupy"]
    assert info["installed"] is True
    assert info["available"] is False
    assert NO_DEVICE in info["reason"]
    assert info["version"] == _cupy.cupy.__version__
    assert info["devices"] == []
    assert "cupy" not in xcorr.available_backends()


def test_backend_cupy_raises_with_the_reason(no_device):
    with pytest.raises(xcorr.BackendUnavailableError, match="cupy.is_available"):
        xcorr.corr2d(np.ones((4, 4)), np.ones((2, 2)), backend="cupy")
    with pytest.raises(xcorr.BackendUnavailableError, match="no CUDA device"):
        with xcorr.use_backend("cupy"):
            pass


def test_reason_when_cupy_is_missing(monkeypatch):
    # Load a private copy of the module with `import cupy` failing as it does when the
    # package is absent: the module must still import and say why it cannot run.
    monkeypatch.setitem(sys.modules, "cupy", None)
    spec = importlib.util.find_spec("xcorr.backends._cupy")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.cupy is None
    assert mod.unavailable_reason() == "cupy not installed"
    assert mod.version() is None


def test_this_machine_is_reported_consistently():
    reason = _cupy.unavailable_reason()
    if reason is None:
        assert "cupy" in xcorr.available_backends()
        assert xcorr.backend_info()["cupy"]["devices"]
    else:
        assert "cupy" not in xcorr.available_backends()
        with pytest.raises(xcorr.BackendUnavailableError, match=reason.split(":")[0]):
            xcorr.corr2d([[1.0, 2.0]], [[1.0]], backend="cupy")


def test_import_xcorr_does_not_import_cupy():
    import subprocess

    code = "import sys, xcorr; xcorr.corr2d([[1.0]], [[1.0]]); print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# -- on a GPU ---------------------------------------------------------------------------------

RNG = np.random.default_rng(4)


@pytest.fixture
def cp():
    return _cupy.cupy


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("kshape", [(1, 1), (3, 3), (4, 7), (15, 15)])
def test_direct_is_bit_identical_to_numpy(cp, dtype, mode, kshape):
    # Same taps, same order, no fused multiply-add (--fmad=false) on either side.
    x = RNG.standard_normal((2, 61, 47)).astype(dtype)
    k = RNG.standard_normal(kshape).astype(dtype)
    got = xcorr.corr2d(cp.asarray(x), cp.asarray(k), mode=mode, method="direct")
    assert isinstance(got, cp.ndarray) and got.dtype == dtype
    np.testing.assert_array_equal(got.get(), xcorr.corr2d(x, k, mode=mode, method="direct"))


@needs_gpu
@pytest.mark.parametrize("method", ["auto", "fft", "native"])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_methods_match_numpy(cp, method, mode):
    x = RNG.standard_normal((3, 70, 90))
    k = RNG.standard_normal((9, 6))
    got = xcorr.corr2d(cp.asarray(x, dtype=cp.float32), cp.asarray(k, dtype=cp.float32),
                       mode=mode, method=method)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.get(), xcorr.corr2d(x, k, mode=mode), rtol=1e-4, atol=1e-4)


@needs_gpu
def test_few_outputs_many_taps_path(cp):
    # The dL/dk shape: a big "kernel", a handful of outputs (the block-reduction kernel).
    x = RNG.standard_normal((2, 300, 260))
    g = RNG.standard_normal((298, 256))
    assert g.size >= _cupy._MANY_TAPS
    got = xcorr.corr2d(cp.asarray(x), cp.asarray(g), method="direct").get()
    np.testing.assert_allclose(got, xcorr.corr2d(x, g, method="direct"), rtol=1e-10,
                               atol=1e-9)


@needs_gpu
def test_integers_exact(cp):
    x = RNG.integers(-(2**40), 2**40, size=(2, 40, 33), dtype=np.int64)
    k = RNG.integers(-7, 8, size=(5, 5)).astype(np.int8)
    for method in ("auto", "direct"):
        got = xcorr.corr2d(cp.asarray(x), cp.asarray(k), mode="full", method=method)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got.get(), xcorr.corr2d(x, k, mode="full"))
    g = RNG.integers(-3, 4, size=(36, 29))  # block-reduction path, still exact
    np.testing.assert_array_equal(xcorr.corr2d(cp.asarray(x), cp.asarray(g)).get(),
                                  xcorr.corr2d(x, g))
    with pytest.raises(ValueError, match="exact"):
        xcorr.corr2d(cp.asarray(x), cp.asarray(k), method="fft")
    with pytest.raises(ValueError, match="exact"):
        xcorr.corr2d(cp.asarray(x), cp.asarray(k), method="native")


@needs_gpu
def test_nan_stays_local_with_auto(cp):
    x = RNG.standard_normal((600, 600))
    x[50, 60] = np.nan
    k = RNG.standard_normal((101, 101))
    # The premise: for finite data of this shape the cost model would take the FFT.
    assert choose(_cupy.costs(), x.shape, k.shape, 8, integer=False) in SPECTRAL
    got = xcorr.corr2d(cp.asarray(x), cp.asarray(k)).get()
    want = xcorr.corr2d(x, k, method="direct")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    with pytest.warns(RuntimeWarning, match="NaN"):
        xcorr.corr2d(cp.asarray(x), cp.asarray(k), method="fft")


@needs_gpu
def test_host_input_and_views(cp):
    base = RNG.standard_normal((40, 50))
    view = base[::-1, ::2]
    got = xcorr.corr2d(view, [[1.0, -2.0], [0.5, 3.0]], backend="cupy", method="direct")
    assert isinstance(got, cp.ndarray)
    want = xcorr.corr2d(np.ascontiguousarray(view), [[1.0, -2.0], [0.5, 3.0]],
                        method="direct")
    np.testing.assert_array_equal(got.get(), want)
    gview = cp.asarray(base)[::-1, ::2]
    np.testing.assert_array_equal(xcorr.corr2d(gview, cp.asarray([[1.0, -2.0], [0.5, 3.0]]),
                                               method="direct").get(), want)


@needs_gpu
def test_output_stays_on_the_input_device(cp):
    dev = cp.cuda.runtime.getDeviceCount() - 1  # the last GPU: not the default one if >1
    with cp.cuda.Device(dev):
        x = cp.asarray(RNG.standard_normal((30, 30)))
        k = cp.asarray(RNG.standard_normal((3, 3)))
    for method in ("direct", "fft", "native"):
        assert xcorr.corr2d(x, k, method=method).device.id == dev


@needs_gpu
def test_gradient_matches_numpy(cp):
    x = RNG.standard_normal((2, 30, 27))
    y = RNG.standard_normal((2, 28, 23))
    k = RNG.standard_normal((3, 5))
    loss, dk, db = _cupy.sse_value_and_grad(cp.asarray(x), cp.asarray(y), cp.asarray(k), 0.5)
    wl, wk, wb = _numpy.sse_value_and_grad(x, y, k, 0.5)
    np.testing.assert_allclose(float(loss), wl, rtol=1e-10)
    np.testing.assert_allclose(dk.get(), wk, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(float(db), wb, rtol=1e-10)


@needs_gpu
def test_torch_cuda_tensor_zero_copy(cp):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device (torch.cuda.is_available() is False)")
    t = torch.randn(20, 24, device="cuda")
    assert _cupy.asarray(t).data.ptr == t.data_ptr()  # shared memory, not a copy
    out = xcorr.corr2d(t, torch.ones(3, 3, device="cuda"), backend="cupy", method="direct")
    assert isinstance(out, cp.ndarray) and out.device.id == t.device.index
    want = xcorr.corr2d(t.cpu().numpy(), np.ones((3, 3), np.float32), method="direct")
    np.testing.assert_array_equal(out.get(), want)
    with pytest.raises(TypeError, match="detach"):
        xcorr.corr2d(t.requires_grad_(), np.ones((3, 3)), backend="cupy")


@needs_gpu
def test_jax_gpu_array_zero_copy(cp):
    jax = pytest.importorskip("jax", reason="jax is not installed")
    try:
        gpu = jax.devices("gpu")[0]
    except RuntimeError:
        pytest.skip("JAX has no GPU device (jax.devices('gpu') failed)")
    a = jax.device_put(np.arange(600, dtype=np.float32).reshape(20, 30), gpu)
    assert _cupy.asarray(a).data.ptr == a.unsafe_buffer_pointer()
    out = xcorr.corr2d(a, np.ones((2, 2), np.float32), backend="cupy", method="direct")
    assert isinstance(out, cp.ndarray)
    np.testing.assert_array_equal(out.get(), xcorr.corr2d(np.asarray(a), np.ones((2, 2),
                                                                                  np.float32)))


@needs_gpu
def test_dask_with_cupy_chunks(cp):
    da = pytest.importorskip("dask.array", reason="dask is not installed")
    x = RNG.standard_normal((64, 50)).astype(np.float32)
    k = RNG.standard_normal((5, 5)).astype(np.float32)
    xd = da.from_array(cp.asarray(x), chunks=(9, 17), asarray=False)
    out = xcorr.corr2d(xd, k, mode="same", method="direct")
    assert isinstance(out._meta, cp.ndarray)  # the chunk type survives
    got = out.compute(scheduler="sync")
    assert isinstance(got, cp.ndarray)
    np.testing.assert_array_equal(got.get(), xcorr.corr2d(x, k, mode="same", method="direct"))


def test_dispatch_knows_cupy_arrays_only_through_sys_modules():
    # Type detection never imports CuPy: a plain list is not a CuPy array.
    assert _dispatch.array_backend([1.0]) is None
