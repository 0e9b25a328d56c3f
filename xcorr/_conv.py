"""``conv2d``: multi-channel convolution layers (PyTorch's ``F.conv2d``), written once.

Layouts and semantics are PyTorch's: ``x (N, C_in, H, W)`` (or unbatched ``(C_in, H, W)``),
``w (C_out, C_in // groups, kh, kw)``, ``bias (C_out,)``, cross-correlation (no flip),
``stride``/``padding``/``dilation``/``groups``/``padding_mode``.  The geometry is checked
and resolved here once; the output comes from one of three methods, each written over the
backend surface (``xp`` namespace, ``pad``, ``corr2d_valid``, ``rfft2``/``irfft2``):

``direct``
    Channel contraction through the backend's matmul.  One GEMM per group over an im2col
    matrix ``(C_in/groups · kh · kw) × (Ho · Wo)`` built from strided views, or — when that
    matrix would be large — one GEMM per tap accumulated (implicit GEMM).  Convolutions with
    one input channel per group (depthwise, ``C_in = 1``) are per-image 2-D correlations and
    go to ``corr2d``'s kernels, which do not waste the GEMM on a 1-wide contraction: its
    direct loop when ``direct`` is asked for, the cheapest of its methods when ``auto``
    chose ``direct``.
``fft``
    Real FFTs of every channel, the contraction over ``C_in`` per frequency as a batched
    matmul, one inverse FFT per output channel; for large kernels.
``native``
    The framework's own layer where it has one (``F.conv2d``, ``lax.conv_general_dilated``).

``auto`` takes the cheapest by the cost model in ``_conv_cost``.  Integers are exact
(``direct`` only) and NaN/Inf stay local (``auto`` never takes the FFT for them).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from . import _conv_cost
from ._api import front, join
from ._auto import warn_fft_nonfinite
from ._methods import fft_len

#: PyTorch's ``padding_mode`` names and the boundary each is.
PADDING_MODES = {"zeros": "fill", "reflect": "mirror", "replicate": "nearest",
                 "circular": "wrap"}

# Beyond this many bytes the im2col matrix is not built: one GEMM per tap instead.
_IM2COL_BYTES = 256 << 20


@dataclass(frozen=True)
class Geometry:
    """A convolution's resolved geometry (all pairs are (rows, columns))."""

    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    groups: int
    boundary: str
    kernel: tuple[int, int]
    out: tuple[int, int]

    @property
    def span(self) -> tuple[int, int]:
        """Rows and columns one output's window covers: ``d · (k - 1) + 1``."""
        return (self.dilation[0] * (self.kernel[0] - 1) + 1,
                self.dilation[1] * (self.kernel[1] - 1) + 1)


def conv2d(x: Any, w: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1, padding_mode: str = "zeros",
           method: str = "auto", backend: str | None = None) -> Any:
    """2-D convolution layer (cross-correlation), as PyTorch's ``F.conv2d``.

    ``y[n, o, i, j] = bias[o] + sum_{c, a, b} w[o, c, a, b] ·
    xp[n, g·C_in/groups + c, s·i + d·a, s·j + d·b]`` with ``g = o // (C_out / groups)`` and
    ``xp`` the input padded by ``padding`` under ``padding_mode``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, H, W) or (C_in, H, W)
        Input; any backend's array.
    w : array_like, shape (C_out, C_in // groups, kh, kw)
        Weights.
    bias : array_like, shape (C_out,), optional
    stride, dilation : int or (int, int)
        Positive.
    padding : int, (int, int), ((top, bottom), (left, right)), "valid" or "same"
        ``"same"`` keeps ``ceil(H / stride)`` rows (``H`` at stride 1), the extra row and
        column of an odd total going to the bottom/right (``lax.conv``'s ``"SAME"``).
    groups : int
        ``C_in`` and ``C_out`` must be multiples of it.
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
        PyTorch's names: ``reflect`` does not repeat the edge pixel (xcorr's ``mirror``);
        its padding must be smaller than the input (PyTorch's rule), ``circular``'s at most
        the input.
    method : {"auto", "direct", "fft", "native"}
        See the module docstring; ``native`` where the framework has a convolution layer.
    backend : str, optional
        As for :func:`xcorr.corr2d`.

    Returns
    -------
    array of the backend, shape (N, C_out, Ho, Wo) (or (C_out, Ho, Wo))
        ``Ho = (H + top + bottom - d·(kh - 1) - 1) // s + 1``.  dtype as ``corr2d``.

    Raises
    ------
    ValueError
        Shapes or channel counts that do not fit ``groups``, non-positive stride or
        dilation, negative padding, padding too wide for its mode, a kernel larger than the
        padded input, an unknown ``padding_mode``/``method``, ``method="fft"``/``"native"``
        on integers, an empty input (any dimension of length 0, the batch too, where
        ``F.conv2d`` returns an empty batch).
    TypeError
        As ``corr2d`` (strings, complex or bool data, arrays of two frameworks); a float
        ``bias`` with integer ``x`` and ``w``.

    Examples
    --------
    The two-channel example of *Dive into Deep Learning* (7.4):

    >>> import numpy as np, xcorr
    >>> x = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]],
    ...               [[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    >>> k = np.array([[[0, 1], [2, 3]], [[1, 2], [3, 4]]])
    >>> xcorr.conv2d(x, k[None]).tolist()
    [[[56, 72], [104, 120]]]
    """
    p = setup(x, w, bias, stride, padding, dilation, groups, padding_mode, method, backend)
    return p.output(method)


@dataclass
class Problem:
    """A convolution set up for its kernels: what the forward pass and its VJP share."""

    be: Any
    x: Any            # (N, C_in, H, W), promoted
    xpad: Any         # x padded by the boundary rule (x itself when zeros go to native)
    w: Any
    bias: Any | None
    geo: Geometry
    integer: bool
    unbatched: bool
    native_pads: tuple[int, int, int, int] | None  # zero padding left to a native layer

    def output(self, method: str) -> Any:
        """``conv2d``'s result by ``method``: the convolution plus the bias.

        Half types (float16, bfloat16, float8) with a bias are convolved on their float32
        values, the bias added in float32, and the sum rounded once, as ``F.conv2d`` does:
        rounding the convolution first and the sum again gave bfloat16 1.0 for 1 + 2**-8
        and a bias of 2**-8 (1.0078125 exactly, and from ``F.conv2d``).
        """
        be, x, w = self.be, self.xpad, self.w
        half = self.bias is not None and be.kind(x) == "f" and x.dtype.itemsize < 4
        if half:
            x, w = be.astype(x, "float32"), be.astype(w, "float32")
        y = forward(be, x, w, self.geo, method, self.integer, self.native_pads)
        if self.bias is not None:
            bias = be.astype(self.bias, "float32") if half else self.bias
            y = y + be.xp.reshape(bias, (1, -1, 1, 1))
        if half:
            y = be.astype(y, self.x.dtype)
        return y[0] if self.unbatched else y


def setup(x: Any, w: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any,
          padding_mode: Any, method: str, backend: str | None) -> Problem:
    """Validate, convert and promote the inputs and resolve the geometry."""
    be, (x, w, bias) = front({"x": x, "w": w, "bias": bias}, backend, optional=("bias",))
    offered = ("direct", "fft", *(("native",) if hasattr(be, "conv2d_native") else ()))
    if method not in ("auto", *offered):
        raise ValueError(f"unknown method {method!r} for conv2d on backend {be.NAME!r}; "
                         f"choose one of {', '.join(('auto', *offered))}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"unknown padding_mode {padding_mode!r}; choose one of "
                         f"{', '.join(PADDING_MODES)} (PyTorch's names)")
    unbatched = x.ndim == 3
    if unbatched:
        x = be.xp.reshape(x, (1, *x.shape))
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C_in, H, W) or (C_in, H, W), got shape "
                         f"{tuple(x.shape)}")
    if w.ndim != 4:
        raise ValueError(f"w must be (C_out, C_in // groups, kh, kw), got shape "
                         f"{tuple(w.shape)}; for one 2-D kernel use w[None, None]")
    geo = geometry(tuple(x.shape), tuple(w.shape), stride, padding, dilation, groups,
                   PADDING_MODES[padding_mode])
    if bias is not None and tuple(bias.shape) != (w.shape[0],):
        raise ValueError(f"bias must have shape (C_out,) = ({w.shape[0]},), got "
                         f"{tuple(bias.shape)}")
    x, w = be.promote(x, w)
    if bias is not None:
        bias = join(be, bias, x)
        bias = be.astype(bias, x.dtype) if be.kind(bias) != "f" or be.kind(x) == "f" else bias
        if be.kind(x) == "i" and be.kind(bias) == "f":
            raise TypeError("bias is floating point but x and w are integers; cast the "
                            "inputs to float, or pass an integer bias")
    integer = be.kind(x) == "i"
    native_pads = None
    xpad = x
    if any(geo.pads):
        if geo.boundary == "fill" and method in ("auto", "native") and hasattr(
                be, "conv2d_native"):
            native_pads = geo.pads  # a native layer pads zeros itself (no copy)
        xpad = be.pad(x, geo.pads, geo.boundary, 0)
    return Problem(be, x, xpad, w, bias, geo, integer, unbatched, native_pads)


def geometry(xshape: tuple[int, ...], wshape: tuple[int, ...], stride: Any, padding: Any,
             dilation: Any, groups: Any, boundary: str, w_name: str = "w") -> Geometry:
    """Check channel counts and resolve stride, dilation and padding to numbers (``w_name``:
    what the caller calls the weights' shape, for the messages)."""
    n, cin, h, w = xshape
    cout, cg, kh, kw = wshape
    if 0 in xshape or 0 in wshape:
        raise ValueError(f"empty input: x {xshape}, {w_name} {wshape}; every dimension must "
                         "be >= 1")
    g = _positive_int(groups, "groups")
    if cin % g or cout % g:
        raise ValueError(f"groups={g} must divide both C_in={cin} and C_out={cout}; choose a "
                         f"common divisor (1 for a dense convolution, {cin} for depthwise "
                         "when C_out is a multiple of it)")
    if cg != cin // g:
        raise ValueError(f"{w_name} has {cg} input channels per group but x has C_in={cin} "
                         f"and groups={g}, i.e. {cin // g}; {w_name} must be (C_out, C_in // "
                         "groups, kh, kw)")
    s = _pair(stride, "stride")
    d = _pair(dilation, "dilation")
    span = (d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1)
    pads = _padding(padding, (h, w), span, s)
    for size, (before, after), axis in ((h, pads[:2], "height"), (w, pads[2:], "width")):
        if boundary == "mirror" and max(before, after) >= size:
            raise ValueError(f"padding_mode='reflect' needs padding smaller than the input "
                             f"{axis} ({size}), got {max(before, after)} (PyTorch's rule); "
                             "use less padding or padding_mode='replicate'")
        if boundary == "wrap" and max(before, after) > size:
            raise ValueError(f"padding_mode='circular' wraps around more than once: padding "
                             f"{max(before, after)} > input {axis} {size}")
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    if span[0] > hp or span[1] > wp:
        raise ValueError(f"the (dilated) kernel {span[0]}x{span[1]} is larger than the padded "
                         f"input {hp}x{wp}; pad more or use a smaller kernel/dilation")
    out = ((hp - span[0]) // s[0] + 1, (wp - span[1]) // s[1] + 1)
    return Geometry(s, d, pads, g, boundary, (kh, kw), out)


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _pair(v: Any, name: str) -> tuple[int, int]:
    items = (v, v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v
    try:
        a, b = items
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    return _positive_int(a, name), _positive_int(b, name)


def _padding(padding: Any, size: tuple[int, int], span: tuple[int, int],
             stride: tuple[int, int]) -> tuple[int, int, int, int]:
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            out = []
            for n, k, s in zip(size, span, stride, strict=True):
                total = max((math.ceil(n / s) - 1) * s + k - n, 0)
                out += [total // 2, total - total // 2]
            return out[0], out[1], out[2], out[3]
        raise ValueError(f"padding must be an int, a pair, ((top, bottom), (left, right)), "
                         f"'valid' or 'same', got {padding!r}")
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        pads = (padding,) * 4
    else:
        try:
            a, b = padding
            if isinstance(a, numbers.Integral) and isinstance(b, numbers.Integral):
                pads = (a, a, b, b)
            else:
                (t, bt), (lf, r) = a, b
                pads = (t, bt, lf, r)
        except (TypeError, ValueError):
            raise ValueError(f"padding must be an int, a pair, ((top, bottom), (left, "
                             f"right)), 'valid' or 'same', got {padding!r}") from None
    for v in pads:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"padding must be non-negative integers, got {padding!r}")
    return tuple(int(v) for v in pads)  # type: ignore[return-value]


# -- the methods --------------------------------------------------------------------------------


def forward(be: Any, x: Any, w: Any, geo: Geometry, method: str, integer: bool,
            native_pads: tuple[int, int, int, int] | None = None) -> Any:
    """``y`` (no bias) of padded ``x (N, C_in, Hp, Wp)`` by ``method``."""
    if method in ("fft", "native") and integer:
        raise ValueError(f"method={method!r} cannot give exact integer results; use "
                         "method='direct' or 'auto', or cast the inputs to float")
    if hasattr(be, "conv2d_blocked"):  # a chunked backend: each block decides for itself
        return be.conv2d_blocked(x, w, geo, method, integer)
    strict = method == "direct"  # asked for: direct sums all the way down (see _per_channel)
    if method == "auto":
        method = _conv_cost.choose(be, tuple(x.shape), tuple(w.shape), geo, integer)
        if method == "fft":  # only on finite data: a NaN must stay in its windows
            finite = be.all_finite(x, w)
            if finite is None:  # traced values (JAX): decided on the device
                return be.select_finite(x, w, lambda: _wide(be, _fft, x, w, geo),
                                        lambda: _wide(be, _direct, x, w, geo))
            method = "fft" if finite else "direct"
    elif method == "fft" and be.all_finite(x, w) is False:
        warn_fft_nonfinite(stacklevel=4)
    if method == "native":
        if native_pads is not None:  # zeros: the layer pads itself
            x = _unpad(x, native_pads)
        args = (geo.stride, native_pads or (0, 0, 0, 0), geo.dilation, geo.groups)
        if be.kind(x) == "f" and x.dtype.itemsize == 1:
            # float8: torch's layer lacks them, XLA's sums them in their own width
            return _wide(be, _native, x, w, *args)
        # float16 and bfloat16 as they are: the layers sum them in float32 (GPU tensor cores)
        return be.conv2d_native(x, w, *args)
    if method == "fft":
        return _wide(be, _fft, x, w, geo)
    return _wide(be, _direct, x, w, geo, strict)


def _native(be: Any, x: Any, w: Any, *args: Any) -> Any:
    return be.conv2d_native(x, w, *args)


def _wide(be: Any, method: Any, x: Any, w: Any, *args: Any) -> Any:
    """``method(be, x, w, *args)``, half types (float16, bfloat16, float8) summed in float32
    and rounded once, as corr2d does: no FFT takes them, and a matmul of them may sum in
    their own precision (ml_dtypes on NumPy) or not at all (float8 in torch)."""
    if be.kind(x) != "f" or x.dtype.itemsize >= 4:
        return method(be, x, w, *args)
    y = method(be, be.astype(x, "float32"), be.astype(w, "float32"), *args)
    return be.astype(y, x.dtype)


def _unpad(x: Any, p: tuple[int, int, int, int]) -> Any:
    return x[..., p[0]:x.shape[-2] - p[1], p[2]:x.shape[-1] - p[3]]


def _taps(x: Any, geo: Geometry) -> list[Any]:
    """The strided view of ``x`` that each tap (row-major) multiplies."""
    (sh, sw), (dh, dw), (ho, wo) = geo.stride, geo.dilation, geo.out
    kh, kw = geo.kernel
    return [x[..., a * dh:a * dh + sh * (ho - 1) + 1:sh, b * dw:b * dw + sw * (wo - 1) + 1:sw]
            for a in range(kh) for b in range(kw)]


def _direct(be: Any, x: Any, w: Any, geo: Geometry, strict: bool = False) -> Any:
    """The channel contraction as GEMMs: ``(Og × Cg·T) @ (Cg·T × N·Ho·Wo)`` per group
    (``strict``: see ``_per_channel``)."""
    xp = be.xp
    n, cin = x.shape[:2]
    cout, cg, kh, kw = w.shape
    g = geo.groups
    og = cout // g
    ho, wo = geo.out
    if cg == 1:
        return _per_channel(be, x, w, geo, strict)
    # Images go into the GEMM's columns, so each group is one wide product.
    xg = xp.moveaxis(xp.reshape(x, (n, g, cg, *x.shape[-2:])), 0, 2)  # (G, Cg, N, Hp, Wp)
    taps = _taps(xg, geo)
    wg = xp.reshape(w, (g, og, cg, kh * kw))
    q = n * ho * wo
    if g * cg * kh * kw * q * x.dtype.itemsize <= _IM2COL_BYTES:
        # im2col: (G, Cg, T, N, Ho, Wo) -> (G, Cg·T, N·Ho·Wo), one copy of the taps.
        cols = xp.reshape(xp.stack(taps, axis=2), (g, cg * kh * kw, q))
        y = _gemm(be, xp.reshape(wg, (g, og, cg * kh * kw)), cols)
    else:  # implicit GEMM: one (Og × Cg) @ (Cg × N·Ho·Wo) product per tap, accumulated
        y = None
        for t, v in enumerate(taps):
            term = _gemm(be, wg[..., t], xp.reshape(v, (g, cg, q)))
            y = term if y is None else y + term
    y = xp.moveaxis(xp.reshape(y, (g, og, n, ho, wo)), 2, 0)
    return xp.reshape(y, (n, cout, ho, wo))


def _gemm(be: Any, a: Any, b: Any) -> Any:
    """``a (G, M, K) @ b (G, K, Q)``, in column panels of a fixed width where the backend's
    BLAS needs it for reproducible bits.

    BLAS picks its kernels by matrix size, and a column's value can change in the last bit
    with the number of columns beside it (OpenBLAS: up to 1 in 16 columns for Q < 1000).
    Products of ``GEMM_PANEL`` columns each (the last one zero-padded) give every column the
    same bits whatever the image size — so a Dask block's output equals the whole array's.
    """
    xp = be.xp
    panel = getattr(be, "GEMM_PANEL", None)
    q = b.shape[-1]
    if panel is None:
        return xp.matmul(a, b)
    # One memory layout too: NumPy hands BLAS a transposed operand when an array is
    # Fortran-ordered (``stack`` keeps its inputs' order), and the transposed kernel rounds
    # differently — a batch of two and an image alone then disagree in the last bit.
    a, b = xp.ascontiguousarray(a), xp.ascontiguousarray(b)
    full = q - q % panel
    parts = [xp.matmul(a, b[..., j:j + panel]) for j in range(0, full, panel)]
    if full < q:
        tail = xp.ascontiguousarray(be.pad(b[..., full:], (0, 0, 0, panel - (q - full)),
                                           "fill", 0))
        parts.append(xp.matmul(a, tail)[..., :q - full])
    return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=-1)


def _per_channel(be: Any, x: Any, w: Any, geo: Geometry, strict: bool = False) -> Any:
    """One input channel per group: per-image 2-D correlations (corr2d's kernels).

    ``x (N, G, 1, Hp, Wp)`` against ``w (G, Og, kh, kw)`` broadcast to ``(N, G, Og, ...)``.
    Dilation zero-stuffs the kernel and stride subsamples the stride-1 result.  By corr2d's
    cheapest method (overlap-save for a large kernel), or, ``strict`` (``method="direct"``
    asked for), by its direct sum: the rounding of a direct sum, the same bits however Dask
    cuts the image (an FFT's rounding depends on the size it transforms).
    """
    from ._auto import valid_auto

    xp = be.xp
    n = x.shape[0]
    cout, _, kh, kw = w.shape
    g = geo.groups
    k = xp.reshape(w, (g, cout // g, kh, kw))
    if geo.dilation != (1, 1):
        k = dilate(be, k, geo.dilation)
    xs = xp.reshape(x, (n, g, 1, *x.shape[-2:]))
    y = be.corr2d_valid(xs, k, "direct") if strict else valid_auto(be, xs, k)
    sh, sw = geo.stride
    ho, wo = geo.out
    y = y[..., :sh * (ho - 1) + 1:sh, :sw * (wo - 1) + 1:sw]
    return xp.reshape(y, (n, cout, ho, wo))


def dilate(be: Any, k: Any, dilation: tuple[int, int]) -> Any:
    """Insert ``d - 1`` zeros between the taps of ``k (..., kh, kw)`` (a dilated kernel)."""
    return stuff(be, stuff(be, k, dilation[0], -2), dilation[1], -1)


def stuff(be: Any, a: Any, s: int, axis: int) -> Any:
    """Insert ``s - 1`` zeros after every element but the last along ``axis`` (-2 or -1).

    Built from ``stack`` and ``reshape`` only, so it is differentiable and lazy on every
    backend (no strided assignment).
    """
    if s == 1:
        return a
    xp = be.xp
    if axis == -2:
        a = xp.moveaxis(a, -2, -1)
    n = a.shape[-1]
    z = xp.zeros_like(a)
    out = xp.reshape(xp.stack([a] + [z] * (s - 1), axis=-1), (*a.shape[:-1], n * s))
    out = out[..., :(n - 1) * s + 1]
    return xp.moveaxis(out, -1, -2) if axis == -2 else out


def _fft(be: Any, x: Any, w: Any, geo: Geometry) -> Any:
    """Per-channel real FFTs; the channel contraction per frequency as a batched matmul."""
    xp = be.xp
    n, cin, hp, wp = x.shape
    cout, cg, kh, kw = w.shape
    g = geo.groups
    og = cout // g
    k = dilate(be, w, geo.dilation) if geo.dilation != (1, 1) else w
    s = (fft_len(hp), fft_len(wp))
    xf = be.rfft2(xp.reshape(x, (n, g, cg, hp, wp)), s)          # (N, G, Cg, F1, F2)
    kf = be.xp.conj(be.rfft2(xp.reshape(k, (g, og, cg, *k.shape[-2:])), s))  # (G, Og, Cg, ..)
    f1, f2 = xf.shape[-2:]
    # (F, G, N, Cg) @ (F, G, Cg, Og) -> (F, G, N, Og)
    a = xp.moveaxis(xp.reshape(xf, (n, g, cg, f1 * f2)), -1, 0)
    a = xp.moveaxis(a, 1, 2)
    b = xp.moveaxis(xp.moveaxis(xp.reshape(kf, (g, og, cg, f1 * f2)), -1, 0), 2, 3)
    yf = xp.matmul(a, b)                                           # (F, G, N, Og)
    yf = xp.reshape(xp.moveaxis(xp.moveaxis(yf, 0, -1), 0, 1), (n, cout, f1, f2))
    span = geo.span
    y = be.irfft2(yf, s)[..., :hp - span[0] + 1, :wp - span[1] + 1]
    sh, sw = geo.stride
    return y[..., ::sh, ::sw] if (sh, sw) != (1, 1) else y


def flops(xshape: tuple[int, ...], wshape: tuple[int, ...], geo: Geometry) -> int:
    """Floating-point operations (2 per multiply-add) of the direct method."""
    cout, cg, kh, kw = wshape
    return 2 * xshape[0] * cout * cg * kh * kw * geo.out[0] * geo.out[1]
