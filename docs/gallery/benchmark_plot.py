"""The committed benchmark as one picture: xcorr's ``auto`` on each backend against the peers.

    python docs/gallery/benchmark_plot.py [OUT.png]    # default: benchmark_plot.png beside it

Reads ``bench/results/bench.json`` (the committed run, see the Benchmarks page), so it times
nothing: median time against image size, float32, one panel per kernel size, a line per
backend's ``method="auto"`` and one per peer (SciPy, ``scipy.ndimage``, ``F.conv2d``,
``lax.conv``, ...).  The plot itself is the benchmark report's own (``xcorr.benchmark.report``).
Needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from xcorr.benchmark import report

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_suffix(".png")
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "bench.json"
KERNELS = (3, 11, 31)


def main() -> None:
    result = json.loads(RESULTS.read_text())
    records = [{"suite": "corr2d", "params": {}, **r} for r in result["records"]]  # older runs
    shown = [r for r in records if r["suite"] == "corr2d" and r["dtype"] == "float32"
             and r["k"] in KERNELS and (r["group"] == "peer" or r["method"] == "auto")]
    meta = result["meta"]
    title = (f"corr2d, float32, valid mode: xcorr auto vs peers — {meta['cpu']}, "
             f"{meta['date'][:10]} (bench/results/bench.json)")
    why_not = report.plot(shown, OUT, title)
    if why_not:
        sys.exit(why_not)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
