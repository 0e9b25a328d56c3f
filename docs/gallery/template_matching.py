"""Template matching with ``xcorr.match_template``: the picture in docs/guide/ncc.md and the README.

    python docs/gallery/template_matching.py          # writes template_matching.png beside it
    python docs/gallery/template_matching.py out.png  # or there

The image is scikit-image's camera photograph under an uneven illumination (a brightness
ramp and a contrast change across the frame) with sensor noise; the template is a patch cut
from the clean photograph.  The normalised cross-correlation does not mind the illumination
(it is invariant to ``a · image + b`` per window), so the peak of the map is where the patch
came from.  Needs matplotlib and scikit-image (the ``plot`` and ``test`` extras).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from skimage import data  # noqa: E402

import xcorr  # noqa: E402

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_suffix(".png")
TOP, LEFT, SIZE = (118, 205, (48, 64))  # the patch: the cameraman's eye at the viewfinder


def scene() -> tuple[np.ndarray, np.ndarray]:
    """The lit, noisy image and the clean template (float32)."""
    clean = data.camera().astype(np.float32) / 255
    h, w = clean.shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    gain = 0.25 + 1.0 * cols / w  # contrast rising left to right
    offset = 0.5 * rows / h  # brightness rising top to bottom
    noise = np.random.default_rng(15).normal(0, 0.04, clean.shape).astype(np.float32)
    image = gain * clean + offset + noise
    template = clean[TOP:TOP + SIZE[0], LEFT:LEFT + SIZE[1]]
    return image, template


def main() -> None:
    image, template = scene()
    ncc = xcorr.match_template(image, template)  # valid mode: one value per window
    i, j = np.unravel_index(np.argmax(ncc), ncc.shape)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4),
                             gridspec_kw={"width_ratios": [1, 0.45, 1]})
    ax = axes[0]
    ax.imshow(image, cmap="gray")
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), SIZE[1], SIZE[0], fill=False, ec="#ff3b30",
                           lw=2))
    ax.set_title("image (uneven light, noise): found here")
    ax = axes[1]
    ax.imshow(template, cmap="gray")
    ax.set_title(f"template {SIZE[0]}×{SIZE[1]}")
    ax = axes[2]
    shown = ax.imshow(ncc, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.plot(j, i, marker="o", ms=14, mfc="none", mec="black", mew=2)
    ax.set_title(f"match_template: max {ncc.max():.3f} at ({i}, {j})")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(OUT, dpi=72)
    print(f"wrote {OUT}: peak {ncc.max():.4f} at {(int(i), int(j))}, "
          f"template cut at {(TOP, LEFT)}")


if __name__ == "__main__":
    main()
