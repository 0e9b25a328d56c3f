"""JAX backend: jitted kernels that also run under ``jax.jit``, ``jax.grad`` and ``jax.vmap``.

Every kernel is one ``jax.jit`` with ``method`` static, so inside a user's transformation the
program depends only on shapes and dtypes.  ``method="auto"`` cannot look at traced values,
so the "FFT unless non-finite" rule becomes ``guarded_fft``: a ``lax.cond`` evaluated on the
device.  The library never touches ``jax_enable_x64``: float64 and int64 follow the user's
setting, as every JAX function does.

On the CPU, eager (untraced) float32/float64 calls that the cost model predicts faster there
run the NumPy backend's kernels on the arrays' own memory instead, as torch's CPU tensors do,
and hand the result to XLA without a copy (``corr2d_valid``, ``ncc_match_template``).
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import sys
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import _grad
from .._boundary import NUMPY_MODES
from .._broadcast import group_plan
from .._conv_cost import ConvCost
from .._fft import fft_valid, overlap_valid, tiles_by_reshape
from .._interop import native_order, to_numpy
from .._methods import Cost, for_itemsize
from .._validate import broadcast_batch, numpy_kind

NAME = "jax"
xp = jnp  # the array namespace the operations are written against
METHODS = ("direct", "fft", "overlap", "native")

# Cost-model constants (ns), keyed by dtype width, on the project machine (2 AMD EPYC Zen-4
# cores shared with other jobs, JAX 0.10.2 CPU).  direct: XLA's fused loop costs more per tap
# the more taps it fuses (1024² float32: 0.018 ns a tap and output at 3×3, 0.026 at 7×7,
# 0.046 at 11×11), so a tap2 term: least squares on relative error over jitted wall times,
# 256²-2048², k 3-15, best of 5-50 (median error 9%/10% float32/float64, against 37%/32% for
# the straight line ``tap=0.029, out=0`` that the same data gave; ``bench/fit_direct.py jax
# --quadratic`` on 16²-2048² gives alike).  The straight line priced 1024² k3 at 0.40 ms
# (XLA: 0.17-0.18), so eager calls went to NumPy's loop at 0.32 ms with the hand-over.
# fft and overlap (jitted): ``bench/fit_fft.py jax``, least squares
# over 256² to 4096² (and 8×128²), k 5-41, tiles 16-512, of CPU time with XLA on one thread
# (process_time, min of 3-5: the machine was too loaded for wall clocks; XLA's CPU FFT runs on
# one thread anyway), fixed parts from 8²-64² calls.  Measured 1024² float32: fft 9-13 ms
# whatever the kernel, overlap 8.2 ms at k5 (B=64), 9.4 at k11; 2048²: fft 62-67, overlap 57
# (k5), 66 (k21, B=256); 4096²: fft 342, overlap 304 (k11, B=256), 325 (k31, B=384).
# lax.conv is never cheaper than both (22-55 ms at k3, 0.2-0.44 s at k31).
COSTS = {
    4: Cost(tap=0.015, tap2=0.00022, out=0.005, point=0.45, fixed=25_000.0,
            tile_point=0.25, tile_pix=4.0, tile_fixed=25_000.0),
    8: Cost(tap=0.035, tap2=0.00037, out=0.017, point=0.62, fixed=25_000.0,
            tile_point=0.78, tile_pix=0.95, tile_fixed=25_000.0),
}

# conv2d's constants (ns; see xcorr/_conv_cost.py).  lax.conv on CPU ran at 30 GF/s dense and
# ~1 GF/s depthwise (issue 14's anchors); XLA's dot is several times faster.
CONV_COSTS = {
    4: ConvCost(gemm=0.012, copy=0.2, native=0.067, native_thin=1.1, fixed=20_000.0),
    8: ConvCost(gemm=0.024, copy=0.2, native=0.13, native_thin=2.2, fixed=20_000.0),
}

# XLA fuses an unrolled shift-and-accumulate into one vectorised loop up to about 15×15 taps;
# beyond that the fusion stops vectorising (21×21: 0.36 s at 1024², 31×31: 0.85 s and 2 s to
# compile), so larger kernels loop over their rows with one fused pass per row instead.
_UNROLL_TAPS = 225


def version() -> str:
    return jax.__version__


def devices() -> list[str]:
    return [str(d) for d in jax.devices()]


def unavailable_reason() -> str | None:
    return None


def asarray(obj: Any) -> Any:
    """JAX arrays and tracers as they are (never moved); host data via ``jnp.asarray``."""
    if isinstance(obj, (jax.Array, jax.core.Tracer)):
        return obj
    arr = to_numpy(obj, NAME)  # refuses CUDA tensors, CuPy and Dask arrays
    if numpy_kind(arr.dtype) == "i" and arr.size and not x64():
        # Without x64 JAX would wrap 64-bit integers to int32 silently.
        info = np.iinfo(np.int32)
        if arr.min() < info.min or arr.max() > info.max:
            raise OverflowError("integer values outside the int32 range need JAX's 64-bit "
                                "mode (jax.config.update('jax_enable_x64', True)); or cast "
                                "the data to float")
    return jnp.asarray(native_order(arr))


def kind(arr: Any) -> str:
    return numpy_kind(arr.dtype)


def x64() -> bool:
    """Whether JAX's 64-bit mode is on here (the global flag, or ``jax.enable_x64``'s
    thread-local one)."""
    return jax.dtypes.canonicalize_dtype(np.int64) == np.int64


def promote(x: Any, k: Any) -> tuple[Any, Any]:
    """JAX promotion for floats, weak types included (a bfloat16 image with
    ``jnp.full((3, 3), 0.5)`` stays bfloat16, as ``x * k`` would); the default integer (int64
    with x64, else int32) for integers."""
    if kind(x) == "i" and kind(k) == "i":
        dt = jax.dtypes.canonicalize_dtype(jnp.int64)
        _check_fits(x, dt)
        _check_fits(k, dt)
    else:
        dt = jnp.result_type(x, k)  # the arrays, not their dtypes: those drop weak_type
    return x.astype(dt), k.astype(dt)


def _check_fits(a: Any, dt: Any) -> None:
    """Unsigned values as wide as the default integer ``dt`` (uint32 without x64, uint64
    with it) fit only below its maximum: an eager array's are checked, as host data's are
    (``asarray``); a traced one's cannot be, and wrap as in JAX's own arithmetic."""
    if (a.dtype.kind == "u" and a.dtype.itemsize >= np.dtype(dt).itemsize and a.size
            and not isinstance(a, jax.core.Tracer) and int(a.max()) > np.iinfo(dt).max):
        hint = ("enable JAX's 64-bit mode (jax.config.update('jax_enable_x64', True)), "
                if np.dtype(dt).itemsize == 4 else "")
        raise OverflowError(f"an input holds {a.dtype} values above {np.iinfo(dt).max}, which "
                            f"the exact {np.dtype(dt).name} result cannot represent; "
                            f"{hint}cast to float, or shift the data into its range")


def pad(x: Any, widths: tuple[int, int, int, int], boundary: str = "fill",
        value: Any = 0) -> Any:
    """Pad the last two axes; ``jnp.pad`` agrees with ``numpy.pad`` for every mode and width."""
    top, bottom, left, right = widths
    spec = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    if boundary == "fill":
        return jnp.pad(x, spec, constant_values=jnp.asarray(value, dtype=x.dtype))
    return jnp.pad(x, spec, mode=NUMPY_MODES[boundary])


def astype(a: Any, dtype: Any) -> Any:
    return a.astype(dtype)


def from_host(a: np.ndarray, like: Any) -> Any:
    """Host data as an array like ``like`` (its dtype)."""
    return jnp.asarray(a, dtype=like.dtype)


@jax.jit
def _finite(x: Any, k: Any) -> Any:
    return jnp.isfinite(x).all() & jnp.isfinite(k).all()


def all_finite(x: Any, k: Any) -> bool | None:
    if isinstance(x, jax.core.Tracer) or isinstance(k, jax.core.Tracer):
        return None  # values unknown until run time: guarded_fft decides there
    if _eager_on_cpu(x, k):  # NumPy's sums on the arrays' memory: no dispatch, no compile
        from . import _numpy

        return _numpy.all_finite(np.asarray(x), np.asarray(k))
    return bool(_finite(x, k))


@partial(jax.jit, static_argnames="method")
def _valid(x: Any, k: Any, method: str) -> Any:
    out_dtype = x.dtype
    if jnp.issubdtype(out_dtype, jnp.floating) and out_dtype.itemsize < 4:
        # Accumulate half precision in float32 and round once (jnp.fft has no float16 either).
        x, k = x.astype(jnp.float32), k.astype(jnp.float32)
    if method == "fft":
        out = fft_valid(x, k, rfft2, irfft2)
    elif method == "overlap":  # the tile is static: chosen from shapes while tracing
        tile = for_itemsize(COSTS, x.dtype.itemsize).overlap_tile(*x.shape[-2:], *k.shape[-2:])
        out = overlap_valid(x, k, tile, rfft2, irfft2,
                            partial(tiles_by_reshape, pad=pad, concat=jnp.concatenate))
    elif method == "native":
        out = _native(x, k)
    else:
        out = _direct(x, k)
    return out.astype(out_dtype)


def corr2d_valid(x: Any, k: Any, method: str) -> Any:
    """Valid correlation of promoted ``x`` (..., H, W) with ``k`` (..., kh, kw).

    Eager float32/float64 calls on the CPU that the cost model predicts faster there run the
    NumPy backend's kernels on the arrays' own memory (``_runs_on_host``); everything else,
    and everything traced (``jax.jit``, ``jax.grad``, ``jax.vmap``), is the jitted program.
    """
    if _runs_on_host(x, k, method):
        return _host_valid(x, k, method)
    return _traced_valid(x, k, method)


def _traced_valid(x: Any, k: Any, method: str) -> Any:
    """``corr2d_valid`` of arrays that are not eager CPU arrays: on a traced CPU program,
    float32, where the NumPy backend is predicted faster, its kernels through a host
    callback (``_host_corr``); else the jitted program."""
    if _traced_on_host(x, k, method):
        return _host_corr(x, k, method)
    return _valid(x, k, method=method)


def _host_valid(x: Any, k: Any, method: str) -> Any:
    """``corr2d_valid`` by the NumPy backend, the inputs' memory read in place."""
    from . import _numpy

    with _numpy.for_xla():
        out = _numpy.corr2d_valid(np.asarray(x), np.asarray(k), method)
    return _to_xla(out, x, k)


def _to_xla(out: np.ndarray, *inputs: Any) -> Any:
    """A NumPy result as a JAX array where JAX's own result would be: on the device of the
    inputs committed to one (``_eager_on_cpu`` lets no two differ), committed to it; else
    uncommitted, on the default device.

    Handed to XLA without a copy where it is contiguous and 64-byte aligned (the kernels'
    outputs are, see ``_numpy.empty``), else copied to such an array first: NumPy's fresh
    pages are cheaper than XLA's, which fault in 4 KB at a time (64 MB: 28 ms against 7).
    ``jax.make_array_from_callback`` takes 12 µs here, ``jax.device_put`` 28 µs, but only
    the latter leaves the result uncommitted.
    """
    from . import _numpy

    if not out.flags.c_contiguous or out.ctypes.data % _numpy.ALIGNMENT:
        out = _numpy.aligned_copy(out)  # e.g. a crop of the FFT's buffer
    for like in inputs:
        if committed(like):
            return jax.make_array_from_callback(out.shape, like.sharding, lambda _: out)
    return jax.device_put(out)


def committed(a: Any) -> bool:
    """Whether ``a`` is committed to its device: ``jax.Array.committed`` in recent JAX;
    JAX 0.4.33 (the oldest supported) has only the private ``_committed`` behind it."""
    flag = getattr(a, "committed", None)
    return bool(a._committed if flag is None else flag)


def _eager_on_cpu(*arrays: Any) -> bool:
    """Whether these are concrete (untraced) float32/float64 arrays, each on one CPU device,
    no two committed to different devices (XLA then raises, as it should): then NumPy can
    read their memory in place (``np.asarray`` makes no copy)."""
    pinned = None  # the device of a committed array
    for a in arrays:
        if (isinstance(a, jax.core.Tracer) or not isinstance(a, jax.Array)
                or a.dtype not in _HOST_DTYPES):
            return False
        sharding = a.sharding
        one_cpu = _one_cpu.get(sharding)
        if one_cpu is None:
            devices = sharding.device_set
            one_cpu = len(devices) == 1 and next(iter(devices)).platform == "cpu"
            if len(_one_cpu) > 64:
                _one_cpu.clear()
            _one_cpu[sharding] = one_cpu
        if not one_cpu:
            return False
        if committed(a):
            device = next(iter(sharding.device_set))
            if pinned not in (None, device):
                return False
            pinned = device
    return True


_HOST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_one_cpu: dict[Any, bool] = {}  # sharding -> whether it is one CPU device


def _runs_on_host(x: Any, k: Any, method: str) -> bool:
    """Whether ``corr2d_valid`` hands ``method`` on these arrays to the NumPy backend: eager
    arrays on the CPU (``_eager_on_cpu``) where NumPy's predicted time, plus handing the
    result to XLA (``_HOST_CALL_NS``), is below the jitted program's."""
    return method in _numpy_methods() and _eager_on_cpu(x, k) and _faster_on_host(x, k, method)


def _traced_on_host(x: Any, k: Any, method: str) -> bool:
    """Whether ``corr2d_valid`` computes ``method`` on traced arrays (``jax.jit``,
    ``jax.vmap``, ``jax.grad``) by a host callback to the NumPy backend: float32 on a CPU
    program where NumPy's predicted time plus the call is below XLA's (its constants
    without Numba, when Numba is missing: then its FFTs can go, not its direct loop).
    float32 only, for the reason ``_host_kernels`` gives.  Under ``jax.jit`` on two cores,
    XLA's program took 1.3-3x NumPy's time from 7×7 kernels (1024² k7 2.4 ms against 1.2 by
    the callback, k15 12.9 against 5.1, 2048² k15 61 against 19) and less at 1024² k3
    (0.45 against 0.60); the model decides between them as for eager arrays, bar the fresh
    pages that both outputs, XLA buffers either way, now pay."""
    return (method in _numpy_methods()
            and (isinstance(x, jax.core.Tracer) or isinstance(k, jax.core.Tracer))
            and x.dtype == k.dtype == jnp.float32 and _on_cpu(x)
            and jax.device_count() == 1  # no sharded program gathered onto one host call
            and callbacks_allowed()
            and _faster_on_host(x, k, method, traced=True))


def _faster_on_host(x: Any, k: Any, method: str, traced: bool = False) -> bool:
    """``_runs_on_host``'s prediction for eager CPU arrays (memoised by shapes and dtype),
    and ``_traced_on_host``'s (``traced``: the fresh pages of XLA's output paid by both)."""
    from . import _numpy

    host = _numpy.costs()  # its fallback's constants without Numba
    key = (tuple(x.shape), tuple(k.shape), x.dtype.itemsize, method, host is _numpy.COSTS,
           traced)
    faster = _host_faster.get(key)
    if faster is None:
        size = x.dtype.itemsize
        mine = _predict(for_itemsize(COSTS, size), x, k, method)
        if not traced:
            mine += _fresh_pages_ns(x, k)
        faster = _predict(for_itemsize(host, size), x, k, method) + _HOST_CALL_NS < mine
        if len(_host_faster) > 4096:
            _host_faster.clear()
        _host_faster[key] = faster
    return faster


_host_faster: dict[tuple[Any, ...], bool] = {}


def _fresh_pages_ns(x: Any, k: Any) -> float:
    """What XLA's output costs beyond the model where the allocator maps it afresh each call
    (glibc, from 32 MiB: 4 KiB pages, each faulted in), which NumPy's (huge pages) and the
    fits' outputs (up to 2048²) do not pay: 0.29 ns a byte measured, 4096² k3 direct in 22 ms
    float32 and 44 ms float64 against the model's 2.6 and 6.1 (NumPy's loop: 12 and 13)."""
    (h, w), (kh, kw) = x.shape[-2:], k.shape[-2:]
    nbytes = (math.prod(broadcast_batch(tuple(x.shape), tuple(k.shape)))
              * (h - kh + 1) * (w - kw + 1) * x.dtype.itemsize)
    return _FRESH_NS_PER_BYTE * nbytes if nbytes >= _FRESH_PAGES_FROM else 0.0


_FRESH_PAGES_FROM = 32 << 20
_FRESH_NS_PER_BYTE = 0.29


def _predict(cost: Cost, x: Any, k: Any, method: str) -> float:
    (h, w), (kh, kw) = x.shape[-2:], k.shape[-2:]
    batch = math.prod(broadcast_batch(tuple(x.shape), tuple(k.shape)))
    if method == "direct":
        return cost.direct(batch, h - kh + 1, w - kw + 1, kh, kw)
    if method == "fft":
        return cost.fft(batch, h, w)
    return cost.overlap(batch, h, w, kh, kw)


# What a call to the NumPy backend costs beyond its kernels: the checks, handing the result
# to XLA (see _to_xla) and releasing it: 50-60 µs on 64² with 3², where NumPy's kernel takes
# 9 and the jitted direct method 6.  So only larger problems go: from about 256² with 7².
_HOST_CALL_NS = 50_000.0


@functools.cache
def _numpy_methods() -> tuple[str, ...]:
    from . import _numpy

    return _numpy.METHODS


def guarded_fft(x: Any, k: Any, method: str = "fft") -> Any:
    """``method`` (an FFT method) if every value is finite, else direct (a NaN stays local).

    Decided on the device by ``lax.cond``, so it works on traced values.  Under ``vmap`` the
    condition is batched and both branches run, the result still selected per example.
    """
    return _guarded_fft(x, k, method=method, host=host_settings())


def host_settings() -> tuple[bool, bool]:
    """What the host-callback choices inside a jitted program depend on beyond shapes:
    ``XCORR_JAX_CALLBACKS`` and whether Numba's kernels are on.  A static argument of the
    module's own jitted programs, so that a change retraces them (their cache would keep the
    old choice: a callback in a program the variable was set to keep exportable)."""
    from .. import _numba

    return callbacks_allowed(), _numba.kernel() is not None


@partial(jax.jit, static_argnames=("method", "host"))
def _guarded_fft(x: Any, k: Any, method: str, host: tuple[bool, bool]) -> Any:
    return lax.cond(_finite(x, k), partial(_traced_valid, method=method),
                    partial(_traced_valid, method="direct"), x, k)


def select_finite(x: Any, k: Any, if_finite: Any, otherwise: Any) -> Any:
    """``if_finite()`` when every value of ``x`` and ``k`` is finite, else ``otherwise()``,
    decided on the device (``lax.cond``) for traced values; both build the same shape."""
    return lax.cond(_finite(x, k), lambda _: if_finite(), lambda _: otherwise(), None)


def _sse(k: Any, b: Any | None, x: Any, y: Any, geometry: Any, host: tuple[bool, bool]
         ) -> Any:
    r = _grad.model(sys.modules[__name__], x, k, b, geometry) - y
    return jnp.sum(r * r)


_sse_value_and_grad = jax.jit(jax.value_and_grad(_sse, argnums=(0, 1)),
                              static_argnames=("geometry", "host"))  # host: host_settings()


def sse_value_and_grad(x: Any, y: Any, k: Any, b: Any | None, geometry: Any = None
                       ) -> tuple[Any, Any, Any | None]:
    """Loss ``sum((model(x, k, b) - y)**2)`` and ``(dk, db)`` from one jitted step
    (``geometry``: a conv2d model, see ``xcorr._grad.model``)."""
    loss, (dk, db) = _sse_value_and_grad(k, b, x, y, geometry=geometry, host=host_settings())
    return loss, dk, db


def rfft2(a: Any, s: tuple[int, int]) -> Any:
    return jnp.fft.rfft2(a, s)


def irfft2(a: Any, s: tuple[int, int]) -> Any:
    return jnp.fft.irfft2(a, s)


def conv2d_native(x: Any, w: Any, stride: tuple[int, int], pads: tuple[int, int, int, int],
                  dilation: tuple[int, int], groups: int) -> Any:
    """``lax.conv_general_dilated`` (NCHW/OIHW, full float32 precision; half types summed in
    float32 and rounded once: XLA's CPU code in JAX 0.4 summed float16 in float16)."""
    half = jnp.issubdtype(x.dtype, jnp.floating) and x.dtype.itemsize < 4
    y = lax.conv_general_dilated(x, w, stride, ((pads[0], pads[1]), (pads[2], pads[3])),
                                 rhs_dilation=dilation, feature_group_count=groups,
                                 precision=lax.Precision.HIGHEST,
                                 preferred_element_type=jnp.float32 if half else None)
    return y.astype(x.dtype) if half else y


def pool2d_native(x: Any, win: Any, mode: str) -> Any:
    """``lax.reduce_window`` over the last two axes (averages of halves summed in float32)."""
    lead = (1,) * (x.ndim - 2)
    dims, strides = (*lead, *win.kernel), (*lead, *win.stride)
    pad = ((0, 0),) * (x.ndim - 2) + ((win.padding[0],) * 2, (win.padding[1],) * 2)
    # The initial values as NumPy constants: a traced one (jnp.asarray under jit) hides the
    # max/add pattern, and the generic reduce_window has no transpose or batched JVP rule
    # (jit(grad) of the pooling failed)
    if mode == "max":
        init = (jnp.iinfo(x.dtype).min if kind(x) == "i" else -np.inf)
        return lax.reduce_window(x, np.array(init, x.dtype), lax.max, dims, strides, pad)
    acc = x.astype(jnp.float32) if x.dtype.itemsize < 4 else x
    total = lax.reduce_window(acc, np.array(0, acc.dtype), lax.add, dims, strides, pad)
    return (total / (win.kernel[0] * win.kernel[1])).astype(x.dtype)


def ncc_inv_norm(x: Any, window: tuple[int, int], tol: float,
                 phase: tuple[int, int] = (0, 0)) -> Any:
    """``xcorr._ncc.inv_norm`` as one jitted program (eager, it would be dozens of dispatches
    and compilations); the phase does not matter to its window sums.

    On the CPU with Numba at hand, the values come from the NumPy backend's compiled pass
    for float32 (a host callback, ``_host_callback``: float64 sums, a tenth of the time of
    the double-word sums JAX without x64 needs), and derivatives from the jitted program
    (``custom_jvp``), so ``jax.grad``, ``jax.jvp``, ``jax.jit`` and ``jax.vmap`` all work as
    before.
    """
    if _host_kernels(x):
        return _host_inv_norm(x, window, tol)
    return _ncc_inv_norm(x, window=window, tol=tol)


@partial(jax.jit, static_argnames=("window", "tol"))
def _ncc_inv_norm(x: Any, window: tuple[int, int], tol: float) -> Any:
    from .. import _ncc

    wide = jnp.asarray(np.zeros((), np.float64)).dtype  # float32 without x64
    return _ncc.generic_inv_norm(sys.modules[__name__], x, window, tol, wide)


def ncc_finish(x: Any, c: Any, num: Any, inv_t: Any, window: tuple[int, int],
               tol: float) -> Any:
    """``xcorr._ncc.finish`` as one jitted program: the normaliser, then one fused pass over
    the numerator (eager, three passes over a batch of 16 1024² maps took 70 ms)."""
    return _ncc_finish(x, c, num, inv_t, window=window, tol=tol, host=_host_kernels(x))


@partial(jax.jit, static_argnames=("window", "tol", "host"))
def _ncc_finish(x: Any, c: Any, num: Any, inv_t: Any, window: tuple[int, int], tol: float,
                host: bool) -> Any:
    xc = x - c
    inv = _host_inv_norm(xc, window, tol) if host else _ncc_inv_norm(xc, window=window, tol=tol)
    return jnp.clip(num * inv * inv_t, -1, 1)


def _host_kernels(x: Any) -> bool:
    """Whether ``x`` is float32 on the CPU (a tracer: the program is, by default) and the
    NumPy backend has its compiled kernels: then a callback to them computes on the host's
    own memory, with no copy from a device.

    float32 only: that is where the double-word sums are slow, and a callback may run on a
    thread where ``jax.enable_x64`` (a thread-local switch) is off, which hands it float64
    operands converted to float32 (seen with JAX 0.10).
    """
    from .. import _numba

    return (x.dtype == jnp.float32 and _on_cpu(x) and _numba.kernel() is not None
            and jax.device_count() == 1  # no sharded program gathered onto one host call
            and callbacks_allowed())


def callbacks_allowed() -> bool:
    """Whether xcorr may put host callbacks into JAX programs: unless the environment sets
    ``XCORR_JAX_CALLBACKS=0`` (read each time a program is traced).  A program that holds
    one cannot be serialized (``jax.export``: "serialization of host_callbacks is not yet
    implemented"); with the variable set, xcorr's programs are XLA's own throughout."""
    return os.environ.get("XCORR_JAX_CALLBACKS", "1").strip() != "0"


def _on_cpu(x: Any) -> bool:
    """Whether ``x`` is on the CPU (a tracer: whether the program is, by default)."""
    if isinstance(x, jax.core.Tracer):
        return jax.default_backend() == "cpu"
    return all(d.platform == "cpu" for d in x.devices())


def _host_callback(host: Any, shape: Any, *args: Any) -> Any:
    """``host(*arrays) -> ndarray`` on the host as an operation of the traced program, with
    ``shape`` (a ``jax.ShapeDtypeStruct``) its result's.

    Where JAX has ``jax.experimental.buffer_callback`` (recent releases; 0.4.33 has not),
    the NumPy backend writes its result straight into XLA's output buffer
    (``_numpy.output_into``).  ``jax.pure_callback`` copies the returned array into that
    buffer instead: for 16 NCC maps of 994² (63 MB) under ``jax.jit``, 127 ms against 78
    by ``buffer_callback`` (NumPy's own call: 70 ms; an Intel Xeon, two cores).  Most of
    the difference is the copy into pages the allocator maps afresh each call, 4 KiB at a
    time (NumPy's own output gets huge pages).
    """
    # vmap gives every operand a new leading axis (the batched ones their own, the others
    # one of size 1), and the host code broadcasts batch axes from the right: at unequal
    # ranks the vmapped axis would line up with another operand's own batch axis.
    rank = max(a.ndim for a in args)
    args = tuple(a.reshape((1,) * (rank - a.ndim) + a.shape) for a in args)
    if _buffer_callback is None:
        return jax.pure_callback(host, shape, *args, **_BATCHED_CALLBACK)

    def fill(ctx: Any, out: Any, *buffers: Any) -> None:
        from . import _numpy

        dst = np.asarray(out)
        with _numpy.output_into(dst):
            result = host(*(np.asarray(b) for b in buffers))
        _numpy.deliver(result, dst)

    return _buffer_callback(fill, shape, vmap_method="expand_dims")(*args)


# The callback takes leading batch dimensions, so vmap adds one to its input (jax >= 0.4.34).
# 0.4.33's vectorized=True adds none to the unmapped operands, which then no longer line up
# with the mapped ones (nested vmap over different operands); its sequential mode is exact.
_BATCHED_CALLBACK = ({"vmap_method": "expand_dims"}
                     if "vmap_method" in inspect.signature(jax.pure_callback).parameters
                     else {"vectorized": False})


def _find_buffer_callback() -> Any:
    """``jax.experimental.buffer_callback.buffer_callback`` where this JAX has it, with the
    ``vmap_method`` that ``_host_callback`` passes; else None."""
    try:
        from jax.experimental.buffer_callback import buffer_callback
    except ImportError:
        return None
    return buffer_callback if "vmap_method" in inspect.signature(buffer_callback).parameters \
        else None


_buffer_callback = _find_buffer_callback()


def ncc_match_template(x: Any, t: Any, mode: str, method: str, m: Any = None) -> Any:
    """``xcorr._ncc.unmasked``'s values (``_masked``'s with a mask ``m``) from the NumPy
    backend on the CPU, or None.

    With Numba at hand and a method NumPy has: eager float32 and float64 arrays on the CPU
    go to the NumPy backend directly (its result handed to XLA by ``_to_xla``); traced
    float32 on the CPU goes through one host callback (``_host_callback``) that runs the
    NumPy backend's ``match_template`` on the host's own memory (scipy.fft on all cores, the
    compiled normaliser fused with the finishing pass), and the derivatives come from the
    jitted program (``custom_jvp``), so ``jax.grad``, ``jax.jvp``, ``jax.jit`` and
    ``jax.vmap`` work as before.  XLA's batched FFTs took about twice scipy's here: 16
    templates 31² on 1024², 140 ms against the callback's 71 (NumPy's own 65).  Under
    differentiation the values come from the program too (the primal of its jvp), which
    then costs no more than before.

    The masked form's sums are float64 there, where JAX without x64 sums in float32: on the
    camera photograph with a 31² template and a random mask, a third of the map was off by
    more than 0.01 (low-contrast sky windows taken for flat; NumPy's error 3e-8).
    """
    from .. import _ncc, _numba

    if (method != "auto" and method not in _numpy_methods()) or _numba.kernel() is None:
        return None  # (x and t are promoted to one dtype: _ncc._float)
    arrays = (x, t) if m is None else (x, t, m)
    if _eager_on_cpu(*arrays):  # no callback, no copy into XLA's buffer
        from . import _numpy

        with _numpy.for_xla():
            out = _ncc.match_template(np.asarray(x), np.asarray(t), mode=mode, method=method,
                                      backend="numpy",
                                      mask=None if m is None else np.asarray(m))
        return _to_xla(out, *arrays)
    if not _host_kernels(x):
        return None
    return _host_match(x, t, mode, method) if m is None else \
        _host_match_masked(x, t, m.astype(x.dtype), mode, method)


def _ncc_program(x: Any, t: Any, mode: str, method: str) -> Any:
    from .. import _ncc

    wide = jnp.asarray(np.zeros((), np.float64)).dtype
    return _ncc.unmasked(sys.modules[__name__], x, t, mode, method, wide)


def ncc_local(x: Any, y: Any, window: tuple[int, int], eps: float) -> Any:
    """``xcorr._ncc.local_values`` from the NumPy backend (float64 sums) for float32 on the
    CPU without x64, or None.  JAX's own sums are float32 there: on the camera photograph
    against a shifted copy, window 9, an error of 0.011 (NumPy's 3e-8), and 2.0 (the sign
    flipped) across a step of 1e4.  Eager arrays go to NumPy directly; traced ones through
    one host callback, their derivatives from the program (``custom_jvp``)."""
    from .. import _ncc

    if x.dtype != jnp.float32 or x64():
        return None  # float64 sums in the program already
    if _eager_on_cpu(x, y):
        from . import _numpy

        with _numpy.for_xla():
            out = _ncc.local_values(_numpy, np.asarray(x), np.asarray(y), window, eps,
                                    np.float64)
        return _to_xla(np.asarray(out, np.float32), x, y)
    return _host_local(x, y, window, float(eps)) if _host_kernels(x) else None


def _local_program(x: Any, y: Any, window: tuple[int, int], eps: float) -> Any:
    from .. import _ncc

    wide = jnp.asarray(np.zeros((), np.float64)).dtype
    return _ncc.local_values(sys.modules[__name__], x, y, window, eps, wide)


def _masked_program(x: Any, t: Any, m: Any, mode: str, method: str) -> Any:
    from .. import _ncc

    wide = jnp.asarray(np.zeros((), np.float64)).dtype
    return _ncc._masked(sys.modules[__name__], x, t, m, mode, method, wide)


def _host_valued(program: Any, host: Any, result: Any, arrays: int, statics: int,
                 host_primal: bool = False) -> Any:
    """``program(*arrays, *statics)`` with its values from the NumPy backend on the host.

    The returned function is jitted with its ``statics`` trailing arguments static; it runs
    ``host(*statics)``, a function of NumPy arrays, through one ``_host_callback`` whose
    result ``result(*arrays, *statics)`` (a ``jax.ShapeDtypeStruct``) describes.  Under
    differentiation (``custom_jvp``, so ``jax.grad``, ``jax.jvp``, ``jax.jit`` and
    ``jax.vmap`` all work) the derivatives come from ``program``, and so do the values,
    which then cost nothing more, unless ``host_primal`` (a normaliser whose flatness
    decisions must stay the host's).
    """
    static = tuple(range(arrays, arrays + statics))

    @partial(jax.custom_jvp, nondiff_argnums=static)
    @partial(jax.jit, static_argnums=static)
    def hosted(*args: Any) -> Any:
        return _host_callback(host(*args[arrays:]), result(*args), *args[:arrays])

    @hosted.defjvp
    def hosted_jvp(*args: Any) -> tuple[Any, Any]:
        *params, primals, tangents = args
        y, dy = jax.jvp(lambda *a: program(*a, *params), primals, tangents)
        return (hosted(*primals, *params) if host_primal else y), dy

    return hosted


def _f32(*arrays: Any) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(a, np.float32) for a in arrays)


def _inv_norm_host(window: tuple[int, int], tol: float) -> Any:
    from .. import _ncc
    from . import _numpy

    tol64 = _ncc._flat_tol(window[0] + window[1], _ncc._unit(np.float64))  # float64 sums

    def host(a: np.ndarray) -> np.ndarray:
        (a,) = _f32(a)
        out = _numpy.ncc_inv_norm(a, window, tol64)
        if out is None:  # Numba switched off since this was traced: NumPy's own sums
            out = _ncc.generic_inv_norm(_numpy, a, window, tol64, np.dtype(np.float64))
        return out

    return host


def _corr_host(method: str) -> Any:
    from . import _numpy

    return lambda a, b: _numpy.corr2d_valid(*_f32(a, b), method)


def _match_host(mode: str, method: str) -> Any:
    from .. import _ncc

    return lambda a, b: np.asarray(_ncc.match_template(*_f32(a, b), mode=mode, method=method,
                                                       backend="numpy"), np.float32)


def _masked_host(mode: str, method: str) -> Any:
    # the weights' values were not known when the program was traced, so not checked: the
    # masked form itself, as the program would compute it (not match_template, which would
    # raise inside the callback)
    from .. import _ncc
    from . import _numpy

    return lambda a, b, c: np.asarray(_ncc._masked(_numpy, *_f32(a, b, c), mode, method,
                                                   np.float64), np.float32)


def _local_host(window: tuple[int, int], eps: float) -> Any:
    from .. import _ncc
    from . import _numpy

    def host(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # (vmap expands an unmapped operand with an axis of 1: broadcast it to the other's)
        a, b = np.broadcast_arrays(*_f32(a, b))
        return np.asarray(_ncc.local_values(_numpy, a, b, window, eps, np.float64),
                          np.float32)

    return host


def _valid_shape(x: Any, k: Any, *_: Any) -> Any:
    (h, w), (kh, kw) = x.shape[-2:], k.shape[-2:]
    lead = broadcast_batch(tuple(x.shape), tuple(k.shape))
    return jax.ShapeDtypeStruct((*lead, h - kh + 1, w - kw + 1), x.dtype)


def _window_shape(x: Any, window: tuple[int, int], *_: Any) -> Any:
    (h, w), (wh, ww) = x.shape[-2:], window
    return jax.ShapeDtypeStruct((*x.shape[:-2], h - wh + 1, w - ww + 1), x.dtype)


def _map_shape(*args: Any) -> Any:
    """``match_template``'s result of ``(x, t[, m], mode, method)``."""
    *arrays, mode, _ = args
    x, t = arrays[:2]
    lead = np.broadcast_shapes(*(tuple(a.shape[:-2]) for a in arrays))
    (h, w), (th, tw) = x.shape[-2:], t.shape[-2:]
    size = (h - th + 1, w - tw + 1) if mode == "valid" else (h, w)
    return jax.ShapeDtypeStruct((*lead, *size), x.dtype)


def _pair_shape(x: Any, y: Any, *_: Any) -> Any:
    return jax.ShapeDtypeStruct(jnp.broadcast_shapes(x.shape, y.shape), x.dtype)


# The five computations whose values a traced float32 CPU program takes from the host (see
# ncc_inv_norm, _traced_valid, ncc_match_template and ncc_local).
_host_inv_norm = _host_valued(lambda x, window, tol: _ncc_inv_norm(x, window=window, tol=tol),
                              _inv_norm_host, _window_shape, 1, 2, host_primal=True)
_host_corr = _host_valued(lambda x, k, method: _valid(x, k, method=method), _corr_host,
                          _valid_shape, 2, 1)
_host_match = _host_valued(lambda x, t, mode, method: _ncc_program(x, t, mode, method),
                           _match_host, _map_shape, 2, 2)
_host_match_masked = _host_valued(
    lambda x, t, m, mode, method: _masked_program(x, t, m, mode, method), _masked_host,
    _map_shape, 3, 2)
_host_local = _host_valued(lambda x, y, window, eps: _local_program(x, y, window, eps),
                           _local_host, _pair_shape, 2, 2)


def ncc_template_terms(t: Any) -> tuple[Any, Any]:
    """``xcorr._ncc``'s template terms as one jitted program (eager, JAX without x64 runs its
    double-word sums as some hundred dispatches: 15 ms for a 31² template)."""
    return _ncc_template_terms(t)


@jax.jit
def _ncc_template_terms(t: Any) -> tuple[Any, Any]:
    from .. import _ncc

    wide = jnp.asarray(np.zeros((), np.float64)).dtype
    return _ncc.generic_template_terms(sys.modules[__name__], t, wide)


def conv_costs() -> dict[int, ConvCost]:
    return CONV_COSTS


def costs() -> dict[int, Cost]:
    return COSTS


def costs_for(x: Any, k: Any) -> dict[int, Cost]:
    """The cost model for these arrays: NumPy's constants for the methods ``corr2d_valid``
    hands to the NumPy backend (eager CPU arrays, traced float32 on the CPU), JAX's own for
    the rest."""
    from . import _numpy

    on_host = _faster_on_host if _eager_on_cpu(x, k) else _traced_on_host
    host = tuple(m for m in _numpy_methods() if on_host(x, k, m))
    return _numpy.hosting_costs(COSTS, host) if host else COSTS


# -- kernels (traced inside _valid) -------------------------------------------------------------


def _direct(x: Any, k: Any) -> Any:
    """Shift-and-accumulate: ``sum_{a,b} x[..., a:a+Ho, b:b+Wo] * k[a, b]`` in row-major order."""
    kh, kw = k.shape[-2:]
    ho, wo = x.shape[-2] - kh + 1, x.shape[-1] - kw + 1
    taps = k[..., None, None]  # (..., kh, kw, 1, 1): per-image kernels broadcast over x

    def row(rows: Any, kr: Any, acc: Any) -> Any:  # one kernel row: a single fused pass
        for b in range(kw):
            term = rows[..., :ho, b:b + wo] * kr[..., b, :, :]
            acc = term if acc is None else acc + term
        return acc

    if kh * kw <= _UNROLL_TAPS:
        acc = None
        for a in range(kh):
            acc = row(x[..., a:, :], taps[..., a, :, :, :], acc)
        return acc

    def body(a: Any, acc: Any) -> Any:
        rows = lax.dynamic_slice_in_dim(x, a, ho, axis=x.ndim - 2)
        kr = lax.dynamic_index_in_dim(taps, a, axis=taps.ndim - 4, keepdims=False)
        return row(rows, kr, acc)

    return lax.fori_loop(1, kh, body, row(x, taps[..., 0, :, :, :], None))


def _native(x: Any, k: Any) -> Any:
    """``lax.conv_general_dilated`` (a correlation: no flip) at full float32 precision;
    per-image kernels as one grouped convolution."""
    h, w = x.shape[-2:]
    kh, kw = k.shape[-2:]
    plan = group_plan(tuple(x.shape[:-2]), tuple(k.shape[:-2]))
    if plan is None:  # a broadcast no grouped convolution covers: materialise it
        lead = jnp.broadcast_shapes(x.shape[:-2], k.shape[:-2])
        x, k = jnp.broadcast_to(x, (*lead, h, w)), jnp.broadcast_to(k, (*lead, kh, kw))
        plan = group_plan(tuple(lead), tuple(lead))
    out = lax.conv_general_dilated(x.reshape(plan.n, plan.g, h, w),
                                   k.reshape(plan.g * plan.m, 1, kh, kw), (1, 1), "VALID",
                                   feature_group_count=plan.g, precision=lax.Precision.HIGHEST)
    return out.reshape(*plan.batch, *out.shape[-2:])
