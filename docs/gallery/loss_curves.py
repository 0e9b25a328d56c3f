"""``learn_kernel`` on every backend that can run here: the same loss curve on each.

    python docs/gallery/loss_curves.py [OUT.png]       # default: loss_curves.png beside it

Left: the seed's training loop — learn the 1×2 edge kernel back from the 6×8 image and its
edges (lr 0.03, 30 epochs).  Right: a convolution layer, two channels in and one out, with a
bias, learned back from four random images and their outputs (d2l 7.4's kernel).  Every backend
starts from the same kernel (``seed=0``) and takes the same steps, so the curves lie on top of
each other down to float32 rounding; the legend gives each backend's learned kernel.
Needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import xcorr
from xcorr.testing import as_numpy

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_suffix(".png")
STYLES = {"numpy": ("-", "o"), "jax": ("--", "s"), "torch": ("-.", "^"), "cupy": (":", "v"),
          "dask": (":", "x")}


def main() -> None:
    x = np.ones((6, 8), np.float32)
    x[:, 2:6] = 0
    y = xcorr.corr2d(x, np.array([[1.0, -1.0]], np.float32))
    w = np.array([[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]], np.float32)  # (C_out, C_in, kh, kw)
    xs = np.random.default_rng(0).normal(size=(4, 2, 6, 6)).astype(np.float32)
    ys = xcorr.conv2d(xs, w, np.array([0.5], np.float32), padding=1)

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for name in xcorr.available_backends():
        ls, marker = STYLES[name]
        seed = xcorr.learn_kernel(x, y, (1, 2), backend=name, lr=3e-2, epochs=30)
        kernel = np.array2string(as_numpy(seed.kernel), precision=4)
        left.semilogy(range(1, 31), seed.losses, ls=ls, marker=marker, ms=4, mfc="none",
                      label=f"{name}: {kernel}")
        layer = xcorr.learn_kernel(xs, ys, w.shape, backend=name, padding=1, bias=True,
                                   lr=4e-3, epochs=60)
        bias = float(as_numpy(layer.bias)[0])
        right.semilogy(range(1, 61), layer.losses, ls=ls, marker=marker, ms=4, mfc="none",
                       markevery=3, label=f"{name}: bias {bias:.4f}")
    left.set(title="the seed: learn [[1, -1]] from the edge image", xlabel="epoch",
             ylabel="loss (sum of squared errors)")
    right.set(title="a conv2d layer 2 → 1 channels, 2×2, bias 0.5", xlabel="epoch")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
