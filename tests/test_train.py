"""The trainer: analytic gradients against finite differences, the seed reproduced on every
backend, identical trajectories across backends, and the input rules."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import to_np

import xcorr
from xcorr import _grad
from xcorr._compat import jax_x64
from xcorr._dispatch import array_backend, load
from xcorr.train import LearnResult, hessian_max_eigenvalue, learn_kernel

EDGE = np.array([[1.0, -1.0]])


def edge_image() -> np.ndarray:
    x = np.ones((6, 8))
    x[:, 2:6] = 0
    return x


@contextlib.contextmanager
def float64_on(backend: str) -> Iterator[None]:
    """Let ``backend`` compute in float64 inside the block (JAX needs x64, enabled scoped)."""
    if backend == "jax":
        with jax_x64(True):
            yield
    else:
        yield


# -- the analytic gradient (NumPy, float64) against central finite differences ----------------


def central_difference(f, a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``df/da`` by central differences, one element of ``a`` at a time."""
    out = np.empty_like(a)
    for idx in np.ndindex(a.shape):
        up, down = a.copy(), a.copy()
        up[idx] += eps
        down[idx] -= eps
        out[idx] = (f(up) - f(down)) / (2 * eps)
    return out


@pytest.fixture
def problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch of two 5x7 images, a 3x2 kernel and an upstream gradient of the output's shape."""
    rng = np.random.default_rng(1)
    return rng.normal(size=(2, 5, 7)), rng.normal(size=(3, 2)), rng.normal(size=(2, 3, 6))


def test_grad_k_matches_finite_differences(problem) -> None:
    x, k, g = problem
    be = load("numpy")
    numeric = central_difference(lambda kk: float((g * xcorr.corr2d(x, kk)).sum()), k)
    np.testing.assert_allclose(_grad.grad_k(be, x, g), numeric, rtol=1e-7, atol=1e-8)


def test_grad_x_matches_finite_differences(problem) -> None:
    x, k, g = problem
    be = load("numpy")
    numeric = central_difference(lambda xx: float((g * xcorr.corr2d(xx, k)).sum()), x)
    np.testing.assert_allclose(_grad.grad_x(be, k, g), numeric, rtol=1e-7, atol=1e-8)


def test_sse_value_and_grad_matches_finite_differences(problem) -> None:
    x, k, _ = problem
    y = np.random.default_rng(2).normal(size=(2, 3, 6))
    b = 0.3
    be = load("numpy")

    def loss(kk: np.ndarray, bb: float) -> float:
        return float(((xcorr.corr2d(x, kk) + bb - y) ** 2).sum())

    value, dk, db = be.sse_value_and_grad(x, y, k, np.float64(b))
    assert float(value) == pytest.approx(loss(k, b), rel=1e-12)
    np.testing.assert_allclose(dk, central_difference(lambda kk: loss(kk, b), k), rtol=1e-7)
    numeric_db = central_difference(lambda bb: loss(k, float(bb[0])), np.array([b]))[0]
    assert float(db) == pytest.approx(numeric_db, rel=1e-7)
    _, dk0, db0 = be.sse_value_and_grad(x, y, k, None)
    assert db0 is None
    np.testing.assert_allclose(dk0, central_difference(lambda kk: loss(kk, 0.0), k), rtol=1e-7)


# -- the seed, on every backend ----------------------------------------------------------------


def test_seed_loss_drops_fivefold(backend: str) -> None:
    x = edge_image()
    r = learn_kernel(x, xcorr.corr2d(x, EDGE), (1, 2), backend=backend, lr=3e-2, epochs=10)
    assert isinstance(r, LearnResult)
    assert r.backend == backend
    assert array_backend(r.kernel) == backend
    assert r.bias is None
    assert len(r.losses) == 10 and all(type(v) is float for v in r.losses)
    assert r.losses[9] < r.losses[1] / 5
    assert all(a > b for a, b in zip(r.losses, r.losses[1:], strict=False))


def test_seed_learns_vertical_edge(backend: str) -> None:
    x = edge_image()
    r = learn_kernel(x, xcorr.corr2d(x, EDGE), (1, 2), backend=backend, epochs=60)
    np.testing.assert_allclose(to_np(r.kernel), EDGE, atol=0.02)


def test_learns_horizontal_edge_on_transposed_image(backend: str) -> None:
    x = edge_image().T
    r = learn_kernel(x, xcorr.corr2d(x, EDGE.T), (2, 1), backend=backend, epochs=60)
    np.testing.assert_allclose(to_np(r.kernel), EDGE.T, atol=0.02)


def test_learns_3x3_kernel_and_bias_from_random_data(backend: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 12, 10)).astype(np.float32)
    truth = rng.normal(size=(3, 3)).astype(np.float32)
    y = xcorr.corr2d(x, truth) + np.float32(0.5)
    r = learn_kernel(x, y, (3, 3), backend=backend, lr=3e-3, epochs=30, bias=True)
    np.testing.assert_allclose(to_np(r.kernel), truth, atol=1e-4)
    assert float(to_np(r.bias)) == pytest.approx(0.5, abs=1e-4)
    assert r.losses[-1] < 1e-10 * r.losses[0]


# -- one trajectory, every backend ------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float32, 1e-4), (np.float64, 1e-9)])
def test_trajectories_agree_across_backends(backend: str, dtype, rtol: float) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(9, 11)).astype(dtype)
    y = (xcorr.corr2d(x, rng.normal(size=(2, 3))) + 0.25).astype(dtype)
    # 10 epochs take the loss from 177 to 7e-3: residuals stay far above float32 rounding of
    # the predictions, where relative agreement of the loss would be meaningless.
    kwargs = dict(lr=5e-3, epochs=10, bias=True, seed=7)
    ref = learn_kernel(x, y, (2, 3), backend="numpy", **kwargs)
    with float64_on(backend) if dtype == np.float64 else contextlib.nullcontext():
        got = learn_kernel(x, y, (2, 3), backend=backend, **kwargs)
        kernel, bias = to_np(got.kernel), to_np(got.bias)
    assert kernel.dtype == dtype
    # The losses fall by four orders of magnitude; each must agree to rtol of its own size.
    np.testing.assert_allclose(got.losses, ref.losses, rtol=rtol)
    np.testing.assert_allclose(kernel, ref.kernel, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(bias, ref.bias, rtol=rtol, atol=rtol)


# -- behaviour ----------------------------------------------------------------------------------


def test_default_init_is_the_seeded_uniform_draw() -> None:
    x = edge_image()
    y = xcorr.corr2d(x, EDGE)
    bound = 1 / math.sqrt(2)
    init = np.random.default_rng(5).uniform(-bound, bound, (1, 2))
    assert (learn_kernel(x, y, (1, 2), seed=5, epochs=3).losses
            == learn_kernel(x, y, (1, 2), init=init, epochs=3).losses)
    assert (learn_kernel(x, y, (1, 2), seed=5, epochs=1).losses
            != learn_kernel(x, y, (1, 2), seed=6, epochs=1).losses)


def test_explicit_init_is_used_and_not_mutated() -> None:
    x = edge_image()
    y = xcorr.corr2d(x, EDGE)
    init = np.array([[0.5, -0.25]])
    before = init.copy()
    r = learn_kernel(x, y, (1, 2), init=init, epochs=5)
    assert r.losses[0] == pytest.approx(float(((xcorr.corr2d(x, init) - y) ** 2).sum()),
                                        rel=1e-15)
    np.testing.assert_array_equal(init, before)
    r_list = learn_kernel(x, y, (1, 2), init=[[0.5, -0.25]], epochs=5)
    assert r_list.losses == r.losses


def test_torch_parameters_and_inference_tensors() -> None:
    """An ``nn.Parameter`` init: the learnt kernel came back requiring grad, on a graph
    through every epoch back to the caller's Parameter; now a plain tensor, the Parameter
    untouched.  Data made under ``torch.inference_mode`` (or training called inside it)
    raised "Inference tensors cannot be saved for backward"."""
    torch = pytest.importorskip("torch", reason="torch: not installed (the 'torch' extra)")
    x = torch.from_numpy(edge_image())
    y = xcorr.corr2d(x, torch.from_numpy(EDGE))
    init = torch.nn.Parameter(torch.tensor([[0.5, -0.25]], dtype=torch.float64))
    want = learn_kernel(x, y, (1, 2), init=[[0.5, -0.25]], epochs=5)
    r = learn_kernel(x, y, (1, 2), init=init, epochs=5)
    assert not r.kernel.requires_grad and r.kernel.grad_fn is None and init.grad is None
    assert init.tolist() == [[0.5, -0.25]]
    assert r.losses == want.losses
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()
        inside = learn_kernel(xi, yi, (1, 2), init=[[0.5, -0.25]], epochs=5, bias=True)
    outside = learn_kernel(xi, yi, (1, 2), init=[[0.5, -0.25]], epochs=5, bias=True)
    assert inside.losses == outside.losses
    assert outside.losses[:1] == want.losses[:1]


def test_init_takes_part_in_choosing_the_backend() -> None:
    """init was left out: a torch init with NumPy data gave NumPy, a JAX init with torch data
    was converted silently, and torch data with JAX targets were "x and k" in the error."""
    torch = pytest.importorskip("torch", reason="torch: not installed (the 'torch' extra)")
    x = edge_image()
    y = xcorr.corr2d(x, EDGE)
    r = learn_kernel(x, y, (1, 2), init=torch.tensor([[0.5, -0.25]]), epochs=2)
    assert r.backend == "torch" and isinstance(r.kernel, torch.Tensor)
    jnp = pytest.importorskip("jax.numpy", reason="jax: not installed (the 'jax' extra)")
    with pytest.raises(TypeError, match="x and init belong to different frameworks"):
        learn_kernel(torch.from_numpy(x), torch.from_numpy(y), (1, 2),
                     init=jnp.asarray([[0.5, -0.25]]), epochs=2)
    with pytest.raises(TypeError, match="x and y belong to different frameworks"):
        learn_kernel(torch.from_numpy(x), jnp.asarray(y), (1, 2), epochs=2)


def test_batch_loss_is_summed() -> None:
    x = np.stack([edge_image(), 1 - edge_image(), edge_image()[::-1, ::-1] * 2])
    y = xcorr.corr2d(x, EDGE)
    init = np.array([[0.3, 0.1]])
    per_image = [learn_kernel(x[i], y[i], (1, 2), init=init, epochs=1).losses[0]
                 for i in range(3)]
    r = learn_kernel(x, y, (1, 2), init=init, epochs=40, lr=3e-3)
    assert r.losses[0] == pytest.approx(sum(per_image), rel=1e-12)
    np.testing.assert_allclose(r.kernel, EDGE, atol=0.02)
    x4 = x.reshape(3, 1, 6, 8)  # two batch dimensions
    r4 = learn_kernel(x4, y.reshape(3, 1, 6, 7), (1, 2), init=init, epochs=40, lr=3e-3)
    np.testing.assert_allclose(r4.losses, r.losses, rtol=1e-12)


def test_dtypes() -> None:
    x = edge_image()
    y = xcorr.corr2d(x, EDGE)
    # NumPy 1.x promotes a float32 scalar times a Python float to float64: the bias must not.
    r32 = learn_kernel(x.astype(np.float32), y.astype(np.float32), (1, 2), bias=True, lr=5e-3)
    assert r32.kernel.dtype == np.float32 and np.asarray(r32.bias).dtype == np.float32
    # integer data trains in the backend's default float
    rint = learn_kernel(x.astype(np.int64), y.astype(np.int32), (1, 2))
    assert rint.kernel.dtype == np.float64
    assert rint.losses == learn_kernel(x, y, (1, 2)).losses


def test_callback_sees_every_epoch() -> None:
    seen = []
    x = edge_image()
    r = learn_kernel(x, xcorr.corr2d(x, EDGE), (1, 2), epochs=4,
                     callback=lambda epoch, loss: seen.append((epoch, loss)))
    assert seen == list(enumerate(r.losses, start=1))


def test_divergence_names_the_epoch_and_suggests_a_smaller_lr(backend: str) -> None:
    x = edge_image()
    with pytest.raises(FloatingPointError, match=r"at epoch \d+ .*smaller lr"):
        learn_kernel(x, xcorr.corr2d(x, EDGE), (1, 2), backend=backend, lr=5.0, epochs=500)


def design_matrix(x: np.ndarray, kernel_shape: tuple[int, int], bias: bool) -> np.ndarray:
    """One row per output of the valid correlation: its window of ``x``, then a 1 (bias)."""
    windows = np.lib.stride_tricks.sliding_window_view(x, kernel_shape, axis=(-2, -1))
    rows = windows.reshape(-1, kernel_shape[0] * kernel_shape[1])
    return np.hstack([rows, np.ones((len(rows), 1))]) if bias else rows


def exact_curvature(x: np.ndarray, kernel_shape: tuple[int, int], bias: bool) -> float:
    """The largest eigenvalue of the loss's Hessian ``2 AᵀA``, from the explicit Gram matrix."""
    a = design_matrix(x, kernel_shape, bias)
    return float(np.linalg.eigvalsh(2 * a.T @ a).max())


def test_seed_with_a_bias_diverges_early_and_the_error_gives_a_stable_lr(backend: str) -> None:
    """Issue 16, defect 2: this ran all 10 epochs to a loss of 1.5e7 and returned."""
    x = edge_image()
    y = xcorr.corr2d(x, EDGE)
    with pytest.raises(FloatingPointError) as info:
        learn_kernel(x, y, (1, 2), backend=backend, epochs=10, bias=True)
    message = str(info.value)
    # 6.84 at epoch 1, 3.6e4 at 7, 2.6e5 at 8: the first past 1e4 times the start
    assert re.match(r"the loss grew from 6\.839 to 2\.649e\+05 \(more than 10,000-fold\) at "
                    r"epoch 8 with lr=0\.03: gradient descent diverged", message), message
    limit = 2 / exact_curvature(x, (1, 2), bias=True)  # 0.0161
    assert f"converges only for lr < {limit:.3g} " in message
    suggested = float(re.search(r"e\.g\. lr=(\S+)$", message)[1])
    assert suggested == 0.005  # half the limit, rounded down to 1, 2 or 5 times a power of 10
    r = learn_kernel(x, y, (1, 2), backend=backend, epochs=200, bias=True, lr=suggested)
    assert all(a >= b for a, b in zip(r.losses, r.losses[1:], strict=False))
    np.testing.assert_allclose(to_np(r.kernel), EDGE, atol=0.02)


@pytest.mark.parametrize(("kernel_shape", "bias"), [((3, 2), False), ((3, 2), True),
                                                     ((8, 8), True), ((9, 8), False)])
def test_hessian_max_eigenvalue_matches_the_gram_matrix(backend: str, kernel_shape, bias) -> None:
    """Up to 65 parameters the whole Hessian (exact), beyond a power iteration (9x8)."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 12, 10)) + 0.5
    kh, kw = kernel_shape
    be = load(backend)
    xb, yb = be.asarray(x), be.asarray(np.zeros((2, 13 - kh, 11 - kw)))
    kb, bb = be.asarray(np.zeros(kernel_shape)), be.asarray(np.zeros(())) if bias else None
    got = hessian_max_eigenvalue(be, xb, yb, kb, bb)
    # float32 where the backend computes in it (JAX without x64): the estimate is that good
    assert got == pytest.approx(exact_curvature(x, kernel_shape, bias), rel=1e-4)


def test_hessian_max_eigenvalue_of_another_model() -> None:
    """The helper takes the model's loss and gradient: a model with twice the output (four
    times the loss) has four times the curvature."""
    be = load("numpy")
    x = np.random.default_rng(9).normal(size=(8, 9))

    def doubled(x, y, k, b):  # loss and gradient of sum((2 corr2d(x, k) + 2 b - y)**2) at y=0
        loss, dk, db = be.sse_value_and_grad(x, y, k, b)
        return 4 * loss, 4 * dk, None if db is None else 4 * db

    got = hessian_max_eigenvalue(be, x, np.zeros((7, 7)), np.zeros((2, 3)), np.zeros(()),
                                 value_and_grad=doubled)
    assert got == pytest.approx(4 * exact_curvature(x, (2, 3), bias=True), rel=1e-12)


def test_hessian_of_all_zero_data_is_zero() -> None:
    be = load("numpy")
    assert hessian_max_eigenvalue(be, np.zeros((4, 4)), np.zeros((3, 3)), np.zeros((2, 2)),
                                  None) == 0.0


def test_nonfinite_first_loss_blames_the_data_not_lr() -> None:
    x = edge_image()
    y = xcorr.corr2d(x, EDGE)
    y[2, 3] = np.nan
    with pytest.raises(FloatingPointError, match=r"the loss is nan at epoch 1, before any "
                       r"update: x, y or init hold NaN/Inf.*lr is not the cause"):
        learn_kernel(x, y, (1, 2))


def test_arguments_that_python_would_take_are_refused_clearly() -> None:
    x = edge_image()
    y = xcorr.corr2d(x, EDGE)
    with pytest.raises(TypeError, match="callback must be a function"):  # not after epoch 1
        learn_kernel(x, y, (1, 2), callback=5)
    with pytest.raises(TypeError, match="bias must be True or False, got 'no'"):
        learn_kernel(x, y, (1, 2), bias="no")  # truthy: it trained a bias
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        learn_kernel(x, y, (1, 2), seed=True)  # NumPy took it as the seed 1
    # a 0-d array is a number, as local_ncc's eps is
    assert learn_kernel(x, y, (1, 2), lr=np.array(0.03)).losses == \
        learn_kernel(x, y, (1, 2), lr=0.03).losses


def test_divergence_in_the_last_update_is_caught(backend: str) -> None:
    x = edge_image()
    # The first loss is finite; the kernel only overflows in the update after it (on Dask
    # too, whose all_finite cannot tell without computing).
    with float64_on(backend):
        y = xcorr.corr2d(x, EDGE)
        with pytest.raises(FloatingPointError, match="the kernel became NaN/Inf at epoch 1 "):
            learn_kernel(x, y, (1, 2), lr=1e308, epochs=1, backend=backend)
        with pytest.raises(FloatingPointError, match="the kernel became NaN/Inf at epoch 1 "):
            learn_kernel(x, y, (1, 2), lr=1e308, epochs=1, bias=True, backend=backend)


@pytest.mark.parametrize("shape", [(1,), (1, 2, 3), (0, 2), (1, -1), (1.0, 2), (True, 2), "ab",
                                   None])
def test_bad_kernel_shape(shape) -> None:
    x = edge_image()
    with pytest.raises(ValueError, match="kernel_shape must be two positive integers"):
        learn_kernel(x, xcorr.corr2d(x, EDGE), shape)


@pytest.mark.parametrize("lr", [0, -1e-3, float("nan"), float("inf"), "0.1", True])
def test_bad_lr(lr) -> None:
    x = edge_image()
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        learn_kernel(x, xcorr.corr2d(x, EDGE), (1, 2), lr=lr)


@pytest.mark.parametrize("epochs", [0, -3, 2.5, True, "10"])
def test_bad_epochs(epochs) -> None:
    x = edge_image()
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        learn_kernel(x, xcorr.corr2d(x, EDGE), (1, 2), epochs=epochs)


@pytest.mark.parametrize("seed", [-1, "0", 1.5])
def test_bad_seed(seed) -> None:
    """NumPy's own message ("expected non-negative integer") named no argument."""
    x = edge_image()
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        learn_kernel(x, xcorr.corr2d(x, EDGE), (1, 2), seed=seed)


def test_shapes_that_cannot_match() -> None:
    x = edge_image()
    y = xcorr.corr2d(x, EDGE)
    with pytest.raises(ValueError, match=r"y has shape \(6, 7\).*has shape \(6, 6\)"):
        learn_kernel(x, y, (1, 3))
    with pytest.raises(ValueError, match="same batch dimensions"):
        learn_kernel(np.stack([x, x]), y, (1, 2))
    with pytest.raises(ValueError, match="does not fit in images of size 6x8"):
        learn_kernel(x, y, (7, 2))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        learn_kernel(x[0], y[0], (1, 2))
    with pytest.raises(ValueError, match=r"init has shape \(2, 1\)"):
        learn_kernel(x, y, (1, 2), init=[[1.0], [2.0]])
    with pytest.raises(TypeError, match="complex"):
        learn_kernel(x, y.astype(complex), (1, 2))


def test_traced_inputs_are_refused_with_advice() -> None:
    """Under jax.jit the loop's float(loss) raised JAX's ConcretizationTypeError; now a
    TypeError names the argument and says to call learn_kernel outside the transformation."""
    jax = pytest.importorskip("jax", reason="JAX not installed")
    x = edge_image()
    y = np.asarray(xcorr.corr2d(x, EDGE))
    for name, run in (("x", lambda a: learn_kernel(a, y, (1, 2)).kernel),
                      ("y", lambda a: learn_kernel(x, a, (1, 2)).kernel),
                      ("init", lambda a: learn_kernel(x, y, (1, 2), init=a[:1, :2]).kernel)):
        arg = y if name == "y" else x
        with pytest.raises(TypeError, match=f"^{name} is a traced JAX value.*outside them"):
            jax.jit(run)(arg)


# -- convolution layers (issue 14): 4-D kernel shapes ------------------------------------------


def test_four_d_seed_follows_the_two_d_trajectory() -> None:
    """(1, 1, 1, 2) is the seed's kernel as a layer: same start (fan_in 2), same losses."""
    x = edge_image()
    y = xcorr.corr2d(x, EDGE)
    flat = learn_kernel(x, y, (1, 2), epochs=12)
    layer = learn_kernel(x[None, None], y[None, None], (1, 1, 1, 2), epochs=12)
    np.testing.assert_allclose(layer.losses, flat.losses, rtol=1e-12)
    np.testing.assert_allclose(layer.kernel.reshape(1, 2), flat.kernel, rtol=1e-12)


def _layer_problem() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(7)
    kw = {"stride": (1, 2), "padding": ((1, 0), (1, 1)), "groups": 2,
          "padding_mode": "replicate"}
    w = rng.uniform(-1, 1, (4, 2, 2, 3))
    b = np.array([0.5, -1.0, 0.25, 2.0])
    x = rng.normal(size=(3, 4, 7, 8))
    return x, xcorr.conv2d(x, w, b, **kw), w, b, kw


def test_learns_a_grouped_strided_layer_on_every_backend(backend: str) -> None:
    x, y, w, b, kw = _layer_problem()
    with float64_on(backend):
        r = learn_kernel(x, y, w.shape, bias=True, lr=4e-3, epochs=400, backend=backend, **kw)
    assert r.backend == backend
    assert tuple(r.bias.shape) == (4,)
    np.testing.assert_allclose(to_np(r.kernel), w, atol=1e-3)
    np.testing.assert_allclose(to_np(r.bias), b, atol=1e-3)


def test_layer_trajectories_agree_across_backends(backend: str) -> None:
    x, y, w, _, kw = _layer_problem()
    want = learn_kernel(x, y, w.shape, bias=True, lr=4e-3, epochs=15, **kw)
    with float64_on(backend):
        got = learn_kernel(x, y, w.shape, bias=True, lr=4e-3, epochs=15, backend=backend, **kw)
    np.testing.assert_allclose(got.losses, want.losses, rtol=1e-9)
    np.testing.assert_allclose(to_np(got.kernel), want.kernel, rtol=1e-9, atol=1e-12)


def test_layer_default_init_uses_pytorchs_fan_in() -> None:
    x, y, w, _, kw = _layer_problem()
    r = learn_kernel(x, y, w.shape, lr=1e-9, epochs=1, **kw)
    bound = 1 / math.sqrt(2 * 2 * 3)  # C_in // groups · kh · kw
    start = np.random.default_rng(0).uniform(-bound, bound, w.shape)
    # after one step of lr=1e-9 the kernel is within lr·|gradient| of where it started
    assert np.abs(r.kernel - start).max() < 1e-6
    assert np.abs(start).max() > bound / 2  # the draw used the fan-in bound, not kh·kw's


def test_layer_divergence_gives_a_stable_lr() -> None:
    x, y, w, _, kw = _layer_problem()
    with pytest.raises(FloatingPointError, match=r"converges only for lr < ([0-9.e-]+)") as e:
        learn_kernel(x, y, w.shape, lr=1.0, epochs=50, **kw)
    limit = float(re.search(r"lr < ([0-9.e-]+)", str(e.value)).group(1))
    suggested = float(re.search(r"e\.g\. lr=([0-9.e-]+)", str(e.value)).group(1))
    r = learn_kernel(x, y, w.shape, lr=suggested, epochs=30, **kw)
    assert suggested < limit and r.losses[-1] < r.losses[0]


def test_layer_input_rules() -> None:
    x, y, w, _, kw = _layer_problem()
    with pytest.raises(ValueError, match="stride, padding apply to a convolution layer"):
        learn_kernel(np.ones((6, 8)), np.ones((6, 7)), (1, 2), stride=2, padding=1)
    with pytest.raises(ValueError, match="^stride applies to a convolution layer only"):
        learn_kernel(np.ones((6, 8)), np.ones((6, 7)), (1, 2), stride=2)
    with pytest.raises(ValueError, match=r"y has shape \(3, 4, 7, 8\), but conv2d of x"):
        learn_kernel(x, x, w.shape, **kw)
    with pytest.raises(ValueError, match="x must be"):
        learn_kernel(np.ones((6, 8)), np.ones((1, 1, 6, 7)), (1, 1, 1, 2))
    with pytest.raises(ValueError, match="groups=3 must divide"):
        learn_kernel(x, y, w.shape, **{**kw, "groups": 3})


def test_a_diverging_conv_layer_with_bias_reports_its_hessian(backend: str) -> None:
    """A layer's bias has C_out entries: the Hessian counted one (NumPy and Dask raised
    TypeError on float() of the C_out gradients; torch and JAX reported L = 3821 for an
    exact 3461, so lr = 0.00057, which converges, was said to diverge)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 2, 8, 8)) + 1.0
    w = rng.normal(size=(2, 2, 2, 2))
    y = xcorr.conv2d(x, w)
    # Each output channel has its own kernel and bias on the same windows: L is 2 λmax(AᵀA),
    # A one row per output position (its 2×2×2 window, and a 1 for the bias)
    win = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))  # (4,2,7,7,2,2)
    a = np.moveaxis(win, 1, 3).reshape(-1, 8)
    a = np.hstack([a, np.ones((len(a), 1))])
    limit = 2 / float(np.linalg.eigvalsh(2 * a.T @ a).max())
    with float64_on(backend), pytest.raises(FloatingPointError) as info:
        learn_kernel(x, y, (2, 2, 2, 2), lr=1.0, epochs=20, bias=True, backend=backend)
    assert f"converges only for lr < {limit:.3g} " in str(info.value), str(info.value)


def test_a_layer_of_the_wrong_channel_count_names_kernel_shape() -> None:
    """The shared conv check named ``w``, which learn_kernel has not: the user gave
    ``kernel_shape``."""
    x = np.ones((2, 2, 6, 6))
    with pytest.raises(ValueError, match=r"^kernel_shape has 3 input channels per group .* "
                                         r"kernel_shape must be \(C_out"):
        learn_kernel(x, np.ones((2, 3, 4, 4)), (3, 3, 3, 3))
