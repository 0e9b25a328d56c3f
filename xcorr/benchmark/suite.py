"""The suite: one operation's benchmark, the unit that ``xcorr bench --suite NAME`` selects.

A suite says which cells it times, how to make a cell's inputs and their float64 reference,
how to call the operation on a backend (each method the backend's module lists in
``METHODS``, and ``"auto"``), which peers it compares with, and which targets it checks.
Everything else (conversion outside the clock, verification, timing, skipping slow cells,
JSON, tables, plots) is shared. To benchmark a new operation, subclass :class:`Suite` in a
module of ``xcorr/benchmark/suites/`` and add it to the registry there; a minimal one::

    class Pool(Suite):
        name, title = "pool2d", "Max pooling"

        def cells(self, grid):
            return [Cell(self.name, "grid", (1, n, n), k, dt, (("window", k),), n * n)
                    for dt in grid.pick("dtypes", ["float32"], DTYPES)
                    for n in grid.pick("sizes", [64], [256, 1024]) for k in (2, 3)]

        def inputs(self, cell, rng):
            return (rng.standard_normal(cell.shape[1:]).astype(cell.dtype),)

        def reference(self, cell, inputs):
            ...  # float64 NumPy

        def call(self, x, *, method, window):  # the cell's params arrive as keywords
            return xcorr.pool2d(x, window, method=method)

        def peers(self, ctx):
            return [Peer("max_pool2d", "torch F.max_pool2d", build_max_pool, ("torch",))]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from .. import _dispatch
from .cases import Cell, Grid
from .machine import Context
from .peers import Peer
from .timing import Impl, memory_probe, sync, verify_cell


class Suite:
    """One operation's benchmark; subclasses fill in the methods that raise here.

    Attributes
    ----------
    name : str
        Its ``--suite`` name, and the ``suite`` of its cells and records.
    title : str
        The heading of its tables.
    plot_file : str or None
        The PNG of its grid (time against image size); None for no plot.

    Examples
    --------
    The registered suites, in the order they run:

    >>> from xcorr.benchmark import SUITES
    >>> list(SUITES)[:4]
    ['corr2d', 'surface', 'conv2d', 'pool2d']
    >>> SUITES["corr2d"].plot_file, SUITES["conv2d"].plot_file
    ('bench.png', None)
    """

    name = ""
    title = ""

    @property
    def plot_file(self) -> str | None:
        return f"bench-{self.name}.png"

    # -- what a suite defines ----------------------------------------------------------------

    def cells(self, grid: Grid) -> list[Cell]:
        """The cells to time for what the command line asked (``grid``)."""
        raise NotImplementedError

    def inputs(self, cell: Cell, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """The NumPy input arrays of ``cell`` (the positional arguments of the operation)."""
        raise NotImplementedError

    def reference(self, cell: Cell, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        """The float64 result every implementation is checked against before it is timed."""
        raise NotImplementedError

    def call(self, *arrays: Any, method: str, **params: Any) -> Any:
        """xcorr's operation on backend ``arrays`` with ``method`` and the cell's ``params``."""
        raise NotImplementedError

    def peers(self, ctx: Context) -> list[Peer]:
        """The peers this suite compares with (all of them; the run keeps what can run)."""
        return []

    def methods(self, be: Any) -> tuple[str, ...]:
        """The methods timed on backend module ``be``: its ``METHODS`` and ``"auto"``."""
        return (*be.METHODS, "auto")

    def check(self, got: Any, ref: np.ndarray, cell: Cell
              ) -> tuple[bool, float | None, str | None]:
        """Compare a result with the reference (default: :func:`.timing.verify`'s bound)."""
        return verify_cell(got, ref, cell)

    def notes(self, ctx: Context, cells: Sequence[Cell], peers: Sequence[Peer]) -> list[str]:
        """Remarks for the report about how this suite's peers were run."""
        return []

    def extras(self, ctx: Context, opts: Any) -> dict[str, Any]:
        """Measurements beside the cells (stored at the top level of the result)."""
        return {}

    def targets(self, records: list[dict[str, Any]], result: dict[str, Any]
                ) -> list[dict[str, str]]:
        """The targets this suite checks: rows ``{target, subject, measured, result}``.

        ``records`` are this suite's; ``result`` is the whole run (``meta`` holds the matmul
        peak and the copy bandwidth, and the suites' ``extras`` are at its top level).
        """
        return []

    def report(self, result: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
        """Markdown lines of this suite's own tables, after the headline."""
        return []

    # -- what every suite shares ---------------------------------------------------------------

    def backend_impls(self, name: str, device: str | None = None) -> list[Impl]:
        """One row per method of backend ``name`` (on torch ``device`` if given)."""
        be = _dispatch.load(name)
        wait = sync(name)
        label = name if device is None else f"{name}[{device}]"

        def builder(method: str) -> Any:
            def build(*arrays: np.ndarray, **params: Any) -> Any:
                conv = [be.asarray(a) for a in arrays]  # conversion stays outside the clock
                if device is not None:
                    conv = [a.to(device) for a in conv]
                return lambda: wait(self.call(*conv, method=method, **params))
            return build

        return [Impl(f"{label}/{method}", name, method, builder(method), uses_jax=name == "jax",
                     memory=memory_probe(name, device)) for method in self.methods(be)]

    def impls(self, ctx: Context, cells: Sequence[Cell], wanted: set[str]
              ) -> tuple[list[Impl], list[str]]:
        """Rows for ``ctx.backends`` and the ``wanted`` peer keys that can run; notes on the
        others."""
        impls: list[Impl] = []
        notes: list[str] = []
        # the correlation grid's cells where the suite has them, else all its cells
        swept = [c for c in cells if c.case == "grid"] or list(cells)
        largest = max((c.size for c in swept), default=0)
        for name in ctx.backends:
            rows = self.backend_impls(name)
            if name == "dask":
                notes.append(f"{self.name}: dask run at the largest image side ({largest}) "
                             "only: its chunked graph is for images too big for one block, "
                             "and costs milliseconds of scheduling")
                for impl in rows:  # and only where the suite's own rule lets it run
                    impl.applies = partial(_dask_applies, swept=swept, largest=largest,
                                           inner=impl.applies)
            impls += rows
        if "torch" in ctx.backends and ctx.torch_cuda:
            impls += self.backend_impls("torch", "cuda")
        for peer in self.peers(ctx):
            if peer.key not in wanted:
                continue
            why = peer.unavailable(ctx)
            if why:
                notes.append(f"{self.name}: {peer.label} skipped, {why}")
            else:
                impls.append(peer.impl())
        return impls, notes


def _dask_applies(cell: Cell, swept: Sequence[Cell], largest: int,
                  inner: Callable[[Cell], str | None]) -> str | None:
    """Dask's rows run on the swept cells of the largest image side, where the suite's own
    rule (``inner``) lets them."""
    if cell not in swept or cell.size != largest:
        return f"dask: only at image side {largest}"
    return inner(cell)
