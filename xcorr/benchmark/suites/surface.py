"""Issue 12's suite: boundary rules, the SciPy drop-ins and per-channel kernels.

Cells (float32):

- ``boundary``: ``corr2d(x, k, mode="same", boundary=b)`` on a 1024² image (128² quick),
  k3/k11, every boundary; every backend's methods, and ``cv2.filter2D`` with the matching
  border (it has no wrap border);
- ``signal``: ``xcorr.signal.correlate2d`` against ``scipy.signal.correlate2d`` (``same``,
  k3) for SciPy's three boundaries;
- ``ndimage``: ``xcorr.ndimage.correlate`` against ``scipy.ndimage.correlate`` (k7, k11) for
  ndimage's five modes, with ``cv2.filter2D`` beside them;
- ``depthwise``: ``x (8, 64, 64, 64)`` with one 31×31 kernel per channel ``k (64, 31, 31)``
  (valid) against ``F.conv2d(groups=64)`` and ``lax.conv(feature_group_count=64)``.

Targets: every boundary within 1.25× of ``fill`` on each backend at k3 and k11; the ndimage
drop-in ≥ 10× ``scipy.ndimage.correlate`` at k7 and k11 in each mode; the signal drop-in ≥ 10×
``scipy.signal.correlate2d`` at k3 for each boundary; depthwise: torch ``auto`` ≥ 0.95× the
speed of ``F.conv2d(groups=64)``, JAX ``auto`` ≥ 20× ``lax.conv``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ... import _dispatch, corr2d
from ... import ndimage as xndimage
from ... import signal as xsignal
from ..._boundary import NUMPY_MODES, pads
from ..cases import Cell, Grid
from ..machine import Context
from ..peers import Peer
from ..suite import Suite
from ..targets import Row, bound, index, ratio_of
from ..timing import Impl, host_peak

BOUNDARIES = tuple(NUMPY_MODES)
SIGNAL = {"fill": "fill", "wrap": "wrap", "symm": "symm"}
NDIMAGE = {"reflect": "symm", "constant": "fill", "nearest": "nearest", "mirror": "mirror",
           "wrap": "wrap"}
CV2_BORDERS = {"fill": "BORDER_CONSTANT", "symm": "BORDER_REFLECT",
               "mirror": "BORDER_REFLECT_101", "nearest": "BORDER_REPLICATE"}
DEPTHWISE = (8, 64, 64, 64)

X_SIGNAL, SP_SIGNAL = "xcorr.signal", "scipy.signal"
X_NDI, SP_NDI = "xcorr.ndimage", "scipy.ndimage"
CV2, FCONV, LAX = "cv2.filter2D", "torch F.conv2d", "jax lax.conv"


def _boundary_of(cell: Cell) -> str:
    kw = cell.kwargs
    if cell.case == "ndimage":
        return NDIMAGE[kw["mode"]]
    return kw.get("boundary", "fill")


def reference(x: np.ndarray, k: np.ndarray, boundary: str) -> np.ndarray:
    """float64: ``numpy.pad`` with the boundary's mode, then xcorr's direct valid sum."""
    be = _dispatch.load("numpy")
    t, b, lf, r = pads("same", *k.shape[-2:])
    x = x.astype(np.float64)
    spec = [(t, b), (lf, r)]
    x = np.pad(x, spec) if boundary == "fill" else np.pad(x, spec, mode=NUMPY_MODES[boundary])
    return be.corr2d_valid(x, k.astype(np.float64), "direct")


class Surface(Suite):
    """Boundary rules, the SciPy drop-ins and per-channel kernels (issue 12)."""

    name = "surface"
    title = "Boundaries, drop-ins and per-channel kernels (float32)"
    plot_file = None

    def cells(self, grid: Grid) -> list[Cell]:
        n = max(grid.pick("sizes", (128,), (1024,)))
        out = [Cell(self.name, "boundary", (1, n, n), k, "float32",
                    (("boundary", b), ("mode", "same")), 2 * n * n * k * k)
               for k in (3, 11) for b in BOUNDARIES]
        out += [Cell(self.name, "signal", (1, n, n), 3, "float32", (("boundary", b),),
                     2 * n * n * 9) for b in SIGNAL]
        out += [Cell(self.name, "ndimage", (1, n, n), k, "float32", (("mode", m),),
                     2 * n * n * k * k) for k in (7, 11) for m in NDIMAGE]
        shape = (2, 16, 32, 32) if grid.quick else DEPTHWISE
        k = 7 if grid.quick else 31
        ho = shape[-1] - k + 1
        out.append(Cell(self.name, "depthwise", shape, k, "float32", (),
                        2 * shape[0] * shape[1] * ho * ho * k * k))
        return out

    def inputs(self, cell: Cell, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        if cell.case == "depthwise":
            return (rng.standard_normal(cell.shape).astype("float32"),
                    rng.standard_normal((cell.shape[1], cell.k, cell.k)).astype("float32"))
        return (rng.standard_normal(cell.shape[1:]).astype("float32"),
                rng.standard_normal((cell.k, cell.k)).astype("float32"))

    def reference(self, cell: Cell, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        x, k = inputs
        if cell.case == "depthwise":
            be = _dispatch.load("numpy")
            return be.corr2d_valid(x.astype(np.float64), k.astype(np.float64), "direct")
        return reference(x, k, _boundary_of(cell))

    def call(self, *arrays: Any, method: str, **params: Any) -> Any:
        return corr2d(*arrays, method=method, **params)

    def backend_impls(self, name: str, device: str | None = None) -> list[Impl]:
        impls = super().backend_impls(name, device)
        for impl in impls:  # the drop-in cells time the drop-ins, not the backends
            impl.applies = lambda cell: (None if cell.case in ("boundary", "depthwise")
                                         else "drop-in cell: see the xcorr.* rows")
        return impls

    def peers(self, ctx: Context) -> list[Peer]:
        only = _only
        return [
            Peer("xsignal", X_SIGNAL, _build_xsignal, applies=only("signal")),
            Peer("correlate2d", SP_SIGNAL, _build_spsignal, ("scipy",), memory=host_peak,
                 applies=only("signal")),
            Peer("xndimage", X_NDI, _build_xndimage, applies=only("ndimage")),
            Peer("ndimage", SP_NDI, _build_spndimage, ("scipy",), memory=host_peak,
                 applies=only("ndimage")),
            Peer("cv2", CV2, _build_cv2(ctx.threads), ("cv2",), memory=host_peak,
                 applies=_cv2_applies),
            Peer("conv2d", FCONV, _build_fconv, ("torch",), applies=only("depthwise")),
            Peer("lax", LAX, _build_lax, ("jax",), uses_jax=True, applies=only("depthwise")),
        ]

    def targets(self, records: list[dict[str, Any]], result: dict[str, Any]) -> list[Row]:
        return surface_targets(records)

    def notes(self, ctx: Context, cells: Any, peers: Any) -> list[str]:
        return [f"{CV2} uses the border of the same meaning (BORDER_CONSTANT, BORDER_REFLECT "
                "for symm, BORDER_REFLECT_101 for mirror, BORDER_REPLICATE); it has no wrap "
                f"border for filter2D; cv2.setNumThreads({ctx.threads})",
                f"{X_SIGNAL}/{X_NDI} always sum directly, as SciPy does; {X_NDI} accumulates "
                "in float64 as scipy.ndimage does"]


SUITE = Surface()


def _only(case: str) -> Callable[[Cell], str | None]:
    return lambda cell: None if cell.case == case else f"only {case} cells"


def _cv2_applies(cell: Cell) -> str | None:
    if cell.case not in ("boundary", "ndimage"):
        return "single images with a border only"
    if _boundary_of(cell) not in CV2_BORDERS:
        return "cv2.filter2D has no wrap border"
    return None


def _build_xsignal(x: np.ndarray, k: np.ndarray, boundary: str) -> Callable[[], Any]:
    return lambda: xsignal.correlate2d(x, k, mode="same", boundary=SIGNAL[boundary])


def _build_spsignal(x: np.ndarray, k: np.ndarray, boundary: str) -> Callable[[], Any]:
    from scipy import signal

    return lambda: signal.correlate2d(x, k, mode="same", boundary=SIGNAL[boundary])


def _build_xndimage(x: np.ndarray, k: np.ndarray, mode: str) -> Callable[[], Any]:
    return lambda: xndimage.correlate(x, k, mode=mode)


def _build_spndimage(x: np.ndarray, k: np.ndarray, mode: str) -> Callable[[], Any]:
    from scipy import ndimage

    return lambda: ndimage.correlate(x, k, mode=mode)


def _build_cv2(threads: int) -> Callable[..., Callable[[], Any]]:
    def build(x: np.ndarray, k: np.ndarray, **params: Any) -> Callable[[], Any]:
        import cv2

        cv2.setNumThreads(threads)
        mode = params.get("mode")
        boundary = NDIMAGE[mode] if mode in NDIMAGE else params.get("boundary", "fill")
        border = getattr(cv2, CV2_BORDERS[boundary])
        x, k = np.ascontiguousarray(x), np.ascontiguousarray(k)
        return lambda: cv2.filter2D(x, -1, k, borderType=border)  # odd k: centred anchor
    return build


def _build_fconv(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
    import torch
    import torch.nn.functional as F

    xt, kt = torch.from_numpy(x), torch.from_numpy(k)[:, None]

    def call() -> Any:
        with torch.no_grad():
            return F.conv2d(xt, kt, groups=x.shape[1])
    return call


def _build_lax(x: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    groups = x.shape[1]

    @jax.jit
    def conv(a: Any, w: Any) -> Any:
        return lax.conv_general_dilated(a, w[:, None], (1, 1), "VALID",
                                        feature_group_count=groups,
                                        precision=lax.Precision.HIGHEST)

    xj, kj = jnp.asarray(x), jnp.asarray(k)
    return lambda: conv(xj, kj).block_until_ready()


# -- targets ------------------------------------------------------------------------------------


def surface_targets(records: list[dict[str, Any]]) -> list[Row]:
    idx = index(records)
    cells = sorted({c for c, _ in idx}, key=lambda c: (c.case, c.k, c.params))
    rows: list[Row] = []
    autos = sorted({r["impl"] for r in records if r["method"] == "auto"})
    for impl in autos:  # every boundary within 1.25x of fill
        ratios = []
        for c in cells:
            if c.case != "boundary" or c.kwargs["boundary"] == "fill":
                continue
            fill = Cell(c.suite, c.case, c.shape, c.k, c.dtype,
                        (("boundary", "fill"), ("mode", "same")))
            ratio = ratio_of(idx, c, impl, impl, other_cell=fill)
            if ratio is not None:
                ratios.append((c.label(), ratio, False))
        rows.append(bound("every boundary ≤ 1.25× fill", impl, ratios, 1.25,
                          what="time ÷ fill's"))
    for case, mine, peer, limit, name in (("ndimage", X_NDI, SP_NDI, 10.0, "ndimage"),
                                          ("signal", X_SIGNAL, SP_SIGNAL, 10.0, "signal")):
        ratios = []
        for c in cells:
            ratio = ratio_of(idx, c, mine, peer, speedup=True) if c.case == case else None
            if ratio is not None:
                ratios.append((c.label(), ratio, False))
        rows.append(bound(f"xcorr.{name} ≥ {limit:g}× scipy.{name}", mine, ratios, limit,
                          at_most=False, what="SciPy ÷ xcorr"))
    for impl, peer, limit in (("torch/auto", FCONV, 0.95), ("jax/auto", LAX, 20.0)):
        ratios = []
        for c in cells:
            ratio = ratio_of(idx, c, impl, peer, speedup=True) if c.case == "depthwise" else None
            if ratio is not None:
                ratios.append((c.label(), ratio, False))
        rows.append(bound(f"depthwise ≥ {limit:g}× {peer}", impl, ratios, limit,
                          at_most=False, what="peer ÷ xcorr"))
    return rows
