"""Batch broadcasting between images and per-image kernels, written once.

An operation broadcasts ``x (..., H, W)`` against ``k (..., kh, kw)`` over their leading
dimensions.  Two pieces of shared arithmetic live here: how such a broadcast maps onto one
grouped convolution (what ``F.conv2d``/``lax.conv`` can run natively), and the adjoint of
broadcasting (summing a gradient back to an operand's shape).
"""

from __future__ import annotations

from math import prod
from typing import Any, NamedTuple


class GroupPlan(NamedTuple):
    """``x`` as ``(n, g, H, W)``, ``k`` as ``(g * m, 1, kh, kw)``, ``groups = g``."""

    n: int
    g: int
    m: int
    batch: tuple[int, ...]  # the broadcast batch shape the output is reshaped to


def broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """``np.broadcast_shapes(a, b)`` in plain Python (torch.compile's Dynamo on torch 2.9
    cannot trace NumPy's); ``ValueError`` where they do not broadcast."""
    n = max(len(a), len(b))
    out = []
    for p, q in zip((1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b),
                    strict=True):
        if p != q and 1 not in (p, q):
            raise ValueError(f"shapes {tuple(a)} and {tuple(b)} do not broadcast")
        out.append(q if p == 1 else p)
    return tuple(out)


def group_plan(x_lead: tuple[int, ...], k_lead: tuple[int, ...]) -> GroupPlan | None:
    """How a broadcast batch maps onto one grouped convolution, or None if it does not.

    Every batch dimension of size > 1 is of one of three kinds: only ``x`` has it (images
    sharing a kernel: the convolution's batch ``n``), both have it (one kernel per image: its
    groups ``g``), or only ``k`` has it (several kernels per image: ``m`` outputs per group).
    A single grouped convolution covers the broadcast when those kinds come in that order;
    e.g. ``x (N, C, H, W)`` with ``k (C, kh, kw)`` is ``n=N, g=C, m=1`` and ``x (H, W)`` with
    ``k (T, kh, kw)`` is ``n=1, g=1, m=T``.  Reshaping ``x`` and ``k`` to the plan's shapes
    never copies them.
    """
    nd = max(len(x_lead), len(k_lead))
    xs = (1,) * (nd - len(x_lead)) + tuple(x_lead)
    ks = (1,) * (nd - len(k_lead)) + tuple(k_lead)
    order = {"n": 0, "g": 1, "m": 2}
    sizes = {"n": 1, "g": 1, "m": 1}
    last = 0
    for a, b in zip(xs, ks, strict=True):
        if a == 1 and b == 1:
            continue
        kind = "g" if a == b else "n" if b == 1 else "m"
        if order[kind] < last:
            return None
        last = order[kind]
        sizes[kind] *= max(a, b)
    batch = tuple(max(a, b) for a, b in zip(xs, ks, strict=True))
    return GroupPlan(sizes["n"], sizes["g"], sizes["m"], batch)


def unbroadcast(xp: Any, g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` over the dimensions that broadcasting added to an operand of ``shape``."""
    extra = g.ndim - len(shape)
    if extra:
        g = xp.sum(g, axis=tuple(range(extra)))
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if ones:
        g = xp.sum(g, axis=ones, keepdims=True)
    return g


def batch_size(x_lead: tuple[int, ...], k_lead: tuple[int, ...]) -> int:
    """Number of (image, kernel) pairs in the broadcast batch."""
    nd = max(len(x_lead), len(k_lead))
    xs = (1,) * (nd - len(x_lead)) + tuple(x_lead)
    ks = (1,) * (nd - len(k_lead)) + tuple(k_lead)
    return prod(max(a, b) for a, b in zip(xs, ks, strict=True))


def batch_index(x_lead: tuple[int, ...], k_lead: tuple[int, ...]
                ) -> tuple[tuple[int, ...], Any, Any]:
    """Broadcast batch shape, and for each of its (flattened) elements the flat index of its
    image in ``x``'s batch and of its kernel in ``k``'s: int64 NumPy arrays, so kernels loop
    over pairs without materialising the broadcast operands."""
    import numpy as np

    lead = broadcast_shapes(tuple(x_lead), tuple(k_lead))
    xi = np.broadcast_to(np.arange(prod(x_lead), dtype=np.int64).reshape(x_lead), lead)
    ki = np.broadcast_to(np.arange(prod(k_lead), dtype=np.int64).reshape(k_lead), lead)
    return tuple(lead), xi.ravel(), ki.ravel()
