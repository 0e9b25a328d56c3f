"""Smoke test of the benchmark harness (``xcorr bench``): structure of what it writes, never
timings (speed targets live in ``bench/``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xcorr import benchmark


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny quick run in a subprocess (as the command runs), NumPy backend only."""
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, "-m", "xcorr.benchmark", "--quick", "--backends", "numpy",
           "--peers", "loop", "correlate2d", "correlate", "ndimage", "--sizes", "24", "40",
           "--kernels", "3", "--batch", "2", "16", "16",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def test_json_structure_and_every_timed_result_verified(quick_run: Path) -> None:
    result = json.loads((quick_run / "bench.json").read_text())
    meta = result["meta"]
    for key in ("date", "cpu", "versions", "threads", "peak_gflops", "loadavg_before",
                "loadavg_after", "wall_s", "notes"):
        assert key in meta, key
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["threads"]["os.cpu_count"] >= 1
    assert meta["backends"] == ["numpy"]
    records = result["records"]
    impls = {r["impl"] for r in records}
    assert {"numpy/direct", "numpy/fft", "numpy/auto", benchmark.LOOP} <= impls
    # two sizes in the grid, one batched case
    assert {tuple(r["shape"]) for r in records} == {(1, 24, 24), (1, 40, 40), (2, 16, 16)}
    timed = [r for r in records if r["status"] == "ok"]
    assert timed, "nothing was timed"
    for r in records:
        assert r["status"] in ("ok", "failed", "skipped")
        if r["status"] == "ok":
            assert r["verified"] is True
            assert r["rel_err"] <= 1e4 * np.finfo(r["dtype"]).eps
            assert len(r["times_s"]) == r["repeats"] >= 1
            assert r["q1_s"] <= r["median_s"] <= r["q3_s"]
            assert r["gflops"] > 0
        else:
            assert r["reason"], r
    # NumPy's buffers are visible to tracemalloc: its memory is reported
    assert all(r["peak_mem_bytes"] is not None for r in timed if r["group"] == "numpy")
    assert [d["backend"] for d in result["dispatch"]] == ["numpy"]
    assert result["dispatch"][0]["status"] == "ok"
    assert {t["result"] for t in result["targets"]} <= {"pass", "MISS", "n/a"}


def test_markdown_table(quick_run: Path) -> None:
    md = (quick_run / "bench.md").read_text()
    for heading in ("## Targets", "## Headline", "## All cases", "## Dispatch overhead"):
        assert heading in md
    result = json.loads((quick_run / "bench.json").read_text())
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    for r in result["records"]:  # every record has its row in the full table
        label = benchmark.Cell(r["case"], tuple(r["shape"]), r["k"], r["dtype"]).label()
        assert any(row.startswith(f"| {label} | {r['impl']} |") for row in rows), r["impl"]
    header = next(row for row in rows if row.startswith("| case | implementation |"))
    assert f"× {benchmark.C2D}" in header and "GF/s" in header and "% peak" in header


def test_plot_written(quick_run: Path) -> None:
    pytest.importorskip("matplotlib", reason="the PNG needs matplotlib")
    png = quick_run / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _cell() -> tuple[benchmark.Cell, np.ndarray, np.ndarray, np.ndarray]:
    cell = benchmark.Cell("grid", (1, 20, 20), 3, "float32")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 20)).astype(np.float32)
    k = rng.standard_normal((3, 3)).astype(np.float32)
    return cell, x, k, benchmark.reference(x, k)


OPTS = benchmark.Options(threads=1, max_call=1.0, target=0.001, min_repeat=3, max_repeat=3,
                         min_loop=1e-4)


@pytest.mark.parametrize("wrong", [
    lambda x, k: benchmark.reference(x, k[::-1, ::-1]).astype(np.float32),  # convolution
    lambda x, k: benchmark.reference(x, k),  # right values, float64 for float32 input
    lambda x, k: benchmark.reference(x[1:], k).astype(np.float32),  # wrong shape
])
def test_wrong_result_is_a_failure_and_not_timed(wrong) -> None:
    cell, x, k, ref = _cell()
    impl = benchmark.Impl("wrong", "peer", None, lambda x, k: lambda: wrong(x, k))
    rec = benchmark.measure(impl, cell, x, k, ref, OPTS, None, {})
    assert rec["status"] == "failed" and rec["verified"] is False
    assert rec["median_s"] is None and rec["times_s"] == []


def test_right_result_is_timed_and_slow_cell_skipped_with_estimate() -> None:
    cell, x, k, ref = _cell()
    impl = benchmark.Impl("right", "peer", None,
                          lambda x, k: lambda: benchmark.reference(x, k).astype(np.float32))
    rec = benchmark.measure(impl, cell, x, k, ref, OPTS, None, {"float32": 100.0})
    assert rec["status"] == "ok" and rec["verified"] and len(rec["times_s"]) == 3
    assert rec["peak_fraction"] == pytest.approx(rec["gflops"] / 100.0)
    rec = benchmark.measure(impl, cell, x, k, ref, OPTS, 5.0, {})
    assert rec["status"] == "skipped" and "~5 s" in rec["reason"]
    # slower than --max-call without an estimate (first size): timed once, not repeated
    once = benchmark.Options(threads=1, max_call=0.0, target=1.0, min_repeat=5, max_repeat=9,
                             min_loop=0.0)
    rec = benchmark.measure(impl, cell, x, k, ref, once, None, {})
    assert rec["status"] == "ok" and rec["repeats"] == 1 and len(rec["times_s"]) == 1


def test_run_wrapper_is_the_same_command() -> None:
    proc = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "bench" / "run.py"),
                           "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--quick" in proc.stdout and "--backends" in proc.stdout
