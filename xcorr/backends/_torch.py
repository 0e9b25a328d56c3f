"""PyTorch backend: in-place shift-and-accumulate, ``torch.fft``, and ``F.conv2d``.

Differentiable w.r.t. ``x`` and ``k`` on CPU and CUDA; the output stays on the input's device.
On CUDA, float32 ``method="native"`` runs with TF32 off (IEEE float32) inside a local context
that restores the caller's flags; set the environment variable ``XCORR_TORCH_TF32=1`` to let
it use TF32 (faster, ~10 mantissa bits).  The other methods never use TF32.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as forward_ad
import torch.nn.functional as F

from .. import _grad, _numba
from .._boundary import index_map
from .._broadcast import group_plan, unbroadcast
from .._conv_cost import ConvCost
from .._dispatch import array_backend
from .._fft import fft_valid, overlap_valid, tiles_by_view
from .._interop import to_numpy
from .._methods import Cost, fft_len, for_itemsize
from .._validate import broadcast_batch
from . import _torch_xp as xp

NAME = "torch"
METHODS = ("direct", "fft", "overlap", "native")

# Cost-model constants (ns), keyed by dtype width, on the project machine (AMD EPYC Zen-4, 2
# cores shared with other jobs, torch 2.13.0+cpu); half types compute in float32.  direct:
# ``bench/bench_torch.py --fit --threads 1`` (single-thread CPU time of 1024² k3/k7/k11 still
# matched it within 7% when overlap was added).  fft and overlap: ``bench/fit_fft.py torch``,
# least squares over 256² to 4096² (and 8×128²), k 5-41, tiles 16-512, of single-thread CPU
# time (process_time, min of 3-5: the machine was too loaded for wall clocks, and two threads
# stalled small FFTs for milliseconds there); float64's tile terms are float32's scaled by the
# FFT's float64/float32 ratio (their own fit was degenerate); fixed parts from 8²-64² calls.
# Measured 1024² float32: fft 10.7-11.6 ms whatever the kernel, overlap 6.2 ms at k5 (B=64),
# 8.9 at k11 (B=128); 2048²: fft 55, overlap 28 (k5), 37 (k11, k21); 4096² (memory-bound on
# the loaded machine): fft 539, overlap 482.
#
# Refit on a quiet machine (``bench/fit_direct.py torch``, wall time on torch's two threads,
# 16²-1024², batches 1 and 8, k 1-15): direct 0.059/0.114 ns per tap (float32/float64) and
# ~6.8 µs per tap and call (two eager operations a tap: PyTorch's dispatch, not arithmetic);
# F.conv2d 0.165 ns per tap, 2.1 ns per output, 19.5 µs per call in float32 (0.27, 0, 16 µs
# in float64), 0.11/0.70 ns per tap for per-image kernels as one grouped call.  Its CPU
# single-channel convolution is far from linear in size (64² k3: 28 µs; 1024² k3: 22 ms), so
# the fit has 20-30% median error and is meant for where it decides: small images, where the
# per-tap launches of the direct method dominate.  The FFT terms above were single-thread
# CPU time, so they are halved here to the same two-thread wall time (checked: 1024² k11
# float32 fft 4.97 ms, overlap 4.31 ms measured against 4.9 and 4.3 predicted).
COSTS = {
    4: Cost(tap=0.059, out=0.0, point=0.232, fixed=60_000.0,
            tile_point=0.17, tile_pix=1.0, tile_fixed=85_000.0, tap_call=6_870.0,
            native_tap=0.165, native_out=2.06, native_fixed=19_500.0, native_group_tap=0.115),
    8: Cost(tap=0.114, out=0.0, point=0.371, fixed=60_000.0,
            tile_point=0.27, tile_pix=1.6, tile_fixed=85_000.0, tap_call=6_780.0,
            native_tap=0.274, native_out=0.0, native_fixed=16_200.0, native_group_tap=0.70),
}
COSTS[2] = COSTS[4]

# conv2d's constants (ns; see xcorr/_conv_cost.py).  F.conv2d (oneDNN) ran dense layers at
# 160-190 GF/s on the project machine but a 1 -> 1 1024² k11 at 4 GF/s; thin layers over 16
# planes or more (images × groups) run at the dense rate (the depthwise 8×64 planes at 145 GF/s,
# LeNet's 16 one-channel images in 105 µs).
CONV_COSTS = {
    4: ConvCost(gemm=0.012, copy=0.15, native=0.0115, native_thin=0.5, fixed=15_000.0,
                dense_planes=16),
    8: ConvCost(gemm=0.024, copy=0.15, native=0.05, native_thin=2.0, fixed=15_000.0,
                dense_planes=16),
}
CONV_COSTS[2] = CONV_COSTS[4]

# torch.compiler.is_compiling is public from torch 2.3.
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
# ... and is_exporting from torch 2.6: torch.export, whose graphs cannot branch on values
_exporting = getattr(getattr(torch, "compiler", None), "is_exporting", lambda: False)
_INTS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
# torch.uint16/32/64 (torch >= 2.3): storage types, mostly without kernels
_WIDE_UINTS = tuple(getattr(torch, f"uint{n}") for n in (16, 32, 64))


def version() -> str:
    return torch.__version__


def devices() -> list[str]:
    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def unavailable_reason() -> str | None:
    return None


def asarray(obj: Any) -> torch.Tensor:
    """Tensors pass through; JAX/CuPy arrays go by DLPack (same device, no copy); NumPy and
    lists by ``numpy.asarray`` (so a float list is float64, as in NumPy).  Unsigned integers
    wider than 8 bits become int64, tensors or not: torch has little arithmetic for them
    (no ``flip``, ``max`` or matmul for ``uint16``), and integer results are int64 anyway."""
    if isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided:  # sparse (COO, CSR, ...) or mkldnn tensors
            raise TypeError(f"a tensor of layout {obj.layout} cannot be correlated; call "
                            ".to_dense() first")
        return obj.to(torch.int64) if obj.dtype in _WIDE_UINTS else obj
    if array_backend(obj) in ("jax", "cupy"):
        # Zero-copy on the array's own device; what DLPack refuses (a JAX tracer, a device this
        # torch build lacks) goes on to to_numpy, which explains how to convert.
        with contextlib.suppress(AttributeError, BufferError, RuntimeError, TypeError):
            return torch.from_dlpack(obj)
    a = to_numpy(obj, NAME)
    if a.dtype.char in "gG":
        raise TypeError(f"torch has no {a.dtype} (long double); cast to float64 first, or "
                        "use backend='numpy', which computes in it")
    if a.dtype.kind == "u" and a.itemsize > 1:  # torch has only uint8 arithmetic
        a = a.astype(np.int64)
    elif a.dtype.name.startswith(("bfloat16", "float8")) and hasattr(torch, a.dtype.name):
        # ml_dtypes' bfloat16 and float8 types, which torch.from_numpy refuses: their bits
        bits = np.uint8 if a.itemsize == 1 else np.uint16
        return torch.from_numpy(np.array(a.view(bits))).view(getattr(torch, a.dtype.name))
    if not a.flags.writeable or not a.dtype.isnative or any(s < 0 for s in a.strides):
        a = np.array(a, dtype=a.dtype.newbyteorder("="))  # torch.from_numpy refuses these
    return torch.from_numpy(a)


def kind(arr: torch.Tensor) -> str:
    dt = arr.dtype
    if dt.is_complex:
        return "c"
    if dt == torch.bool:
        return "b"
    return "f" if dt.is_floating_point else "i" if dt in _INTS else str(dt)


def promote(x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Common dtype (torch promotion for floats, int64 for integers) and common device: a CPU
    operand joins the other's device (host to device); two different devices raise."""
    if x.device != k.device:
        k = to_device_of(k, x)
        x = to_device_of(x, k)
        if x.device != k.device:
            raise ValueError(f"x is on {x.device} and k on {k.device}; move one of them")
    ints = kind(x) == "i" and kind(k) == "i"
    # promote_types equals result_type here (no 0-d operands) and torch.compile can trace it.
    dt = torch.int64 if ints else torch.promote_types(x.dtype, k.dtype)
    return x.to(dt), k.to(dt)


def to_device_of(a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``a`` on ``ref``'s device where ``a`` is on the CPU and ``ref`` is not: how ``promote``
    joins its two operands, and a third (bias, mask, cotangent) joins them; tensors on two
    other devices are left for the caller (or torch) to refuse."""
    if a.device != ref.device and a.device.type == "cpu":
        return a.to(ref.device)
    return a


def _fill_pad(x: torch.Tensor, pads: tuple[int, int, int, int], value: Any) -> torch.Tensor:
    """``F.pad(x, pads, value=value)``, exact: ``F.pad`` takes the value through a double
    (an int64 fill past 2**53 came out rounded, 2**63 - 1 as -2**63) and refuses one that
    overflows a float dtype (1e39 in float32, which NumPy pads as inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return F.pad(x, pads, value=value)
    if not x.is_floating_point() and not x.is_complex() and isinstance(value, int) \
            and abs(value) > 2**53:  # the border by where(): no in-place write (vmap)
        border = F.pad(torch.zeros(x.shape[-2:], dtype=torch.bool, device=x.device), pads,
                       value=True)
        fill = torch.tensor(value, dtype=x.dtype, device=x.device)
        return torch.where(border, fill, F.pad(x, pads, value=0))
    if x.is_floating_point() and math.isfinite(value) and abs(value) > torch.finfo(x.dtype).max:
        # IEEE rounding to the dtype (a value within half an ulp of its largest rounds down)
        value = torch.tensor(float(value), dtype=torch.float64).to(x.dtype).item()
    return F.pad(x, pads, value=value)


def pad(x: torch.Tensor, widths: tuple[int, int, int, int], boundary: str = "fill",
        value: Any = 0) -> torch.Tensor:
    """Pad the last two axes by ``widths`` (top, bottom, left, right) under ``boundary``.

    ``F.pad``'s own modes where they mean the same and allow the width (one pass each):
    constant, replicate, reflect (``mirror``: width < size) and circular (``wrap``: width <=
    size); ``symm``, which ``F.pad`` lacks, flips the border strips on; wider padding gathers
    through ``xcorr._boundary.index_map`` (what ``numpy.pad`` does, whatever the width).  All
    are differentiable.
    """
    top, bottom, left, right = widths
    if boundary == "fill":
        return _fill_pad(x, (left, right, top, bottom), value)
    h, w = x.shape[-2:]
    wide_h, wide_w = max(top, bottom), max(left, right)
    mode = _F_PAD_MODES.get(boundary)
    if mode is not None and (boundary != "mirror" or (wide_h < h and wide_w < w)) and (
            boundary != "wrap" or (wide_h <= h and wide_w <= w)):
        out = F.pad(x.reshape(-1, h, w), (left, right, top, bottom), mode=mode)
        return out.reshape(*x.shape[:-2], *out.shape[-2:])
    if boundary == "symm" and wide_h <= h and wide_w <= w:
        x = torch.cat([x[..., :top, :].flip(-2), x, x[..., h - bottom:, :].flip(-2)], dim=-2)
        return torch.cat([x[..., :left].flip(-1), x, x[..., w - right:].flip(-1)], dim=-1)
    if top or bottom:
        x = xp.take(x, index_map(h, top, bottom, boundary), axis=-2)
    if left or right:
        x = xp.take(x, index_map(w, left, right, boundary), axis=-1)
    return x


_F_PAD_MODES = {"nearest": "replicate", "mirror": "reflect", "wrap": "circular"}


def astype(a: torch.Tensor, dtype: Any) -> torch.Tensor:
    """``a`` in ``dtype``: a torch dtype, or a NumPy dtype or name (``"float32"``)."""
    if not isinstance(dtype, torch.dtype):
        dtype = getattr(torch, np.dtype(dtype).name)
    return a.to(dtype)


def from_host(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """Host data as a tensor like ``like`` (its dtype and device)."""
    return torch.as_tensor(a, dtype=like.dtype, device=like.device)


def all_finite(x: torch.Tensor, k: torch.Tensor) -> bool | None:
    # One reduction per operand, no temporaries (see the NumPy backend); a sync on CUDA, and a
    # graph break under torch.compile, paid only when the FFT is on the table.  On the CPU by
    # NumPy's: a torch reduction of a large tensor wakes torch's OpenMP threads, which then
    # spin on both cores while the NumPy backend's threads transform (4096² k15 overlap after
    # a torch sum of the image: 149 against 104 ms).  None inside torch.func's transforms:
    # under vmap each example has its own answer, which no Python bool can hold
    # (guarded_fft and select_finite decide per example).  None where values are unknown
    # too (values_unknown).
    if values_unknown(x, k) or _wrapped(x, k):
        return None
    if _on_cpu(x, k):
        from . import _numpy

        return _numpy.all_finite(_host(x), _host(k))
    sums = torch.stack([x.detach().sum(dtype=torch.float64), k.detach().sum(dtype=torch.float64)])
    return bool(torch.isfinite(sums).all())


def widest_float() -> torch.dtype:
    """The widest float dtype this backend computes in."""
    return torch.float64


def values_unknown(*tensors: torch.Tensor) -> bool:
    """Whether Python may not branch on these tensors' values: meta tensors and the fake
    tensors of ``FakeTensorMode`` (shapes without values: shape inference, as ``F.conv2d``
    gives it on them), and ``torch.export``, whose graph cannot hold a branch on a value
    ("Could not guard on data-dependent expression"); the caller then decides inside the
    graph (``select_finite``)."""
    if _exporting():
        return True
    fake = sys.modules.get("torch._subclasses.fake_tensor")  # none exist before it loads
    fake_type = getattr(fake, "FakeTensor", ())
    return any(t.is_meta or isinstance(t, fake_type) for t in tensors)


def select_finite(x: torch.Tensor, k: torch.Tensor, if_finite: Any, otherwise: Any
                  ) -> torch.Tensor:
    """``if_finite()`` where every value of ``x`` and ``k`` is finite, else ``otherwise()``,
    per example of a ``torch.func.vmap`` (both are computed: vmap has no branch; the
    unselected one gets a zero gradient, so a non-finite example's gradient is the direct
    sum's)."""
    finite = torch.isfinite(x).all() & torch.isfinite(k).all()
    return torch.where(finite, if_finite(), otherwise())


def guarded_fft(x: torch.Tensor, k: torch.Tensor, method: str = "fft") -> torch.Tensor:
    """``method`` (an FFT) where the values are finite, else direct (see ``select_finite``)."""
    return select_finite(x, k, lambda: corr2d_valid(x, k, method),
                         lambda: corr2d_valid(x, k, "direct"))


def corr2d_valid(x: torch.Tensor, k: torch.Tensor, method: str) -> torch.Tensor:
    """Valid correlation of promoted ``x`` (..., H, W) with ``k`` (kh, kw)."""
    dtype = x.dtype
    # Half types accumulate in float32 (torch.fft has no bfloat16 and needs powers of two for
    # float16); CUDA's F.conv2d already accumulates them in float32.
    if dtype.is_floating_point and dtype.itemsize < 4 and not (
            method == "native" and x.is_cuda):
        x, k = x.float(), k.float()
    if _on_cpu(x, k) and _runs_on_host(x, k, method):
        out = (_HostCorr.apply(x, k, method) if _recording(x, k)
               else _HostCorr.forward(x, k, method))
    elif method == "fft":
        out = fft_valid(x, k, rfft2, irfft2, _mul_conj).contiguous()
    elif method == "overlap":
        tile = for_itemsize(COSTS, x.dtype.itemsize).overlap_tile(*x.shape[-2:], *k.shape[-2:])
        out = overlap_valid(x, k, tile, rfft2, irfft2, _tiles, _mul_conj).contiguous()
    elif method == "native":
        out = _native(x, k)
    elif _records_backward(x, k) and not (_wrapped(x, k) or _has_tangent(x, k)):
        out = _Direct.apply(x, k)
    else:  # Function.apply costs ~15 µs of Python, 20% of a 256² 3×3 correlation; and
        # forward mode and torch.func's transforms differentiate the plain loop (_Direct has
        # no vmap rule or jvp, which Dynamo cannot trace: torch.func.hessian failed on it)
        out = _shift_add(x, k)
    return out if out.dtype == dtype else out.to(dtype)


def sse_value_and_grad(x: torch.Tensor, y: torch.Tensor, k: torch.Tensor, b: Any | None,
                       geometry: Any = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Squared-error loss and its gradients ``(loss, dk, db)`` by torch autograd
    (``geometry``: a conv2d model, see ``xcorr._grad.model``), whatever the caller's grad
    mode: under ``torch.inference_mode`` too, and on tensors made there (which autograd
    cannot save: copied first)."""
    with torch.inference_mode(False), torch.enable_grad():
        k = _autograd_ready(k).requires_grad_()
        params = [k]
        if b is not None:
            b = _autograd_ready(torch.as_tensor(b, dtype=k.dtype, device=k.device))
            params.append(b.requires_grad_())
        pred = _grad.model(sys.modules[__name__], _autograd_ready(x), k, b, geometry)
        loss = (pred - y).square().sum()
        grads = torch.autograd.grad(loss, params)
    return loss.detach(), grads[0], (grads[1] if b is not None else None)


def _autograd_ready(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached from any graph, and an ordinary tensor if it was made under
    ``torch.inference_mode`` (autograd can neither save nor differentiate those)."""
    t = t.detach()
    return t.clone() if t.is_inference() else t


def rfft2(a: torch.Tensor, s: tuple[int, int]) -> torch.Tensor:
    return torch.fft.rfft2(a, s=s)


def irfft2(a: torch.Tensor, s: tuple[int, int]) -> torch.Tensor:
    return torch.fft.irfft2(a, s=s)


def conv2d_native(x: torch.Tensor, w: torch.Tensor, stride: tuple[int, int],
                  pads: tuple[int, int, int, int], dilation: tuple[int, int],
                  groups: int) -> torch.Tensor:
    """``F.conv2d`` (IEEE float32 on CUDA unless ``XCORR_TORCH_TF32=1``)."""
    top, bottom, left, right = pads
    if top != bottom or left != right:  # F.conv2d pads symmetrically only
        x = F.pad(x, (left, right, top, bottom))
        top = left = 0
    with _ieee_fp32(x):
        return F.conv2d(x, w, stride=stride, padding=(top, left), dilation=dilation,
                        groups=groups)


def pool2d_native(x: torch.Tensor, win: Any, mode: str) -> torch.Tensor:
    """``F.max_pool2d``/``F.avg_pool2d`` (padding counted in the average) over the last two
    axes; integer max pooling on CUDA, which those lack, folds the taps instead."""
    if x.is_cuda and kind(x) == "i":
        from .._pool import taps_pool

        return taps_pool(sys.modules[__name__], x, win, mode)
    if x.is_floating_point() and x.element_size() == 1:
        # float8, for which torch has no pooling: in float32 (exact for max), rounded once
        return pool2d_native(x.float(), win, mode).to(x.dtype)
    x3 = x.reshape(-1, *x.shape[-2:])
    pool = F.max_pool2d if mode == "max" else F.avg_pool2d
    y = pool(x3, win.kernel, win.stride, win.padding)
    return y.reshape(*x.shape[:-2], *y.shape[-2:])


def corr2d_valid_centred(x: torch.Tensor, c: torch.Tensor, k: torch.Tensor,
                         method: str) -> torch.Tensor | None:
    """``corr2d_valid(x - c, k, method)`` by the NumPy backend's centred FFTs (the centred
    image never made whole) where ``corr2d_valid`` would hand the FFT to it anyway: CPU
    tensors outside autograd.  None otherwise (the caller subtracts)."""
    if not (_on_host(x, c, k) and _runs_on_host(x, k, method)):
        return None
    from . import _numpy

    out = _numpy.corr2d_valid_centred(_host(x), _host(c), _host(k), method)
    return None if out is None else torch.from_numpy(out)


def ncc_mean(x: torch.Tensor, wide: torch.dtype) -> torch.Tensor | None:
    """The image's mean by the NumPy backend's compiled column totals (``xcorr._ncc`` rounds
    it to 16 bits and takes no derivative through it): a CPU tensor outside autograd, else
    None (torch's own mean)."""
    if not _on_host(x) or wide != torch.float64:
        return None
    from . import _numpy

    out = _numpy.ncc_mean(_host(x), np.float64)
    return None if out is None else torch.from_numpy(out)


def ncc_inv_norm(x: torch.Tensor, window: tuple[int, int], tol: float,
                 phase: tuple[int, int] = (0, 0)) -> torch.Tensor | None:
    """``xcorr._ncc.inv_norm`` of a CPU tensor outside autograd: the NumPy backend's compiled
    pass (Numba) on the tensor's own memory, a fifth of the time of the window sums in torch
    operations.  None (the caller sums with torch operations, differentiably) on other
    devices, for half types, while autograd records, under ``torch.compile``, or without
    Numba."""
    if not _on_host(x):
        return None
    from . import _numpy

    out = _numpy.ncc_inv_norm(_host(x), window, tol, phase)
    return None if out is None else torch.from_numpy(out)


def ncc_finish(x: torch.Tensor, c: torch.Tensor, num: torch.Tensor, inv_t: torch.Tensor,
               window: tuple[int, int], tol: float) -> torch.Tensor | None:
    """``xcorr._ncc.finish`` fused into ``ncc_inv_norm``'s compiled pass and written over
    ``num`` (the caller's own tensor), under the same conditions; None otherwise."""
    if not _on_host(x, c, num, inv_t):
        return None
    from . import _numpy

    out = _numpy.ncc_finish(_host(x), _host(c), _host(num), _host(inv_t), window, tol)
    return None if out is None else num


def _on_cpu(*tensors: torch.Tensor) -> bool:
    """Whether the NumPy backend's kernels may compute on these tensors' memory: float32 or
    float64 CPU tensors, outside ``torch.compile`` (which cannot trace into them) and
    outside ``torch.func``'s transforms (``vmap``'s batched tensors have no memory of their
    own to hand over), and plain tensors only: a subclass (FakeTensorMode's fake tensors,
    DTensor, a user's ``__torch_function__`` type) has no NumPy view ("``.numpy()`` is not
    supported for tensor subclasses") and may mean more than its memory, so the torch
    operations run for it."""
    for t in tensors:  # (a loop, and is_cpu: 0.3 µs against 1.1 for all() and device.type)
        if not t.is_cpu or t.dtype not in _HOST_FLOATS or type(t) not in _PLAIN:
            return False
    if _compiling():
        return False
    for t in tensors:
        if _is_functorch_wrapped(t):
            return False
    return True


def _wrapped(*tensors: torch.Tensor) -> bool:
    """Whether any of these is one of torch.func's wrapper tensors (vmap, grad, jacrev, ...);
    never asked under torch.compile, whose Dynamo cannot trace the question (a graph
    break)."""
    return not _compiling() and any(_is_functorch_wrapped(t) for t in tensors)


# private, hence looked up softly
_functorch = getattr(torch._C, "_functorch", None)
_is_wrapper = getattr(_functorch, "is_functorch_wrapped_tensor", lambda t: False)
_is_legacy_batched = getattr(_functorch, "is_legacy_batchedtensor", lambda t: False)


def _is_functorch_wrapped(t: torch.Tensor) -> bool:
    """torch.func's wrappers, and the legacy batched tensors of ``is_grads_batched=True``,
    ``torch.autograd.functional.jacobian(vectorize=True)`` and ``gradcheck``'s batched
    checks: neither has memory of its own, nor batching rules for ``detach`` or ``out=``."""
    return _is_wrapper(t) or _is_legacy_batched(t)


_HOST_FLOATS = (torch.float32, torch.float64)
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _recording(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an operation on these tensors: for backward (grad mode on,
    a tensor that requires grad) or in forward mode (inside ``forward_ad.dual_level``, a
    tensor with a tangent, whatever the grad mode).  The NumPy kernels see no tangent: a
    dual tensor given to them lost its derivative without a word."""
    return _records_backward(*tensors) or _has_tangent(*tensors)


def _records_backward(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _has_tangent(*tensors: torch.Tensor) -> bool:
    if getattr(forward_ad, "_current_level", 0) < 0:  # no dual level open: no tangents
        return False
    return any(forward_ad.unpack_dual(t).tangent is not None for t in tensors)


def _on_host(*tensors: torch.Tensor) -> bool:
    """``_on_cpu``, and autograd not recording (for kernels without a backward)."""
    return _on_cpu(*tensors) and not _recording(*tensors)


def _host(t: torch.Tensor) -> np.ndarray:
    """A CPU tensor's memory as a NumPy array (no copy)."""
    if t.requires_grad or t.is_neg():
        t = t.detach().resolve_neg()
    return t.numpy()


def conv_costs() -> dict[int, ConvCost]:
    return CONV_COSTS


def costs() -> dict[int, Cost]:
    return COSTS


def costs_for(x: torch.Tensor, k: torch.Tensor) -> dict[int, Cost]:
    """The cost model for these tensors: on the CPU, where ``corr2d_valid`` runs the NumPy
    backend's kernels, NumPy's constants for them and torch's own for ``F.conv2d``."""
    from . import _numpy

    return _numpy.hosting_costs(COSTS, _host_methods(x, k)) if _on_cpu(x, k) else COSTS


def _host_methods(x: torch.Tensor, k: torch.Tensor) -> tuple[str, ...]:
    """The methods ``corr2d_valid`` hands to the NumPy backend for these CPU tensors."""
    return tuple(m for m in ("direct", "fft", "overlap") if _runs_on_host(x, k, m))


def _runs_on_host(x: torch.Tensor, k: torch.Tensor, method: str) -> bool:
    """Whether ``corr2d_valid`` hands ``method`` on these CPU tensors to the NumPy backend:
    the direct loop where its compiled kernel (Numba) is installed; the FFTs where scipy.fft
    is and the transforms are large (``_HOST_FFT_POINTS``)."""
    if method == "direct":
        return _numba.kernel() is not None
    if method not in ("fft", "overlap") or not _have_scipy_fft():
        return False
    # broadcast_batch, not torch.broadcast_shapes: 15 µs a call, on every correlation
    lead = broadcast_batch(tuple(x.shape), tuple(k.shape))
    points = math.prod(lead) * fft_len(int(x.shape[-2])) * fft_len(int(x.shape[-1]))
    return points >= _HOST_FFT_POINTS


# Transform points (batch × padded image) from which the NumPy backend's FFTs (scipy.fft)
# beat torch.fft on the CPU: 16 × 1024² took 55 against 134 ms for the inverse transforms
# alone, 4096² k31 147 against 265 ms; one 1024² image, since NumPy's overlap-save goes by
# parts, k11 4.9 against 6.4 ms (fft) and k31 in float64 8.0 against 16.3 (overlap; medians
# of 25, two threads); but 512² k11 2.2 against 1.6 ms, 16 × 128² k11 1.3 against 0.6.
_HOST_FFT_POINTS = 1 << 20


@functools.cache
def _have_scipy_fft() -> bool:
    return importlib.util.find_spec("scipy") is not None


# -- kernels ----------------------------------------------------------------------------------


def _shift_add(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``sum_{a,c} k[a, c] * x[..., a:a+Ho, c:c+Wo]``, accumulated in place in row-major tap order.

    ``addcmul_`` with the 0-d tap tensor fuses multiply and add (no per-tap temporary) and,
    unlike ``add_(alpha=k[a, c].item())``, never syncs a CUDA stream or breaks a compiled graph.
    """
    kh, kw = k.shape[-2:]
    ho, wo = x.shape[-2] - kh + 1, x.shape[-1] - kw + 1
    # k[..., a, c, None, None]: a 0-d tap for one kernel, a (..., 1, 1) column of taps that
    # broadcasts against x's batch for per-image kernels.
    taps = k[..., None, None]
    out = x[..., :ho, :wo] * taps[..., 0, 0, :, :]
    # Under torch.compile the out-of-place form costs nothing (Inductor fuses it), and it must
    # be used: torch 2.11 routes the gradient of an autograd.Function whose output was
    # mutated in place to the wrong input (pytorch/pytorch#180642; seen here as wrong dk).
    # Under torch.func.vmap too: addcmul_ has no batching rule (a slow fallback, and a
    # warning on every call).
    inplace = not (_compiling() or _is_functorch_wrapped(out))
    for a in range(kh):
        for c in range(kw):
            if not (a or c):
                continue
            if inplace:
                out.addcmul_(x[..., a:a + ho, c:c + wo], taps[..., a, c, :, :])
            else:
                out = torch.addcmul(out, x[..., a:a + ho, c:c + wo], taps[..., a, c, :, :])
    return out


def _mul_conj(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a * conj(b)``, in place in ``a`` (a spectrum we own) when autograd needs neither and
    ``a`` holds the product's shape: under torch.func.vmap the shapes seen are an item's,
    and a mapped ``b`` cannot be written into an unmapped ``a``."""
    if (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)) or \
            a.shape != torch.broadcast_shapes(a.shape, b.shape) or _wrapped(a, b):
        return a * b.conj()
    return a.mul_(b.conj())


def _tiles(x: torch.Tensor, tile: tuple[int, int], step: tuple[int, int],
           count: tuple[int, int]) -> torch.Tensor:
    """Overlap-save tiles: ``unfold`` is torch's strided window view (differentiable)."""
    return tiles_by_view(x, tile, step, count, pad,
                         lambda a, b: a.unfold(-2, b[0], 1).unfold(-2, b[1], 1))


def _tap_dots(x: torch.Tensor, g: torch.Tensor, kshape: tuple[int, ...]) -> torch.Tensor:
    """``dk[..., a, c] = sum(x[..., a:a+Ho, c:c+Wo] * g)`` summed to ``kshape``: the adjoint
    of ``_shift_add`` in ``k``."""
    kh, kw = kshape[-2:]
    ho, wo = g.shape[-2:]
    lead = kshape[:-2]
    views = [x[..., a:a + ho, c:c + wo] for a in range(kh) for c in range(kw)]
    if not lead and not (torch.is_grad_enabled() or _compiling() or _wrapped(x, g)):
        dk = torch.empty(kh * kw, dtype=g.dtype, device=g.device)
        tmp = torch.empty_like(g)  # one buffer reused by every tap
        for i, v in enumerate(views):
            dk[i] = torch.mul(v, g, out=tmp).sum()
        return dk.reshape(kh, kw)
    # Differentiable ops (double backward; torch.compile fuses them and is spared tracing
    # in-place writes), and per-image kernels: reduce the image axes, then the broadcast.
    taps = [unbroadcast(xp, (v * g).sum(dim=(-2, -1)), lead) for v in views]
    return torch.stack(taps, dim=-1).reshape(*lead, kh, kw)


class _Direct(torch.autograd.Function):
    """Shift-and-accumulate with its analytic adjoint, which costs the same number of taps::

        dL/dx = corr2d(pad(g, kh-1, kw-1), flip(k))    dL/dk[a, c] = <x[a:a+Ho, c:c+Wo], g>

    Letting autograd record the in-place loop instead would save one node per tap and, in
    backward, materialise a zero tensor the size of ``x`` per tap.  Backward is itself built
    from differentiable ops, so double backward works.
    """

    @staticmethod
    def forward(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return _shift_add(x, k)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: Any) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, k = ctx.saved_tensors
        kh, kw = k.shape[-2:]
        dx = dk = None
        if ctx.needs_input_grad[0]:
            dx = _Direct.apply(F.pad(g, (kw - 1, kw - 1, kh - 1, kh - 1)), k.flip(-2, -1))
            dx = unbroadcast(xp, dx, tuple(x.shape))
        if ctx.needs_input_grad[1]:
            dk = _tap_dots(x, g, tuple(k.shape))
        return dx, dk


class _HostCorr(torch.autograd.Function):
    """Correlations of CPU tensors by the NumPy backend's kernels on their memory, with the
    analytic adjoint of ``xcorr._grad`` in torch operations (so double backward works), and
    the same values whether autograd records or not.

    The FFT methods run scipy.fft's threaded transforms with the spectra multiplied in place
    (torch.fft, MKL's, took 2.4x as long for a batch of 16 inverse 1024² transforms, 134 vs
    55 ms, and 1.5x for one); the direct method the compiled loop (Numba) in one call, where
    torch's shift-and-accumulate makes two dispatches per tap (1024² k3: 3.1 ms against
    0.36 ms).
    """

    @staticmethod
    def forward(x: torch.Tensor, k: torch.Tensor, method: str) -> torch.Tensor:
        from . import _numpy

        return torch.from_numpy(_numpy.corr2d_valid(_host(x), _host(k), method))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor, str],
                      output: Any) -> None:
        ctx.save_for_backward(*inputs[:2])
        ctx.save_for_forward(*inputs[:2])
        ctx.method = inputs[2]

    @staticmethod
    def jvp(ctx: Any, dx: torch.Tensor | None, dk: torch.Tensor | None, _: Any
            ) -> torch.Tensor:
        x, k = ctx.saved_tensors
        return _bilinear_tangent(functools.partial(_HostCorr.forward, method=ctx.method),
                                 x, k, dx, dk)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, k = ctx.saved_tensors
        be = sys.modules[__name__]
        dx = dk = None
        if ctx.needs_input_grad[0]:
            dx = unbroadcast(xp, _grad.grad_x(be, k, g), tuple(x.shape))
        if ctx.needs_input_grad[1]:
            dk = _grad.grad_k(be, x, g, tuple(k.shape))
        return dx, dk, None


def _bilinear_tangent(corr: Any, x: torch.Tensor, k: torch.Tensor, dx: torch.Tensor | None,
                      dk: torch.Tensor | None) -> torch.Tensor:
    """The forward-mode derivative of the bilinear ``corr(x, k)``: ``corr(dx, k) +
    corr(x, dk)`` (a missing tangent is a zero one)."""
    if dx is None:
        return corr(x, dk)
    return corr(dx, k) if dk is None else corr(dx, k) + corr(x, dk)


def _native(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``F.conv2d`` (a correlation: no flip); per-image kernels as one grouped convolution."""
    h, w = x.shape[-2:]
    kh, kw = k.shape[-2:]
    plan = group_plan(tuple(x.shape[:-2]), tuple(k.shape[:-2]))
    if plan is None:  # a broadcast no grouped convolution covers: materialise it
        lead = torch.broadcast_shapes(x.shape[:-2], k.shape[:-2])
        x, k = x.expand(*lead, h, w), k.expand(*lead, kh, kw)
        plan = group_plan(tuple(lead), tuple(lead))
    with _ieee_fp32(x):
        out = F.conv2d(x.reshape(plan.n, plan.g, h, w),
                       k.reshape(plan.g * plan.m, 1, kh, kw), groups=plan.g)
    return out.reshape(*plan.batch, *out.shape[-2:])


@contextlib.contextmanager
def _ieee_fp32(x: torch.Tensor) -> Iterator[None]:
    """Turn TF32 off for cuDNN convolutions and cuBLAS matmuls (its fallback) in this block,
    restoring the caller's settings after (process-wide flags: not isolated from other
    threads running CUDA float32 convolutions at the same moment)."""
    if not x.is_cuda or x.dtype != torch.float32 or os.environ.get("XCORR_TORCH_TF32") == "1":
        yield
        return
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved
