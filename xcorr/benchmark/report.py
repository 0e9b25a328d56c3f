"""The report: ``bench.md`` (machine, targets, a headline and a full table per suite), the
plots (time against image size), and JSON-safe values for ``bench.json``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cases import Cell
from .machine import BUSY_HINT, DTYPES, busy
from .suite import Suite
from .targets import index
from .timing import fmt_time


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as None (JSON has no NaN/Infinity) and tuples as lists.

    Examples
    --------
    >>> json_safe({"a": (1.0, float("nan")), 2: [float("inf")]})
    {'a': [1.0, None], '2': [None]}
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def peer_labels(records: Sequence[dict[str, Any]]) -> list[str]:
    """The peers that have records, in the order they were run."""
    return list(dict.fromkeys(r["impl"] for r in records if r["group"] == "peer"))


def markdown(result: dict[str, Any], suites: Sequence[Suite]) -> str:
    """The whole ``bench.md``: the machine, the targets, then each suite's tables."""
    meta = result["meta"]
    out = [f"# xcorr benchmark, {meta['date']}", "", *_machine(meta, result["records"]), ""]
    out += ["## Targets", "", "| target | subject | measured | result |", "|---|---|---|---|"]
    out += [f"| {t['target']} | {t['subject']} | {t['measured']} | {t['result']} |"
            for t in result["targets"]]
    if not result["targets"]:
        out.append("| — | no target cell is in this grid | — | n/a |")
    for suite in suites:
        records = [r for r in result["records"] if r["suite"] == suite.name]
        out += ["", f"## {suite.title} (suite {suite.name})"]
        out += headline(records)
        out += suite.report(result, records)
        out += all_cases(records)
    if meta["notes"]:
        out += ["", "## Notes", ""] + [f"- {n}" for n in meta["notes"]]
    return "\n".join(out) + "\n"


def _fresh(meta: dict[str, Any]) -> str:
    bps = meta.get("fresh_copy_bytes_per_s")  # absent from runs before it was measured
    return (f", {bps / 1e9:.1f} GB/s into fresh pages (np.copy of 64 MiB, best of 5)"
            if bps else "")


def _machine(meta: dict[str, Any], records: Sequence[dict[str, Any]]) -> list[str]:
    th = meta["threads"]
    peaks = meta["peak_gflops"]
    out = [f"- machine: {meta['cpu']} ({th['os.cpu_count']} logical CPUs), {meta['platform']}",
           "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v),
           "- threads: " + ", ".join(f"{k}={v}" for k, v in th.items() if k != "note")
           + f" ({th['note']})",
           f"- roofline measured here: matmul float32 {peaks['float32']:.0f} GF/s, float64 "
           f"{peaks['float64']:.0f} GF/s (best of 5, {meta['roofline_sizes']['matmul']}²); copy "
           f"{meta['copy_bytes_per_s'] / 1e9:.1f} GB/s read + written (best of 5, "
           f"{meta['roofline_sizes']['copy_mib']} MiB)" + _fresh(meta),
           f"- load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}; "
           f"wall time {meta['wall_s']:.0f} s; command: `{meta['command']}`",
           "- times: median of timeit repeats (IQR = spread between quartiles); first call "
           "(JAX compiles there) apart; every timed result was first checked against a "
           "float64 NumPy reference. Memory: peak of one call, tracemalloc (NumPy-allocated "
           "buffers) or torch.cuda.max_memory_allocated; — where not measurable. "
           "`× peer` = peer's time / this time (> 1: faster than the peer)."]
    if busy(meta["loadavg_before"][0]):
        out += ["", f"**Noise warning:** the machine was busy (load "
                f"{meta['loadavg_before'][0]:.1f} on {th['os.cpu_count']} CPUs); treat ratios "
                f"as rough ({BUSY_HINT})."]
    # GF/s counts a direct evaluation's flops whatever the method: only the direct method
    # cannot pass the peak (an FFT or a peer's own algorithm does fewer operations).
    if any((r["peak_fraction"] or 0) > 1 for r in records if r.get("method") == "direct"):
        out += ["", "**Peak warning:** some direct-method cases exceed 100 % of the matmul "
                "peak measured in this run, so that measurement was disturbed; read % peak as "
                "relative only."]
    return out


def headline(records: Sequence[dict[str, Any]]) -> list[str]:
    """float32 (or the first dtype run) at the size nearest 1024²: each ``auto`` and peer."""
    grid = [r for r in records if r["case"] == "grid"]
    if not grid:
        return []
    dtype = next((d for d in DTYPES if any(r["dtype"] == d for r in grid)), grid[0]["dtype"])
    grid = [r for r in grid if r["dtype"] == dtype]
    size = min({r["shape"][-1] for r in grid}, key=lambda n: abs(math.log(n / 1024)))
    cells = list(dict.fromkeys(Cell.from_record(r) for r in grid if r["shape"][-1] == size))
    idx = index(records)
    rows = [r["impl"] for r in grid if r["method"] == "auto"] + peer_labels(grid)
    out = ["", f"### Headline: {dtype}, {size}² image (median time)", "",
           "| implementation | " + " | ".join(
               f"k{c.k}" + "".join(f" {k}={v}" for k, v in c.params) for c in cells) + " |",
           "|---|" + "---|" * len(cells)]
    for label in dict.fromkeys(rows):
        out.append(f"| {label} | " + " | ".join(_short(idx.get((c, label))) for c in cells)
                   + " |")
    return out


def all_cases(records: Sequence[dict[str, Any]]) -> list[str]:
    """Every record: times, GF/s, % of peak, memory, auto/best and the ratio to each peer."""
    peers = peer_labels(records)
    idx = index(records)
    out = ["", "### All cases", "",
           "| case | implementation | median | IQR | first call | GF/s | % peak | memory | "
           "auto/best |" + "".join(f" × {p} |" for p in peers),
           "|---|---|---|---|---|---|---|---|---|" + "---|" * len(peers)]
    for r in records:
        cell = Cell.from_record(r)
        if r["status"] != "ok":
            out.append(f"| {cell.label()} | {r['impl']} | {r['status']}: {r['reason']} |"
                       + " |" * (6 + len(peers)))
            continue
        ratios = []
        for p in peers:
            pr = idx.get((cell, p))
            ratios.append(f"{pr['median_s'] / r['median_s']:.3g}"
                          if pr and pr["status"] == "ok" else "—")
        mem = (f"{r['peak_mem_bytes'] / 2**20:.1f} MiB" if r["peak_mem_bytes"] is not None
               else "—")
        ab = f"{r['auto_over_best']:.2f}" if r.get("auto_over_best") is not None else ""
        gf = f"{r['gflops']:.3g}" if r["gflops"] is not None else "—"
        pf = f"{100 * r['peak_fraction']:.1f}" if r["peak_fraction"] is not None else "—"
        iqr = fmt_time(r["iqr_s"]) if r["repeats"] > 1 else "timed once"
        out.append(f"| {cell.label()} | {r['impl']} | {fmt_time(r['median_s'])} | "
                   f"{iqr} | {fmt_time(r['first_call_s'])} | {gf} | {pf} | {mem} | {ab} |"
                   + "".join(f" {ratio} |" for ratio in ratios))
    return out


def _short(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    if r["status"] == "ok":
        return fmt_time(r["median_s"])
    if r["estimate_s"] is not None:
        return f"skipped (~{r['estimate_s']:.1g} s)"
    return r["status"]


_COLORS = {"numpy": "C0", "jax": "C1", "torch": "C2", "cupy": "C3", "dask": "C4"}
_METHOD_STYLE = {"direct": ("-", "s", 1.2), "fft": ("--", "^", 1.2), "native": ("-.", "v", 1.2),
                 "overlap": ((0, (5, 1, 1, 1)), "D", 1.2), "auto": ("-", "o", 2.6)}
_PEER_COLORS = ("0.3", "C5", "C6", "C7", "C8", "C9", "k", "C3", "C4", "C1")


def _style(label: str, peers: list[str]) -> dict[str, Any]:
    """Colour by backend (each peer its own), line and marker by method; peers dotted."""
    if label in peers:
        return {"color": _PEER_COLORS[peers.index(label) % len(_PEER_COLORS)], "ls": ":",
                "marker": "x", "lw": 1.5}
    backend, method = label.rsplit("/", 1)
    ls, marker, lw = _METHOD_STYLE.get(method, ("-", "d", 1.2))
    return {"color": _COLORS.get(backend.split("[")[0], "k"), "ls": ls, "marker": marker,
            "lw": lw, "alpha": 1.0 if method == "auto" else 0.75}


def plot(records: Sequence[dict[str, Any]], path: Path, title: str) -> str | None:
    """Time vs image size, log-log, a line per implementation, a panel per kernel and dtype.

    Returns why nothing was written, or None.
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install \"xcorr[plot]\")"
    grid = [r for r in records if r["case"] == "grid" and r["status"] == "ok"]
    if not grid:
        return f"plot {path.name} skipped: no timed grid case"
    dtypes = list(dict.fromkeys(r["dtype"] for r in grid))
    panels = list(dict.fromkeys((r["k"], tuple(sorted(r["params"].items()))) for r in grid))
    panels.sort(key=lambda p: (p[0], str(p[1])))
    peers = peer_labels(records)
    # (dtype, kernel) panels, three to a row: six kernels in two dtypes stay readable
    ncols = min(3, len(panels))
    per_dtype = math.ceil(len(panels) / ncols)  # rows of each dtype
    fig = Figure(figsize=(4.2 * ncols, 3.4 * per_dtype * len(dtypes)), layout="constrained")
    flat = fig.subplots(per_dtype * len(dtypes), ncols, squeeze=False).flat
    used = {(i * per_dtype * ncols + j): (dtype, panel) for i, dtype in enumerate(dtypes)
            for j, panel in enumerate(panels)}
    for n, ax in enumerate(flat):
        ax.set_visible(n in used)
    for n, (dtype, (kk, params)) in used.items():
        ax = flat[n]
        rows = [r for r in grid if r["dtype"] == dtype and r["k"] == kk
                and tuple(sorted(r["params"].items())) == params]
        for label in dict.fromkeys(r["impl"] for r in rows):
            pts = sorted((r["shape"][-1], r["median_s"]) for r in rows if r["impl"] == label)
            ax.loglog(*zip(*pts, strict=True), label=label, ms=4, **_style(label, peers))
        sizes = sorted({r["shape"][-1] for r in rows})
        ax.set_xticks(sizes, [f"{side}²" for side in sizes])
        ax.minorticks_off()
        ax.set_title(f"k{kk}" + "".join(f" {k}={v}" for k, v in params) + f", {dtype}")
        ax.set_xlabel("image size")
        ax.set_ylabel("median time (s)")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = [], []
    for n in used:
        ax = flat[n]
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.suptitle(title)
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.savefig(path, dpi=110)
    return None
