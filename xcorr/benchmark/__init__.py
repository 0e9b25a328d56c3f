"""Cross-backend benchmark: every backend and method against the usual peers, on the same inputs.

    xcorr bench [--quick] [--suite NAME ...] [--backends NAME ...] [--out DIR [--force]]
    python -m xcorr.benchmark ...  or  python bench/run.py ...   (the same command)

The work is split in suites, one per operation (``xcorr bench --suite NAME``; default: all).
The first, ``corr2d``, is single-channel valid correlation on images of {28², 64², 256²,
1024², 4096²} × kernels {3, 5, 7, 11, 15, 31} × {float32, float64} and batches of 8, against
the seed's loop, SciPy, ``scipy.ndimage``, OpenCV's ``cv2.filter2D``, ``F.conv2d`` and
``lax.conv`` (cuDNN and ``cupyx`` on a GPU), with the seed's training loop and the dispatch
overhead beside it. Every result is checked against a float64 reference before it is timed;
JAX's compile time is reported apart; times are medians with their interquartile range; the
matmul peak and the copy bandwidth are measured in the same run, for the roofline targets.

The package, each module readable on its own:

- ``cases``: :class:`Cell` (one input configuration) and :class:`Grid` (what was asked for);
- ``timing``: the clock — verify, warm up, ``timeit`` repeats, skip what would be too slow;
- ``machine``: thread pools, matmul peak, copy bandwidth, versions;
- ``peers``: the libraries compared with, and how each is called;
- ``suite``: the :class:`Suite` base class; ``suites/``: the registered suites (add one there
  to benchmark another operation);
- ``targets``: pass/MISS rows; ``report``: ``bench.md`` and the plots; ``overhead``: the
  dispatch and training measurements; ``command``: ``xcorr bench`` itself.

Results go to a fresh folder, ``bench/out/<UTC time>/``, unless ``--out DIR`` is given; a
folder that already holds results is overwritten only with ``--force``.
"""

from __future__ import annotations

from .cases import Cell, Grid
from .command import add_arguments, main, run
from .peers import C2D, CORR, CUDNN, CUPYX, CV2, FCONV, LAXCONV, LOOP, NDI, Peer
from .suite import Suite
from .suites import SUITES
from .suites.corr2d import reference
from .timing import Impl, Options, measure, time_call, verify

__all__ = ["C2D", "CORR", "CUDNN", "CUPYX", "CV2", "FCONV", "LAXCONV", "LOOP", "NDI", "SUITES",
           "Cell", "Grid", "Impl", "Options", "Peer", "Suite", "add_arguments", "main",
           "measure", "reference", "run", "time_call", "verify"]
