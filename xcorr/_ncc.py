"""Normalized cross-correlation: ``match_template`` and ``local_ncc``, written once.

Zero-normalised cross-correlation of a window ``W`` with a template ``T`` (``n`` pixels)::

    ncc = sum(W · T') / sqrt(sum((W - mean W)²) · sum(T'²))        T' = T - mean(T)

The numerator is one correlation of the image with the zero-mean template, through
``corr2d``'s methods and cost model (``xcorr._corr.valid``); the window statistics are window
sums (``xcorr._boxsum``) accumulated in float64 (on JAX without x64, which has no float64, in
double-word float32 pairs).  Three things keep the result inside [-1, 1] and close to the
exact value whatever the image's offset or scale (scikit-image#1712):

- the image is centred on its own mean first (the NCC does not change), so neither the
  correlation nor ``sum(W²) - sum(W)²/n`` cancels digits of a large offset;
- the window sums add each window's own pixels only (never a difference of prefix sums
  that carry the whole image), so a window's error is relative to its own magnitude, a
  NaN/Inf reaches only the windows that hold it, and a constant window comes out flat;
- the template is centred in two passes, so ``T'`` sums to rounding noise rather than
  ``n·δ`` (``δ`` the rounding of its mean), which the correlation would multiply by the
  window's sum.

The NumPy backend computes the window statistics in one compiled pass
(``xcorr._numba_ncc``), Dask block by block with the template's halo (the same bits as
NumPy's whole-array result for any chunking), JAX as one jitted program.

A window whose centred sum of squares is within its rounding error of zero (``_flat_tol``)
is *flat*: its correlation is undefined and given as 0, as scikit-image and OpenCV do; a
constant template gives 0 everywhere, as scikit-image (OpenCV gives 1).  The result is
clipped to [-1, 1] against the last rounding.

The masked form (Padfield 2012) needs three correlations: of the image with ``M · (T - μ)``
and with ``M``, and of the squared image with ``M``; the first two are one ``corr2d`` call
with a stacked kernel, which transforms the image once when the FFT is used.

Differentiable on JAX and PyTorch by being written in their operations (flat windows and
constant templates pass through ``where`` guards, so their gradient is 0, not NaN).
"""

from __future__ import annotations

import contextlib
import numbers
from math import inf as _INF
from math import log2
from typing import Any

import numpy as np

from . import _corr, _dispatch, _validate
from ._api import join, prepare_float
from ._auto import choose
from ._boxsum import box_sums
from ._broadcast import broadcast_shapes
from ._methods import SPECTRAL, fft_len

MODES = ("valid", "same")

# The constants of xcorr.testing.error_bound (that module imports Hypothesis, a test extra):
# the direct sum's rounding bound and the FFT's normwise one.
DIRECT_C = 2.0
FFT_C = 4.0


def match_template(image: Any, template: Any, *, mode: str = "valid", mask: Any = None,
                   method: str = "auto", backend: str | None = None) -> Any:
    """Zero-normalised cross-correlation of ``template`` with every window of ``image``.

    The Pearson correlation of each template-sized window of ``image`` with ``template``:
    the quantity of ``skimage.feature.match_template`` and OpenCV's ``TM_CCOEFF_NORMED``,
    in [-1, 1], 1 where the window is an increasing affine copy of the template.

    Parameters
    ----------
    image : array_like, shape (..., H, W)
        NumPy, JAX, PyTorch, CuPy or Dask array, or a nested list.  Leading dimensions are
        batch dimensions.
    template : array_like, shape (..., th, tw)
        Leading dimensions broadcast against the image's as ``corr2d``'s kernel does:
        ``image (H, W)`` with ``template (T, th, tw)`` gives ``(T, Ho, Wo)``; for every
        image × template pair pass ``image[..., None, :, :]``.
    mode : {"valid", "same"}
        ``valid``: one value per window inside the image, ``(H - th + 1, W - tw + 1)``
        (scikit-image's default).  ``same``: ``(H, W)``, the image padded with zeros as
        scikit-image's ``pad_input=True`` pads it, output ``[i, j]`` for the window whose
        top-left corner is ``(i - th // 2, j - tw // 2)`` (for an even side one pixel off
        ``corr2d``'s ``same``); the padding zeros count as pixels of the window.
    mask : array_like, optional
        Weights of the template's pixels (bool, or non-negative numbers), the template's
        shape or broadcasting with it: only weighted template pixels and the image pixels
        under them count, each with its weight (masked NCC, Padfield 2012); a zero-weight
        template pixel may hold NaN.  The weights' scale does not matter.
    method : {"auto", "direct", "fft"} or a backend's own (e.g. "native")
        How the correlations are computed, as in :func:`xcorr.corr2d` (``auto``: by the cost
        model, never the FFT for input holding NaN/Inf).
    backend : str, optional
        As for :func:`xcorr.corr2d`.

    Returns
    -------
    array of the backend, shape (..., Ho, Wo)
        float64 for float64 and integer input, float32 for float32 and half-precision input
        (float32 for everything on JAX without x64).  0 where the correlation is undefined:
        windows with no variance (within rounding: see ``xcorr._ncc``) and constant
        templates.  A window holding NaN or Inf gives NaN (with a mask: also under a
        zero-weight pixel, as in OpenCV).

    Raises
    ------
    ValueError
        Fewer than two dimensions, empty inputs, a template larger than the image in
        ``valid`` mode, batch dimensions (or a mask) that do not broadcast, an unknown
        ``mode``/``method``, a mask with a negative weight or no positive one.
    TypeError
        As ``corr2d`` (strings, complex or bool data, arrays of two frameworks).

    Notes
    -----
    Differentiable with respect to ``image``, ``template`` and ``mask`` on JAX
    (``jax.grad``, ``jax.jit``, ``jax.vmap``) and PyTorch (autograd); the NumPy, CuPy and
    Dask backends compute values only.  Mask values are checked where they are known: a
    traced JAX, lazy Dask, meta or ``torch.export``-traced torch mask is not (an all-zero
    one gives zeros).

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> image = np.random.default_rng(0).random((40, 50))
    >>> ncc = xcorr.match_template(image, image[10:18, 20:31])
    >>> ncc.shape
    (33, 40)
    >>> np.unravel_index(np.argmax(ncc), ncc.shape), round(float(ncc.max()), 6)
    ((np.int64(10), np.int64(20)), 1.0)
    """
    with _quiet():
        return _match_template(image, template, mode, mask, method, backend)


def _match_template(image: Any, template: Any, mode: str, mask: Any, method: str,
                    backend: str | None) -> Any:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose 'valid' or 'same'")
    be, x, t, m = _front_template(image, template, mask, backend)
    _validate.check_options("valid", method, be.METHODS, be.NAME)
    th, tw = (int(n) for n in t.shape[-2:])
    if mode == "valid" and (th > int(x.shape[-2]) or tw > int(x.shape[-1])):
        raise ValueError(f"the template ({th}, {tw}) is larger than the image "
                         f"{tuple(int(n) for n in x.shape[-2:])} in mode='valid'; use a smaller "
                         "template or mode='same'")
    x, t, wide = _float(be, x, t)
    m = None if m is None else join(be, m, x)
    fast = getattr(be, "ncc_match_template", None)  # JAX: values from the NumPy backend
    out = fast(x, t, mode, method, m) if fast is not None else None
    if out is not None:
        return out
    return unmasked(be, x, t, mode, method, wide) if m is None else \
        _masked(be, x, t, m, mode, method, wide)


def unmasked(be: Any, x: Any, t: Any, mode: str, method: str, wide: Any) -> Any:
    """``match_template`` without a mask, of promoted ``x`` and ``t`` (see ``_float``)."""
    th, tw = (int(n) for n in t.shape[-2:])
    mean = _mean(be, x, wide)
    c = _centre(be, x, mean, wide)
    # the centre of the image's own pixels: the zero padding's would pull it towards 0
    x = _pad_same(be, x, th, tw) if mode == "same" else x
    tz, inv_t = template_terms(be, t, wide)
    # The mean's sum is finite exactly when the image is (bar a float64 sum that overflows,
    # which all_finite's own sum would overflow too): the FFT's guard for free.
    num = _numerator(be, x, c, tz, method, wide, be.all_finite(mean, tz))
    return finish(be, x, c, num, inv_t, (th, tw), wide)


def _numerator(be: Any, x: Any, c: Any, tz: Any, method: str, wide: Any,
               finite: bool | None = None) -> Any:
    """``corr2d(x - c, tz)`` (valid) by ``method``; a direct sum of float32 in ``wide``.

    A backend's ``corr2d_valid_centred(x, c, k, method)`` may subtract ``c`` as it
    transforms ``x`` (NumPy: a block of rows at a time, so the centred image, one more
    image-sized array, is never made).

    A direct sum adds the window's products one by one, and a window far from the image's
    mean makes large terms that cancel: in float32 the error grows with the template (2e-4
    of the NCC for 21×21 on the camera photograph).  An FFT's error is relative to the
    whole image instead (1e-5 there), and float64 sums lose nothing that matters.
    ``finite``: whether ``x`` and ``tz`` are known to hold no NaN/Inf (None: unknown, and
    ``_corr.valid`` checks before an FFT).
    """
    chosen = choose(be, x, tz) if method == "auto" else method
    if finite is True and chosen in SPECTRAL:  # a second pass over the image saved
        centred = getattr(be, "corr2d_valid_centred", None)
        out = centred(x, c, tz, chosen) if centred is not None else None
        return out if out is not None else be.corr2d_valid(x - c, tz, chosen)
    xc = x - c
    if chosen == "direct" and _unit(xc.dtype) > _unit(wide):
        out = _corr.valid(be, be.astype(xc, wide), be.astype(tz, wide), "direct", False)[0]
        return be.astype(out, xc.dtype)
    return _corr.valid(be, xc, tz, method, False)[0]


def local_ncc(a: Any, b: Any, window: Any, *, eps: float = 1e-5,
              backend: str | None = None) -> Any:
    """Local normalised cross-correlation of two images, pixel by pixel.

    For each pixel, the Pearson correlation of ``a`` and ``b`` over the window centred on
    it, with the window's statistics over the pixels inside the image only (fewer at the
    border)::

        cov / sqrt(var_a · var_b + eps)

    with ``cov``, ``var_a``, ``var_b`` the window's (biased) covariance and variances.  The
    similarity term of image registration (VoxelMorph's and MONAI's local NCC); ``eps``
    keeps flat windows finite (they give 0) and their gradient too, as long as it exceeds
    the rounding noise of their variances (about ``1e-16 · mean(a²) · mean(b²)`` with
    float64 sums: ``eps=1e-300`` lets that noise through as ±1).

    Parameters
    ----------
    a, b : array_like, shape (..., H, W)
        The same shape; leading dimensions are batch dimensions.
    window : int or (int, int)
        Odd window sides, at most the image's.
    eps : float
        Positive and finite; in the units of ``var_a · var_b``.
    backend : str, optional
        As for :func:`xcorr.corr2d`.

    Returns
    -------
    array of the backend, shape (..., H, W)
        In [-1, 1]; dtype as :func:`match_template`'s.

    Raises
    ------
    ValueError
        Shapes that differ, fewer than two dimensions, an even, non-positive or too large
        window, ``eps <= 0``.
    TypeError
        As ``corr2d``.

    Notes
    -----
    Differentiable on JAX and PyTorch; NumPy, CuPy and Dask compute values only.  Sums are
    accumulated in float64 after centring each image on its mean (on JAX without x64:
    float64 from the NumPy backend for float32 on the CPU where Numba is installed, else
    float32).

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> a = np.random.default_rng(0).random((6, 7))
    >>> r = xcorr.local_ncc(a, 2 * a + 1, 3)   # eps pulls low-variance windows below 1
    >>> r.shape, round(float(r.min()), 3), round(float(r.max()), 3)
    ((6, 7), 0.997, 1.0)
    >>> round(float(xcorr.local_ncc(a, -a, 3, eps=1e-12).max()), 6)
    -1.0
    """
    with _quiet():
        return _local_ncc(a, b, window, eps, backend)


def _local_ncc(a: Any, b: Any, window: Any, eps: Any, backend: str | None) -> Any:
    be, x, y = _front_pair(a, b, backend)
    wh, ww = _odd_window(window, tuple(int(n) for n in x.shape[-2:]))
    eps = _validate.concrete_scalar(eps)
    # (comparisons, not math.isfinite: torch.compile's dynamic shapes make eps symbolic)
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not 0 < eps < _INF:
        raise ValueError(f"eps must be a positive finite number, got {eps!r}; e.g. eps=1e-5")
    x, y, wide = _float(be, x, y)
    fast = getattr(be, "ncc_local", None)  # JAX float32: float64 sums from the NumPy backend
    out = fast(x, y, (wh, ww), eps) if fast is not None else None
    return out if out is not None else local_values(be, x, y, (wh, ww), eps, wide)


def local_values(be: Any, x: Any, y: Any, window: tuple[int, int], eps: float, wide: Any
                 ) -> Any:
    """``local_ncc`` of promoted ``x`` and ``y`` (see ``_float``), the sums in ``wide``."""
    wh, ww = window
    xp = be.xp
    out_dtype = x.dtype
    x = be.astype(x, wide)
    y = be.astype(y, wide)
    x, y = x - center(be, x, wide), y - center(be, y, wide)
    pads = (wh // 2, wh // 2, ww // 2, ww // 2)
    # Zeros outside the image add nothing to the sums; the counts leave them out.
    stack = be.pad(xp.stack([x, y, x * x, y * y, x * y], axis=-3), pads, "fill", 0)
    sums = box_sums(be, stack, (wh, ww))
    sx, sy, sxx, syy, sxy = (sums[..., i, :, :] for i in range(5))
    count = _counts(be, x, (wh, ww))
    mx, my = sx / count, sy / count
    cov = sxy / count - mx * my
    vx = _nonneg(xp, sxx / count - mx * mx)
    vy = _nonneg(xp, syy / count - my * my)
    r = xp.clip(cov / xp.sqrt(vx * vy + eps), -1, 1)
    return be.astype(r, out_dtype)


# -- inputs ------------------------------------------------------------------------------------


def _front_template(image: Any, template: Any, mask: Any, backend: str | None
                    ) -> tuple[Any, Any, Any, Any]:
    """Resolve the backend from all three arrays and convert them (a bool mask allowed)."""
    names = ("image", "template", "mask")
    for name, obj in zip(names, (image, template, mask), strict=True):
        if obj is not None or name != "mask":
            _validate.check_raw(obj, name)
    be = _dispatch.resolve_all((image, template, mask), backend, names)
    x, t = prepare_float(be, image, "image"), prepare_float(be, template, "template")
    _check_image(x, "image")
    _check_image(t, "template")
    try:
        _validate.broadcast_batch(tuple(x.shape), tuple(t.shape))
    except ValueError:
        raise ValueError(f"the leading dimensions of template {tuple(t.shape)} do not "
                         f"broadcast against the batch dimensions of image {tuple(x.shape)}; "
                         "pass one template per image, a shape that broadcasts (NumPy rules), "
                         "or image[..., None, :, :] for every image x template pair") from None
    m = None if mask is None else _mask(be, mask, t)
    whole = getattr(be, "whole_planes", None)  # Dask: a template's sums in NumPy's order
    if whole is not None:
        t, m = whole(t), None if m is None else whole(m)
    if m is not None:
        try:  # the templates the mask makes must fit the image's batch as the template does
            _validate.broadcast_batch(tuple(x.shape), broadcast_shapes(tuple(m.shape),
                                                                       tuple(t.shape)))
        except ValueError:
            raise ValueError(f"the leading dimensions of mask {tuple(m.shape)} and template "
                             f"{tuple(t.shape)} together do not broadcast against the batch "
                             f"dimensions of image {tuple(x.shape)}; give the mask the "
                             "template's shape, or leading dimensions that broadcast with "
                             "the image's (NumPy rules)") from None
    return be, x, t, m


def _front_pair(a: Any, b: Any, backend: str | None) -> tuple[Any, Any, Any]:
    from ._api import front

    be, (x, y) = front({"a": a, "b": b}, backend, float_result=True)
    if tuple(x.shape) != tuple(y.shape):
        raise ValueError(f"a and b must have the same shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    _check_image(x, "a")
    return be, x, y


def _check_image(a: Any, name: str) -> None:
    if a.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (..., H, W), got shape "
                         f"{tuple(a.shape)}")
    if 0 in tuple(a.shape):
        raise ValueError(f"{name} is empty (shape {tuple(a.shape)}); every dimension must be "
                         ">= 1")


def _mask(be: Any, obj: Any, t: Any) -> Any:
    """The mask as a backend array of weights (bool allowed), checked where values are known
    (host data always; a JAX tracer or a lazy Dask array not)."""
    if _dispatch.array_backend(obj) in (None, "numpy"):  # lists, NumPy: check on the host
        host = np.asarray(obj)
        if host.dtype.kind in "biuf" and host.ndim >= 2:
            _check_weights(np, host, host.dtype.kind == "b")
    m = be.asarray(obj)
    kind = be.kind(m)
    if kind != "b":
        _validate.check_kind(m, "mask", kind)
    if m.ndim < 2:
        raise ValueError(f"mask must have at least 2 dimensions (..., th, tw), got shape "
                         f"{tuple(m.shape)}")
    try:
        shape = broadcast_shapes(tuple(m.shape), tuple(t.shape))
    except ValueError:
        shape = None
    if shape is None or shape[-2:] != tuple(t.shape[-2:]):
        raise ValueError(f"mask {tuple(m.shape)} does not broadcast with template "
                         f"{tuple(t.shape)}; give it the template's shape")
    # Values unknown: a tracer, a lazy array (all_finite None), or a torch.compile graph
    # (where reading them would break it).
    if not _dispatch.torch_compiling() and be.all_finite(m, m) is not None:
        _check_weights(be.xp, m, kind == "b")
    return m


def _check_weights(xp: Any, m: Any, boolean: bool) -> None:
    """Finite, non-negative weights (``boolean`` masks are), some positive in every
    template."""
    if not boolean and (not bool(xp.all(xp.isfinite(m))) or bool(xp.any(m < 0))):
        raise ValueError("mask weights must be finite and non-negative")
    if not bool(xp.all(xp.any(m > 0, axis=(-2, -1)))):
        raise ValueError("mask has no positive weight (in at least one of its templates); "
                         "nothing would be compared")


def _odd_window(window: Any, size: tuple[int, int]) -> tuple[int, int]:
    window = _validate.concrete_scalar(window)
    items = (window, window) if isinstance(window, numbers.Integral) else window
    try:
        pair = tuple(_validate.concrete_scalar(n) for n in items)
    except TypeError:
        pair = ()
    ok = len(pair) == 2 and all(isinstance(n, numbers.Integral) and not isinstance(n, bool)
                                and n > 0 and n % 2 == 1 for n in pair)
    if not ok:
        raise ValueError(f"window must be an odd positive int or a pair of them, got {window!r}")
    wh, ww = int(pair[0]), int(pair[1])
    if wh > size[0] or ww > size[1]:
        raise ValueError(f"window {(wh, ww)} is larger than the image {size}")
    return wh, ww


def _float(be: Any, x: Any, t: Any) -> tuple[Any, Any, Any]:
    """Promote to the compute dtype, and the widest float the backend computes in."""
    x, t = be.promote(x, t)
    widest = getattr(be, "widest_float", None)  # torch's: NumPy's is not traced by Dynamo
    wide = widest() if widest is not None else be.asarray(np.zeros((), np.float64)).dtype
    if be.kind(x) == "i":
        return be.astype(x, wide), be.astype(t, wide), wide
    if x.dtype.itemsize < 4:  # half types: compute and return float32
        return be.astype(x, "float32"), be.astype(t, "float32"), wide
    return x, t, wide


# -- shared pieces -----------------------------------------------------------------------------


def _quiet() -> Any:
    """No NumPy warnings for what NaN/Inf input does by design: a window holding Inf gets a
    zero normaliser and gives NaN (``inf · 0``), as a window holding NaN does."""
    if _dispatch.torch_compiling():  # NumPy sees no values; Dynamo cannot trace errstate
        return contextlib.nullcontext()
    return np.errstate(invalid="ignore", over="ignore", divide="ignore")


def center(be: Any, x: Any, wide: Any) -> Any:
    """A value near each image's mean (shape (..., 1, 1)) to subtract before summing.

    The mean, accumulated in ``wide`` and rounded to 16 significant bits: any value near
    the mean centres as well, and a rounded one does not depend on the order in which the
    mean was summed, so Dask gives the same bits for every chunking.  Of the finite pixels
    where the image holds NaN or Inf (so that one bad pixel does not take the centring
    from every other window); 0 where no finite mean is left.  Not differentiable (the NCC
    does not depend on it).
    """
    return _centre(be, x, _mean(be, x, wide), wide)


def _centre(be: Any, x: Any, mean: Any, wide: Any) -> Any:
    """``center``'s value from ``_mean``'s: a second pass over the finite pixels only where
    the mean is not finite, or may not be (a lazy or traced array)."""
    if be.all_finite(mean, mean) is not True:
        xp = be.xp
        axes = (-2, -1)
        finite = xp.isfinite(x)
        total = xp.sum(xp.where(finite, x, 0), axis=axes, keepdims=True, dtype=wide)
        count = xp.sum(finite, axis=axes, keepdims=True, dtype=wide)
        mean = xp.where(xp.isfinite(mean), mean, total / xp.where(count > 0, count, 1))
    return _round_mean(be, mean, x.dtype)


def _mean(be: Any, x: Any, wide: Any) -> Any:
    """Each image's mean (..., 1, 1), accumulated in ``wide`` (a backend's ``ncc_mean`` where
    it has one: NumPy's compiled column totals)."""
    fast = getattr(be, "ncc_mean", None)
    out = fast(x, wide) if fast is not None else None
    return out if out is not None else be.xp.mean(x, axis=(-2, -1), keepdims=True, dtype=wide)


def _round_mean(be: Any, mean: Any, dtype: Any) -> Any:
    """``center``'s value from the mean: 16 significant bits, 0 where not finite."""
    xp = be.xp
    mant, expo = xp.frexp(xp.where(xp.isfinite(mean), mean, 0))
    return be.astype(xp.ldexp(xp.round(mant * 65536), expo - 16), dtype)


def _pad_same(be: Any, x: Any, th: int, tw: int) -> Any:
    # scikit-image's pad_input=True: output i is the window starting at row i - th // 2.
    return be.pad(x, (th // 2, (th - 1) // 2, tw // 2, (tw - 1) // 2), "fill", 0)


def template_terms(be: Any, t: Any, wide: Any) -> tuple[Any, Any]:
    """``generic_template_terms``, or the backend's ``ncc_template_terms`` (JAX: jitted)."""
    fast = getattr(be, "ncc_template_terms", None)
    return fast(t) if fast is not None else generic_template_terms(be, t, wide)


def generic_template_terms(be: Any, t: Any, wide: Any) -> tuple[Any, Any]:
    """``T - mean(T)`` and ``1 / ||T - mean(T)||`` (both 0 for a constant template).

    ``T - mean(T)`` sums to ``n·δ``, ``δ`` the rounding of the mean, and the correlation
    picks that up times the window's sum (in float32, with windows far from the image's
    mean: 2e-4 of the NCC).  So the sums are accumulated in ``wide`` (double-word where it
    is float32) and the template centred twice: what is left is rounding noise of random
    sign (the corrected two-pass algorithm).

    Both are returned scaled by a power of two that brings ``max |T - mean(T)|`` to [0.5, 1):
    the NCC is the same (to the bit: the scaling is exact), and a float32 template at 1e20
    or 1e-25 no longer overflows or underflows its sum of squares (or the numerator).
    """
    xp = be.xp
    axes = (-2, -1)
    n = int(t.shape[-2]) * int(t.shape[-1])
    const = xp.max(t, axis=axes, keepdims=True) == xp.min(t, axis=axes, keepdims=True)
    d = t - _sum(be, t, wide) / n
    tz = xp.where(const, 0, d - _sum(be, d, wide) / n)
    peak = xp.max(xp.abs(tz), axis=axes, keepdims=True)
    _, expo = xp.frexp(xp.where(xp.isfinite(peak), peak, 0))
    tz = tz * xp.ldexp(xp.ones_like(peak), -expo)  # a constant factor: no derivative
    tss = _sum(be, tz, wide, tz)
    return tz, _inv_sqrt(xp, tss, tss > 0)


def _sum(be: Any, a: Any, wide: Any, b: Any = None) -> Any:
    """``sum(a · b)`` (``sum(a)`` without ``b``) over the last two axes, kept, in ``a``'s
    dtype: accumulated in ``wide``, or in double-word pairs if ``wide`` is float32."""
    xp = be.xp
    if _unit(wide) < 1e-10:
        aw = be.astype(a, wide)
        total = xp.sum(aw if b is None else aw * be.astype(b, wide), axis=(-2, -1),
                       keepdims=True)
        return be.astype(total, a.dtype)
    from ._boxsum import total_dd, two_prod

    hi, lo = (a, xp.zeros_like(a)) if b is None else two_prod(xp, a, b)
    hi, lo = total_dd(xp, hi, lo)
    return hi + lo


def _inv_sqrt(xp: Any, v: Any, ok: Any) -> Any:
    """``1 / sqrt(v)`` where ``ok``, else 0, with a finite gradient everywhere (the inner
    ``where`` keeps the unused branch away from 0)."""
    return xp.where(ok, 1 / xp.sqrt(xp.where(ok, v, 1)), 0)


def _nonneg(xp: Any, v: Any) -> Any:
    """``v`` clipped below at 0, NaN kept (a window holding Inf: ``inf - inf``)."""
    return xp.where(v < 0, 0, v)


def _unit(dtype: Any) -> float:
    """Unit roundoff of a NumPy, JAX or torch float dtype."""
    name = str(dtype)
    return float(np.finfo(name[6:] if name.startswith("torch.") else dtype).eps) / 2


def _flat_tol(terms: int, u: float) -> float:
    """Relative rounding error bound of ``sum(W²) - sum(W)²/n`` when each window sum adds
    ``terms`` numbers (in any order) with unit roundoff ``u``, doubled: a centred sum of
    squares at most this times ``sum(W²)`` cannot be told from 0."""
    return 2 * (3 * terms + 4) * u


def inv_norm(be: Any, xc: Any, window: tuple[int, int], wide: Any,
             phase: tuple[int, int] = (0, 0)) -> Any:
    """``1 / sqrt(sum((W - mean W)²))`` for every window of centred ``xc``, 0 where flat.

    In ``xc``'s dtype, the sums in ``wide``.  A backend's ``ncc_inv_norm`` computes it where
    it has one: NumPy with Numba in one compiled pass, Dask block by block.  ``phase``: where
    ``xc``'s first window sits in a larger array ``xc`` is a block of (see _numba_ncc).
    """
    tol = _flat_tol(window[0] + window[1], _unit(wide))
    fast = getattr(be, "ncc_inv_norm", None)
    if fast is not None:
        out = fast(xc, window, tol, phase)
        if out is not None:
            return out
    return generic_inv_norm(be, xc, window, tol, wide)


def finish(be: Any, x: Any, c: Any, num: Any, inv_t: Any, window: tuple[int, int],
           wide: Any) -> Any:
    """``clip(num · inv_norm(x - c) · inv_t, -1, 1)``: the NCC from its numerator (an array
    of our own, which a backend's ``ncc_finish`` may overwrite: NumPy's fuses it all into
    the compiled pass of ``inv_norm``, centring ``x`` as it reads it, with the same bits)."""
    fast = getattr(be, "ncc_finish", None)
    if fast is not None:
        out = fast(x, c, num, inv_t, window, _flat_tol(window[0] + window[1], _unit(wide)))
        if out is not None:
            return out
    return be.xp.clip(num * inv_norm(be, x - c, window, wide) * inv_t, -1, 1)


def generic_inv_norm(be: Any, xc: Any, window: tuple[int, int], tol: float, wide: Any) -> Any:
    """``inv_norm`` over the array namespace: window sums of ``xc`` and ``xc²`` by doubling,
    in ``wide`` if it has 64 bits, else in double-word ``wide`` pairs (JAX without x64)."""
    xp = be.xp
    h, w = window
    x = be.astype(xc, wide)
    if _unit(wide) < 1e-10:
        sums = box_sums(be, xp.stack([x, x * x], axis=-3), window)
        s1, s2 = sums[..., 0, :, :], sums[..., 1, :, :]
        var = s2 - s1 * (s1 / (h * w))
    else:
        var, s2 = _dd_moments(xp, x, window)
        tol = _flat_tol(h + w, 4 * _unit(wide) ** 2)  # double-word: ~2u² per addition
    return be.astype(_inv_sqrt(xp, var, var > tol * s2), xc.dtype)


def _dd_moments(xp: Any, x: Any, window: tuple[int, int]) -> tuple[Any, Any]:
    """``sum(W²) - sum(W)²/n`` and ``sum(W²)`` per window, from double-word window sums of
    float32 ``x`` (each ``x²`` split exactly into two float32s), rounded to float32 once."""
    from ._boxsum import box_sums_dd, dd_add, two_prod

    n = float(window[0] * window[1])
    sq, sq_err = two_prod(xp, x, x)
    hi, lo = box_sums_dd(xp.stack([x, sq], axis=-3),
                         xp.stack([xp.zeros_like(x), sq_err], axis=-3), window)
    s1, s1_lo, s2, s2_lo = hi[..., 0, :, :], lo[..., 0, :, :], hi[..., 1, :, :], lo[..., 1, :, :]
    p, p_lo = two_prod(xp, s1, s1)  # s1², then / n by one correction step
    p_lo = p_lo + 2 * s1 * s1_lo
    q = p / n
    t, t_lo = two_prod(xp, q, n)
    r, r_lo = dd_add((p, p_lo), (-t, -t_lo))
    var, var_lo = dd_add((s2, s2_lo), (-q, -(r + r_lo) / n))
    return var + var_lo, s2


def _counts(be: Any, like: Any, window: tuple[int, int]) -> Any:
    """How many pixels of each centred window lie inside the image: (H, W), exact."""
    (h, w), (wh, ww) = like.shape[-2:], window
    rows, cols = _inside(int(h), wh), _inside(int(w), ww)
    return be.from_host(rows[:, None], like) * be.from_host(cols[None, :], like)


def _inside(n: int, w: int) -> np.ndarray:
    """How many of the ``w`` points centred on each of ``n`` lie inside them: ``(n,)``.

    Clipped window ends, not sums of a zero-padded row of ones: torch.compile's Dynamo
    traces NumPy calls as tensor operations, and its ``np.pad`` made sizes it could not
    follow (no ``fullgraph``).
    """
    i, r = np.arange(n), w // 2
    return (np.minimum(i + r, n - 1) - np.maximum(i - r, 0) + 1).astype(np.float64)


# -- the masked form ---------------------------------------------------------------------------


def _masked(be: Any, x: Any, t: Any, m: Any, mode: str, method: str, wide: Any) -> Any:
    """Padfield's masked NCC, all in the wide dtype: three correlations, two in one call."""
    xp = be.xp
    out_dtype = x.dtype
    th, tw = (int(n) for n in t.shape[-2:])
    x, t, m = be.astype(x, wide), be.astype(t, wide), be.astype(m, wide)
    c = center(be, x, wide)  # of the image's own pixels, before the zero padding
    size = tuple(int(n) for n in x.shape[-2:])
    xc = x - c
    # "same": the zero padding holds -c once centred, but an FFT's rounding errors follow its
    # input's largest values (an image offset by 1e6 was 4e-4 off), so the centred image is
    # padded with zeros and the padding's part added after the correlations (_padding_sums)
    xc = _pad_same(be, xc, th, tw) if mode == "same" else xc
    lead = broadcast_shapes(tuple(m.shape), tuple(t.shape))
    m = xp.broadcast_to(m, lead)
    t = xp.broadcast_to(t, lead)
    axes = (-2, -1)
    # Weights scaled by an exact power of four into [1/4, 1): the NCC is the same to the bit
    # (square roots of powers of four are exact), and weights of 1e160 no longer overflow
    # the flatness floor's sum of squares.
    peak = xp.max(m, axis=axes, keepdims=True)
    _, expo = xp.frexp(peak)
    m = m * xp.ldexp(xp.ones_like(peak), -2 * ((expo + 1) // 2))
    weight = xp.sum(m, axis=axes, keepdims=True)
    on = m > 0
    t = xp.where(on, t, 0)  # a zero-weight pixel does not count, even as NaN
    const = xp.max(xp.where(on, t, -np.inf), axis=axes, keepdims=True) == \
        xp.min(xp.where(on, t, np.inf), axis=axes, keepdims=True)
    ok_t = ~const & (weight > 0)
    safe_weight = xp.where(weight > 0, weight, 1)
    d = t - _sum(be, m, wide, t) / safe_weight  # centred twice, as in generic_template_terms
    d = d - _sum(be, m, wide, d) / safe_weight
    tz = xp.where(ok_t, m * d, 0)
    tss = _sum(be, tz, wide, d)
    kernels = xp.stack([tz, m], axis=-3)  # one call: the image's spectrum is shared
    both = _corr.valid(be, xc[..., None, :, :], kernels, method, False)[0]
    num, s1 = both[..., 0, :, :], both[..., 1, :, :]
    s2 = _corr.valid(be, xc * xc, m, method, False)[0]
    if mode == "same":  # the padding's -c: its products with tz and m, and (-c)² with m
        pad_tz, pad_m = _padding_sums(be, kernels, size)
        num, s1, s2 = num - c * pad_tz, s1 - c * pad_m, s2 + (c * c) * pad_m
    var = s2 - s1 * (s1 / safe_weight)
    flat = var <= _masked_floor(be, xc, m, kernels, s2, safe_weight, method)
    inv_w = _inv_sqrt(xp, var, ~flat)
    inv_t = _inv_sqrt(xp, tss, ok_t & (tss > 0))
    return be.astype(xp.clip(num * inv_w * inv_t, -1, 1), out_dtype)


def _padding_sums(be: Any, kernels: Any, size: tuple[int, int]) -> tuple[Any, Any]:
    """``mode="same"``'s windows, correlated with the indicator of the zero padding around an
    image of ``size``: for each of ``kernels (..., 2, th, tw)``, the sum of its taps that
    fall on padding, ``(..., H, W)`` (exactly 0 where none do).

    With ``R[i, a]`` 1 where tap row ``a`` of output row ``i`` is an image row (``C`` for the
    columns), ``1 - R·C = (1 - R) + R·(1 - C)``: the rows' sums of the taps on padding rows,
    plus the taps on padding columns of the image rows, as two small products.
    """
    (h, w), (th, tw) = size, (int(n) for n in kernels.shape[-2:])
    rows, cols = _on_image(h, th), _on_image(w, tw)
    r, off_r, off_c = (be.from_host(a, kernels) for a in (rows, 1 - rows, (1 - cols).T))
    sums = off_r @ be.xp.sum(kernels, axis=-1)[..., None] + (r @ kernels) @ off_c
    return sums[..., 0, :, :], sums[..., 1, :, :]


def _on_image(n: int, taps: int) -> np.ndarray:
    """``(n, taps)``: 1.0 where tap ``a`` of output ``i`` of ``mode="same"`` (padding
    ``taps // 2`` before the image) falls on one of its ``n`` points, else 0.0 (NumPy
    comparisons, not a padded array: see ``_inside``)."""
    at = np.arange(n)[:, None] + np.arange(taps)[None, :] - taps // 2
    return ((at >= 0) & (at < n)).astype(np.float64)


def _masked_floor(be: Any, xc: Any, m: Any, kernels: Any, s2: Any, weight: Any,
                  method: str) -> Any:
    """What a masked window's centred sum of squares must exceed not to be flat: twice the
    rounding error bound of ``s2 - s1²/weight`` from ``xcorr.testing.error_bound``'s terms
    (with ``|s1| <= sqrt(s2 · weight)``, Cauchy-Schwarz for non-negative weights)."""
    xp = be.xp
    n = int(m.shape[-2]) * int(m.shape[-1])
    u = _unit(xc.dtype)
    floor = 2 * (3 * DIRECT_C * (n + 2) + 4) * u * s2
    if method == "auto":
        fft = {choose(be, xc[..., None, :, :], kernels), choose(be, xc, m)} != {"direct"}
    else:
        fft = method != "direct"
    if not fft:
        return floor
    # An FFT's rounding errors spread over the output in proportion to its inputs' norms.
    h, w = (int(k) for k in xc.shape[-2:])
    spread = FFT_C * u * log2(max(fft_len(h) * fft_len(w), 2))
    axes = (-2, -1)
    sq = xc * xc
    norm_m = xp.sqrt(xp.sum(m * m, axis=axes, keepdims=True))
    err_s2 = spread * xp.sqrt(xp.sum(sq * sq, axis=axes, keepdims=True)) * norm_m
    err_s1 = spread * xp.sqrt(xp.sum(sq, axis=axes, keepdims=True)) * norm_m
    return floor + 2 * (err_s2 + 2 * xp.sqrt(s2 / weight) * err_s1)
