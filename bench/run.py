"""Cross-backend benchmark: ``python bench/run.py [options]`` is ``xcorr bench [options]``.

    python bench/run.py --quick                        # a tiny grid, about a minute
    python bench/run.py --suite corr2d                 # one suite, into bench/out/<UTC time>/
    python bench/run.py --out bench/results --force    # refresh the committed results
    python bench/run.py --backends numpy torch --out /tmp/bench

See ``xcorr/benchmark/`` (the harness lives in the package so the installed command has it).
"""

from __future__ import annotations

import sys

from xcorr.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
