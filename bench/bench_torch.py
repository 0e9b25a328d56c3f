"""Benchmark the PyTorch backend's methods and check the issue-3 targets (a script, not a test).

    python bench/bench_torch.py            # markdown table + target checks (~3-5 min on 2 cores)
    python bench/bench_torch.py --fit      # refit the cost-model constants in backends/_torch.py
    python bench/bench_torch.py --quick    # 256² and 1024² only
    python bench/bench_torch.py --threads 1  # a steadier figure on a shared machine

Times are medians of repeated single-image calls after a warm-up, in milliseconds, on the CPU
(or CUDA with --device cuda); a cell's methods are timed in turn, round after round, so that
load from other processes hits them alike.  A method that took > SKIP_S at 1024² is not run
at 4096² (it would take ~16× as long); the table says so.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import xcorr
from xcorr._methods import choose, fft_len
from xcorr.backends import _torch

METHODS = ("direct", "fft", "native", "auto")
SIZES = (256, 1024, 4096)
KERNELS = (3, 11, 31)
DTYPES = (torch.float32, torch.float64)
SKIP_S = 0.15  # a 1024² time above this is not repeated at 4096² (~16x as long)
BUDGET_S = 1.5  # per cell: at least 3 rounds, then stop past this or at 15 rounds


def timed(fn: Callable[[], object], sync: Callable[[], None],
          stat: Callable[[list[float]], float] = statistics.median) -> float:
    """``stat`` (median) of the seconds ``fn()`` takes over adaptive repeats, after a warm-up."""
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    runs = [first]
    for _ in range(max(2, min(24, int(BUDGET_S / max(first, 1e-6))))):
        t0 = time.perf_counter()
        fn()
        sync()
        runs.append(time.perf_counter() - t0)
    return stat(runs)


def timed_round_robin(fns: dict[str, Callable[[], object]], sync: Callable[[], None]
                      ) -> dict[str, tuple[float, float]]:
    """(median, fastest) seconds per function, timed in turn so load hits all of them alike."""
    runs: dict[str, list[float]] = {m: [] for m in fns}
    for fn in fns.values():  # warm-up: plans, caches, first-touch of the output
        fn()
    sync()
    rounds = 1
    while True:
        for m, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            runs[m].append(time.perf_counter() - t0)
        spent = sum(sum(r) for r in runs.values())
        if rounds >= 3 and (spent > BUDGET_S or rounds >= 15):
            return {m: (statistics.median(r), min(r)) for m, r in runs.items()}
        rounds += 1


def table(sizes: tuple[int, ...], device: str) -> list[dict]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    rows, slow = [], {}
    for dtype in DTYPES:
        for n in sizes:
            x = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
            for kk in KERNELS:
                k = torch.randn(kk, kk, generator=gen, dtype=dtype).to(device)
                row = {"n": n, "k": kk, "dtype": str(dtype).removeprefix("torch."), "skip": {}}
                fns = {}
                for m in METHODS:
                    prev = slow.get((m, kk, dtype))
                    if n > 1024 and prev is not None and prev > SKIP_S:
                        row["skip"][m] = f"{prev:.2f} s at 1024²"
                    else:
                        fns[m] = lambda m=m, x=x, k=k: xcorr.corr2d(x, k, method=m)
                secs = timed_round_robin(fns, sync)
                if n == 1024:
                    slow.update({(m, kk, dtype): t for m, (t, _) in secs.items()})
                row["ms"] = {m: t * 1e3 for m, (t, _) in secs.items()}
                row["min"] = {m: t * 1e3 for m, (_, t) in secs.items()}
                row["picked"] = choose(_torch.costs(), (n, n), (kk, kk), x.element_size(), False)
                rows.append(row)
                cells = " ".join(f"{m}={v:.2f}" for m, v in row["ms"].items())
                print(f"  {n}² k{kk} {row['dtype']}: {cells}", flush=True)
    return rows


def report(rows: list[dict]) -> None:
    print("\n| size | k | dtype | direct | fft | native | auto (picks) | auto / best | same, "
          "fastest runs |")
    print("|---|---|---|---|---|---|---|---|---|")
    misses = []
    for r in rows:
        ms, cells = r["ms"], []
        for m in ("direct", "fft", "native"):
            cells.append(f"{ms[m]:.2f}" if m in ms else f"skipped ({r['skip'][m]})")
        best = min(v for m, v in ms.items() if m != "auto")
        ratio = ms["auto"] / best
        quiet = r["min"]["auto"] / min(v for m, v in r["min"].items() if m != "auto")
        if ratio > 1.2:
            misses.append(f"{r['n']}² k{r['k']} {r['dtype']}: auto/best = {ratio:.2f}")
        print(f"| {r['n']}² | {r['k']} | {r['dtype']} | " + " | ".join(cells)
              + f" | {ms['auto']:.2f} ({r['picked']}) | {ratio:.2f} | {quiet:.2f} |")
    print("\nTargets (1024², float32):")
    for r in rows:
        if r["n"] == 1024 and r["dtype"] == "float32" and r["k"] in (3, 31):
            speedup = r["ms"]["native"] / r["ms"]["auto"]
            verdict = "met" if speedup >= 10 else "MISSED"
            print(f"- k{r['k']}: auto {r['ms']['auto']:.2f} ms vs F.conv2d "
                  f"{r['ms']['native']:.2f} ms = {speedup:.1f}x (target >= 10x: {verdict})")
    print("- auto within 1.2x of the fastest method in every cell: "
          + ("met" if not misses else "MISSED in " + "; ".join(misses)))


def fit(dtype: torch.dtype) -> _torch.Cost:
    """Least-squares fit of the two cost lines of ``xcorr._methods`` for ``dtype``.

    Uses each point's fastest run (on a shared machine the least disturbed one) and weighs
    every point by its own time, so small and large sizes count alike (relative error).
    """
    sync = lambda: None  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    n = 1024
    x = torch.randn(n, n, generator=gen, dtype=dtype)
    a, b = [], []
    for kk in (1, 3, 5, 7, 9, 11, 13):  # around the crossover with the FFT
        k = torch.randn(kk, kk, generator=gen, dtype=dtype)
        t = timed(lambda k=k: _torch.corr2d_valid(x, k, "direct"), sync, min)
        outs = (n - kk + 1) ** 2
        print(f"  direct 1024² k{kk}: {t * 1e3:.3f} ms")
        a.append([outs * kk * kk, outs])
        b.append(t * 1e9)
    tap, out = _relative_lstsq(a, b)
    a, b = [], []
    for n in (64, 128, 256, 512, 1024, 2048):
        x = torch.randn(n, n, generator=gen, dtype=dtype)
        k = torch.randn(3, 3, generator=gen, dtype=dtype)
        t = timed(lambda x=x, k=k: _torch.corr2d_valid(x, k, "fft"), sync, min)
        npts = fft_len(n) ** 2
        print(f"  fft {n}² k3: {t * 1e3:.3f} ms")
        a.append([npts * np.log2(npts), 1.0])
        b.append(t * 1e9)
    point, fixed = _relative_lstsq(a, b)
    return _torch.Cost(tap=round(float(tap), 4), out=round(max(float(out), 0.0), 3),
                       point=round(float(point), 3), fixed=round(max(float(fixed), 0.0), -3))


def _relative_lstsq(a: list[list[float]], b: list[float]) -> np.ndarray:
    w = 1.0 / np.array(b)
    return np.linalg.lstsq(np.array(a, float) * w[:, None], np.ones(len(b)), rcond=None)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="refit the cost constants")
    parser.add_argument("--quick", action="store_true", help="skip 4096²")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, device={args.device}")
    if args.fit:
        for dtype in DTYPES:
            print(f"{torch.empty((), dtype=dtype).element_size()}: {fit(dtype)},")
        return
    report(table(SIZES[:2] if args.quick else SIZES, args.device))


if __name__ == "__main__":
    main()
