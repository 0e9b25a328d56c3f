"""Dispatch: backend resolution, the settings, errors, import hygiene and thread safety."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from conftest import to_np, unavailable

import xcorr
from xcorr._dispatch import BackendUnavailableError, array_backend

FRAMEWORKS = ("jax", "torch", "cupy", "dask", "numba", "scipy", "tensorflow")


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, check=False)


def test_import_loads_no_framework():
    proc = run_python("import sys, xcorr; xcorr.get_backend(); "
                      f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_env_default_and_unknown_env_warns():
    proc = run_python("import xcorr; print(xcorr.get_backend())", XCORR_BACKEND="torch")
    assert proc.stdout.strip() == "torch"
    proc = run_python("import warnings; warnings.simplefilter('always'); import xcorr; "
                      "print(xcorr.get_backend())", XCORR_BACKEND="tensorflow")
    assert proc.stdout.strip() == "numpy"
    assert "XCORR_BACKEND='tensorflow' is not a known backend" in proc.stderr


def test_unknown_backend_lists_names():
    with pytest.raises(ValueError, match="unknown backend 'tf'; choose one of numpy, jax, torch"):
        xcorr.corr2d([[1.0]], [[1.0]], backend="tf")
    with pytest.raises(ValueError, match="unknown backend"):
        xcorr.set_backend("tf")
    with pytest.raises(ValueError, match="unknown backend"):
        with xcorr.use_backend("tf"):
            pass


def test_use_backend_is_scoped_and_nests():
    assert xcorr.get_backend() == "numpy"
    with xcorr.use_backend("numpy") as name:
        assert name == "numpy"
    assert xcorr.get_backend() == "numpy"


@pytest.mark.parametrize("name", xcorr.BACKENDS)
def test_installed_frameworks_give_working_backends(name):
    """A backend module that fails to load while its framework is installed is a bug, not a skip."""
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name}: framework not installed")
    reason = unavailable(name)
    # No GPU: CuPy answers is_available() False, or (CuPy 13.0 without a CUDA driver) raises
    # cudaErrorInsufficientDriver, which the backend reports as "CUDA unusable".
    if name == "cupy" and reason and ("is_available() is False" in reason
                                      or "CUDA unusable" in reason):
        pytest.skip(f"cupy: no usable CUDA device ({reason})")
    assert reason is None
    assert name in xcorr.available_backends()


def test_backend_info_shape():
    info = xcorr.backend_info()
    assert tuple(info) == xcorr.BACKENDS
    assert info["numpy"]["available"] and info["numpy"]["version"] == np.__version__
    for name, entry in info.items():
        assert set(entry) == {"installed", "available", "version", "devices", "reason"}
        assert entry["available"] == (name in xcorr.available_backends())
        assert entry["available"] or entry["reason"]


def test_unusable_backend_error_says_how_to_fix(monkeypatch):
    import xcorr._dispatch as d

    monkeypatch.delitem(d._modules, "jax", raising=False)  # not loaded yet...
    monkeypatch.setitem(sys.modules, "xcorr.backends._jax", None)  # ...and its import fails
    with pytest.raises(BackendUnavailableError, match=r'pip install "xcorr\[jax\]"'):
        xcorr.corr2d([[1.0]], [[1.0]], backend="jax")


def test_detection_of_plain_inputs():
    assert array_backend(np.ones(2)) == "numpy"
    assert array_backend(np.float32(1)) == "numpy"
    assert array_backend([[1.0]]) is None
    assert array_backend(3.0) is None


def needs(*names: str) -> pytest.MarkDecorator:
    reasons = [f"{n}: {unavailable(n)}" for n in names if unavailable(n)]
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons) or "available")


@needs("torch")
def test_framework_input_picks_its_backend_over_the_setting():
    import torch

    with xcorr.use_backend("numpy"):
        y = xcorr.corr2d(torch.ones(4, 4), np.ones((2, 2)))
    assert isinstance(y, torch.Tensor)


@needs("torch", "jax")
def test_two_frameworks_raise():
    import jax.numpy as jnp
    import torch

    with pytest.raises(TypeError, match="different frameworks \\(jax and torch\\)"):
        xcorr.corr2d(torch.ones(4, 4), jnp.ones((2, 2)))


@needs("torch")
def test_explicit_backend_converts_host_arrays():
    import torch

    y = xcorr.corr2d(torch.ones(4, 4, dtype=torch.float64), [[1.0, 2.0]], backend="numpy")
    assert isinstance(y, np.ndarray) and (y == 3).all()
    with pytest.raises(TypeError, match="requires grad"):
        xcorr.corr2d(torch.ones(4, 4, requires_grad=True), [[1.0]], backend="numpy")


def test_sparse_inputs_are_refused_with_the_conversion_to_make():
    """A SciPy sparse matrix read by NumPy as one object ("dtype object, not a number type"),
    and torch's sparse tensors failed in torch ("reshape is not implemented for sparse
    tensors") or NumPy: each now says what to call."""
    sparse = pytest.importorskip("scipy.sparse", reason="scipy: not installed")
    m = sparse.random(6, 8, density=0.5, format="csr", random_state=0)
    calls = (lambda a, **kw: xcorr.corr2d(a, [[1.0, 2.0]], **kw),
             lambda a, **kw: xcorr.match_template(a, [[1.0, 2.0]], **kw),
             lambda a, **kw: xcorr.pool2d(a, 2, **kw),
             lambda a, **kw: xcorr.local_ncc(a, a, 3, **kw))
    for call in calls:
        for obj in (m, sparse.csr_array(m)):
            with pytest.raises(TypeError, match=r"SciPy sparse .*call \.toarray\(\) first"):
                call(obj)
    if importlib.util.find_spec("torch") is None:
        return
    import torch

    t = torch.from_numpy(m.toarray())
    with warnings.catch_warnings():  # torch: "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        csr = t.to_sparse_csr()
    for layout in (t.to_sparse(), csr):
        for backend in ("torch", "numpy"):
            for call in calls:
                with pytest.raises(TypeError, match=r"layout torch\.sparse.*\.to_dense\(\)"):
                    call(layout, backend=backend)
        # after a dense call of the same shape and dtype: the dispatch cache skipped the check
        k = torch.ones(1, 2, dtype=t.dtype)
        xcorr.corr2d(t, k)
        with pytest.raises(TypeError, match=r"layout torch\.sparse.*\.to_dense\(\)"):
            xcorr.corr2d(layout, k)


def test_threads_with_mixed_backends():
    """8 threads, each in its own use_backend context, hammer corr2d at once (einops #279/#391)."""
    names = [n for n in ("numpy", "torch", "jax", "dask") if not unavailable(n)]
    x = np.arange(30.0).reshape(5, 6)
    k = np.array([[1.0, -1.0], [0.5, 2.0]])
    want = xcorr.reference.corr2d(x, k)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(i: int) -> None:
        name = names[i % len(names)]
        try:
            start.wait()
            with xcorr.use_backend(name):
                for _ in range(25):
                    assert xcorr.get_backend() == name
                    y = xcorr.corr2d(x, k)
                    assert type(y).__module__.split(".")[0].startswith(
                        {"numpy": "numpy", "torch": "torch", "jax": "jax", "dask": "dask"}[name])
                    np.testing.assert_allclose(to_np(y), want, rtol=1e-6)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert xcorr.get_backend() == "numpy"


def test_set_backend_is_the_process_default():
    try:
        xcorr.set_backend("numpy")
        assert xcorr.get_backend() == "numpy"
    finally:
        xcorr.set_backend("numpy")


def test_plan_cache_keeps_every_rule():
    """Repeat calls skip re-validation only for the same types, shapes, dtypes and settings."""
    x, k = np.ones((6, 8)), np.array([[1.0, -1.0]])
    first = xcorr.corr2d(x, k)
    assert (xcorr.corr2d(x, k) == first).all()  # the cached path gives the same answer
    with pytest.raises(ValueError, match="kernel width 2 exceeds image width 1"):
        xcorr.corr2d(np.ones((6, 1)), k)
    nan = x.copy()
    nan[0, 0] = np.nan
    assert np.isnan(xcorr.corr2d(nan, k)[0, 0]) and not np.isnan(xcorr.corr2d(nan, k)[0, 1:]).any()
    for name in ("torch", "jax"):
        if unavailable(name) is None:
            with xcorr.use_backend(name):
                assert type(xcorr.corr2d(x, k)).__module__.split(".")[0] in (name, "jaxlib")
    assert isinstance(xcorr.corr2d(x, k), np.ndarray)
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):
        xcorr.corr2d(nan, k, method="fft")
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):  # explicit FFT is never cached
        xcorr.corr2d(nan, k, method="fft")


def test_plan_cache_never_admits_what_the_checks_refuse():
    """Settings equal to valid ones but of another type (``(False, True) == (0, 1)``) are
    refused every time, not only before a plan for the valid ones is cached."""
    x, k = np.ones((4, 4)), np.ones((2, 2))
    for _ in range(2):
        with pytest.raises(ValueError, match="axes must be two integers"):
            xcorr.corr2d(x, k, axes=(False, True))
        xcorr.corr2d(x, k, axes=(0, 1))  # cached from the first round on


def test_plan_cache_sees_devices_and_conversions():
    """A cached plan is only reused for inputs that reached the kernel untouched."""
    with pytest.warns(PendingDeprecationWarning):
        m = np.matrix(np.arange(12.0).reshape(3, 4))  # a subclass: converted, never cached
    want = np.asarray(xcorr.reference.corr2d(np.asarray(m), np.ones((2, 2))))
    for _ in range(2):
        got = xcorr.corr2d(m, np.ones((2, 2)))
        assert type(got) is np.ndarray and (got == want).all()
    if unavailable("torch") is None:
        import torch

        x, k = torch.ones(6, 8), torch.ones(1, 2)
        xcorr.corr2d(x, k)
        xcorr.corr2d(x, k)  # cached for CPU tensors
        out = xcorr.corr2d(x, k.to("meta"))  # same types, shapes and dtypes, other device
        assert out.device.type == "meta" and tuple(out.shape) == (6, 7)
