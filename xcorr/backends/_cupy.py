"""CuPy backend: one fused CUDA kernel for the direct sum, cuFFT for the FFT path.

``direct`` is a single raw-kernel launch whatever the kernel size (one thread per output
looping over the taps; for a handful of outputs with very many taps, as in ``dL/dk``, one
thread block per output reducing its taps in parallel).  It is compiled with
``--fmad=false`` and adds the taps in row-major order, like the NumPy backend's loop, so a
float result does not depend on whether the compiler fused a multiply-add.  Integers are
promoted to int64 and accumulate in int64: exact (CuPy's own ``ndimage`` rounds through
float64).  ``fft`` is ``xcorr._fft.fft_valid`` over ``cupy.fft``; ``native`` is
``cupyx.scipy.signal.correlate2d``, for comparison.

CuPy is imported here, guarded: without it, or without a CUDA device, the module still
loads so that ``unavailable_reason()`` can say why.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np

from .. import _grad
from .._boundary import NUMPY_MODES
from .._broadcast import batch_index
from .._dispatch import array_backend
from .._fft import fft_valid, mul_conj_inplace, overlap_valid, tiles_by_view
from .._interop import native_order, to_numpy
from .._methods import Cost, for_itemsize
from .._validate import numpy_kind, numpy_result_dtype

try:
    import cupy
except Exception as exc:  # ImportError, or a broken CUDA install failing at import time
    cupy = None
    _IMPORT_ERROR: str | None = (
        "cupy not installed" if isinstance(exc, ModuleNotFoundError)
        else f"cupy failed to import ({type(exc).__name__}: {exc})")
else:
    _IMPORT_ERROR = None

NAME = "cupy"
xp = cupy  # the array namespace the operations are written against (None without CuPy)
METHODS = ("direct", "fft", "overlap", "native")

# Cost-model constants (ns), float32 fitted on an H100 (bench/results/gpu_bench_*.md, 1024²
# and 4096² × k 3/11/31): direct 0.26 ps per tap (4096² k31: 4.2 ms) plus 9 ps per output
# (k3: 0.19 ms); fft about 0.45 ms per call whatever the size (three cuFFT plans, the
# finiteness check's sync) plus 1.3 ps per N·log2 N.  So 1024² k31 goes direct (0.32 ms
# against 0.51) and 4096² k31 FFT (1.0 ms against 4.2).  float64: twice the float32 figures
# (not measured; Hopper's float64 rate and bytes per element are both half/double).
# Overlap-save (tile_*): NOT FITTED (no GPU at hand when it was added), set by analogy with
# the FFT: cuFFT's batched small transforms cost about what one large one does per point
# (tile_point = point), each tile point adds about five passes of 8-byte traffic at ~3 TB/s
# (cutting the tiles, the product, putting them together: tile_pix 13 ps), and a call pays
# the same planning and sync as the FFT (tile_fixed = fixed).
COSTS = {
    4: Cost(tap=0.00026, out=0.009, point=0.0013, fixed=450_000.0,
            tile_point=0.0013, tile_pix=0.013, tile_fixed=450_000.0),
    8: Cost(tap=0.00052, out=0.018, point=0.0026, fixed=450_000.0,
            tile_point=0.0026, tile_pix=0.026, tile_fixed=450_000.0),
}

# conv2d's GEMMs run in column panels of this width (reproducible bits: see _conv._gemm).
GEMM_PANEL = 4096

_THREADS = 256
# Below this many outputs (about a tenth of the threads an H100 keeps in flight) and above
# this many taps, one thread per output would leave the GPU idle: reduce per block instead.
_FEW_OUTPUTS = 1 << 15
_MANY_TAPS = 1024

_SOURCE = r"""
template <typename T>
__global__ void xcorr_valid(const T* __restrict__ x, const T* __restrict__ k,
                            const long long* __restrict__ xi, const long long* __restrict__ ki,
                            T* __restrict__ out, long long n, long long h, long long w,
                            int kh, int kw, long long ho, long long wo) {
    // One thread per output, taps in row-major order (as the NumPy backend's loop).  Output
    // batch b reads image xi[b] and kernel ki[b] (broadcast batches are index maps).
    const long long hw = ho * wo;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const long long b = t / hw, r = t - b * hw, i = r / wo, j = r - i * wo;
        const T* src = x + (xi[b] * h + i) * w + j;
        const T* kb = k + ki[b] * kh * kw;
        T acc = 0;
        for (int a = 0; a < kh; ++a) {
            const T* row = src + a * w;
            const T* krow = kb + a * kw;
            for (int c = 0; c < kw; ++c) acc += row[c] * krow[c];
        }
        out[t] = acc;
    }
}

template <typename T>
__global__ void xcorr_valid_reduce(const T* __restrict__ x, const T* __restrict__ k,
                                   const long long* __restrict__ xi,
                                   const long long* __restrict__ ki,
                                   T* __restrict__ out, long long h, long long w,
                                   int kh, int kw, long long ho, long long wo) {
    // One block per output: threads stride over the taps, then a fixed-order tree sum
    // (deterministic run to run).  blockDim.x must be a power of two <= 1024.
    __shared__ T part[1024];
    const long long t = blockIdx.x, hw = ho * wo;
    const long long b = t / hw, r = t - b * hw, i = r / wo, j = r - i * wo;
    const T* src = x + (xi[b] * h + i) * w + j;
    const T* kb = k + ki[b] * kh * kw;
    const long long taps = (long long)kh * kw;
    T acc = 0;
    for (long long p = threadIdx.x; p < taps; p += blockDim.x) {
        const long long a = p / kw, c = p - a * kw;
        acc += src[a * w + c] * kb[p];
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[t] = part[0];
}
"""
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double",
           np.dtype(np.int64): "long long"}


@functools.cache
def unavailable_reason() -> str | None:
    """Why CuPy cannot run here (cached: asking initialises the CUDA runtime)."""
    if cupy is None:
        return _IMPORT_ERROR
    try:
        ok = cupy.is_available()
    except Exception as exc:  # a driver/runtime mismatch can raise instead of answering
        return f"cupy installed, CUDA unusable: {type(exc).__name__}: {exc}"
    if not ok:
        return "cupy installed, no CUDA device: cupy.is_available() is False"
    return None


def version() -> str | None:
    return None if cupy is None else cupy.__version__


def devices() -> list[str]:
    out = []
    for i in range(cupy.cuda.runtime.getDeviceCount()):
        name = cupy.cuda.runtime.getDeviceProperties(i)["name"]
        out.append(f"cuda:{i} ({name.decode() if isinstance(name, bytes) else name})")
    return out


def costs() -> dict[int, Cost]:
    return COSTS


def asarray(obj: Any) -> Any:
    """A CuPy array: GPU arrays of any framework zero-copy through DLPack, host data copied in.

    Host data (NumPy, lists, CPU tensors) goes to the current device: choosing
    ``backend="cupy"`` is the explicit request for that copy.  Nothing ever comes back to
    the host.
    """
    kind = array_backend(obj)
    if kind == "cupy":
        return obj
    if kind == "torch" and obj.device.type == "cuda":
        if obj.requires_grad:
            raise TypeError("a torch tensor that requires grad cannot go to backend='cupy' "
                            "(its gradient would be lost); call .detach(), or use "
                            "backend='torch'")
        return _from_dlpack(obj.resolve_conj().resolve_neg())
    if kind == "jax" and _on_jax_gpu(obj):
        return _from_dlpack(obj)
    # Host data (tracers, lazy Dask arrays and other devices raise TypeError in to_numpy).
    return cupy.asarray(native_order(to_numpy(obj, NAME)))


def kind(arr: Any) -> str:
    return numpy_kind(arr.dtype)


def promote(x: Any, k: Any) -> tuple[Any, Any]:
    """Common dtype: NumPy promotion for floats (CuPy follows it), int64 for integers."""
    dt = numpy_result_dtype(x.dtype, k.dtype)
    return x.astype(dt, copy=False), k.astype(dt, copy=False)


def pad(x: Any, widths: tuple[int, int, int, int], boundary: str = "fill",
        value: Any = 0) -> Any:
    """Pad the last two axes; ``cupy.pad`` is a port of ``numpy.pad`` (same modes, widths)."""
    top, bottom, left, right = widths
    spec = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    with x.device:
        if boundary == "fill":
            return cupy.pad(x, spec, constant_values=value)
        return cupy.pad(x, spec, mode=NUMPY_MODES[boundary])


def astype(a: Any, dtype: Any) -> Any:
    return a.astype(dtype, copy=False)


def from_host(a: np.ndarray, like: Any) -> Any:
    """Host data as an array like ``like`` (its dtype, on its device)."""
    with like.device:
        return cupy.asarray(a, dtype=like.dtype)


def all_finite(x: Any, k: Any) -> bool:
    # One reduction per array and a single device->host read of one bool.  A finite total
    # that overflows only sends the call to the (exact) direct path.
    with x.device:
        total = x.sum(dtype=cupy.float64) + k.sum(dtype=cupy.float64)
        return bool(cupy.isfinite(total))


def corr2d_valid(x: Any, k: Any, method: str) -> Any:
    """Valid correlation of promoted ``x`` (..., H, W) with ``k`` (kh, kw), on x's device."""
    out_dtype = x.dtype
    with x.device:
        k = cupy.asarray(k)  # the kernel may come from another device (e.g. via Dask blocks)
        if out_dtype == np.float16:  # accumulate half precision in float32, round once
            x, k = x.astype(np.float32), k.astype(np.float32)
        if method == "fft":
            out = _fft(x, k)
        elif method == "overlap":
            out = _overlap(x, k)
        elif method == "native":
            out = _native(x, k)
        else:
            out = _direct(x, k)
        return out.astype(out_dtype, copy=False)


def rfft2(a: Any, s: tuple[int, int]) -> Any:
    return cupy.fft.rfft2(a, s=s, axes=(-2, -1))


def irfft2(a: Any, s: tuple[int, int]) -> Any:
    return cupy.fft.irfft2(a, s=s, axes=(-2, -1))


def sse_value_and_grad(x: Any, y: Any, k: Any, b: Any | None, geometry: Any = None
                       ) -> tuple[Any, Any, Any | None]:
    """Squared-error loss and its gradient, through the same analytic VJP as NumPy."""
    with x.device:
        return _grad.sse_value_and_grad(sys.modules[__name__], x, y, k, b, geometry)


# -- kernels ----------------------------------------------------------------------------------


@functools.cache
def _module() -> Any:
    names = [f"{f}<{t}>" for f in ("xcorr_valid", "xcorr_valid_reduce")
             for t in _CTYPES.values()]
    # --fmad=false: products are rounded before they are added, as on the CPU.
    return cupy.RawModule(code=_SOURCE, options=("--fmad=false",), name_expressions=names)


def _direct(x: Any, k: Any) -> Any:
    h, w = x.shape[-2:]
    kh, kw = k.shape[-2:]
    ho, wo = h - kh + 1, w - kw + 1
    lead, xi, ki = batch_index(tuple(x.shape[:-2]), tuple(k.shape[:-2]))
    xb = cupy.ascontiguousarray(x.reshape(-1, h, w))  # also resolves negative strides
    kb = cupy.ascontiguousarray(k.reshape(-1, kh, kw))
    xi, ki = cupy.asarray(xi), cupy.asarray(ki)  # host -> device: the small index maps
    out = cupy.empty((xi.size, ho, wo), dtype=x.dtype)
    n = out.size
    ctype = _CTYPES[np.dtype(x.dtype)]
    i64, i32 = np.int64, np.int32
    if n < _FEW_OUTPUTS and kh * kw >= _MANY_TAPS:
        fn = _module().get_function(f"xcorr_valid_reduce<{ctype}>")
        fn((n,), (_THREADS,),
           (xb, kb, xi, ki, out, i64(h), i64(w), i32(kh), i32(kw), i64(ho), i64(wo)))
    else:
        fn = _module().get_function(f"xcorr_valid<{ctype}>")
        blocks = min(-(-n // _THREADS), 1 << 30)  # grid-stride loop covers the rest
        fn((blocks,), (_THREADS,),
           (xb, kb, xi, ki, out, i64(n), i64(h), i64(w), i32(kh), i32(kw), i64(ho), i64(wo)))
    return out.reshape(*lead, ho, wo)


def _fft(x: Any, k: Any) -> Any:
    return cupy.ascontiguousarray(fft_valid(x, k, rfft2, irfft2, mul_conj_inplace(cupy)))


def _overlap(x: Any, k: Any) -> Any:
    tile = for_itemsize(COSTS, x.dtype.itemsize).overlap_tile(*x.shape[-2:], *k.shape[-2:])
    return cupy.ascontiguousarray(overlap_valid(x, k, tile, rfft2, irfft2, _tiles,
                                                mul_conj_inplace(cupy)))


def _tiles(x: Any, tile: tuple[int, int], step: tuple[int, int], count: tuple[int, int]) -> Any:
    from cupy.lib.stride_tricks import sliding_window_view

    return tiles_by_view(x, tile, step, count, pad,
                         lambda a, b: sliding_window_view(a, b, axis=(-2, -1)))


def _native(x: Any, k: Any) -> Any:
    import cupyx.scipy.signal  # an explicit submodule import is required (cupy #8336)

    lead, xi, ki = batch_index(tuple(x.shape[:-2]), tuple(k.shape[:-2]))
    xb = x.reshape(-1, *x.shape[-2:])
    kb = k.reshape(-1, *k.shape[-2:])
    outs = [cupyx.scipy.signal.correlate2d(xb[i], kb[j], mode="valid")
            for i, j in zip(xi.tolist(), ki.tolist(), strict=True)]
    return cupy.stack(outs).reshape(*lead, *outs[0].shape)


def _on_jax_gpu(obj: Any) -> bool:
    devs = getattr(obj, "devices", None)
    try:
        return callable(devs) and any(d.platform == "gpu" for d in devs())
    except Exception:  # a tracer: to_numpy raises the helpful TypeError
        return False


def _from_dlpack(obj: Any) -> Any:
    try:
        return cupy.from_dlpack(obj)
    except (TypeError, ValueError, RuntimeError, BufferError) as exc:
        raise TypeError(f"cannot share this {type(obj).__name__} with CuPy through DLPack "
                        f"({exc}); DLPack needs one device and a dtype CuPy has (bfloat16 is "
                        "not one: cast to float32 first)") from exc
