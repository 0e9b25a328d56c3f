"""Issue 15: ``match_template`` and ``local_ncc`` on every backend.

Oracles: ``skimage.feature.match_template``, ``cv2.matchTemplate(TM_CCOEFF_NORMED)`` and a
float64 brute-force Pearson correlation per window (two-pass, so it does not cancel).
scikit-image's own ``match_template`` tests are ported at the end of the NumPy-only part.
"""

from __future__ import annotations

import importlib.util
import itertools
import warnings
from typing import Any

import numpy as np
import pytest
from conftest import to_np, x64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import xcorr
from xcorr import _boxsum, _ncc, _numba
from xcorr._dispatch import load


def skimage_match(*args: Any, **kw: Any) -> np.ndarray:
    """``skimage.feature.match_template`` (the test extra), or skip saying it is missing."""
    feature = pytest.importorskip("skimage.feature",
                                  reason="scikit-image (test extra): the oracle is missing")
    return feature.match_template(*args, **kw)

RNG = np.random.default_rng(15)
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow], deadline=None)


def brute(x: Any, t: Any, mask: Any = None, mode: str = "valid") -> np.ndarray:
    """Weighted Pearson correlation of every window with the template, float64, two-pass.

    0 where the window or the template is constant over the weighted pixels.  Each window
    is first shifted by its first pixel (exact for the nearly equal values of an offset
    image), so that its mean is not rounded at the offset's scale: a 2-pixel window at
    -3e5 with a spread of 2e-8 gave -0.9999937 for an exact -1 without it.
    """
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    m = np.ones(t.shape[-2:]) if mask is None else np.asarray(mask, np.float64)
    th, tw = t.shape[-2:]
    if mode == "same":
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(th // 2, (th - 1) // 2),
                                                  (tw // 2, (tw - 1) // 2)])
    win = sliding_window_view(x, (th, tw), axis=(-2, -1))  # (..., Ho, Wo, th, tw)
    lead = np.broadcast_shapes(x.shape[:-2], t.shape[:-2], m.shape[:-2])
    ho, wo = win.shape[-4:-2]
    win = np.broadcast_to(win, (*lead, ho, wo, th, tw))
    tt = np.broadcast_to(t[..., None, None, :, :], (*lead, 1, 1, th, tw))
    mm = np.broadcast_to(m[..., None, None, :, :], (*lead, 1, 1, th, tw))
    axes = (-2, -1)
    n = mm.sum(axes, keepdims=True)
    shifted = win - win[..., :1, :1]
    dw = shifted - (mm * shifted).sum(axes, keepdims=True) / n
    dt = tt - (mm * tt).sum(axes, keepdims=True) / n
    cov = (mm * dw * dt).sum(axes)
    var_w, var_t = (mm * dw * dw).sum(axes), (mm * dt * dt).sum(axes)
    on = mm > 0
    flat_w = np.where(on, win, np.inf).min(axes) == np.where(on, win, -np.inf).max(axes)
    flat_t = np.where(on, tt, np.inf).min(axes) == np.where(on, tt, -np.inf).max(axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(var_w * var_t)
    return np.where(flat_w | flat_t, 0.0, r)


def brute_local(a: np.ndarray, b: np.ndarray, window: tuple[int, int], eps: float) -> np.ndarray:
    """Local NCC pixel by pixel over the in-image part of the centred window, float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    hh, hw = window[0] // 2, window[1] // 2
    out = np.empty(a.shape)
    for idx in np.ndindex(a.shape[:-2]):
        for i in range(a.shape[-2]):
            for j in range(a.shape[-1]):
                rs = slice(max(i - hh, 0), i + hh + 1)
                cs = slice(max(j - hw, 0), j + hw + 1)
                pa, pb = a[idx][rs, cs], b[idx][rs, cs]
                da, db = pa - pa.mean(), pb - pb.mean()
                cov, va, vb = (da * db).mean(), (da * da).mean(), (db * db).mean()
                out[idx + (i, j)] = cov / np.sqrt(va * vb + eps)
    return out


def wide(backend: str) -> bool:
    """Whether this backend computes float64 here (JAX only inside ``x64``)."""
    if backend != "jax":
        return True
    import jax

    return bool(jax.config.jax_enable_x64)


# -- against scikit-image, OpenCV and the brute force, on every backend ------------------------


@pytest.mark.parametrize("mode", ["valid", "same"])
def test_equals_skimage_random(backend: str, mode: str) -> None:
    cases = [((23, 31), (7, 5)), ((16, 12), (4, 6)), ((9, 9), (9, 9)), ((20, 17), (1, 3))]
    for (h, w), (th, tw) in cases[::2] if backend == "jax" else cases:  # JAX: compile time
        x = RNG.random((h, w))
        t = RNG.random((th, tw))
        want = skimage_match(x, t, pad_input=mode == "same")
        with x64(backend):
            got = to_np(xcorr.match_template(x, t, mode=mode, backend=backend))
        assert got.dtype == np.float64 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=f"{(h, w, th, tw)}")
        x32, t32 = x.astype(np.float32), t.astype(np.float32)
        got32 = to_np(xcorr.match_template(x32, t32, mode=mode, backend=backend))
        assert got32.dtype == np.float32
        want32 = skimage_match(x32.astype(np.float64), t32.astype(np.float64),
                               pad_input=mode == "same")
        # (scikit-image's own float32 result is off by up to 3e-4 here, for the 1×3 template.)
        np.testing.assert_allclose(got32, want32, rtol=0, atol=1e-4)


def test_camera_crop_is_found(backend: str) -> None:
    data = pytest.importorskip("skimage.data", reason="scikit-image (test extra): the camera")
    image = data.camera().astype(np.float64) / 255
    top, left = 210, 170
    template = image[top:top + 48, left:left + 37]
    for mode, at in (("valid", (top, left)), ("same", (top + 24, left + 18))):
        want = skimage_match(image, template, pad_input=mode == "same")
        with x64(backend):
            got = to_np(xcorr.match_template(image, template, mode=mode, backend=backend))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
        assert np.unravel_index(np.argmax(got), got.shape) == at
        assert got.max() == pytest.approx(1, abs=1e-12)
        got32 = to_np(xcorr.match_template(image.astype(np.float32),
                                           template.astype(np.float32), mode=mode,
                                           backend=backend))
        np.testing.assert_allclose(got32, want, rtol=0, atol=1e-4)
        assert np.unravel_index(np.argmax(got32), got32.shape) == at


def test_float32_on_a_photograph(backend: str) -> None:
    """Dark, smooth windows far from the image's mean are where float32 sums cancel; within
    1e-4 of the float64 result for template sizes on both sides of the direct/FFT choice."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (test extra): the camera")
    image = data.camera()[250:400, 0:150].astype(np.float64) / 255  # sky, grass and coat
    for k in (5, 15, 21, 40):
        template = image[40:40 + k, 60:60 + k]
        want = brute(image, template) if k < 20 else skimage_match(image, template)
        got = to_np(xcorr.match_template(image.astype(np.float32),
                                         template.astype(np.float32), backend=backend))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=f"{k}×{k}")


def test_equals_opencv_float32(backend: str) -> None:
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (test extra): the oracle")
    x = RNG.random((70, 90), dtype=np.float32)
    for t in (x[10:25, 30:41].copy(), RNG.random((8, 13), dtype=np.float32)):
        want = cv2.matchTemplate(x, t, cv2.TM_CCOEFF_NORMED)
        got = to_np(xcorr.match_template(x, t, backend=backend))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_masked_equals_brute_force(backend: str) -> None:
    x = RNG.random((2, 19, 23))
    t = RNG.random((3, 1, 6, 5))  # 3 templates, each against both images
    weights = RNG.random((6, 5)) * (RNG.random((6, 5)) > 0.3)
    boolean = RNG.random((3, 1, 6, 5)) > 0.4
    boolean[..., 0, 0] = True
    slow = backend == "jax"  # eager JAX compiles every operation for every new shape
    for mask in (weights, boolean) if slow else (weights, boolean, np.ones((6, 5))):
        for mode in ("valid", "same"):
            want = brute(x, t, mask, mode)
            for method in ("fft",) if slow and mode == "same" else ("direct", "fft"):
                with x64(backend):
                    got = to_np(xcorr.match_template(x, t, mode=mode, mask=mask,
                                                     method=method, backend=backend))
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-9,
                                           err_msg=f"{mode} {method}")
    unmasked = to_np(xcorr.match_template(x, t, backend=backend))
    ones = to_np(xcorr.match_template(x, t, mask=np.ones((6, 5)), backend=backend))
    np.testing.assert_allclose(ones, unmasked, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_batched_templates_equal_a_loop(backend: str, method: str) -> None:
    x = RNG.random((2, 1, 15, 18))
    t = RNG.random((4, 5, 3))
    with x64(backend):
        got = to_np(xcorr.match_template(x, t, method=method, backend=backend))
        assert got.shape == (2, 4, 11, 16)
        for i in range(2):
            for k in range(4):
                one = to_np(xcorr.match_template(x[i, 0], t[k], method=method,
                                                 backend=backend))
                np.testing.assert_allclose(got[i, k], one, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got, brute(x, t), rtol=0, atol=1e-9)


def test_flat_windows_and_constant_templates_give_zero(backend: str) -> None:
    x = RNG.random((20, 24))
    x[2:12, 3:15] = 0.375  # flat
    x[14:, 10:] = 1e4 + 0.25  # flat and far from the image's mean
    t = RNG.random((5, 4))
    want = brute(x, t)
    with x64(backend):
        got = to_np(xcorr.match_template(x, t, backend=backend))
        # Unit-scale windows 1700 from the image's mean (the 1e4 patch pulls it): the issue's
        # float64 bound, not 1e-9 (one centre for the whole image leaves ~1e-8 here).  JAX
        # without x64 holds the image in float32, whose spacing at 1700 is 1e-4 of a pixel.
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 if wide(backend) else 1e-2)
        assert np.all(got[2:8, 3:12] == 0) and np.all(got[14:, 10:] == 0)
        flat = to_np(xcorr.match_template(x, np.full((5, 4), 0.1), backend=backend))
        assert np.all(flat == 0)
        masked = to_np(xcorr.match_template(x, t, mask=t > 0.5, backend=backend))
        assert np.all(masked[2:8, 3:12] == 0)


def test_nan_and_inf_stay_in_their_windows(backend: str) -> None:
    x = RNG.random((16, 18))
    x[5, 7] = np.nan
    x[12, 2] = np.inf
    t = RNG.random((3, 4))
    with x64(backend), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # also what Dask's worker threads warn
        got = to_np(xcorr.match_template(x, t, backend=backend))
    assert not [w for w in seen if issubclass(w.category, RuntimeWarning)], seen
    reached = np.zeros(got.shape, bool)
    reached[3:6, 4:8] = True  # windows holding (5, 7)
    reached[10:13, 0:3] = True  # windows holding (12, 2)
    assert np.all(np.isnan(got[reached]))  # and no NumPy warning (an error in this suite)
    clean = x.copy()
    clean[5, 7] = clean[12, 2] = 0.5
    np.testing.assert_allclose(got[~reached], brute(clean, t)[~reached], rtol=0, atol=1e-9)


def test_centring_survives_a_nan_pixel_and_same_mode(backend: str) -> None:
    """The image's centre comes from its own finite pixels: one NaN elsewhere, or the zero
    padding of ``mode="same"``, used to leave far windows uncentred (at an offset of 1e6 in
    float64: 1.8e-3 and 4e-5 off the brute force)."""
    base = RNG.random((30, 34)) + 1e6
    t = RNG.random((5, 6))
    m = RNG.random((5, 6)) > 0.3
    x = base.copy()
    x[2, 3] = np.nan
    for mode, mask, method in itertools.product(("valid", "same"), (None, m),
                                                ("auto", "direct", "fft")):
        # "same" by FFT: the masked form's correlations met the centred zero padding (-1e6),
        # whose 1e12 squares set their rounding: 4e-4 of an interior window's NCC, until
        # the padding's part was added apart (_padding_sums)
        kw = {"mode": mode, "mask": mask, "method": method, "backend": backend}
        with x64(backend), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Dask's workers on the NaN's windows
            got = to_np(xcorr.match_template(x, t, **kw))
            clean = to_np(xcorr.match_template(base, t, **kw))
        want = brute(base, t, mask, mode)
        np.testing.assert_allclose(clean, want, rtol=0, atol=1e-9, err_msg=str(kw))
        if method != "fft":  # an FFT spreads the NaN over every window
            far = (slice(12, None), slice(12, None))  # windows nowhere near (2, 3)
            np.testing.assert_allclose(got[far], want[far], rtol=0, atol=1e-9)
    y = RNG.random((30, 34)) + 1e4
    with x64(backend), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = to_np(xcorr.local_ncc(x - 1e6 + 1e4, y, 5, backend=backend))
    want = brute_local(base - 1e6 + 1e4, y, (5, 5), 1e-5)
    np.testing.assert_allclose(got[12:, 12:], want[12:, 12:], rtol=0, atol=1e-12)


def test_dtypes(backend: str) -> None:
    x = RNG.integers(0, 50, (12, 13))
    t = RNG.integers(0, 50, (3, 4))
    with x64(backend):
        got = xcorr.match_template(x, t, backend=backend)
        assert to_np(got).dtype == np.float64
        np.testing.assert_allclose(to_np(got), brute(x, t), rtol=0, atol=1e-12)
    half = to_np(xcorr.match_template(x.astype(np.float16), t.astype(np.float16),
                                      backend=backend))
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, brute(x, t), rtol=0, atol=1e-5)


def test_offset_and_scale(backend: str) -> None:
    """An image offset by 1e4 or scaled by 1e-6 still matches the float64 brute force."""
    base = RNG.random((40, 48))
    t = base[5:16, 9:22] + 0.1 * RNG.random((11, 13))
    for make in (lambda a: a + 1e4, lambda a: a * 1e-6, lambda a: a * 1e-6 + 1e4 * 1e-6):
        x = make(base)
        with x64(backend):
            got = to_np(xcorr.match_template(x, t, backend=backend))
        np.testing.assert_allclose(got, brute(x, t), rtol=0, atol=1e-6)
        x32 = make(base).astype(np.float32)
        got32 = to_np(xcorr.match_template(x32, t.astype(np.float32), backend=backend))
        np.testing.assert_allclose(got32, brute(x32, t.astype(np.float32)), rtol=0, atol=1e-3)
        assert np.all(np.abs(got32) <= 1)


def test_mask_scale_and_masked_out_nan(backend: str) -> None:
    """Weights of 1e160 overflowed the FFT's flatness floor (every window read as flat: 0);
    a NaN at a zero-weight template pixel spread to every output."""
    x = RNG.random((30, 28))
    t = x[5:14, 7:17].copy()
    m = RNG.random(t.shape) > 0.3
    with x64(backend):
        want = to_np(xcorr.match_template(x, t, mask=m, backend=backend))
        for method in ("fft", "direct"):
            big = to_np(xcorr.match_template(x, t, mask=m * 1e160, method=method,
                                             backend=backend))
            np.testing.assert_allclose(big, want, rtol=0, atol=1e-9)
        t_nan = np.where(m, t, np.nan)
        got = to_np(xcorr.match_template(x, t_nan, mask=m, backend=backend))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert got[5, 7] == pytest.approx(1.0)


def test_local_ncc_window_holding_inf_is_nan(backend: str) -> None:
    """A window holding ±Inf gave ±1 (its NaN variance was clipped to 0), not NaN."""
    a = np.array([[0.0, np.inf, 0.0, 0.0, 3.0]])
    b = np.array([[0.0, 1.0, -10.0, 5.0, 2.0]])
    got = to_np(xcorr.local_ncc(a, b, (1, 3), backend=backend))
    assert np.isnan(got[0, :3]).all() and np.isfinite(got[0, 3:]).all()


def test_float32_templates_far_from_unit_scale(backend: str) -> None:
    """A float32 template at 1e20 overflowed its sum of squares (1e-25: underflowed, read as
    constant), giving 0 everywhere; with the image at 1e20 too the numerator overflowed to
    NaN.  The template is now scaled by an exact power of two first."""
    base = RNG.random((24, 20)).astype(np.float32)
    # JAX without x64 sums the image's squares in float32 pairs unless Numba's kernels do it
    # in float64 (a host callback): squares of 1e20 overflow there (documented).
    image_scaled = wide(backend) or _numba.kernel() is not None
    for scale in (1e20, 1e-25, 3e-21):
        t = base[4:11, 5:14] * np.float32(scale)
        for x in (base, base * np.float32(scale)) if image_scaled else (base,):
            got = to_np(xcorr.match_template(x, t, backend=backend))
            want = brute(x.astype(np.float64), t.astype(np.float64))
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-3, err_msg=f"{scale}")
            assert got[4, 5] == pytest.approx(1.0, abs=1e-6)


def test_local_ncc_equals_brute_force(backend: str) -> None:
    a = RNG.random((2, 9, 11))
    b = 0.5 * a + RNG.random((2, 9, 11))
    for window in ((5, 3), (9, 11)) if backend == "jax" else (3, (5, 3), (9, 11), 1):
        for eps in (1e-5, 0.3):
            want = brute_local(a, b, (window, window) if isinstance(window, int) else window,
                               eps)
            with x64(backend):
                got = to_np(xcorr.local_ncc(a, b, window, eps=eps, backend=backend))
            assert got.shape == a.shape and got.dtype == np.float64
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10, err_msg=f"{window}")
    got32 = to_np(xcorr.local_ncc(a.astype(np.float32), b.astype(np.float32), 3,
                                  backend=backend))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, brute_local(a, b, (3, 3), 1e-5), rtol=0, atol=1e-4)
    same = to_np(xcorr.local_ncc(a + 100, 3 * a - 7, 3, eps=1e-12, backend=backend))
    assert np.all(same > 0.99) and np.all(same <= 1)


def test_local_ncc_takes_zero_d_arrays_of_any_framework() -> None:
    """``eps=jnp.float32(1e-5)`` and ``window=jnp.int32(3)`` (or torch's 0-d tensors) were
    refused as not numbers, where NumPy's scalars were taken."""
    a, b = RNG.random((9, 11)), RNG.random((9, 11))
    want = xcorr.local_ncc(a, b, (3, 5), eps=0.25)
    scalars = [(np.int64(3), np.array(5), np.array(0.25))]
    if importlib.util.find_spec("jax") is not None:
        import jax.numpy as jnp

        scalars.append((jnp.asarray(3), jnp.int32(5), jnp.float32(0.25)))
    if importlib.util.find_spec("torch") is not None:
        import torch

        scalars.append((torch.tensor(3), torch.tensor(5), torch.tensor(0.25)))
    for wh, ww, eps in scalars:
        np.testing.assert_array_equal(xcorr.local_ncc(a, b, (wh, ww), eps=eps), want)
        assert xcorr.local_ncc(a, b, wh, eps=eps).shape == a.shape


def test_errors(backend: str) -> None:
    x, t = np.ones((6, 7)), np.ones((3, 3))
    cases = [
        (dict(image=x, template=t, mode="full"), ValueError, "mode"),
        (dict(image=x, template=t, method="nope"), ValueError, "method"),
        (dict(image=x, template=np.ones((7, 3))), ValueError, r"larger than the image"),
        (dict(image=np.ones(6), template=t), ValueError, "at least 2 dimensions"),
        (dict(image=x, template=np.ones(3)), ValueError, "at least 2 dimensions"),
        (dict(image=np.ones((2, 6, 7)), template=np.ones((3, 3, 3))), ValueError, "broadcast"),
        (dict(image=x, template=t, mask=np.ones((2, 2))), ValueError, "mask"),
        (dict(image=np.ones((2, 6, 7)), template=t, mask=np.ones((3, 3, 3))), ValueError,
         r"mask \(3, 3, 3\) and template \(3, 3\) together .* image \(2, 6, 7\)"),
        (dict(image=x, template=t, mask=np.zeros((3, 3))), ValueError, "no positive"),
        (dict(image=x, template=t, mask=np.zeros((3, 3), bool)), ValueError, "no positive"),
        (dict(image=x, template=t, mask=-np.ones((3, 3))), ValueError, "non-negative"),
        (dict(image=x, template=t, mask=np.full((3, 3), np.nan)), ValueError, "finite"),
        (dict(image=np.ones((0, 7)), template=t), ValueError, "empty"),
        (dict(image=x.astype(bool), template=t), TypeError, "boolean"),
        (dict(image="x", template=t), TypeError, "image"),
    ]
    for kw, err, match in cases:
        with pytest.raises(err, match=match):
            xcorr.match_template(**kw, backend=backend)
    # A template larger than the image is fine in 'same' mode (the padding makes room).
    assert to_np(xcorr.match_template(x, np.ones((8, 2)) * np.arange(2), mode="same",
                                      backend=backend)).shape == (6, 7)
    bad_local = [
        (dict(a=x, b=np.ones((6, 6)), window=3), "same shape"),
        (dict(a=x, b=x, window=2), "odd positive"),
        (dict(a=x, b=x, window=(3, 0)), "odd positive"),
        (dict(a=x, b=x, window=True), "odd positive"),
        (dict(a=x, b=x, window=(7, 3)), "larger than the image"),
        (dict(a=x, b=x, window=3, eps=0), "eps"),
        (dict(a=x, b=x, window=3, eps=-1.0), "eps"),
        (dict(a=x, b=x, window=3, eps=float("inf")), "eps"),  # every value 0
        (dict(a=np.ones(4), b=np.ones(4), window=3), "at least 2 dimensions"),
    ]
    for kw, match in bad_local:
        with pytest.raises(ValueError, match=match):
            xcorr.local_ncc(**kw, backend=backend)


# -- gradients ---------------------------------------------------------------------------------


def _grad_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs for central differences, and an image with flat windows (where the NCC jumps
    from 0 as soon as a pixel moves: its gradient must be finite, but differences are not
    a check of it)."""
    x = RNG.random((9, 10))
    flat = x.copy()
    flat[:4, :5] = 0.5
    t = RNG.random((3, 4))
    m = (RNG.random((3, 4)) > 0.3) + 0.5
    return x, flat, t, m


def test_jax_gradients() -> None:
    jax = pytest.importorskip("jax", reason="jax: not installed")
    from jax.test_util import check_grads

    x, flat, t, m = _grad_inputs()
    from xcorr._compat import jax_x64

    with jax_x64(True):
        import jax.numpy as jnp

        xj, tj, mj, fj = jnp.asarray(x), jnp.asarray(t), jnp.asarray(m), jnp.asarray(flat)
        for method, mode in (("direct", "valid"), ("fft", "same")):
            def f(a, b, method=method, mode=mode):
                return xcorr.match_template(a, b, mode=mode, method=method)

            check_grads(f, (xj, tj), order=1, modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-5)
            g = jax.grad(lambda a, b, f=f: jnp.sum(f(a, b) ** 2), argnums=(0, 1))(fj, tj)
            assert all(bool(jnp.all(jnp.isfinite(v))) for v in g)
        masked = jax.jit(lambda a, b, c: xcorr.match_template(a, b, mask=c, method="fft"))
        check_grads(masked, (xj, tj, mj), order=1, modes=("rev",), eps=1e-6, atol=1e-5,
                    rtol=1e-5)
        g = jax.grad(lambda a: jnp.sum(masked(a, tj, mj) ** 2))(fj)
        assert bool(jnp.all(jnp.isfinite(g)))
        flat_t = jnp.full((3, 4), 0.25)
        g = jax.grad(lambda b: jnp.sum(xcorr.match_template(xj, b)))(flat_t)
        assert bool(jnp.all(jnp.isfinite(g)))
        check_grads(lambda a, b: xcorr.local_ncc(a, b, (3, 5)), (xj, xj[::-1] ** 2), order=1,
                    modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-5)
        jitted = jax.jit(xcorr.match_template, static_argnames=("mode", "method"))
        np.testing.assert_allclose(np.asarray(jitted(xj, tj, mode="same")),
                                   brute(x, t, mode="same"), rtol=0, atol=1e-9)


def test_torch_gradients() -> None:
    torch = pytest.importorskip("torch", reason="torch: not installed")
    x, flat, t, m = _grad_inputs()
    xt, tt, mt = (torch.tensor(a, requires_grad=True) for a in (x, t, m))
    for method in ("direct", "fft"):
        for mode in ("valid", "same"):
            assert torch.autograd.gradcheck(
                lambda a, b, method=method, mode=mode: xcorr.match_template(
                    a, b, mode=mode, method=method), (xt, tt), eps=1e-6, atol=1e-5)
        assert torch.autograd.gradcheck(
            lambda a, b, c, method=method: xcorr.match_template(a, b, mask=c, method=method),
            (xt, tt, mt), eps=1e-6, atol=1e-5)
    ft = torch.tensor(flat, requires_grad=True)
    for mask in (None, mt.detach()):
        xcorr.match_template(ft, tt, mask=mask).square().sum().backward()
        assert torch.isfinite(ft.grad).all() and torch.isfinite(tt.grad).all()
    flat = torch.full((3, 4), 0.25, dtype=torch.float64, requires_grad=True)
    xcorr.match_template(xt, flat).sum().backward()
    assert torch.isfinite(flat.grad).all()
    yt = torch.tensor(x[::-1] ** 2, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: xcorr.local_ncc(a, b, (3, 5)), (xt, yt),
                                    eps=1e-6, atol=1e-5)


def _spy_compiled(monkeypatch: pytest.MonkeyPatch,
                  names: tuple[str, ...] = ("ncc_inv_norm", "ncc_finish")) -> list[str]:
    """Record the NumPy backend's compiled NCC kernels (or the functions ``names``) being
    called (by any backend); skips without Numba."""
    be = load("numpy")
    if be.ncc_inv_norm(np.ones((1, 4, 4)), (2, 2), 1e-12) is None:
        pytest.skip("numba: not installed (the compiled normaliser is optional)")
    calls: list[str] = []

    def spy(name: str, kernel: Any) -> Any:
        def call(*args: Any) -> Any:
            calls.append(name)
            return kernel(*args)
        return call

    for name in names:
        monkeypatch.setattr(be, name, spy(name, getattr(be, name)))
    return calls


def test_torch_cpu_without_autograd_uses_the_compiled_normaliser(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU tensors outside autograd are normalised by the NumPy backend's compiled pass (on
    the tensor's memory); while autograd records, by torch operations; the same values."""
    torch = pytest.importorskip("torch", reason="torch: not installed")
    calls = _spy_compiled(monkeypatch)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        x = torch.tensor(RNG.random((2, 40, 50)), dtype=dtype)
        t = torch.tensor(RNG.random((7, 9)), dtype=dtype)
        calls.clear()
        fast = xcorr.match_template(x, t)
        assert calls == ["ncc_finish"]
        calls.clear()
        recorded = xcorr.match_template(x.requires_grad_(), t)
        assert calls == [] and recorded.requires_grad
        np.testing.assert_allclose(fast.numpy(), recorded.detach().numpy(), rtol=0, atol=tol)
        np.testing.assert_allclose(fast.numpy(), brute(x.detach().numpy(), t.numpy()), rtol=0,
                                   atol=tol * 10)


def test_torch_cpu_without_autograd_takes_numpys_centred_fft_and_mean(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Large CPU tensors outside autograd: the numerator by the NumPy backend's centred FFT
    (the centred image never made) and the mean by its compiled column totals, on the
    tensor's memory; while autograd records, torch operations throughout."""
    torch = pytest.importorskip("torch", reason="torch: not installed")
    calls = _spy_compiled(monkeypatch, ("corr2d_valid_centred", "ncc_mean"))
    x = RNG.random((1024, 1024)).astype(np.float32)
    t = RNG.random((31, 31)).astype(np.float32)
    fast = xcorr.match_template(torch.from_numpy(x), torch.from_numpy(t), method="overlap")
    assert sorted(calls) == ["corr2d_valid_centred", "ncc_mean"]
    np.testing.assert_allclose(fast.numpy(), xcorr.match_template(x, t, method="overlap"),
                               rtol=0, atol=1e-6)
    calls.clear()
    xt = torch.from_numpy(x[:300, :300].copy()).requires_grad_()
    recorded = xcorr.match_template(xt, torch.from_numpy(t), method="overlap")
    assert calls == [] and recorded.requires_grad


def test_jax_float32_on_the_cpu_runs_the_numpy_backend(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """JAX float32 on the CPU: values from the NumPy backend through a callback (its fused,
    compiled finishing pass), derivatives from the jitted program (whose normaliser is the
    compiled pass again); eager, jit, vmap, grad and jvp all agree with the double-word
    program JAX runs without them, in both modes and with a bank of templates."""
    jax = pytest.importorskip("jax", reason="jax: not installed")
    import jax.numpy as jnp

    calls = _spy_compiled(monkeypatch)
    x = jnp.asarray(RNG.random((3, 30, 40)), jnp.float32)
    t = jnp.asarray(RNG.random((6, 5)), jnp.float32)
    bank = jnp.asarray(RNG.random((4, 1, 7, 6)), jnp.float32)

    def values() -> list[Any]:
        mt = jax.jit(lambda a, b: xcorr.match_template(a, b, mode="same"))
        return [xcorr.match_template(x, t), mt(x, t), xcorr.match_template(x, bank),
                jax.vmap(lambda a: xcorr.match_template(a, t))(x),
                jax.vmap(lambda b: xcorr.match_template(x[0], b))(bank[:, 0])]

    def derivatives() -> list[Any]:
        def loss(a: Any, b: Any) -> Any:
            return jnp.sum(xcorr.match_template(a, b) ** 2)

        return [*jax.grad(loss, argnums=(0, 1))(x[0], t),
                jax.jvp(lambda a: xcorr.match_template(a, t), (x[0],), (x[1],))[1]]

    with x64("jax", enabled=False):  # (callbacks run asynchronously: wait before counting)
        fast = jax.block_until_ready(values())
        assert len(calls) >= 5 and set(calls) == {"ncc_finish"}
        calls.clear()
        fast += jax.block_until_ready(derivatives())
        assert calls and set(calls) == {"ncc_inv_norm"}
        monkeypatch.setattr(_numba, "DISABLED", True)
        calls.clear()
        generic = jax.block_until_ready(values() + derivatives())
        assert calls == []
    for got, want in zip(fast, generic, strict=True):
        assert got.dtype == want.dtype == jnp.float32 and got.shape == want.shape
        scale = float(jnp.max(jnp.abs(want)))
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0,
                                   atol=2e-5 * max(scale, 1))
    np.testing.assert_allclose(np.asarray(fast[0]), brute(np.asarray(x), np.asarray(t)),
                               rtol=0, atol=2e-5)
    monkeypatch.setattr(_numba, "DISABLED", False)  # the NumPy backend as the callback ran it
    numpy_same = xcorr.match_template(np.asarray(x), np.asarray(t), mode="same")
    np.testing.assert_array_equal(np.asarray(fast[1]), numpy_same)  # the same computation


def test_jax_float32_masked_and_local_ncc_sum_in_float64_on_the_cpu() -> None:
    """JAX without x64 summed the masked form and local_ncc in plain float32: on the camera
    photograph a third of a masked map was off by more than 0.01 (low-contrast sky taken for
    flat), local_ncc by 0.011, and by 2.0 across a step of 1e4.  On the CPU with Numba they
    take the NumPy backend's float64 sums: eagerly, under jit and vmap, with derivatives
    from the program."""
    jax = pytest.importorskip("jax", reason="jax: not installed")
    data = pytest.importorskip("skimage.data", reason="scikit-image (test extra): the camera")
    if _numba.kernel() is None:
        pytest.skip("numba: not installed (the 'fast' extra): JAX sums in float32 then")
    import jax.numpy as jnp

    cam = data.camera().astype(np.float32)[:96, :96]
    t = cam[30:51, 20:41]
    m = np.random.default_rng(0).random(t.shape) > 0.3
    step = cam.copy()
    step[:, 48:] += 1e4
    moved = np.roll(cam, 2, axis=1) * 0.8 + 10
    want_m = brute(cam.astype(np.float64), t.astype(np.float64), m)
    want_l = brute_local(step.astype(np.float64), moved.astype(np.float64), (9, 9), 1e-5)
    with x64("jax", enabled=False):
        xj, tj, mj = jnp.asarray(cam), jnp.asarray(t), jnp.asarray(m)
        masked = [xcorr.match_template(xj, tj, mask=mj),
                  jax.jit(lambda a, b, c: xcorr.match_template(a, b, mask=c))(xj, tj, mj),
                  jax.vmap(lambda b: xcorr.match_template(xj, b, mask=mj))(tj[None])[0]]
        sj, mv = jnp.asarray(step), jnp.asarray(moved)
        local = [xcorr.local_ncc(sj, mv, 9),
                 jax.jit(lambda a, b: xcorr.local_ncc(a, b, 9))(sj, mv),
                 jax.vmap(lambda a: xcorr.local_ncc(a, mv, 9))(sj[None])[0]]
        grads = [jax.grad(lambda a: jnp.sum(xcorr.match_template(a, tj, mask=mj)))(xj),
                 jax.grad(lambda a: jnp.sum(xcorr.local_ncc(a, mv, 9)))(sj)]
    for got in masked:
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got), want_m, rtol=0, atol=1e-5)
    for got in local:
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got), want_l, rtol=0, atol=1e-5)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["valid", "same"])
def test_jax_eager_on_the_cpu_is_the_numpy_backends_result(monkeypatch: pytest.MonkeyPatch,
                                                           dtype: str, mode: str) -> None:
    """Eager JAX arrays on the CPU: the NumPy backend's match_template on their memory (no
    callback), its bits, as a JAX array on the image's device whose memory XLA took over."""
    jax = pytest.importorskip("jax", reason="jax: not installed")
    import jax.numpy as jnp

    from xcorr.backends import _jax

    calls = _spy_compiled(monkeypatch)
    monkeypatch.setattr(_jax, "_host_match", None)  # the callback: not called
    with x64("jax", enabled=dtype == "float64"):
        x = jnp.asarray(RNG.random((2, 40, 50)), dtype)
        t = jnp.asarray(RNG.random((7, 6)), dtype)
        got = xcorr.match_template(x, t, mode=mode)
        assert calls == ["ncc_finish"]
        assert isinstance(got, jax.Array) and got.dtype == dtype
        assert got.devices() == x.devices() and not _jax.committed(got)
        assert got.unsafe_buffer_pointer() % load("numpy").ALIGNMENT == 0
        want = xcorr.match_template(np.asarray(x), np.asarray(t), mode=mode)
        np.testing.assert_array_equal(np.asarray(got), want)


def test_jax_jit_writes_the_numpy_result_into_xlas_buffer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``jax.jit`` on the CPU, where JAX has ``buffer_callback``, the NumPy backend's
    overlap-save places the NCC maps straight into XLA's output buffer (``deliver`` finds
    the result there already, no copy), with the bits of NumPy's own call; through
    ``jax.pure_callback`` (older JAX, or forced here) the same bits."""
    jax = pytest.importorskip("jax", reason="jax: not installed")
    import jax.numpy as jnp

    from xcorr.backends import _jax

    _spy_compiled(monkeypatch)  # skips without Numba
    be = load("numpy")
    monkeypatch.setattr(be, "_OVERLAP_PART_BYTES", 1)  # by parts: the output is be.empty's
    delivered: list[bool] = []
    real = be.deliver

    def spy(result: np.ndarray, dst: np.ndarray) -> None:
        delivered.append(result.__array_interface__["data"][0]
                         == dst.__array_interface__["data"][0])
        real(result, dst)

    monkeypatch.setattr(be, "deliver", spy)

    def check(x: np.ndarray, t: np.ndarray) -> None:
        got = jax.jit(lambda a, b: xcorr.match_template(a, b, method="overlap"))(
            jnp.asarray(x), jnp.asarray(t))
        want = xcorr.match_template(x, t, method="overlap")
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got), want)

    x = RNG.random((50, 61)).astype(np.float32)
    bank = RNG.random((3, 9, 8)).astype(np.float32)
    with x64("jax", enabled=False):
        check(x, bank)
        check(x, bank[0])
        if _jax._buffer_callback is not None:
            assert delivered == [True, True]
        else:
            assert delivered == []
        delivered.clear()
        monkeypatch.setattr(_jax, "_buffer_callback", None)
        check(x[:47, :52], bank[:, :7])  # new shapes: traced again, through pure_callback
        assert delivered == []


# -- Dask --------------------------------------------------------------------------------------


def test_dask_any_chunking_equals_numpy() -> None:
    """Block by block with the template's halo: the bits of NumPy's whole-array result
    (direct correlations; the FFT's rounding depends on the block's size)."""
    da = pytest.importorskip("dask.array", reason="dask: not installed")
    x = RNG.random((2, 30, 41))
    t = RNG.random((7, 6))
    m = RNG.random((7, 6)) > 0.3
    for mode in ("valid", "same"):
        for mask in (None, m):
            want = xcorr.match_template(x, t, mode=mode, mask=mask, method="direct")
            for chunks in ((1, 7, 8), (2, 30, 41), (1, 11, 6), (2, 8, 41)):
                lazy = xcorr.match_template(da.from_array(x, chunks=chunks), t, mode=mode,
                                            mask=mask, method="direct")
                assert isinstance(lazy, da.Array)
                np.testing.assert_array_equal(lazy.compute(), want)
            # a chunked template or mask: their sums added in the order of Dask's tree (1-2
            # ulp off NumPy's) until each template was merged into one block
            tb = da.from_array(t * 3 + 100, chunks=2)
            mb = None if mask is None else da.from_array(mask, chunks=(3, 4))
            lazy = xcorr.match_template(da.from_array(x, chunks=(1, 7, 8)), tb, mode=mode,
                                        mask=mb, method="direct")
            np.testing.assert_array_equal(lazy.compute(), xcorr.match_template(
                x, t * 3 + 100, mode=mode, mask=mask, method="direct"))
            auto = xcorr.match_template(da.from_array(x, chunks=(1, 9, 10)), t, mode=mode,
                                        mask=mask).compute()
            np.testing.assert_allclose(auto, want, rtol=0, atol=1e-12)
    for chunks in ((1, 9, 13), (2, 5, 41)):
        a = da.from_array(x, chunks=chunks)
        np.testing.assert_array_equal(xcorr.local_ncc(a, a ** 2, (5, 3)).compute(),
                                      xcorr.local_ncc(x, x ** 2, (5, 3)))


# -- NumPy: the compiled normaliser and the window sums ----------------------------------------


def test_compiled_normaliser_equals_generic(monkeypatch: pytest.MonkeyPatch) -> None:
    be = load("numpy")
    if be.ncc_inv_norm(np.ones((1, 4, 4)), (2, 2), 1e-12) is None:
        pytest.skip("numba: not installed (the compiled normaliser is optional)")
    for shape, window in [((7, 9), (3, 4)), ((2, 40, 50), (31, 5)), ((3, 33, 70), (1, 1)),
                          ((1, 200, 130), (128, 64)), ((2, 60, 200), (17, 127)),
                          ((5, 5), (5, 5))]:
        for dtype in (np.float64, np.float32):
            x = RNG.normal(size=shape).astype(dtype)
            x[..., 1:4, 2:5] = 0.25
            x -= _ncc.center(be, x, np.dtype(np.float64))
            fast = _ncc.inv_norm(be, x, window, np.dtype(np.float64))
            monkeypatch.setattr(_numba, "DISABLED", True)
            generic = _ncc.inv_norm(be, x, window, np.dtype(np.float64))
            monkeypatch.setattr(_numba, "DISABLED", False)
            assert fast.dtype == generic.dtype == dtype
            np.testing.assert_array_equal(fast == 0, generic == 0)
            np.testing.assert_allclose(fast, generic, rtol=1e-12 if dtype == np.float64
                                       else 1e-6, atol=0)
    x = RNG.random((1, 20, 30))
    x[0, 8, 11] = np.nan
    inv = be.ncc_inv_norm(x, (3, 4), 1e-12)
    assert np.all(inv[0, 6:9, 8:12] == 0)  # NaN windows: 0 here, NaN after the multiply
    inv[0, 6:9, 8:12] = 1
    assert np.all(np.isfinite(inv)) and np.all(inv > 0)


def test_compiled_float32_roots_outside_float32s_range() -> None:
    """The compiled normaliser takes float32 roots only where every variance of the row lies
    well inside float32's range; an image scaled by 1e±30 (variances near 1e±60) gives the
    NCC of the unscaled one, not 0 (an overflowed variance) or ±1 (an underflowed one)."""
    be = load("numpy")
    if be.ncc_inv_norm(np.ones((1, 4, 4)), (2, 2), 1e-12) is None:
        pytest.skip("numba: not installed (the compiled normaliser is optional)")
    rng = np.random.default_rng(12)
    x = rng.random((40, 50)).astype(np.float32)
    t = rng.random((7, 6)).astype(np.float32)
    want = xcorr.match_template(x, t)
    for scale in (1e-30, 1e30):
        got = xcorr.match_template(x * np.float32(scale), t)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # window by window: rows that mix both kinds give Dask's blocks the whole array's bits
    da = pytest.importorskip("dask.array", reason="dask: not installed")
    half = rng.standard_normal((20, 50)).astype(np.float32)
    mixed = np.concatenate([half, -half])  # mean exactly 0: the tiny part stays tiny centred
    mixed[:, :25] *= np.float32(1e-25)  # variances near 1e-49, outside float32's range
    whole = xcorr.match_template(mixed, t, method="direct")
    for chunks in ((40, 20), (13, 31)):
        lazy = xcorr.match_template(da.from_array(mixed, chunks=chunks), t, method="direct")
        np.testing.assert_array_equal(lazy.compute(), whole)


def test_double_word_sums_without_float64() -> None:
    """The float32 double-word path (JAX without x64) gives float64-grade window sums."""
    be = load("numpy")
    rng = np.random.default_rng(4)
    level = np.where(np.arange(70) < 35, 0.3, -0.4)  # two halves far from 0 (the centre)
    x = (rng.random((60, 70)) * 1e-3 + level).astype(np.float32)  # hard cancellation
    x[10:30, 10:40] = np.float32(0.7)  # flat
    for window in ((5, 7), (31, 17), (3, 2)):
        want = _ncc.generic_inv_norm(be, x, window, _ncc._flat_tol(sum(window), 2.0**-53),
                                     np.dtype(np.float64))
        got = _ncc.generic_inv_norm(be, x, window, 0.0, np.dtype(np.float32))
        np.testing.assert_array_equal(got == 0, want == 0)
        ok = want != 0
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-6, atol=0)
        plain = be.astype(x, np.float32)  # what float32 sums would give, for contrast
        s = _boxsum.box_sums(be, np.stack([plain, plain * plain]), window)
        var = s[1] - s[0] * (s[0] / (window[0] * window[1]))
        assert np.nanmax(np.abs(var[ok] * want[ok] ** 2 - 1)) > 1e-4


def test_double_word_totals() -> None:
    """``total_dd`` (template sums without float64): float64-grade, any shape, any batch."""
    rng = np.random.default_rng(8)
    for shape in ((1, 1), (3, 5), (31, 31), (4, 2, 64, 7)):
        x = (rng.random(shape) - 0.5 + 1e3).astype(np.float32)  # cancels in float32
        hi, lo = _boxsum.total_dd(np, x, np.zeros_like(x))
        assert hi.shape == lo.shape == (*shape[:-2], 1, 1) and hi.dtype == np.float32
        want = x.astype(np.float64).sum(axis=(-2, -1), keepdims=True)
        got = hi.astype(np.float64) + lo.astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_nan_stays_local_where_auto_would_take_the_fft() -> None:
    """The image's mean tells the numerator's FFT guard that the image holds NaN/Inf, so
    ``auto`` computes it directly and the NaN stays in its windows."""
    be = load("numpy")
    x = RNG.random((300, 300))
    t = RNG.random((40, 40))
    assert xcorr._auto.choose(be, x, t) in ("fft", "overlap")
    for bad in (np.nan, np.inf):
        y = x.copy()
        y[150, 150] = bad
        got = xcorr.match_template(y, t)
        assert np.all(np.isnan(got[111:151, 111:151]))
        assert np.isfinite(got).sum() == got.size - 40 * 40
        with pytest.warns(RuntimeWarning, match="NaN/Inf"):  # an explicit FFT says so
            xcorr.match_template(y, t, method="fft")


def test_error_bound_constants_are_the_testing_modules() -> None:
    import xcorr.testing

    assert (_ncc.DIRECT_C, _ncc.FFT_C) == (xcorr.testing.DIRECT_C, xcorr.testing.FFT_C)


def test_box_sums_are_window_sums() -> None:
    be = load("numpy")

    @settings(FUZZ, max_examples=40)
    @given(h=st.integers(1, 20), w=st.integers(1, 20), wh=st.integers(1, 20),
           ww=st.integers(1, 20), seed=st.integers(0, 2**31))
    def run(h, w, wh, ww, seed):
        if wh > h or ww > w:
            return
        a = np.random.default_rng(seed).integers(-9, 9, (2, h, w)).astype(np.float64)
        got = _boxsum.box_sums(be, a, (wh, ww))
        want = sliding_window_view(a, (wh, ww), axis=(-2, -1)).sum((-2, -1))
        np.testing.assert_array_equal(got, want)  # small integers: exact

    run()


# -- properties (Hypothesis) -------------------------------------------------------------------


@st.composite
def ncc_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    th, tw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    h, w = draw(st.integers(th, 14)), draw(st.integers(tw, 14))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.normal(size=(h, w))
    if draw(st.booleans()):
        x = np.round(x * 2) / 2  # ties, flat patches
    t = rng.normal(size=(th, tw))
    return x, t


@settings(FUZZ, max_examples=40)
@given(case=ncc_cases(), a=st.floats(1e-3, 1e3), b=st.floats(-1e3, 1e3),
       mode=st.sampled_from(["valid", "same"]))
def test_affine_invariance_and_range(case, a, b, mode) -> None:
    x, t = case
    base = xcorr.match_template(x, t, mode=mode)
    assert np.all(np.abs(base) <= 1)
    tol = near_flat_tolerance(x, t, mode)
    assert_within(base, brute(x, t, mode=mode), tol)
    if mode == "valid":  # zero padding is not affine-invariant (it does not move)
        assert_within(xcorr.match_template(a * x + b, t), base, tol)
    assert_within(xcorr.match_template(x, a * t + b, mode=mode), base, tol)
    assert_within(xcorr.match_template(x, -a * t + b, mode=mode), -base, tol)


def assert_within(got: np.ndarray, want: np.ndarray, tol: np.ndarray) -> None:
    err = np.abs(np.asarray(got) - want)
    bad = ~(err <= tol)
    bound = np.broadcast_to(tol, err.shape)
    assert not bad.any(), (f"{int(bad.sum())} of {err.size} off by more than their bound: "
                           f"errors {err[bad][:5]}, bounds {bound[bad][:5]}")


def near_flat_tolerance(x: np.ndarray, t: np.ndarray, mode: str,
                        base: float = 1e-6) -> np.ndarray:
    """``base``, widened for windows whose variance is a tiny part of their sum of squares.

    The window sums give ``var = sum(W'²) - sum(W')²/n`` (``W'`` the window less the
    image's mean, in x's dtype), whose rounding error is about ``eps · sum(W'²)`` (``eps``
    of x's dtype: ``W'`` is formed in it): relative to ``var``,
    ``eps · sum(W'²) / var``, which two nearly equal pixels (a 2×1 template over 0.841465
    and 0.841459: 4.5e-6 off the exact -1) make large.  That is the documented bound of the
    one-pass sums, not a fault of a particular input.
    """
    th, tw = t.shape[-2:]
    if mode == "same":
        x = np.pad(x, [(th // 2, (th - 1) // 2), (tw // 2, (tw - 1) // 2)])
    eps = np.finfo(x.dtype).eps
    x = np.asarray(x, np.float64)
    win = sliding_window_view(x - x.mean(), (th, tw), axis=(-2, -1))
    energy = (win * win).sum(axis=(-2, -1))
    var = ((win - win.mean(axis=(-2, -1), keepdims=True)) ** 2).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(var > 0, energy / var, np.inf)
    return base + 64 * eps * ratio


@settings(FUZZ, max_examples=40)
@given(case=ncc_cases())
def test_symmetries(case) -> None:
    x, t = case
    th, tw = t.shape
    base = xcorr.match_template(x, t)
    # Flipping or transposing image and template together moves the output the same way.
    np.testing.assert_allclose(xcorr.match_template(x[::-1, ::-1], t[::-1, ::-1]),
                               base[::-1, ::-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(xcorr.match_template(x.T, t.T), base.T, rtol=0, atol=1e-9)
    # A window and the template play symmetric roles: NCC(W, T) = NCC(T, W).
    i, j = (x.shape[0] - th) // 2, (x.shape[1] - tw) // 2
    window = x[i:i + th, j:j + tw]
    np.testing.assert_allclose(xcorr.match_template(t, window)[0, 0], base[i, j], rtol=0,
                               atol=1e-9)
    # A window matches itself perfectly unless it is flat.
    own = xcorr.match_template(x, window)[i, j]
    assert own == pytest.approx(0 if np.ptp(window) == 0 else 1, abs=1e-9)


@settings(FUZZ, max_examples=25)
@given(case=ncc_cases(), count=st.integers(1, 4), dtype=st.sampled_from(["float32", "float64"]))
def test_batches_equal_a_loop_and_stay_in_range(case, count, dtype) -> None:
    x, t = case
    ts = np.stack([t * (k + 1) + np.roll(t, k) for k in range(count)]).astype(dtype)
    x = x.astype(dtype)
    got = xcorr.match_template(x, ts)
    assert got.dtype == np.dtype(dtype) and np.all(np.abs(got) <= 1)
    for k in range(count):
        np.testing.assert_allclose(got[k], xcorr.match_template(x, ts[k]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got, brute(x, ts), rtol=0, atol=1e-9 if dtype == "float64"
                               else 1e-4)


@settings(FUZZ, max_examples=30)
@given(case=ncc_cases(), offset=st.sampled_from([0.0, 1e4, -3e5]),
       scale=st.sampled_from([1.0, 1e-6, 1e5]))
def test_offset_and_scale_robustness(case, offset, scale) -> None:
    x, t = case
    x = x * scale + offset
    for dtype, tol in (("float64", 1e-6), ("float32", 1e-3)):
        xd, td = x.astype(dtype), t.astype(dtype)
        got = xcorr.match_template(xd, td)
        assert np.all(np.abs(got) <= 1)
        assert_within(got, brute(xd, td), near_flat_tolerance(xd, td, "valid", tol))


@settings(FUZZ, max_examples=25)
@given(case=ncc_cases(), seed=st.integers(0, 2**31), mode=st.sampled_from(["valid", "same"]))
def test_masked_property(case, seed, mode) -> None:
    x, t = case
    rng = np.random.default_rng(seed)
    m = rng.random(t.shape) * (rng.random(t.shape) > 0.4)
    if not np.any(m > 0):
        m.flat[0] = 1.0
    got = xcorr.match_template(x, t, mask=m, mode=mode)
    assert np.all(np.abs(got) <= 1)
    np.testing.assert_allclose(got, brute(x, t, m, mode), rtol=0, atol=1e-7)


# -- scikit-image's own match_template tests, ported (NumPy) ----------------------------------
# Its 3-D tests have no counterpart (xcorr's templates are 2-D; leading axes are batches).


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_skimage_template(dtype) -> None:
    size = 100
    image = np.full((400, 400), 0.5, dtype=dtype)
    target = (0.1 * (np.tri(size) + np.tri(size)[::-1])).astype(dtype)
    positions = [(50, 50), (200, 200)]
    for i, j in positions:
        image[i:i + size, j:j + size] = target
    image += 0.1 * np.random.default_rng(971876736).uniform(size=(400, 400)).astype(dtype)
    result = xcorr.match_template(image, target)
    assert result.dtype == dtype
    order = np.argsort(result, axis=None)[::-1]
    found = []
    for flat in order:  # the two strongest peaks at least 5 pixels apart
        p = np.unravel_index(flat, result.shape)
        if all(max(abs(p[0] - q[0]), abs(p[1] - q[1])) > 5 for q in found):
            found.append(p)
        if len(found) == 2:
            break
    assert sorted((int(a), int(b)) for a, b in found) == positions


def test_skimage_normalization() -> None:
    n, size = 5, 20
    image = np.full((size, size), 0.5)
    image[2:2 + n, 3:3 + n] = 1
    image[12:12 + n, 11:11 + n] = 0
    template = np.zeros((n + 2, n + 2))
    template[1:1 + n, 1:1 + n] = 1
    result = xcorr.match_template(image, template)
    lo, hi = np.argmin(result), np.argmax(result)
    assert np.unravel_index(lo, result.shape) == (11, 10)  # the template's border: one off
    assert np.unravel_index(hi, result.shape) == (1, 2)
    assert result.flat[lo] == pytest.approx(-1) and result.flat[hi] == pytest.approx(1)


def test_skimage_no_nans() -> None:
    image = 0.5 + 1e-9 * np.random.default_rng(2813589124).normal(size=(20, 20))
    template = np.ones((6, 6))
    template[:3, :] = 0
    result = xcorr.match_template(image, template)
    assert not np.any(np.isnan(result))
    np.testing.assert_allclose(result, brute(image, template), rtol=0, atol=1e-6)


def test_skimage_switched_arguments() -> None:
    with pytest.raises(ValueError, match="larger than the image"):
        xcorr.match_template(np.ones((3, 3)), np.ones((5, 5)))


def test_skimage_pad_input() -> None:
    morphology = pytest.importorskip("skimage.morphology",
                                     reason="scikit-image (test extra): diamond")
    template = 0.5 * morphology.diamond(2)
    image = 0.5 * np.ones((9, 19))
    mid = slice(2, 7)
    image[mid, :3] -= template[:, -3:]
    image[mid, 4:9] += template
    image[mid, -9:-4] -= template
    image[mid, -3:] += template[:, :3]
    # scikit-image pads with constant_values=image.mean(); the NCC does not see an offset, so
    # zero padding of the image minus its mean is the same.
    result = xcorr.match_template(image - image.mean(), template, mode="same")
    want = skimage_match(image, template, pad_input=True, constant_values=image.mean())
    np.testing.assert_allclose(result, want, rtol=0, atol=1e-9)
    order = np.argsort(result, axis=None)
    assert tuple(np.unravel_index(order[:2], result.shape)[1]) == (12, 0)
    assert tuple(np.unravel_index(order[-2:], result.shape)[1]) == (18, 6)


def test_skimage_padding_reflect() -> None:
    morphology = pytest.importorskip("skimage.morphology",
                                     reason="scikit-image (test extra): diamond")
    template = morphology.diamond(2).astype(float)
    image = np.zeros((10, 10))
    image[2:7, :3] = template[:, -3:]
    # mode='reflect' there: pad the image by reflection here, then take the valid windows.
    padded = np.pad(image, ((2, 2), (2, 2)), mode="reflect")
    result = xcorr.match_template(padded, template)
    want = skimage_match(image, template, pad_input=True, mode="reflect")
    np.testing.assert_allclose(result, want, rtol=0, atol=1e-9)
    assert np.unravel_index(np.argmax(result), result.shape) == (4, 0)


def test_skimage_wrong_input() -> None:
    with pytest.raises(ValueError):
        xcorr.match_template(np.ones((3, 3)), np.ones((5, 5, 1)))
    with pytest.raises(ValueError):
        xcorr.match_template(np.ones((5, 5)), np.ones(3))
    with pytest.raises(ValueError):
        xcorr.match_template(np.ones((2, 5, 5)), np.ones((3, 3, 3)))


def test_skimage_bounding_values() -> None:
    data = pytest.importorskip("skimage.data", reason="scikit-image (test extra): the page")
    image = data.page().astype(np.float64) / 255
    template = np.zeros((3, 3))
    template[1, 1] = 1
    for dtype in (np.float64, np.float32):
        result = xcorr.match_template(image.astype(dtype), template.astype(dtype))
        assert result.max() <= 1 and result.min() >= -1
