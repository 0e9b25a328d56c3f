"""The edge detector of the seed notebook, then the same idea on a larger scene.

    python docs/gallery/edge_detector.py [OUT.png]     # default: edge_detector.png beside it

Top: the seed's 6×8 image (a black band), the kernel ``[[1, -1]]`` and its response — +1 on the
white-to-black edge, -1 on the black-to-white one, 0 elsewhere.  Bottom: a synthetic scene and
two Sobel kernels applied as one kernel bank, ``corr2d(scene, bank, mode="same",
boundary="nearest")``, which gives both gradients at once; their magnitude outlines the shapes.
Needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import xcorr

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_suffix(".png")


def scene(n: int = 160) -> np.ndarray:
    """A disk, a square and a triangle on a soft gradient, with a little noise."""
    r, c = np.mgrid[0:n, 0:n] / n
    img = 0.3 * c
    img[(r - 0.32) ** 2 + (c - 0.3) ** 2 < 0.18 ** 2] = 1.0
    img[(abs(r - 0.7) < 0.15) & (abs(c - 0.3) < 0.15)] = 0.6
    img[(r > 0.2) & (r < 0.85) & (abs(c - 0.72) < (r - 0.2) * 0.35)] = 0.85
    return img + np.random.default_rng(0).normal(0, 0.02, img.shape)


def main() -> None:
    x = np.ones((6, 8))
    x[:, 2:6] = 0
    k = np.array([[1.0, -1.0]])
    edges = xcorr.corr2d(x, k)  # valid mode: 6×7

    img = scene()
    sobel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    bank = np.stack([sobel, sobel.T])  # (2, 3, 3): both gradients in one call
    gx, gy = xcorr.corr2d(img, bank, mode="same", boundary="nearest")
    magnitude = np.hypot(gx, gy)

    fig = Figure(figsize=(11, 6.6), layout="constrained")
    axes = fig.subplots(2, 3)
    panels = [(x, "the seed's image X (6×8)", "gray", None),
              (k, "kernel K = [[1, -1]]", "RdBu_r", (-1, 1)),
              (edges, "corr2d(X, K): its vertical edges", "RdBu_r", (-1, 1)),
              (img, "a scene (160×160)", "gray", None),
              (gx, "Sobel x (a kernel bank of two)", "RdBu_r", (-4, 4)),
              (magnitude, "gradient magnitude", "magma", None)]
    for ax, (a, title, cmap, lim) in zip(axes.flat, panels, strict=True):
        ax.imshow(a, cmap=cmap, vmin=lim and lim[0], vmax=lim and lim[1])
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    for i, j in np.ndindex(edges.shape):  # the seed's numbers, as the notebook prints them
        axes[0, 2].text(j, i, f"{edges[i, j]:g}", ha="center", va="center", fontsize=9,
                        color="white" if edges[i, j] else "black")
    for j in range(2):
        axes[0, 1].text(j, 0, f"{k[0, j]:g}", ha="center", va="center", fontsize=14,
                        color="white")
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
