"""Issue 14's suites: multi-channel ``conv2d`` and ``pool2d`` against PyTorch and JAX.

``conv2d`` shapes (float32, valid padding unless noted): (a) N8 16→32 64² k3, (b) N8 64→64
56² k3, (c) N1 3→64 224² k7 stride 2 padding 3 (a ResNet stem), (d) N8 64 channels 64² k31
depthwise (``groups=64``), (e) N1 1→1 1024² k11, (f) N16 1→6 28² k5 (LeNet's first layer).
Peers: ``F.conv2d`` and ``lax.conv_general_dilated`` (``precision=HIGHEST``) on the same
geometry.  Targets: torch ``auto`` ≥ 0.95× ``F.conv2d``'s speed on every shape and ≥ 3× on (e);
JAX ``auto`` ≥ 2× ``lax.conv`` on every shape and ≥ 20× on (d); NumPy ``auto`` within 1.5× of
``F.conv2d`` on (a)–(c) and (f), within 2× on (d), ≥ 3× faster on (e).

``pool2d``: N8 64 channels 56², window 3, stride 2, padding 1, max and avg, against
``F.max_pool2d``/``F.avg_pool2d`` and ``lax.reduce_window``; targets: torch and JAX within 1.5×.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ... import conv2d, pool2d
from ..cases import Cell, Grid
from ..machine import Context
from ..peers import Peer
from ..suite import Suite
from ..targets import Row, bound, index, ratio_of

FCONV, LAXCONV = "torch F.conv2d", "jax lax.conv"
FPOOL, LAXPOOL = "torch F.*_pool2d", "jax lax.reduce_window"

# name: (N, C_in, H, W), (C_out, C_in // groups, k, k), stride, padding, groups
SHAPES: dict[str, tuple[tuple[int, ...], tuple[int, ...], int, int, int]] = {
    "a": ((8, 16, 64, 64), (32, 16, 3, 3), 1, 0, 1),
    "b": ((8, 64, 56, 56), (64, 64, 3, 3), 1, 0, 1),
    "c": ((1, 3, 224, 224), (64, 3, 7, 7), 2, 3, 1),
    "d": ((8, 64, 64, 64), (64, 1, 31, 31), 1, 0, 64),
    "e": ((1, 1, 1024, 1024), (1, 1, 11, 11), 1, 0, 1),
    "f": ((16, 1, 28, 28), (6, 1, 5, 5), 1, 0, 1),
}
QUICK = {"a": ((2, 4, 16, 16), (8, 4, 3, 3), 1, 0, 1),
         "d": ((2, 8, 16, 16), (8, 1, 7, 7), 1, 0, 8),
         "e": ((1, 1, 128, 128), (1, 1, 11, 11), 1, 0, 1)}


def _out(h: int, k: int, s: int, p: int) -> int:
    return (h + 2 * p - k) // s + 1


def _cell(name: str, spec: tuple[Any, ...]) -> Cell:
    xs, ws, s, p, g = spec
    ho = _out(xs[2], ws[2], s, p)
    flops = 2 * xs[0] * ws[0] * ws[1] * ws[2] * ws[3] * ho * ho
    return Cell("conv2d", name, xs, ws[2], "float32",
                (("groups", g), ("out", ws[0]), ("padding", p), ("stride", s)), flops)


class Conv2d(Suite):
    name = "conv2d"
    title = "Multi-channel conv2d (float32)"
    plot_file = None

    def cells(self, grid: Grid) -> list[Cell]:
        return [_cell(n, spec) for n, spec in (QUICK if grid.quick else SHAPES).items()]

    def inputs(self, cell: Cell, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        kw = cell.kwargs
        cg = cell.shape[1] // kw["groups"]
        return (rng.standard_normal(cell.shape).astype("float32"),
                rng.standard_normal((kw["out"], cg, cell.k, cell.k)).astype("float32"))

    def reference(self, cell: Cell, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        x, w = (a.astype(np.float64) for a in inputs)
        kw = cell.kwargs
        return conv2d(x, w, stride=kw["stride"], padding=kw["padding"], groups=kw["groups"],
                      method="direct")

    def call(self, x: Any, w: Any, *, method: str, **kw: Any) -> Any:
        return conv2d(x, w, stride=kw["stride"], padding=kw["padding"], groups=kw["groups"],
                      method=method)

    def methods(self, be: Any) -> tuple[str, ...]:
        return ("direct", "fft", *(("native",) if hasattr(be, "conv2d_native") else ()),
                "auto")

    def peers(self, ctx: Context) -> list[Peer]:
        return [Peer("conv2d", FCONV, _build_fconv, ("torch",)),
                Peer("lax", LAXCONV, _build_laxconv, ("jax",), uses_jax=True)]

    def targets(self, records: list[dict[str, Any]], result: dict[str, Any]) -> list[Row]:
        idx = index(records)
        cells = {c.case: c for c, _ in idx}
        rows = []
        specs = [("torch/auto", FCONV, 0.95, "abcdf"), ("torch/auto", FCONV, 3.0, "e"),
                 ("jax/auto", LAXCONV, 2.0, "abcef"), ("jax/auto", LAXCONV, 20.0, "d"),
                 ("numpy/auto", FCONV, 1 / 1.5, "abcf"), ("numpy/auto", FCONV, 0.5, "d"),
                 ("numpy/auto", FCONV, 3.0, "e")]
        for impl, peer, limit, names in specs:
            ratios = []
            for n in names:
                c = cells.get(n)
                ratio = ratio_of(idx, c, impl, peer, speedup=True)
                if ratio is not None:
                    ratios.append((f"({n}) {c.label()}", ratio, False))
            rows.append(bound(f"speed ≥ {limit:.2g}× {peer} on ({','.join(names)})", impl,
                              ratios, limit, at_most=False, what="peer ÷ xcorr"))
        return rows


class Pool2d(Suite):
    name = "pool2d"
    title = "Pooling, window 3 stride 2 padding 1 (float32)"
    plot_file = None

    def cells(self, grid: Grid) -> list[Cell]:
        shape = (2, 8, 16, 16) if grid.quick else (8, 64, 56, 56)
        return [Cell(self.name, mode, shape, 3, "float32", (("mode", mode),),
                     int(np.prod(shape)) * 9 // 4) for mode in ("max", "avg")]

    def inputs(self, cell: Cell, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return (rng.standard_normal(cell.shape).astype("float32"),)

    def reference(self, cell: Cell, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        return pool2d(inputs[0].astype(np.float64), 3, stride=2, padding=1,
                      mode=cell.kwargs["mode"], backend="numpy")

    def call(self, x: Any, *, method: str, mode: str) -> Any:
        return pool2d(x, 3, stride=2, padding=1, mode=mode)

    def methods(self, be: Any) -> tuple[str, ...]:
        return ("auto",)

    def peers(self, ctx: Context) -> list[Peer]:
        return [Peer("pool", FPOOL, _build_fpool, ("torch",)),
                Peer("reduce_window", LAXPOOL, _build_laxpool, ("jax",), uses_jax=True)]

    def targets(self, records: list[dict[str, Any]], result: dict[str, Any]) -> list[Row]:
        idx = index(records)
        rows = []
        for impl, peer in (("torch/auto", FPOOL), ("jax/auto", LAXPOOL)):
            ratios = []
            for c, label in idx:
                ratio = ratio_of(idx, c, impl, peer) if label == impl else None
                if ratio is not None:
                    ratios.append((c.label(), ratio, False))
            rows.append(bound(f"pool2d ≤ 1.5× {peer}", impl, ratios, 1.5, what="time ÷ peer"))
        return rows


CONV2D, POOL2D = Conv2d(), Pool2d()


def _build_fconv(x: np.ndarray, w: np.ndarray, **kw: Any) -> Callable[[], Any]:
    import torch
    import torch.nn.functional as F

    xt, wt = torch.from_numpy(x), torch.from_numpy(w)

    def call() -> Any:
        with torch.no_grad():
            return F.conv2d(xt, wt, stride=kw["stride"], padding=kw["padding"],
                            groups=kw["groups"])
    return call


def _build_laxconv(x: np.ndarray, w: np.ndarray, **kw: Any) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    p, s = kw["padding"], kw["stride"]

    @jax.jit
    def conv(a: Any, b: Any) -> Any:
        return lax.conv_general_dilated(a, b, (s, s), ((p, p), (p, p)),
                                        feature_group_count=kw["groups"],
                                        precision=lax.Precision.HIGHEST)

    xj, wj = jnp.asarray(x), jnp.asarray(w)
    return lambda: conv(xj, wj).block_until_ready()


def _build_fpool(x: np.ndarray, *, mode: str) -> Callable[[], Any]:
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(x)
    pool = F.max_pool2d if mode == "max" else F.avg_pool2d

    def call() -> Any:
        with torch.no_grad():
            return pool(xt, 3, 2, 1)
    return call


def _build_laxpool(x: np.ndarray, *, mode: str) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    pad = ((0, 0), (0, 0), (1, 1), (1, 1))

    @jax.jit
    def pool(a: Any) -> Any:
        if mode == "max":
            return lax.reduce_window(a, -jnp.inf, lax.max, (1, 1, 3, 3), (1, 1, 2, 2), pad)
        return lax.reduce_window(a, 0.0, lax.add, (1, 1, 3, 3), (1, 1, 2, 2), pad) / 9

    xj = jnp.asarray(x)
    return lambda: pool(xj).block_until_ready()
