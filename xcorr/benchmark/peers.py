"""Peers: the libraries xcorr is compared with, and how each is called on a cell's inputs.

A :class:`Peer` says what it needs (modules, a CUDA device) and how to build its call; a
suite lists its peers, and the run keeps those the user asked for (``--peers``) that can run
here, noting why the others cannot. A peer key names one library function (``--peers cv2``),
so a suite of another operation that compares with the same function reuses the key.

:func:`correlation_peers` are the valid-mode single-channel correlation peers: the seed's
double loop, ``scipy.signal.correlate2d``, ``scipy.signal.correlate(method="auto")``,
``scipy.ndimage.correlate``, ``torch.nn.functional.conv2d`` (CPU and cuDNN),
``jax.lax.conv_general_dilated``, ``cupyx.scipy.signal.correlate2d`` and OpenCV's
``cv2.filter2D``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..reference import corr2d as seed_loop
from .cases import Cell
from .machine import Context, installed
from .timing import Builder, Impl, cuda_peak, host_peak

# Row labels (and the "× peer" columns of the tables).
LOOP = "seed loop"
C2D = "scipy correlate2d"
CORR = "scipy correlate"
NDI = "scipy ndimage"
FCONV = "torch F.conv2d"
LAXCONV = "jax lax.conv"
CUPYX = "cupyx correlate2d"
CUDNN = "torch cuDNN"
CV2 = "cv2.filter2D"


@dataclass(frozen=True)
class Peer:
    """A library function the suite compares with.

    ``key`` is its ``--peers`` name, ``label`` its row; ``requires`` the modules it imports
    (``install`` says how to get them); ``device`` is ``"torch-cuda"`` or ``"cupy"`` for a
    peer that needs a CUDA device.

    Examples
    --------
    >>> import numpy as np
    >>> from xcorr.benchmark import Peer
    >>> flip = Peer("flip", "numpy flip", lambda x, k: (lambda: np.flip(x)))
    >>> flip.impl().label, flip.impl().group
    ('numpy flip', 'peer')
    """

    key: str
    label: str
    build: Builder
    requires: tuple[str, ...] = ()
    install: str = ""
    device: str | None = None
    uses_jax: bool = False
    memory: Callable[[Callable[[], Any]], int] | None = None
    applies: Callable[[Cell], str | None] = lambda cell: None

    def unavailable(self, ctx: Context) -> str | None:
        """Why this peer cannot run here, or None."""
        for module in self.requires:
            if not installed(module):
                return f"{module} is not installed" + (f" ({self.install})" if self.install
                                                       else "")
        if self.device == "torch-cuda" and not ctx.torch_cuda:
            return "no CUDA device for torch here"
        if self.device == "cupy" and not ctx.cupy:
            return "no usable CUDA device for CuPy here"
        return None

    def impl(self) -> Impl:
        """The benchmark row of this peer."""
        return Impl(self.label, "peer", None, self.build, uses_jax=self.uses_jax,
                    memory=self.memory, applies=self.applies)


def valid_shape(x: np.ndarray, k: np.ndarray) -> tuple[int, ...]:
    """Shape of the valid correlation of ``x`` (..., H, W) with ``k`` (kh, kw)."""
    return (*x.shape[:-2], x.shape[-2] - k.shape[0] + 1, x.shape[-1] - k.shape[1] + 1)


def two_d(cell: Cell) -> str | None:
    """The applicability rule of a peer that takes one image."""
    return "2-D only" if cell.case == "batched" else None


def _loop_applies(cell: Cell) -> str | None:
    if cell.case != "grid" or cell.size > 256 or cell.k != 3:
        return "pure-Python loop: run at ≤256² with k3 only"
    return None


def correlation_peers(threads: int) -> list[Peer]:
    """Every peer of valid single-channel correlation; ``threads`` for SciPy's FFT workers."""
    scipy = "pip install scipy, in the bench extra"
    return [
        Peer("loop", LOOP, lambda x, k: lambda: seed_loop(x, k), memory=host_peak,
             applies=_loop_applies),
        Peer("correlate2d", C2D, _build_correlate2d, ("scipy",), scipy, memory=host_peak,
             applies=two_d),
        Peer("correlate", CORR, _scipy_correlate(threads), ("scipy",), scipy,
             memory=host_peak, applies=two_d),
        Peer("ndimage", NDI, _build_ndimage, ("scipy",), scipy, memory=host_peak,
             applies=two_d),
        Peer("cv2", CV2, _build_cv2, ("cv2",),
             "pip install opencv-python-headless, in the bench extra", memory=host_peak),
        Peer("conv2d", FCONV, _build_fconv(None), ("torch",)),
        Peer("cudnn", CUDNN, _build_fconv("cuda"), ("torch",), device="torch-cuda",
             memory=cuda_peak),
        Peer("lax", LAXCONV, _build_laxconv, ("jax",), uses_jax=True),
        Peer("cupyx", CUPYX, _build_cupyx, ("cupy",), device="cupy", applies=two_d),
    ]


# -- the builders: conversions stay outside the returned call ---------------------------------


def _build_correlate2d(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
    from scipy import signal

    return lambda: signal.correlate2d(x, k, mode="valid")


def _scipy_correlate(threads: int) -> Builder:
    def build(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
        import scipy.fft
        from scipy import signal

        def call() -> Any:
            with scipy.fft.set_workers(threads):  # the FFT threads xcorr's FFT has
                return signal.correlate(x, k, mode="valid", method="auto")
        return call
    return build


def _build_ndimage(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
    from scipy import ndimage

    kh, kw = k.shape
    ho, wo = valid_shape(x, k)
    # ndimage computes the 'same'-size output centred at k//2; its valid part is this.
    return lambda: ndimage.correlate(x, k, mode="constant")[kh // 2:kh // 2 + ho,
                                                            kw // 2:kw // 2 + wo]


def _build_cv2(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
    """``cv2.filter2D`` (a correlation) with the anchor at the kernel's corner.

    With ``anchor=(0, 0)`` output ``(i, j)`` is ``sum x[i + a, j + b] k[a, b]``, so the valid
    part is the top-left ``Ho × Wo`` block: a view, no copy. A batch is a loop over its images
    (OpenCV has no batch axis), each written into one preallocated buffer.
    """
    import cv2

    ho, wo = valid_shape(x, k)[-2:]
    x, k = np.ascontiguousarray(x), np.ascontiguousarray(k)
    if x.ndim == 2:
        return lambda: cv2.filter2D(x, -1, k, anchor=(0, 0))[:ho, :wo]
    flat = x.reshape(-1, *x.shape[-2:])
    buf = np.empty_like(flat)

    def batch() -> Any:
        for im, dst in zip(flat, buf, strict=True):
            cv2.filter2D(im, -1, k, dst=dst, anchor=(0, 0))
        return buf[:, :ho, :wo].reshape(valid_shape(x, k))
    return batch


def _build_fconv(device: str | None) -> Builder:
    def build(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
        import torch
        import torch.nn.functional as F

        out_shape = valid_shape(x, k)
        xt = torch.from_numpy(np.ascontiguousarray(x)).reshape(-1, 1, *x.shape[-2:])
        kt = torch.from_numpy(np.ascontiguousarray(k))[None, None]
        if device is None:
            def call() -> Any:
                with torch.no_grad():
                    return F.conv2d(xt, kt).reshape(out_shape)
            return call
        xt, kt = xt.to(device), kt.to(device)

        def call_cuda() -> Any:
            # IEEE float32: TF32 would change the result (pytorch #107514).
            with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
                r = F.conv2d(xt, kt).reshape(out_shape)
            torch.cuda.synchronize()
            return r
        return call_cuda
    return build


def _build_laxconv(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    out_shape = valid_shape(x, k)

    @jax.jit
    def conv(a: Any, w: Any) -> Any:
        a = a.reshape(-1, 1, *a.shape[-2:])
        y = lax.conv_general_dilated(a, w[None, None], (1, 1), "VALID",
                                     precision=lax.Precision.HIGHEST)
        return y.reshape(out_shape)

    xj, kj = jnp.asarray(x), jnp.asarray(k)
    return lambda: conv(xj, kj).block_until_ready()


def _build_cupyx(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
    import cupy
    import cupyx.scipy.signal as cs  # an explicit submodule import (cupy #8336)

    xc, kc = cupy.asarray(x), cupy.asarray(k)

    def call() -> Any:
        r = cs.correlate2d(xc, kc, mode="valid")
        cupy.cuda.get_current_stream().synchronize()
        return r
    return call
