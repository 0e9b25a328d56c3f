"""``learn_kernel``: learn a correlation kernel by gradient descent, on any backend.

This is the seed notebook's ``Conv2D`` training loop (d2l 7.2), written once.  The model is
``corr2d(x, kernel) + bias``, the loss the sum of squared errors, the update plain gradient
descent.  The only per-backend piece is ``sse_value_and_grad(x, y, k, b)``: JAX's
``value_and_grad`` under ``jit``, torch autograd, and for NumPy/CuPy the analytic gradient
of ``xcorr._grad``.  Nothing here imports a framework.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _dispatch, _validate
from ._api import _prepare
from ._interop import host_copy

# A loss that has grown to this many times its first value has diverged: with a stable lr,
# gradient descent on a quadratic loss never increases it (beyond rounding).
DIVERGENCE_GROWTH = 1e4
# Up to this many parameters (an 8x8 kernel and its bias), the stable-lr estimate builds the
# loss's whole Hessian (one Hessian-vector product per parameter); beyond, a power iteration.
EXACT_HESSIAN_PARAMETERS = 65


@dataclass(frozen=True)
class LearnResult:
    """What ``learn_kernel`` returns.

    Attributes
    ----------
    kernel : array of the backend, shape ``kernel_shape``
        The learned kernel, in the training dtype.
    bias : array or scalar of the backend, or None
        The learned bias: 0-d (a NumPy scalar on NumPy) for a 2-D kernel, shape ``(C_out,)``
        for a convolution layer; None when trained with ``bias=False``.
    losses : list of float
        ``losses[i]`` is the loss before the update of epoch ``i + 1`` (what the seed prints).
    backend : str
        The backend that trained.

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> x = np.ones((6, 8)); x[:, 2:6] = 0
    >>> r = xcorr.learn_kernel(x, xcorr.corr2d(x, [[1.0, -1.0]]), (1, 2), epochs=3)
    >>> r.backend, r.bias, len(r.losses), r.kernel.shape
    ('numpy', None, 3, (1, 2))
    """

    kernel: Any
    bias: Any | None
    losses: list[float]
    backend: str


def learn_kernel(x: Any, y: Any, kernel_shape: tuple[int, ...], *, backend: str | None = None,
                 lr: float = 3e-2, epochs: int = 10, bias: bool = False, init: Any = None,
                 seed: int = 0, callback: Callable[[int, float], None] | None = None,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
                 padding_mode: str = "zeros") -> LearnResult:
    """Learn ``kernel`` (and ``bias``) so that ``corr2d(x, kernel) + bias`` approximates ``y``.

    Minimises ``sum((corr2d(x, kernel) + bias - y) ** 2)`` by ``epochs`` steps of plain
    gradient descent, ``kernel -= lr * dloss/dkernel``, exactly like the seed notebook.  With
    a 4-D ``kernel_shape`` the model is a convolution layer, ``conv2d(x, kernel, bias,
    stride=..., padding=..., dilation=..., groups=..., padding_mode=...)``.

    Parameters
    ----------
    x : array_like, shape (..., H, W), or (N, C_in, H, W) / (C_in, H, W) for a 4-D kernel
        Input image(s); leading dimensions are a batch and the loss is summed over it.
    y : array_like
        Targets: ``(..., H - kh + 1, W - kw + 1)``, the valid correlation of ``x`` with the
        kernel to learn, or for a 4-D kernel ``conv2d``'s output ``(N, C_out, Ho, Wo)``.
    kernel_shape : (int, int) or (int, int, int, int)
        ``(kh, kw)``, or ``(C_out, C_in // groups, kh, kw)`` for a convolution layer.
    backend : {"numpy", "jax", "torch", "cupy", "dask"}, optional
        Where to train; default as in ``corr2d`` (the inputs' framework, else the setting).
    lr : float
        Learning rate, > 0.
    epochs : int
        Number of updates, >= 1.
    bias : bool
        Also learn a bias (starting at 0): a scalar, or one per output channel ``(C_out,)``.
    init : array_like, shape ``kernel_shape``, optional
        Starting kernel.  Default: ``numpy.random.default_rng(seed).uniform(-s, s,
        kernel_shape)`` with ``s = 1/sqrt(fan_in)``, ``fan_in = C_in // groups · kh · kw``
        (PyTorch's rule; ``kh · kw`` for one channel), so every backend starts from the same
        kernel and follows the same trajectory.
    seed : int or None
        Seed of the default initialisation (a non-negative integer); None for a fresh random
        start.
    callback : callable ``(epoch, loss) -> None``, optional
        Called after each epoch with its number (from 1) and its loss (before its update).
    stride, padding, dilation, groups, padding_mode
        The convolution layer's geometry, as :func:`xcorr.conv2d`'s (4-D kernels only).

    Returns
    -------
    LearnResult
        ``kernel``, ``bias``, ``losses`` and ``backend``.  The training dtype is that of
        ``x`` and ``y`` promoted together if it is floating point, else the backend's
        default float (float64; float32 on JAX without x64).

    Raises
    ------
    ValueError
        Shapes of ``x``, ``y``, ``kernel_shape`` or ``init`` that do not fit together,
        ``lr``/``epochs`` not positive, or a negative ``seed``.
    TypeError
        Traced inputs (``jax.jit``: the loop reads each loss on the host), arrays of two
        frameworks, and data ``corr2d`` refuses.
    FloatingPointError
        The updates diverged: the loss grew past ``DIVERGENCE_GROWTH`` (1e4) times its first
        value, or the loss or the kernel became NaN/Inf.  The message names the epoch and a
        learning rate that is stable for this data (half the limit ``2 / L``, ``L`` the
        largest eigenvalue of the loss's Hessian, rounded down).  Also raised when the very
        first loss is NaN/Inf: then the data (or ``init``) are at fault, not ``lr``.

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> x = np.ones((6, 8)); x[:, 2:6] = 0
    >>> y = xcorr.corr2d(x, [[1.0, -1.0]])
    >>> r = xcorr.learn_kernel(x, y, (1, 2), epochs=60)
    >>> np.round(r.kernel, 2).tolist()
    [[1.0, -1.0]]

    A bias makes the same data stiffer: lr=0.03 diverges, and the error says what works.

    >>> xcorr.learn_kernel(x, y, (1, 2), epochs=10, bias=True)
    Traceback (most recent call last):
    ...
    FloatingPointError: the loss grew from 6.839 to 2.649e+05 (more than 10,000-fold) at epoch 8 \
with lr=0.03: gradient descent diverged. For this data it converges only for lr < 0.0161 \
(2/L, with L = 124.3 the largest eigenvalue of the loss's Hessian); use a smaller lr, e.g. \
lr=0.005
    >>> r = xcorr.learn_kernel(x, y, (1, 2), epochs=200, bias=True, lr=0.005)
    >>> np.round(r.kernel, 2).tolist(), round(float(r.bias), 2)
    ([[1.0, -1.0]], 0.0)

    A convolution layer, two channels in and one out (d2l 7.4's kernel):

    >>> k = np.array([[[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]]])
    >>> xs = np.random.default_rng(0).normal(size=(4, 2, 6, 6))
    >>> r = xcorr.learn_kernel(xs, xcorr.conv2d(xs, k, padding=1), k.shape, padding=1,
    ...                        lr=2e-3, epochs=300)
    >>> np.round(r.kernel, 2).tolist()
    [[[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]]]
    """
    shape = _check_kernel_shape(kernel_shape)
    lr = _check_lr(lr)
    epochs = _check_epochs(epochs)
    if not isinstance(bias, (bool, np.bool_)):  # bias="no" is truthy: it would train one
        raise TypeError(f"bias must be True or False, got {bias!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be a function (epoch, loss) -> None, or None; got "
                        f"{callback!r}")
    if isinstance(seed, (bool, np.bool_)):  # NumPy would take True as the seed 1
        raise ValueError(f"seed must be a non-negative integer (or None for a fresh random "
                         f"start), got {seed!r}; e.g. seed=0")
    _validate.check_raw(x, "x")
    _validate.check_raw(y, "y")
    _check_eager(x=x, y=y, init=init)
    be = _dispatch.resolve_all((x, y, init), backend, ("x", "y", "init"))
    x, y = _prepare(be, x, "x"), _prepare(be, y, "y")
    if init is None:
        fan_in = math.prod(shape[1:]) if len(shape) == 4 else math.prod(shape)
        bound = 1.0 / math.sqrt(fan_in)
        try:
            rng = np.random.default_rng(seed)
        except (TypeError, ValueError):  # NumPy's message names no argument
            raise ValueError(f"seed must be a non-negative integer (or None for a fresh "
                             f"random start), got {seed!r}; e.g. seed=0") from None
        init = rng.uniform(-bound, bound, shape)
    else:
        _validate.check_raw(init, "init")
    k = _prepare(be, init, "init")
    if tuple(k.shape) != shape:
        raise ValueError(f"init has shape {tuple(k.shape)} but kernel_shape is {shape}; "
                         "pass an init of the kernel's shape, or drop init")
    conv = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
            "padding_mode": padding_mode}
    if len(shape) == 4:
        x, y, geometry = _conv_model(be, x, y, shape, conv)
    else:
        changed = [n for n, v in conv.items() if v != _CONV_DEFAULTS[n]]
        if changed:
            verb = "applies" if len(changed) == 1 else "apply"
            raise ValueError(f"{', '.join(changed)} {verb} to a convolution layer only: give "
                             "a 4-D kernel_shape (C_out, C_in // groups, kh, kw)")
        geometry = None
        # mode="full": the size rule for valid mode is _check_targets's, with a message for
        # training
        _validate.check_shapes(x, k, "full")
        _check_targets(x, y, *shape)

    x, y = be.promote(x, y)
    if be.kind(x) != "f":  # integer data: train in the backend's default float
        x, _ = be.promote(x, be.asarray(np.zeros((1, 1))))
    # The parameters (and y) follow the data's dtype and device, whatever init's were.
    y, k = _like(y, x), _like(k, x)
    b = None
    if bias:
        b = _like(be.asarray(np.zeros((shape[0],) if geometry is not None else ())), x)
    step = functools.partial(be.sse_value_and_grad, geometry=geometry)

    losses: list[float] = []
    # A diverging run raises below, naming the epoch; NumPy's overflow warnings would only
    # come first and say less.
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, epochs + 1):
            loss, dk, db = step(x, y, k, b)
            value = float(loss)  # one host sync per epoch: the seed prints it, and we check it
            if not losses and not math.isfinite(value):
                raise _bad_start(value, x)
            first = losses[0] if losses else value
            if not math.isfinite(value) or value > DIVERGENCE_GROWTH * first:
                what = (f"the loss became {value}" if not math.isfinite(value) else
                        f"the loss grew from {first:.4g} to {value:.4g} (more than "
                        f"{DIVERGENCE_GROWTH:,.0f}-fold)")
                raise _diverged(what, epoch, lr, be, x, y, k, b, step)
            losses.append(value)
            k = k - lr * dk
            if b is not None:
                # _like: NumPy 1.x would promote a float32 scalar times a Python float to
                # float64 (value-based casting); the bias keeps the training dtype.
                b = _like(b - lr * db, x)
            # A lazy framework (Dask) would make each update a node on top of the previous
            # ones and recompute the whole history every epoch: hold the values instead.
            if hasattr(k, "persist"):
                k = k.persist()
                b = b if b is None else b.persist()
            if callback is not None:
                callback(epoch, value)
        # The last update has no loss after it: make sure it did not overflow either.
        if not _finite(be, k) or (b is not None and not _finite(be, b)):
            raise _diverged("the kernel became NaN/Inf", epochs, lr, be, x, y, k, b, step)
    return LearnResult(kernel=k, bias=b, losses=losses, backend=be.NAME)


# -- helpers ----------------------------------------------------------------------------------


def _finite(be: Any, a: Any) -> bool:
    """Whether every value of the (small) parameter ``a`` is finite; a lazy one (Dask, whose
    ``all_finite`` does not know) is computed: it is already persisted."""
    ok = be.all_finite(a, a)
    return bool(be.xp.all(be.xp.isfinite(a))) if ok is None else ok


def _like(a: Any, ref: Any) -> Any:
    """``a`` (same framework as ``ref``) in ``ref``'s dtype, and for torch on its device and
    detached: the trainer's own values, not the caller's graph (an ``nn.Parameter`` init)."""
    if not hasattr(a, "astype"):  # torch: ``.to(tensor)`` takes its dtype and device
        return a.detach().to(ref)
    return a if a.dtype == ref.dtype else a.astype(ref.dtype)


def _diverged(what: str, epoch: int, lr: float, be: Any, x: Any, y: Any, k: Any,
              b: Any | None, step: Callable[..., Any]) -> FloatingPointError:
    """The error for a diverged run: what happened, and an lr that converges on this data."""
    curvature = hessian_max_eigenvalue(be, x, y, k, b, value_and_grad=step)
    if not curvature > 0:  # no curvature, no divergence: only overflow of huge values
        advice = f"use a smaller lr (e.g. lr={lr / 10:g})"
    else:
        limit = 2.0 / curvature
        advice = (f"For this data it converges only for lr < {limit:.3g} (2/L, with "
                  f"L = {curvature:.4g} the largest eigenvalue of the loss's Hessian); use a "
                  f"smaller lr, e.g. lr={_round_down(limit / 2):g}")
    return FloatingPointError(f"{what} at epoch {epoch} with lr={lr:g}: gradient descent "
                              f"diverged. {advice}")


def _bad_start(value: float, x: Any) -> FloatingPointError:
    return FloatingPointError(
        f"the loss is {value} at epoch 1, before any update: x, y or init hold NaN/Inf, or "
        f"values too large for {x.dtype}; check the data (lr is not the cause)")


def hessian_max_eigenvalue(be: Any, x: Any, y: Any, k: Any, b: Any | None, *,
                           value_and_grad: Callable[..., tuple[Any, Any, Any]] | None = None,
                           iterations: int = 100, rtol: float = 1e-6, seed: int = 0) -> float:
    """``L``, the largest eigenvalue of the Hessian of the training loss in ``(k, b)``.

    The loss ``sum((model(x, k) + b - y)**2)`` is quadratic in the parameters, so gradient
    descent with step ``lr`` converges exactly when ``lr < 2 / L``.  Its Hessian is
    ``2 AᵀA``, ``A`` the design matrix (one row per output: the window of ``x`` it sees, and
    a 1 for the bias).  A quadratic loss's gradient at ``v`` with targets 0 is ``H v``, so
    the model's own gradient gives Hessian-vector products for any kernel shape, computed by
    the backend on the data's device.  Up to ``EXACT_HESSIAN_PARAMETERS`` parameters, one
    product per parameter builds the whole Hessian and ``L`` is its exact largest eigenvalue;
    beyond, a power iteration converges to ``L`` from below (its Rayleigh quotient).

    Parameters
    ----------
    be : module
        The backend the model trains on.
    x, y : arrays of ``be``
        The training data, as ``learn_kernel`` holds them (only ``y``'s shape, dtype and
        device matter).
    k : array of ``be``
        A kernel of the trained shape (its values do not matter).
    b : array of ``be`` or None
        The bias, or None when the model has none (its value does not matter).
    value_and_grad : callable ``(x, y, k, b) -> (loss, dk, db)``, optional
        The model's squared-error loss and gradient; default ``be.sse_value_and_grad`` (the
        model ``corr2d(x, k) + b``).  Another model (another kernel layout) passes its own.
    iterations : int
        Power iteration: at most this many Hessian-vector products.
    rtol : float
        Power iteration: stop when the estimate changes by less than this, relatively.
    seed : int
        Power iteration: seed of the random start.

    Returns
    -------
    float
        ``L`` (0.0 when ``x`` is all zeros and there is no bias).

    Examples
    --------
    >>> import numpy as np
    >>> from xcorr._dispatch import load
    >>> x = np.ones((6, 8)); x[:, 2:6] = 0
    >>> y, k = np.zeros((6, 7)), np.zeros((1, 2))
    >>> float(hessian_max_eigenvalue(load("numpy"), x, y, k, None))
    60.0
    """
    grad = be.sse_value_and_grad if value_and_grad is None else value_and_grad
    target = y * 0  # y's framework, dtype and device; finite, since y gave a finite loss
    shape = tuple(int(n) for n in k.shape)
    size = math.prod(shape)
    # the bias: one number for a correlation, C_out for a convolution layer
    bshape = () if b is None else tuple(int(n) for n in b.shape)
    n = size + (0 if b is None else math.prod(bshape))

    def hvp(v: np.ndarray) -> np.ndarray:
        """``H v`` for all parameters as one float64 host vector (kernel, then bias)."""
        vk = _like(be.asarray(v[:size].reshape(shape)), x)
        vb = None if b is None else _like(be.asarray(v[size:].reshape(bshape)), x)
        _, hk, hb = grad(x, target, vk, vb)
        hv = host_copy(hk).astype(np.float64).ravel()  # a kernel's worth of numbers
        return hv if b is None else np.append(hv, host_copy(hb).astype(np.float64).ravel())

    if n <= EXACT_HESSIAN_PARAMETERS:
        h = np.column_stack([hvp(e) for e in np.eye(n)])
        return max(float(np.linalg.eigvalsh((h + h.T) / 2)[-1]), 0.0)
    v = np.random.default_rng(seed).standard_normal(n)
    estimate = 0.0
    for _ in range(iterations):
        norm = float(np.linalg.norm(v))
        if not norm > 0:
            return 0.0
        v = v / norm
        hv = hvp(v)
        previous, estimate = estimate, float(v @ hv)
        if abs(estimate - previous) <= rtol * abs(estimate):
            break
        v = hv
    return estimate


def _round_down(value: float) -> float:
    """The largest of 1, 2 and 5 times a power of ten that is at most ``value`` (> 0)."""
    scale = 10.0 ** math.floor(math.log10(value))
    return next(m * scale for m in (5, 2, 1) if m * scale <= value * (1 + 1e-12))


def _check_kernel_shape(shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
        ok = len(dims) in (2, 4) and all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in dims)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"kernel_shape must be two positive integers (kh, kw), or four "
                         f"(C_out, C_in // groups, kh, kw) for a convolution layer, got "
                         f"{shape!r}; e.g. kernel_shape=(1, 2)")
    return tuple(int(n) for n in dims)


_CONV_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1,
                  "padding_mode": "zeros"}


def _conv_model(be: Any, x: Any, y: Any, shape: tuple[int, ...], conv: dict[str, Any]
                ) -> tuple[Any, Any, Any]:
    """``x`` padded once for the whole training (4-D), ``y`` 4-D, and the layer's geometry."""
    from ._conv import PADDING_MODES, geometry

    if conv["padding_mode"] not in PADDING_MODES:
        raise ValueError(f"unknown padding_mode {conv['padding_mode']!r}; choose one of "
                         f"{', '.join(PADDING_MODES)} (PyTorch's names)")
    if x.ndim == 3:
        x = be.xp.reshape(x, (1, *x.shape))
        if y.ndim == 3:
            y = be.xp.reshape(y, (1, *y.shape))
    if x.ndim != 4:
        raise ValueError(f"a 4-D kernel_shape trains a convolution layer: x must be (N, C_in, "
                         f"H, W) or (C_in, H, W), got shape {tuple(x.shape)}")
    geo = geometry(tuple(x.shape), shape, conv["stride"], conv["padding"], conv["dilation"],
                   conv["groups"], PADDING_MODES[conv["padding_mode"]], w_name="kernel_shape")
    want = (int(x.shape[0]), shape[0], *geo.out)
    if tuple(int(n) for n in y.shape) != want:
        raise ValueError(f"y has shape {tuple(y.shape)}, but conv2d of x {tuple(x.shape)} with "
                         f"a {shape} kernel and this geometry has shape {want}; y must be that "
                         "output")
    if any(geo.pads):
        x = be.pad(x, geo.pads, geo.boundary, 0)
    return x, y, geo


def _check_eager(**objs: Any) -> None:
    """The training loop reads every epoch's loss on the host (to stop a diverging run), so
    it runs outside JAX's transformations; each step is jitted inside it already."""
    for name, obj in objs.items():
        if _dispatch.jax_tracer(obj):
            raise TypeError(f"{name} is a traced JAX value: learn_kernel is a Python training "
                            "loop that reads each epoch's loss, and cannot run inside jax.jit, "
                            "vmap or grad; call it outside them (its steps are compiled "
                            "already), or write your own loop with jax.grad of a corr2d loss")


def _check_lr(lr: Any) -> float:
    lr = _validate.concrete_scalar(lr)  # a 0-d array of any framework, as local_ncc's eps
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}; e.g. lr=3e-2")
    return float(lr)


def _check_epochs(epochs: Any) -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}; e.g. epochs=10")
    return int(epochs)


def _check_targets(x: Any, y: Any, kh: int, kw: int) -> None:
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if kh > h or kw > w:
        raise ValueError(f"a {kh}x{kw} kernel does not fit in images of size {h}x{w}; "
                         "choose a kernel_shape no larger than the images")
    want = (*(int(n) for n in x.shape[:-2]), h - kh + 1, w - kw + 1)
    if tuple(int(n) for n in y.shape) != want:
        raise ValueError(f"y has shape {tuple(y.shape)}, but corr2d of x {tuple(x.shape)} with "
                         f"a {kh}x{kw} kernel has shape {want}; y must be that valid-mode output "
                         "(same batch dimensions as x)")
