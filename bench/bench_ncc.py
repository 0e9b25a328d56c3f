"""Time ``xcorr.match_template`` against OpenCV and scikit-image: ``xcorr bench --suite ncc``.

A thin wrapper kept for the old command line; the suite (cases, peers, targets) lives in
``xcorr/benchmark/suites/ncc.py``, and any option of ``xcorr bench`` passes through::

    python bench/bench_ncc.py                          # the issue's four cases, float32 CPU
    python bench/bench_ncc.py --quick                  # a tiny grid (seconds)
    python bench/bench_ncc.py --backends numpy --peers matchTemplate skimage
"""

from __future__ import annotations

import sys

from xcorr.benchmark import main

if __name__ == "__main__":
    sys.exit(main(["--suite", "ncc", *sys.argv[1:]]))
