"""The five boundary rules side by side: how ``same``/``full`` modes extend one image.

    python docs/gallery/boundaries.py [OUT.png]        # default: boundaries.png beside it

Top row: the image extended by 12 pixels on every side — ``corr2d`` in ``full`` mode with a
kernel that is 1 at its centre and 0 elsewhere returns exactly the extension (the dashed frame
is the image itself).  Bottom row: a 15×15 box blur in ``same`` mode under each rule; only the
border of the result changes.  Needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import xcorr

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_suffix(".png")
BOUNDARIES = ("fill", "wrap", "symm", "mirror", "nearest")
PAD = 12


def image(n: int = 48) -> np.ndarray:
    """A gradient with an "F", a bar on the right edge and a dot: nothing is symmetric."""
    r, c = np.mgrid[0:n, 0:n] / n
    img = 0.15 + 0.35 * r
    img[6:30, 6:11] = 1.0   # the F's stem
    img[6:11, 6:26] = 1.0   # its top bar
    img[16:20, 6:20] = 1.0  # its middle bar
    img[:, n - 4:] = 0.0    # a dark bar along the right edge
    img[36:44, 30:38] = 0.75
    return img


def main() -> None:
    img = image()
    delta = np.zeros((2 * PAD + 1, 2 * PAD + 1))
    delta[PAD, PAD] = 1.0  # full mode with this kernel returns the image extended by PAD
    box = np.ones((15, 15)) / 225

    fig = Figure(figsize=(13, 5.6), layout="constrained")
    axes = fig.subplots(2, len(BOUNDARIES))
    for col, boundary in enumerate(BOUNDARIES):
        extended = xcorr.corr2d(img, delta, mode="full", boundary=boundary, fillvalue=0.5)
        blurred = xcorr.corr2d(img, box, mode="same", boundary=boundary, fillvalue=0.5)
        top, bottom = axes[0, col], axes[1, col]
        top.imshow(extended, cmap="viridis", vmin=0, vmax=1)
        n = img.shape[0]
        top.add_patch(Rectangle((PAD - 0.5, PAD - 0.5), n, n, fill=False, ec="white",
                                ls="--", lw=1.5))
        top.set_title(f'boundary="{boundary}"' + (" (fillvalue=0.5)" if boundary == "fill"
                                                  else ""))
        bottom.imshow(blurred, cmap="viridis", vmin=0, vmax=1)
        bottom.set_title("15×15 box blur, mode=\"same\"", fontsize=9)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
