"""The ``xcorr`` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from . import corr2d


def seed_examples(backend: str | None = None) -> list[tuple[str, np.ndarray]]:
    """The three examples of the seed notebook, computed on ``backend``."""
    x = np.ones((6, 8))
    x[:, 2:6] = 0
    k = np.array([[1.0, -1.0]])
    return [
        ("corr2d(X, K) for the 3x3 example", corr2d(np.arange(9).reshape(3, 3),
                                                     [[0, 1], [2, 3]], backend=backend)),
        ("the edge image X (columns 2..5 black)", x),
        ("its vertical edges corr2d(X, [[1, -1]])", corr2d(x, k, backend=backend)),
        ("the transposed image has none: corr2d(X.T, K)", corr2d(x.T, k, backend=backend)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xcorr", description=__doc__)
    parser.add_argument("--backend", default=None, help="numpy (default), jax, torch, cupy, dask")
    args = parser.parse_args(argv)
    for title, value in seed_examples(args.backend):
        print(f"{title}:\n{np.asarray(value)}\n")
    return 0
