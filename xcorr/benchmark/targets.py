"""Targets: speed goals checked on one run's records, each reported as a pass/MISS row.

A row is ``{"target", "subject", "measured", "result"}`` with ``result`` one of ``"pass"``,
``"MISS"`` or ``"n/a"`` (no cell of the target is in this run). Suites build their rows with
:func:`row` and :func:`bound`; :func:`auto_vs_best` is the target every suite shares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .cases import Cell

Row = dict[str, str]


def row(target: str, subject: str, measured: str, ok: bool | None) -> Row:
    """A target row; ``ok`` None means nothing in this run measures it.

    Examples
    --------
    >>> row("dispatch ≤ 2× kernel", "numpy", "1.3×", True)["result"]
    'pass'
    """
    result = "n/a" if ok is None else ("pass" if ok else "MISS")
    return {"target": target, "subject": subject, "measured": measured, "result": result}


def index(records: Sequence[dict[str, Any]]) -> dict[tuple[Cell, str], dict[str, Any]]:
    """Records by (cell, implementation label)."""
    return {(Cell.from_record(r), r["impl"]): r for r in records}


def time_of(rec: dict[str, Any] | None) -> tuple[float | None, bool]:
    """(seconds, estimated?) of a record: its median, or the estimate it was skipped with."""
    if rec is None:
        return None, False
    if rec["status"] == "ok":
        return rec["median_s"], False
    return rec["estimate_s"], rec["estimate_s"] is not None


def ratio_of(idx: dict[tuple[Cell, str], dict[str, Any]], cell: Cell | None, impl: str,
             other: str, *, other_cell: Cell | None = None, speedup: bool = False
             ) -> float | None:
    """``impl``'s time ÷ ``other``'s (``other``'s ÷ ``impl``'s with ``speedup``) in ``cell``
    (``other`` in ``other_cell`` if given), or None where either was not run or ``other``
    has no time.  A run of ``impl`` that failed is the worst case (∞ slower, no speed-up),
    so that a target cannot pass on a crash.

    >>> from xcorr.benchmark.cases import Cell
    >>> c = Cell("s", "grid", (1, 8, 8), 3, "float32")
    >>> rec = lambda t: {"status": "ok" if t else "error", "median_s": t, "estimate_s": None}
    >>> idx = {(c, "mine"): rec(2.0), (c, "peer"): rec(1.0), (c, "broken"): rec(None)}
    >>> ratio_of(idx, c, "mine", "peer"), ratio_of(idx, c, "broken", "peer", speedup=True)
    (2.0, 0.0)
    """
    if cell is None:
        return None
    mine = idx.get((cell, impl))
    theirs = time_of(idx.get((other_cell or cell, other)))[0]
    if mine is None or theirs is None:
        return None
    t = time_of(mine)[0]
    if t is None:
        return 0.0 if speedup else math.inf
    return theirs / t if speedup else t / theirs


def bound(target: str, subject: str, ratios: Sequence[tuple[str, float, bool]], limit: float,
          *, at_most: bool = True, what: str = "") -> Row:
    """One row for a ratio that must stay ``≤ limit`` (or ``≥`` it) in every listed cell.

    ``ratios`` are ``(cell label, ratio, estimated?)``; ``measured`` names the worst cell and
    every miss, so a MISS row says where and by how much.

    Examples
    --------
    >>> r = bound("≤ 1× cv2", "numpy", [("256² k3", 0.8, False), ("1024² k7", 1.3, False)],
    ...           1.0, what="time ÷ cv2")
    >>> r["result"], r["measured"]
    ('MISS', 'time ÷ cv2: worst 1.30× (1024² k7) over 2 cells; misses: 1024² k7 (1.30×)')
    >>> bound("≥ 1.5× cv2", "numpy", [], 1.5, at_most=False)["result"]
    'n/a'
    """
    if not ratios:
        return row(target, subject, "no cell of this target in the run", None)

    def ok(ratio: float) -> bool:
        return ratio <= limit if at_most else ratio >= limit

    def shown(ratio: float) -> str:
        """Two decimals, a miss rounded away from the limit (1.004 against ≤ 1: 1.01)."""
        if ok(ratio) or not math.isfinite(ratio):
            return f"{ratio:.2f}"
        away = math.ceil if at_most else math.floor  # (round(, 9): 1.1 * 100 is 110.00...01)
        return f"{away(round(ratio * 100, 9)) / 100:.2f}"

    def fmt(label: str, ratio: float, est: bool) -> str:
        return f"{label} ({shown(ratio)}×{', estimated' if est else ''})"

    worst = (max if at_most else min)(ratios, key=lambda r: r[1])
    misses = [fmt(*r) for r in ratios if not ok(r[1])]
    measured = (f"{what + ': ' if what else ''}worst {shown(worst[1])}× ({worst[0]}) over "
                f"{len(ratios)} cells" + ("; misses: " + ", ".join(misses) if misses else ""))
    return row(target, subject, measured, not misses)


def auto_vs_best(records: Sequence[dict[str, Any]], limit: float = 1.2) -> list[Row]:
    """Each backend's ``auto`` within ``limit``× of the fastest method it offers, per cell.

    Stores the ratio in each ``auto`` record as ``auto_over_best`` (a column of the table).
    """
    by_cell: dict[Cell, list[dict[str, Any]]] = {}
    for r in records:
        by_cell.setdefault(Cell.from_record(r), []).append(r)
    rows = []
    offers = {r["impl"].rsplit("/", 1)[0] for r in records if r["method"] != "auto"}
    for prefix in dict.fromkeys(r["impl"].rsplit("/", 1)[0] for r in records
                                if r["method"] == "auto"):
        if prefix not in offers:  # a row of auto alone (the fallback): nothing to compare
            continue
        ratios = []
        for cell, recs in by_cell.items():
            mine = {r["method"]: r for r in recs if r["impl"].rsplit("/", 1)[0] == prefix
                    and r["status"] == "ok"}
            auto = mine.pop("auto", None)
            if auto is None or not mine:
                continue
            auto["auto_over_best"] = auto["median_s"] / min(r["median_s"] for r in mine.values())
            ratios.append((cell.label(), auto["auto_over_best"], False))
        rows.append(bound(f"auto ≤ {limit:g}× fastest method", prefix, ratios, limit,
                          what="auto ÷ fastest"))
    return rows
