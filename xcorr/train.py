"""``learn_kernel``: learn a correlation kernel by gradient descent, on any backend.

This is the seed notebook's ``Conv2D`` training loop (d2l 7.2), written once.  The model is
``corr2d(x, kernel) + bias``, the loss the sum of squared errors, the update plain gradient
descent.  The only per-backend piece is ``sse_value_and_grad(x, y, k, b)``: JAX's
``value_and_grad`` under ``jit``, torch autograd, and for NumPy/CuPy the analytic gradient
of ``xcorr._grad``.  Nothing here imports a framework.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _dispatch, _validate
from ._api import _prepare


@dataclass(frozen=True)
class LearnResult:
    """What ``learn_kernel`` returns.

    Attributes
    ----------
    kernel : array of the backend, shape ``kernel_shape``
        The learned kernel, in the training dtype.
    bias : 0-d array of the backend, or None
        The learned bias; None when trained with ``bias=False``.
    losses : list of float
        ``losses[i]`` is the loss before the update of epoch ``i + 1`` (what the seed prints).
    backend : str
        The backend that trained.
    """

    kernel: Any
    bias: Any | None
    losses: list[float]
    backend: str


def learn_kernel(x: Any, y: Any, kernel_shape: tuple[int, int], *, backend: str | None = None,
                 lr: float = 3e-2, epochs: int = 10, bias: bool = False, init: Any = None,
                 seed: int = 0, callback: Callable[[int, float], None] | None = None
                 ) -> LearnResult:
    """Learn ``kernel`` (and ``bias``) so that ``corr2d(x, kernel) + bias`` approximates ``y``.

    Minimises ``sum((corr2d(x, kernel) + bias - y) ** 2)`` by ``epochs`` steps of plain
    gradient descent, ``kernel -= lr * dloss/dkernel``, exactly like the seed notebook.

    Parameters
    ----------
    x : array_like, shape (..., H, W)
        Input image(s); leading dimensions are a batch and the loss is summed over it.
    y : array_like, shape (..., H - kh + 1, W - kw + 1)
        Targets: the valid correlation of ``x`` with the kernel to learn.
    kernel_shape : (int, int)
        ``(kh, kw)``.
    backend : {"numpy", "jax", "torch", "cupy", "dask"}, optional
        Where to train; default as in ``corr2d`` (the inputs' framework, else the setting).
    lr : float
        Learning rate, > 0.
    epochs : int
        Number of updates, >= 1.
    bias : bool
        Also learn a scalar bias (starting at 0).
    init : array_like, shape ``kernel_shape``, optional
        Starting kernel.  Default: ``numpy.random.default_rng(seed).uniform(-s, s,
        kernel_shape)`` with ``s = 1/sqrt(kh*kw)`` (PyTorch's default for a convolution), so
        every backend starts from the same kernel and follows the same trajectory.
    seed : int
        Seed of the default initialisation.
    callback : callable ``(epoch, loss) -> None``, optional
        Called after each epoch with its number (from 1) and its loss (before its update).

    Returns
    -------
    LearnResult
        ``kernel``, ``bias``, ``losses`` and ``backend``.  The training dtype is that of
        ``x`` and ``y`` promoted together if it is floating point, else the backend's
        default float (float64; float32 on JAX without x64).

    Raises
    ------
    ValueError
        Shapes of ``x``, ``y``, ``kernel_shape`` or ``init`` that do not fit together, or
        ``lr``/``epochs`` not positive.
    FloatingPointError
        The loss or the kernel became NaN/Inf (the updates diverged); the message names the
        epoch.  Use a smaller ``lr``.

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> x = np.ones((6, 8)); x[:, 2:6] = 0
    >>> y = xcorr.corr2d(x, [[1.0, -1.0]])
    >>> r = xcorr.learn_kernel(x, y, (1, 2), epochs=60)
    >>> np.round(r.kernel, 2).tolist()
    [[1.0, -1.0]]
    """
    kh, kw = _check_kernel_shape(kernel_shape)
    lr = _check_lr(lr)
    epochs = _check_epochs(epochs)
    _validate.check_raw(x, "x")
    _validate.check_raw(y, "y")
    be = _dispatch.resolve(x, y, backend)
    x, y = _prepare(be, x, "x"), _prepare(be, y, "y")
    if init is None:
        bound = 1.0 / math.sqrt(kh * kw)
        init = np.random.default_rng(seed).uniform(-bound, bound, (kh, kw))
    else:
        _validate.check_raw(init, "init")
    k = _prepare(be, init, "init")
    # mode="full": the size rule for valid mode is _check_targets's, with a message for training
    _validate.check_shapes(x, k, "full")
    if tuple(k.shape) != (kh, kw):
        raise ValueError(f"init has shape {tuple(k.shape)} but kernel_shape is {(kh, kw)}; "
                         "pass an init of the kernel's shape, or drop init")
    _check_targets(x, y, kh, kw)

    x, y = be.promote(x, y)
    if be.kind(x) != "f":  # integer data: train in the backend's default float
        x, _ = be.promote(x, be.asarray(np.zeros((1, 1))))
    # The parameters (and y) follow the data's dtype and device, whatever init's were.
    y, k = _like(y, x), _like(k, x)
    b = _like(be.asarray(np.zeros(())), x) if bias else None

    losses: list[float] = []
    # A diverging run raises below, naming the epoch; NumPy's overflow warnings would only
    # come first and say less.
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, epochs + 1):
            loss, dk, db = be.sse_value_and_grad(x, y, k, b)
            value = float(loss)  # one host sync per epoch: the seed prints it, and we check it
            if not math.isfinite(value):
                raise _diverged(epoch, value, lr)
            losses.append(value)
            k = k - lr * dk
            if b is not None:
                b = b - lr * db
            # A lazy framework (Dask) would make each update a node on top of the previous
            # ones and recompute the whole history every epoch: hold the values instead.
            if hasattr(k, "persist"):
                k = k.persist()
                b = b if b is None else b.persist()
            if callback is not None:
                callback(epoch, value)
        # The last update has no loss after it: make sure it did not overflow either.
        if be.all_finite(k, k) is False or (b is not None and not math.isfinite(float(b))):
            raise _diverged(epochs, "NaN/Inf", lr, what="the kernel")
    return LearnResult(kernel=k, bias=b, losses=losses, backend=be.NAME)


# -- helpers ----------------------------------------------------------------------------------


def _like(a: Any, ref: Any) -> Any:
    """``a`` (same framework as ``ref``) in ``ref``'s dtype, and for torch on its device."""
    if not hasattr(a, "astype"):  # torch: ``.to(tensor)`` takes its dtype and device
        return a.to(ref)
    return a if a.dtype == ref.dtype else a.astype(ref.dtype)


def _diverged(epoch: int, value: float | str, lr: float, what: str = "the loss"
              ) -> FloatingPointError:
    return FloatingPointError(
        f"{what} became {value} at epoch {epoch} with lr={lr:g}: gradient descent diverged; "
        f"use a smaller lr (e.g. lr={lr / 10:g})")


def _check_kernel_shape(shape: Any) -> tuple[int, int]:
    try:
        kh, kw = shape
        ok = all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
                 for n in (kh, kw))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"kernel_shape must be two positive integers (kh, kw), got {shape!r}; "
                         "e.g. kernel_shape=(1, 2)")
    return int(kh), int(kw)


def _check_lr(lr: Any) -> float:
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
