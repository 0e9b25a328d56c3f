"""Cells: the input configurations a suite times, and the grid the command line asks for.

A :class:`Cell` names one configuration (its suite, a case such as ``"grid"`` or
``"batched"``, the input shape, the kernel side, the dtype and any keyword arguments of the
operation, such as ``mode="same"``). Records, targets and tables are keyed by cells, so a cell
written to JSON and read back (:meth:`Cell.from_record`) is the same key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cell:
    """One input configuration of a suite.

    Parameters
    ----------
    suite : str
        The suite that times it (``"corr2d"``, ...).
    case : str
        A group of cells within the suite: ``"grid"`` (one image, the plotted sweep),
        ``"batched"``, or a suite's own.
    shape : tuple of int
        The input's shape as the suite defines it; ``(B, H, W)`` for the correlation suite.
    k : int
        The kernel (window, template) side.
    dtype : str
        ``"float32"`` or ``"float64"``.
    params : tuple of (str, value) pairs
        Keyword arguments of the timed operation (hashable values), e.g.
        ``(("boundary", "wrap"), ("mode", "same"))``; empty for valid correlation.
    flops : int
        Floating-point operations of one call (for GF/s); not part of the cell's identity.

    Examples
    --------
    >>> Cell("corr2d", "grid", (1, 256, 256), 3, "float32").label()
    '256² k3 float32'
    >>> Cell("corr2d", "batched", (8, 28, 28), 5, "float64", (("mode", "same"),)).label()
    '8×28×28 k5 mode=same float64'
    """

    suite: str
    case: str
    shape: tuple[int, ...]
    k: int
    dtype: str
    params: tuple[tuple[str, Any], ...] = ()
    flops: int = field(default=0, compare=False)

    @property
    def kwargs(self) -> dict[str, Any]:
        """``params`` as keyword arguments of the operation."""
        return dict(self.params)

    @property
    def size(self) -> int:
        """The image side that the grid sweeps (the last dimension)."""
        return self.shape[-1]

    def label(self) -> str:
        """``"256² k3 float32"`` for a square single image, ``"8×512×512 k3 ..."`` otherwise."""
        *lead, h, w = self.shape
        single = self.case == "grid" and all(d == 1 for d in lead) and h == w
        size = f"{h}²" if single else "×".join(map(str, self.shape))
        extra = "".join(f" {key}={value}" for key, value in self.params)
        return f"{size} k{self.k}{extra} {self.dtype}"

    def as_record(self) -> dict[str, Any]:
        """The cell's fields for a JSON record."""
        return {"suite": self.suite, "case": self.case, "shape": list(self.shape), "k": self.k,
                "dtype": self.dtype, "params": dict(self.params), "flops": self.flops}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Cell:
        """The cell of a record (as written by :meth:`as_record`, or read back from JSON)."""
        params = tuple(sorted((key, tuple(v) if isinstance(v, list) else v)
                              for key, v in rec.get("params", {}).items()))
        return cls(rec.get("suite", "corr2d"), rec["case"], tuple(rec["shape"]), rec["k"],
                   rec["dtype"], params, rec.get("flops", 0))


@dataclass(frozen=True)
class Grid:
    """What the command line asked for; ``None`` leaves the choice to each suite.

    ``quick`` asks for the tiny grid; ``sizes``, ``kernels``, ``dtypes`` and ``batches``
    (``(B, H, W)`` shapes) replace a suite's defaults where given.

    Examples
    --------
    >>> from xcorr.benchmark import Grid
    >>> Grid(quick=True).pick("sizes", [64], [256, 1024])
    (64,)
    >>> Grid(sizes=(32,)).pick("sizes", [64], [256, 1024])
    (32,)
    """

    quick: bool = False
    sizes: tuple[int, ...] | None = None
    kernels: tuple[int, ...] | None = None
    dtypes: tuple[str, ...] | None = None
    batches: tuple[tuple[int, int, int], ...] | None = None

    def pick(self, name: str, quick: Sequence[Any], full: Sequence[Any]) -> tuple[Any, ...]:
        """The user's ``name`` values if given, else the suite's quick or full default."""
        given = getattr(self, name)
        if given is not None:
            return tuple(dict.fromkeys(given))  # a value given twice is one cell
        return tuple(quick if self.quick else full)
