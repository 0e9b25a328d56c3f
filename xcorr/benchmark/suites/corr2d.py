"""The single-channel correlation suite: ``corr2d(x, k)`` in valid mode, against its peers.

Grid: images of {28², 64², 256², 1024², 4096²} × kernels {3, 5, 7, 11, 15, 31} × {float32,
float64}, and batches (8, 28, 28) and (8, 512, 512) in float32. Peers: the seed's double loop
(256² k3 only), ``scipy.signal.correlate2d``, ``scipy.signal.correlate(method="auto")``,
``scipy.ndimage.correlate``, OpenCV's ``cv2.filter2D``, ``torch.nn.functional.conv2d``,
``jax.lax.conv_general_dilated`` and, on a GPU, ``cupyx.scipy.signal.correlate2d`` and cuDNN.
Beside the grid: the seed's training loop and the dispatch overhead on its 6×8 image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import _dispatch, _numba, corr2d
from ..cases import Cell, Grid
from ..machine import DTYPES, Context, installed
from ..overhead import EPOCHS, run_dispatch, run_training
from ..peers import CORR, CV2, NDI, Peer, correlation_peers
from ..suite import Suite
from ..targets import index
from ..timing import Impl, Options, fmt_time, host_peak
from . import corr2d_targets
from .corr2d_targets import FALLBACK

SIZES = (28, 64, 256, 1024, 4096)
KERNELS = (3, 5, 7, 11, 15, 31)
BATCHES = ((8, 28, 28), (8, 512, 512))
QUICK_SIZES, QUICK_KERNELS, QUICK_DTYPES, QUICK_BATCHES = (64, 128), (3, 11), ("float32",), (
    (4, 64, 64),)


def reference(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The float64 direct result of xcorr's NumPy backend (exact products, one rounding each).

    Parameters
    ----------
    x : numpy.ndarray, shape (..., H, W)
        The images (any real dtype; computed in float64).
    k : numpy.ndarray, shape (kh, kw)
        The kernel.

    Returns
    -------
    numpy.ndarray of float64, shape (..., H - kh + 1, W - kw + 1)
        The valid correlation.

    Examples
    --------
    >>> import numpy as np
    >>> from xcorr.benchmark import reference
    >>> reference(np.arange(9, dtype=np.float32).reshape(3, 3), np.ones((2, 2))).tolist()
    [[8.0, 12.0], [20.0, 24.0]]
    """
    be = _dispatch.load("numpy")
    return be.corr2d_valid(x.astype(np.float64), k.astype(np.float64), "direct")


def cell(case: str, shape: tuple[int, int, int], k: int, dtype: str) -> Cell:
    """A correlation cell: ``shape`` is (B, H, W), B = 1 for one image (``case="grid"``).

    Examples
    --------
    >>> c = cell("grid", (1, 10, 10), 3, "float32")
    >>> c.label(), c.flops  # 8 × 8 outputs, 9 multiply-adds each
    ('10² k3 float32', 1152)
    """
    b, h, w = shape
    return Cell("corr2d", case, shape, k, dtype, flops=2 * b * (h - k + 1) * (w - k + 1) * k * k)


class Corr2d(Suite):
    """Valid 2-D cross-correlation of one image (or a batch) with one kernel."""

    name = "corr2d"
    title = "Single-channel cross-correlation (valid mode)"
    plot_file = "bench.png"

    def cells(self, grid: Grid) -> list[Cell]:
        sizes = grid.pick("sizes", QUICK_SIZES, SIZES)
        kernels = grid.pick("kernels", QUICK_KERNELS, KERNELS)
        dtypes = grid.pick("dtypes", QUICK_DTYPES, DTYPES)
        cells = [cell("grid", (1, n, n), kk, dt) for dt in dtypes for kk in kernels
                 for n in sizes if kk <= n]
        cells += [cell("batched", tuple(b), kk, "float32")
                  for b in grid.pick("batches", QUICK_BATCHES, BATCHES)
                  for kk in kernels if kk <= min(b[1:])]
        return cells

    def inputs(self, cell: Cell, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        shape = cell.shape if cell.case == "batched" else cell.shape[1:]
        return (rng.standard_normal(shape).astype(cell.dtype),
                rng.standard_normal((cell.k, cell.k)).astype(cell.dtype))

    def reference(self, cell: Cell, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        return reference(*inputs)

    def call(self, *arrays: Any, method: str, **params: Any) -> Any:
        return corr2d(*arrays, method=method, **params)

    def impls(self, ctx: Context, cells: Sequence[Cell], wanted: set[str]
              ) -> tuple[list[Impl], list[str]]:
        """As every suite's, and the NumPy backend without Numba (``FALLBACK``) at 1024² k3,
        where issue 13 holds it to 10× ``correlate2d`` (on a run that has Numba)."""
        impls, notes = super().impls(ctx, cells, wanted)
        if "numpy" in ctx.backends and _numba.kernel() is not None:
            at = next(i for i, m in enumerate(impls) if m.label == "numpy/auto") + 1
            impls.insert(at, _fallback_impl())
            notes.append(f"{self.name}: {FALLBACK} is the NumPy backend with Numba disabled "
                         "for the call (XCORR_DISABLE_NUMBA's pure-NumPy loop), at 1024² k3 "
                         "only")
        return impls, notes

    def peers(self, ctx: Context) -> list[Peer]:
        return correlation_peers(ctx.threads)

    def notes(self, ctx: Context, cells: Sequence[Cell], peers: Sequence[Peer]) -> list[str]:
        labels = {p.label for p in peers}
        notes = []
        if CORR in labels:
            notes.append(f"{CORR} runs inside scipy.fft.set_workers({ctx.threads}) so its FFT "
                         "has the threads xcorr's has; correlate2d and ndimage are "
                         "single-threaded")
            if installed("scipy"):
                from scipy import signal

                chosen = {f"{c.size}² k{c.k}": signal.choose_conv_method(
                    np.zeros((c.size, c.size), "float32"), np.zeros((c.k, c.k), "float32"),
                    mode="valid") for c in cells if c.case == "grid" and c.dtype == cells[0].dtype}
                notes.append("scipy.signal.correlate(method='auto') chose: "
                             + ", ".join(f"{c} {m}" for c, m in chosen.items()))
        if NDI in labels:
            notes.append(f"{NDI} computes the 'same'-size output; the valid slice is compared, "
                         "the whole call is timed")
        if CV2 in labels:
            notes.append(f"{CV2}: anchor (0, 0), so the valid output is its top-left block (a "
                         f"view, no copy); cv2.setNumThreads({ctx.threads}); a batch is a "
                         "loop over its images into one preallocated buffer")
        return notes

    def extras(self, ctx: Context, opts: Options) -> dict[str, Any]:
        return {"training": run_training(ctx.backends, opts),
                "dispatch": run_dispatch(ctx.backends, opts)}

    def targets(self, records: list[dict[str, Any]], result: dict[str, Any]
                ) -> list[dict[str, str]]:
        return corr2d_targets.targets(records, result)

    def report(self, result: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
        return (_cv2_table(records) + _training_table(result.get("training", []))
                + _dispatch_table(result.get("dispatch", [])))


SUITE = Corr2d()


def _fallback_impl() -> Impl:
    """``numpy/auto`` with Numba disabled during the call, on the 1024² k3 cells."""
    def build(x: np.ndarray, k: np.ndarray) -> Any:
        def call() -> Any:
            was, _numba.DISABLED = _numba.DISABLED, True
            try:
                return corr2d(x, k)
            finally:
                _numba.DISABLED = was
        return call

    def applies(c: Cell) -> str | None:
        return None if (c.case, c.size, c.k) == ("grid", 1024, 3) else f"{FALLBACK}: 1024² k3 only"
    return Impl(FALLBACK, "numpy", "auto", build, memory=host_peak, applies=applies)


def _cv2_table(records: list[dict[str, Any]]) -> list[str]:
    """Each backend's ``auto`` against ``cv2.filter2D`` in every cell where cv2 was timed."""
    idx = index(records)
    cv2_cells = [c for (c, label), r in idx.items() if label == CV2 and r["status"] == "ok"]
    autos = list(dict.fromkeys(r["impl"] for r in records if r["method"] == "auto"))
    if not cv2_cells or not autos:
        return []
    out = ["", f"### Against {CV2} (median; in brackets: time ÷ cv2's, < 1 is faster)", "",
           f"| case | {CV2} | " + " | ".join(autos) + " |", "|---|---|" + "---|" * len(autos)]
    for c in cv2_cells:
        ref = idx[(c, CV2)]["median_s"]
        cols = []
        for label in autos:
            r = idx.get((c, label))
            if r is None:
                cols.append("—")
            elif r["status"] != "ok":
                cols.append(r["status"])
            else:
                cols.append(f"{fmt_time(r['median_s'])} ({r['median_s'] / ref:.2f}×)")
        out.append(f"| {c.label()} | {fmt_time(ref)} | " + " | ".join(cols) + " |")
    return out


def _training_table(training: list[dict[str, Any]]) -> list[str]:
    out = ["", f"### Training loop ({EPOCHS} epochs, seed's 6×8 image, 1×2 kernel, float32)",
           ""]
    if not training:
        return out + ["not run"]
    out += ["| backend | first call | median | IQR | learned kernel |", "|---|---|---|---|---|"]
    for t in training:
        if t["status"] == "ok":
            out.append(f"| {t['backend']} | {fmt_time(t['first_call_s'])} | "
                       f"{fmt_time(t['median_s'])} | {fmt_time(t['iqr_s'])} | "
                       f"{np.round(t['kernel'], 4).tolist()} |")
        else:
            out.append(f"| {t['backend']} | {t['status']}: {t['reason']} | | | |")
    return out


def _dispatch_table(dispatch: list[dict[str, Any]]) -> list[str]:
    out = ["", "### Dispatch overhead (seed's 6×8 image, [[1, -1]], float32)", "",
           "| backend | corr2d | backend kernel | ratio |", "|---|---|---|---|"]
    for d in dispatch:
        if d["status"] == "ok":
            out.append(f"| {d['backend']} | {fmt_time(d['api']['median_s'])} | "
                       f"{fmt_time(d['kernel']['median_s'])} ({d['method']}) | "
                       f"{d['ratio']:.2f} |")
        else:
            out.append(f"| {d['backend']} | {d['status']}: {d['reason']} | | |")
    return out
