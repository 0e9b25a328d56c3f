"""Issue 15's suite: ``match_template`` against OpenCV and scikit-image.

Cells (float32, ``valid`` mode; the template a crop of the image, so the map has a peak):
a 1024² image with a 31² and a 64² template, 2048² with 128², and a batch of 16 31²
templates on 1024² (one call ``match_template(image, templates (16, 31, 31))``).  The
quick grid shrinks them to 128²/7², 128²/16², 256²/32² and 8 × 7² on 128².

Peers: ``cv2.matchTemplate(image, t, cv2.TM_CCOEFF_NORMED)`` (OpenCV's threads as xcorr's;
the batch is one call per template) and ``skimage.feature.match_template`` (the batch a
loop too).  Each backend runs ``auto`` and ``fft`` (and ``overlap`` where it has one), called
as the other suites call it (JAX eagerly: its CPU arrays then take the NumPy backend's
kernels); JAX's ``auto`` also under ``jax.jit`` (``jax[jit]/auto``, compiled in the
verification call), as a jitted pipeline runs it (a host callback that writes into XLA's
output buffer, or on older JAX a ``pure_callback`` whose result XLA copies into one).

Targets: the NumPy backend ≥ 1.5× faster than ``cv2.matchTemplate`` and ≥ 5× faster than
scikit-image on every single-template cell, the 16-template batch ≥ 2× faster than 16
``cv2.matchTemplate`` calls; the JAX and torch backends within 1.5× of NumPy on every cell
(JAX both eagerly and under ``jax.jit``: each is a row of its own).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ... import _dispatch, match_template
from ..cases import Cell, Grid
from ..machine import Context
from ..peers import Peer
from ..suite import Suite
from ..targets import Row, bound, index, time_of
from ..timing import Impl, host_peak, memory_probe, sync

CV2, SKIMAGE = "cv2.matchTemplate", "skimage match_template"
NUMPY = "numpy/auto"
JIT = "jax[jit]/auto"  # JAX's auto inside jax.jit

# case: (image side, template side, templates)
CASES: dict[str, tuple[int, int, int]] = {
    "t31": (1024, 31, 1), "t64": (1024, 64, 1), "t128": (2048, 128, 1), "batch": (1024, 31, 16)}
QUICK: dict[str, tuple[int, int, int]] = {
    "t31": (128, 7, 1), "t64": (128, 16, 1), "t128": (256, 32, 1), "batch": (128, 7, 8)}
SINGLE = ("t31", "t64", "t128")


def cell(case: str, side: int, tside: int, count: int) -> Cell:
    """The cell of one case: ``shape (templates, H, W)``, ``k`` the template side."""
    out = side - tside + 1
    return Cell("ncc", case, (count, side, side), tside, "float32", (),
                2 * count * out * out * tside * tside)


class Ncc(Suite):
    """``match_template`` against ``cv2.matchTemplate`` and scikit-image (issue 15)."""

    name = "ncc"
    title = "Normalized cross-correlation, match_template (float32, valid)"
    plot_file = None

    def cells(self, grid: Grid) -> list[Cell]:
        return [cell(case, *spec) for case, spec in (QUICK if grid.quick else CASES).items()]

    def inputs(self, cell: Cell, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        count, side, _ = cell.shape
        image = rng.random((side, side), dtype=np.float32)
        corners = rng.integers(0, side - cell.k, size=(count, 2))
        templates = np.stack([image[i:i + cell.k, j:j + cell.k] for i, j in corners])
        return image, (templates if count > 1 else templates[0])

    def reference(self, cell: Cell, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        image, templates = (a.astype(np.float64) for a in inputs)
        return match_template(image, templates, backend="numpy")

    def call(self, image: Any, template: Any, *, method: str) -> Any:
        return match_template(image, template, method=method)

    def methods(self, be: Any) -> tuple[str, ...]:
        return ("fft", *(("overlap",) if "overlap" in be.METHODS else ()), "auto")

    def peers(self, ctx: Context) -> list[Peer]:
        bench = "in the bench extra"
        return [Peer("matchTemplate", CV2, _build_cv2, ("cv2",),
                     f"pip install opencv-python-headless, {bench}", memory=host_peak),
                Peer("skimage", SKIMAGE, _build_skimage, ("skimage",),
                     f"pip install scikit-image, {bench}", memory=host_peak)]

    def impls(self, ctx: Context, cells: Sequence[Cell], wanted: set[str]
              ) -> tuple[list[Impl], list[str]]:
        """As every suite's, but Dask on the largest image only (the shared rule keys on the
        correlation grid, which this suite does not have)."""
        impls, notes = super().impls(ctx, cells, wanted)
        largest = max(cells, key=lambda c: c.size * c.shape[0])
        for impl in impls:
            if impl.group == "dask":
                impl.applies = lambda c, big=largest: (None if c == big else
                                                      f"dask: only on {big.label()}")
        notes = [n for n in notes if not n.startswith(f"{self.name}: dask")]
        if "jax" in ctx.backends:
            impls.insert(next(i for i, m in enumerate(impls) if m.label == "jax/auto") + 1,
                         _jit_impl())
        if "dask" in ctx.backends:
            notes.append(f"{self.name}: dask run on {largest.label()} only (its chunked graph "
                         "is for images too big for one block)")
        return impls, notes

    def notes(self, ctx: Context, cells: Any, peers: Any) -> list[str]:
        return ["ncc: the 16-template batch is one xcorr call, and one peer call per template; "
                f"jax is called eagerly, {JIT} inside jax.jit"]

    def targets(self, records: list[dict[str, Any]], result: dict[str, Any]) -> list[Row]:
        idx = index(records)
        cells = {c.case: c for c, _ in idx}

        def ratios(impl: str, other: str, cases: tuple[str, ...], faster: bool
                   ) -> list[tuple[str, float, bool]]:
            """``other ÷ impl`` (how many times faster impl is) or ``impl ÷ other``."""
            out = []
            for case in cases:
                c = cells.get(case)
                mine = idx.get((c, impl)) if c else None
                b = time_of(idx.get((c, other)))[0] if c else None
                if mine is not None and b is not None:
                    a = time_of(mine)[0]
                    a = float("inf") if a is None else a  # failed: never a silent pass
                    out.append((c.label(), b / a if faster else a / b, False))
            return out

        rows = [bound(f"≥ 1.5× faster than {CV2} (one template)", NUMPY,
                      ratios(NUMPY, CV2, SINGLE, True), 1.5, at_most=False,
                      what="cv2 ÷ numpy"),
                bound(f"≥ 2× faster than 16 {CV2} calls (batch)", NUMPY,
                      ratios(NUMPY, CV2, ("batch",), True), 2.0, at_most=False,
                      what="cv2 ÷ numpy"),
                bound(f"≥ 5× faster than {SKIMAGE} (one template)", NUMPY,
                      ratios(NUMPY, SKIMAGE, SINGLE, True), 5.0, at_most=False,
                      what="skimage ÷ numpy")]
        for impl in ("jax/auto", JIT, "torch/auto"):
            if any(label == impl for _, label in idx):
                rows.append(bound("≤ 1.5× the NumPy backend's time", impl,
                                  ratios(impl, NUMPY, (*SINGLE, "batch"), False), 1.5,
                                  what="time ÷ numpy"))
        return rows


SUITE = Ncc()


def _jit_impl() -> Impl:
    """The row of JAX's ``auto`` inside ``jax.jit``."""
    be = _dispatch.load("jax")
    wait = sync("jax")

    def build(image: np.ndarray, template: np.ndarray) -> Callable[[], Any]:
        x, t = be.asarray(image), be.asarray(template)  # outside the clock
        return lambda: wait(_jitted()(x, t))
    return Impl(JIT, "jax", "auto", build, uses_jax=True, memory=memory_probe("jax", None))


@functools.cache
def _jitted() -> Callable[[Any, Any], Any]:
    import jax

    return jax.jit(match_template)


def _build_cv2(image: np.ndarray, templates: np.ndarray) -> Callable[[], Any]:
    import cv2

    if templates.ndim == 2:
        return lambda: cv2.matchTemplate(image, templates, cv2.TM_CCOEFF_NORMED)
    side = image.shape[0] - templates.shape[1] + 1, image.shape[1] - templates.shape[2] + 1
    buf = np.empty((len(templates), *side), np.float32)

    def batch() -> Any:  # one call per template, each into its slice of one buffer
        for t, dst in zip(templates, buf, strict=True):
            cv2.matchTemplate(image, t, cv2.TM_CCOEFF_NORMED, result=dst)
        return buf
    return batch


def _build_skimage(image: np.ndarray, templates: np.ndarray) -> Callable[[], Any]:
    from skimage.feature import match_template as sk_match

    if templates.ndim == 2:
        return lambda: sk_match(image, templates)
    return lambda: np.stack([sk_match(image, t) for t in templates])
