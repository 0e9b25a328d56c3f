"""The FFT methods: ``overlap`` (overlap-save over tiles) and ``fft`` on every backend.

Results are compared with a float64 oracle within ``xcorr.testing.error_bound`` (the FFT's
normwise bound holds for tiles too: a tile is smaller than the image).  Tile sizes are forced
through ``Cost.overlap_tile`` to reach every path of the tiling (one tile, a tile larger
than the image, the smallest legal tile, non-smooth sizes); the cost model's own choice is
tested too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import x64
from hypothesis import given, settings
from hypothesis import strategies as st

import xcorr
import xcorr.testing as xt
from xcorr import _fft, _methods
from xcorr._compat import jax_x64
from xcorr._dispatch import load

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(13)

# (H, W, kh, kw) with the kernel as large as the image, 1×1 kernels, primes, thin shapes.
SHAPES = [(1, 1, 1, 1), (7, 13, 7, 13), (17, 23, 1, 1), (31, 29, 5, 3), (64, 48, 11, 11),
          (40, 97, 2, 9), (23, 5, 4, 5), (53, 59, 13, 17)]
FLOATS = ["float16", "float32", "float64"]


# -- helpers -----------------------------------------------------------------------------------


def clear_jax() -> None:
    """Drop JAX's compiled programs: the tile is chosen while tracing, so a forced tile must
    not reach (or leave behind) a program cached for the same shapes."""
    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()


@pytest.fixture
def force_tile(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Any], None]]:
    """``force_tile(rule)``: every backend's overlap uses ``rule(h, w, kh, kw) -> (bh, bw)``."""
    def install(rule: Any) -> None:
        monkeypatch.setattr(_methods.Cost, "overlap_tile",
                            lambda self, h, w, kh, kw, threads=1: rule(h, w, kh, kw))
        clear_jax()

    yield install
    clear_jax()


def side(n: int, k: int, target: int) -> int:
    """A legal tile side near ``target``: steps reach the halo, else one tile of exactly n."""
    b = max(target, 2 * (k - 1), k)
    return n if b >= n else b


RULES = {
    "plan": None,  # the cost model's own choice
    "smallest": lambda h, w, kh, kw: (side(h, kh, 2), side(w, kw, 2)),
    "odd": lambda h, w, kh, kw: (side(h, kh, 2 * kh + 1), side(w, kw, 3 * kw)),
    "one tile": lambda h, w, kh, kw: (h, w),  # non-smooth transform sizes
    "beyond": lambda h, w, kh, kw: (h + 3, w + 5),  # a tile larger than the image
}


def oracle(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Valid correlation in float64, broadcasting k's leading dims against x's."""
    x, k = x.astype(np.float64), k.astype(np.float64)
    kh, kw = k.shape[-2:]
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(-2, -1))
    return np.einsum("...ijab,...ijab->...ij", win, k[..., None, None, :, :])


def bound(x: np.ndarray, k: np.ndarray, dtype: Any) -> np.ndarray:
    """error_bound of the FFT in ``dtype`` plus the oracle's own, per (image, kernel) pair."""
    lead = np.broadcast_shapes(x.shape[:-2], k.shape[:-2])
    xb = np.broadcast_to(x, lead + x.shape[-2:]).reshape(-1, *x.shape[-2:])
    kb = np.broadcast_to(k, lead + k.shape[-2:]).reshape(-1, *k.shape[-2:])
    parts = [xt.error_bound(a, b, "valid", dtype, method="fft")
             + xt.error_bound(a, b, "valid", np.float64) for a, b in zip(xb, kb, strict=True)]
    return np.stack(parts).reshape(*lead, *parts[0].shape)


def check(backend: str, x: np.ndarray, k: np.ndarray, method: str = "overlap") -> np.ndarray:
    """corr2d on ``backend`` against the oracle, within the bound; returns the result."""
    dtype = np.result_type(x.dtype, k.dtype)
    with x64(backend):
        out = xcorr.corr2d(x, k, method=method, backend=backend)
    assert str(out.dtype).endswith(dtype.name)  # torch.float16 too (as_numpy widens it)
    got = xt.as_numpy(out)
    xt.assert_within_bound(got, oracle(x, k), bound(x, k, dtype), f"{backend} {method}")
    return got


def data(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(dtype)


# -- agreement with the oracle -------------------------------------------------------------------


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_overlap_matches_oracle(backend: str, force_tile: Any, rule: str,
                                shape: tuple[int, int, int, int]) -> None:
    h, w, kh, kw = shape
    if RULES[rule] is not None:
        force_tile(RULES[rule])
    check(backend, data((2, h, w), "float64"), data((kh, kw), "float64"))


@pytest.mark.parametrize("dtype", FLOATS)
def test_overlap_dtypes(backend: str, force_tile: Any, dtype: str) -> None:
    force_tile(RULES["odd"])
    x, k = data((3, 45, 38), dtype), data((6, 5), dtype)
    check(backend, x, k)
    check(backend, x, k, method="fft")


def test_plan_uses_several_tiles(backend: str) -> None:
    """At a size where the model cuts the image into tiles, the result is still exact."""
    cost = _methods.for_itemsize(load(backend).costs(), 8)
    bh, bw = cost.overlap_tile(600, 500, 9, 9)
    assert bh < 600 or bw < 500, "premise: the model tiles this shape"
    check(backend, data((600, 500), "float64"), data((9, 9), "float64"))


# Kernel banks and per-channel kernels: k's leading dims broadcast against x's.
BROADCASTS = [((2, 3, 30, 26), (3, 5, 4)), ((30, 26), (4, 5, 4)), ((2, 1, 30, 26), (4, 5, 4)),
              ((3, 30, 26), (2, 1, 5, 4)), ((1, 30, 26), (1, 5, 4))]


@pytest.mark.parametrize("method", ["fft", "overlap"])
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
def test_broadcast_kernels(backend: str, force_tile: Any, method: str,
                           shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    force_tile(RULES["smallest"])
    xs, ks = shapes
    got = check(backend, data(xs, "float64"), data(ks, "float64"), method)
    assert got.shape == (*np.broadcast_shapes(xs[:-2], ks[:-2]), 26, 23)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), kh=st.integers(1, 40),
       kw=st.integers(1, 40), th=st.integers(1, 48), tw=st.integers(1, 48))
def test_tile_builders_agree(h: int, w: int, kh: int, kw: int, th: int, tw: int) -> None:
    """The reshape tiling (JAX) and the strided view (NumPy, torch, CuPy) cut the same tiles,
    and overlap_valid over them is the valid correlation."""
    kh, kw = min(kh, h), min(kw, w)
    tile = (side(h, kh, th), side(w, kw, tw))
    step = (tile[0] - kh + 1, tile[1] - kw + 1)
    count = (-(-(h - kh + 1) // step[0]), -(-(w - kw + 1) // step[1]))
    x = data((2, h, w), "float64")
    nb = load("numpy")
    view = nb._tiles(x, tile, step, count)
    cut = _fft.tiles_by_reshape(x, tile, step, count, nb.pad, np.concatenate)
    np.testing.assert_array_equal(view, cut)
    k = data((kh, kw), "float64")
    for extra in ({}, {"product": nb._product}):  # NumPy's kernel spectrum in column blocks
        got = _fft.overlap_valid(x, k, tile, nb.rfft2, nb.irfft2, nb._tiles, **extra)
        xt.assert_within_bound(got, oracle(x, k), bound(x, k, np.float64), "overlap_valid")


def test_reshape_tiling_refuses_a_halo_wider_than_the_step() -> None:
    x = np.zeros((20, 20))
    with pytest.raises(ValueError, match="halo"):
        _fft.tiles_by_reshape(x, (6, 6), (2, 2), (9, 9), load("numpy").pad, np.concatenate)


def test_inputs_are_not_mutated(backend: str, force_tile: Any) -> None:
    """The in-place spectrum products only ever touch spectra the method made itself."""
    force_tile(lambda h, w, kh, kw: (h, w))  # one tile, no padding: the tiles view x itself
    x, k = data((2, 32, 32), "float64"), data((5, 5), "float64")
    x0, k0 = x.copy(), k.copy()
    for method in ("fft", "overlap"):
        check(backend, x, k, method)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(k, k0)


def test_numpy_overlap_without_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy.fft stands in for scipy.fft (and keeps float32 in complex64)."""
    x, k = data((2, 70, 61), "float32"), data((7, 6), "float32")
    monkeypatch.setitem(sys.modules, "scipy.fft", None)
    for method in ("overlap", "fft"):
        check("numpy", x, k, method)


def test_integer_input_is_refused(backend: str) -> None:
    with pytest.raises(ValueError, match="exact"):
        xcorr.corr2d(np.ones((9, 9), dtype=np.int64), np.ones((3, 3), dtype=np.int64),
                     method="overlap", backend=backend)


# -- non-finite input --------------------------------------------------------------------------


def test_explicit_overlap_on_nan_warns(backend: str) -> None:
    x = data((40, 40), "float64")
    x[3, 4] = np.nan
    with x64(backend), pytest.warns(RuntimeWarning, match="overlap"):
        xt.as_numpy(xcorr.corr2d(x, data((5, 5), "float64"), method="overlap",
                                 backend=backend))


def overlap_model(monkeypatch: pytest.MonkeyPatch, backend: str, shape: tuple[int, ...],
                  kshape: tuple[int, int], itemsize: int) -> None:
    """Make ``auto`` pick overlap for this shape on ``backend``: the fitted model where it
    does, else the same constants with the tile terms cut tenfold (NumPy's fitted model takes
    overlap only from about 4096², see test_fitted_models_pick_overlap)."""
    be = load(backend)
    chunk = load("numpy") if backend == "dask" else be  # Dask's blocks use NumPy's model
    if hasattr(be, "costs_for"):  # torch on the CPU: the model of the kernels it runs there
        monkeypatch.setattr(be, "costs_for", lambda x, k: be.costs())
    if _methods.choose(be.costs(), shape, kshape, itemsize, False) != "overlap":
        cheap = {w: replace(c, tile_point=c.tile_point / 10, tile_pix=c.tile_pix / 10,
                            tile_fixed=0.0) for w, c in chunk.costs().items()}
        monkeypatch.setattr(chunk, "costs", lambda: cheap)
        clear_jax()  # JAX decides while tracing
    assert _methods.choose(be.costs(), shape, kshape, itemsize, False) == "overlap"


def spy(monkeypatch: pytest.MonkeyPatch, backend: str) -> list[str]:
    """The methods the backend's valid kernel is called with (Dask: its blocks' NumPy one)."""
    be = load("numpy" if backend == "dask" else backend)
    seen: list[str] = []
    real = be.corr2d_valid
    monkeypatch.setattr(be, "corr2d_valid", lambda a, b, m: seen.append(m) or real(a, b, m))
    return seen


def assert_nan_local(got: np.ndarray, x: np.ndarray, k: np.ndarray) -> None:
    kh, kw = k.shape
    want = np.zeros(got.shape, dtype=bool)
    for b, i, j in np.argwhere(np.isnan(x)):
        want[b, max(i - kh + 1, 0):i + 1, max(j - kw + 1, 0):j + 1] = True
    np.testing.assert_array_equal(np.isnan(got), want)


def test_auto_keeps_nan_local_where_overlap_would_win(backend: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    x, k = data((2, 160, 150), "float64"), data((9, 9), "float64")
    overlap_model(monkeypatch, backend, x.shape, k.shape, 8)
    x[1, 70, 100] = np.nan
    seen = spy(monkeypatch, backend)
    with x64(backend), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = xt.as_numpy(xcorr.corr2d(x, k, backend=backend))
    assert_nan_local(got, x, k)
    assert "overlap" not in seen or backend == "dask"  # Dask: clean blocks may take it
    if backend != "dask":
        x[1, 70, 100] = 0.0  # the same call on clean data does take overlap
        xt.as_numpy(xcorr.corr2d(x, k, backend=backend))
        assert seen[-1] == "overlap"


def test_jax_auto_under_jit_keeps_nan_local(monkeypatch: pytest.MonkeyPatch) -> None:
    jax = pytest.importorskip("jax")
    x, k = data((2, 160, 150), "float32"), data((9, 9), "float32")
    overlap_model(monkeypatch, "jax", x.shape, k.shape, 4)
    x[1, 70, 100] = np.nan
    got = np.asarray(jax.jit(xcorr.corr2d)(jax.numpy.asarray(x), jax.numpy.asarray(k)))
    assert_nan_local(got, x, k)
    clear_jax()


# -- auto --------------------------------------------------------------------------------------


def test_auto_runs_overlap_where_the_model_says(backend: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    x, k = data((8, 96, 100), "float32"), data((9, 9), "float32")
    overlap_model(monkeypatch, backend, x.shape, k.shape, 4)
    seen = spy(monkeypatch, backend)
    got = xt.as_numpy(xcorr.corr2d(x, k, backend=backend))
    assert seen and set(seen) == {"overlap"}
    xt.assert_within_bound(got, oracle(x, k), bound(x, k, np.float32), "auto")


@pytest.mark.parametrize(("name", "shape", "kshape", "itemsize"), [
    ("numpy", (4096, 4096), (31, 31), 8), ("numpy", (8, 512, 512), (21, 21), 4),
    ("torch", (400, 400), (9, 9), 4), ("torch", (2, 512, 512), (15, 15), 8),
    ("jax", (2048, 2048), (31, 31), 4)])
def test_fitted_models_pick_overlap(name: str, shape: tuple[int, ...], kshape: tuple[int, int],
                                    itemsize: int) -> None:
    """Where the fitted constants put overlap ahead of direct and the whole-image FFT."""
    costs = pytest.importorskip(f"xcorr.backends._{name}").COSTS
    assert _methods.choose(costs, shape, kshape, itemsize, False) == "overlap"


def test_auto_runs_overlap_on_a_fitted_choice() -> None:
    """The fitted torch model's own pick, end to end (no constants patched)."""
    torch = pytest.importorskip("torch")
    x, k = data((400, 400), "float32"), data((9, 9), "float32")
    assert _methods.choose(load("torch").costs(), x.shape, k.shape, 4, False) == "overlap"
    got = xcorr.corr2d(torch.from_numpy(x), torch.from_numpy(k))
    xt.assert_within_bound(got.numpy(), oracle(x, k), bound(x, k, np.float32), "auto")


def test_cost_model_offers_three_methods() -> None:
    cost = _methods.for_itemsize(load("numpy").costs(), 4)
    picks = {_methods.choose({4: cost}, (n, n), (kk, kk), 4, False)
             for n in (64, 1024, 4096) for kk in (3, 31)}
    assert "direct" in picks and picks & set(_methods.SPECTRAL)
    assert _methods.choose({4: cost}, (4096, 4096), (31, 31), 4, True) == "direct"


@pytest.mark.parametrize("name", ["numpy", "jax", "torch", "cupy"])
def test_tile_plan_is_legal(name: str) -> None:
    """Every planned side either spans the image or steps at least the halo."""
    costs = pytest.importorskip(f"xcorr.backends._{name}").COSTS.values()

    @settings(max_examples=100, deadline=None)
    @given(h=st.integers(1, 5000), w=st.integers(1, 5000), kh=st.integers(1, 300),
           kw=st.integers(1, 300))
    def prop(h: int, w: int, kh: int, kw: int) -> None:
        kh, kw = min(kh, h), min(kw, w)
        for cost in costs:
            for threads in (1, 2, 3):
                bh, bw = cost.overlap_tile(h, w, kh, kw, threads)
                assert bh >= h or bh - kh + 1 >= max(kh - 1, 1)
                assert bw >= w or bw - kw + 1 >= max(kw - 1, 1)
                assert bh >= kh and bw >= kw

    prop()


def test_tile_plan_for_threads() -> None:
    """A plan for tiles shared among threads (NumPy's overlap-save by parts) counts the
    threads' rounds: at 1024² with 64², 224-row strips (6, two rounds of two threads) instead
    of 256 (5, three rounds with one thread idle in the last); one thread keeps the plan."""
    cost = _methods.for_itemsize(load("numpy").COSTS, 4)
    assert cost.overlap_tile(1024, 1024, 64, 64) == (256, 1024)
    assert cost.overlap_tile(1024, 1024, 64, 64, 2) == (224, 1024)


def test_numpy_overlap_plans_for_its_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """NumPy's overlap-save asks for a plan for its threads where it goes by parts, and for
    one thread where all its tiles go in one batch."""
    be = load("numpy")
    asked: list[int] = []
    plan = _methods.Cost.overlap_tile

    def spy(self: Any, h: int, w: int, kh: int, kw: int, threads: int = 1) -> Any:
        asked.append(threads)
        return plan(self, h, w, kh, kw, threads)

    monkeypatch.setattr(_methods.Cost, "overlap_tile", spy)
    monkeypatch.setattr(be, "_thread_count", lambda: 3)
    be.corr2d_valid(data((1024, 1024), "float32"), data((31, 31), "float32"), "overlap")
    be.corr2d_valid(data((64, 64), "float32"), data((5, 5), "float32"), "overlap")
    assert asked == [3, 1]


def test_fft_len_is_memoised_without_lru_cache() -> None:
    """Dynamo warns about functools.lru_cache (issue 16): the memo is a plain dict."""
    assert not hasattr(_methods.fft_len, "cache_info")
    assert _methods.fft_len(1025) == 1080 and _methods._fft_lens[1025] == 1080


# -- autodiff ----------------------------------------------------------------------------------


def test_jax_jit_grad_vmap(force_tile: Any) -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    force_tile(RULES["odd"])
    with jax_x64(True):
        x, k = jnp.asarray(data((3, 41, 37), "float64")), jnp.asarray(data((6, 5), "float64"))
        eager = xcorr.corr2d(x, k, method="overlap")
        jitted = jax.jit(lambda a, b: xcorr.corr2d(a, b, method="overlap"))(x, k)
        np.testing.assert_allclose(jitted, eager, rtol=0, atol=1e-12)
        mapped = jax.vmap(lambda a: xcorr.corr2d(a, k, method="overlap"))(x)
        np.testing.assert_allclose(mapped, eager, rtol=0, atol=1e-12)
        g = jnp.asarray(data(eager.shape, "float64"))

        def loss(a: Any, b: Any, method: str) -> Any:
            return jnp.sum(g * xcorr.corr2d(a, b, method=method))

        for grad in (jax.grad, lambda f, **kw: jax.jit(jax.grad(f, **kw), static_argnums=2)):
            got = grad(loss, argnums=(0, 1))(x, k, "overlap")
            want = jax.grad(loss, argnums=(0, 1))(x, k, "direct")
            for a, b in zip(got, want, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kshape", [(4, 3), (3, 4, 3)], ids=["one kernel", "per channel"])
def test_torch_gradcheck(force_tile: Any, kshape: tuple[int, ...]) -> None:
    torch = pytest.importorskip("torch")
    force_tile(RULES["smallest"])  # several tiles in both axes
    x = torch.tensor(data((2, 3, 10, 9), "float64"), requires_grad=True)
    k = torch.tensor(data(kshape, "float64"), requires_grad=True)
    for method in ("overlap", "fft"):  # fast_mode: random projections of the Jacobian
        assert torch.autograd.gradcheck(
            lambda a, b, m=method: xcorr.corr2d(a, b, method=m), (x, k), fast_mode=True)
    # and the in-place product is only taken without grad
    with torch.no_grad():
        got = xcorr.corr2d(x, k, method="overlap")
    torch.testing.assert_close(got, xcorr.corr2d(x.detach(), k.detach(), method="direct"))


_COMPILE_SCRIPT = """
import json, warnings
import torch
import xcorr

def f(x, k, method):
    return xcorr.corr2d(x, k, method=method) * 2

x, k = torch.randn(2, 40, 36, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
report = {"warnings": [], "errors": {}}
with warnings.catch_warnings(record=True) as rec:
    warnings.simplefilter("always")
    for method in ("fft", "overlap", "auto"):
        torch._dynamo.reset()
        g = torch.compile(f, backend="eager")
        report["errors"][method] = float((g(x, k, method) - f(x, k, method)).abs().max())
report["warnings"] = [[w.filename, str(w.message)] for w in rec]
print(json.dumps(report))
"""


def test_torch_compile_raises_no_warning_about_xcorr() -> None:
    """Under torch.compile, nothing in xcorr's FFT path makes Dynamo warn (issue 16, defect
    8: functools.lru_cache in _methods.py and _fft.py).  A fresh process, so that nothing
    compiled or warned before hides it."""
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], cwd=ROOT, text=True,
                          capture_output=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(err < 1e-12 for err in report["errors"].values()), report["errors"]
    package = str(ROOT / "xcorr")
    ours = [w for w in report["warnings"] if w[0].startswith(package) or "xcorr" in w[1]
            or "_methods.py" in w[1] or "_fft.py" in w[1]]
    assert not ours, ours
