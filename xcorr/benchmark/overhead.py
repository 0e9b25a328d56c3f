"""Fixed costs on the seed's 6×8 edge image: dispatch overhead and the training loop.

On an image this small the work is nothing, so the time is what xcorr adds: the public
``corr2d`` against the backend kernel it ends up calling, and ``learn_kernel``'s ten epochs.
The expected values come from the seed's own double loop (exact here: the image holds 0 and 1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _dispatch, _methods, corr2d
from .._interop import host_copy
from ..reference import corr2d as seed_loop
from ..train import learn_kernel
from .timing import Options, sync, time_call, verify

EPOCHS = 10
EDGE_KERNEL = np.array([[1.0, -1.0]], dtype=np.float32)


def edge_image() -> np.ndarray:
    """The seed's 6×8 float32 image: ones, with columns 2..5 zero."""
    x = np.ones((6, 8), dtype=np.float32)
    x[:, 2:6] = 0
    return x


def run_dispatch(names: Sequence[str], opts: Options) -> list[dict[str, Any]]:
    """``corr2d`` on the seed's 6×8 image against the backend kernel it ends up calling."""
    x = edge_image()
    ref = seed_loop(x.astype(np.float64), EDGE_KERNEL.astype(np.float64))
    out = []
    for name in names:
        be = _dispatch.load(name)
        wait = sync(name)
        rec: dict[str, Any] = {"backend": name, "status": "ok", "reason": None}
        try:
            xb, kb = be.promote(be.asarray(x), be.asarray(EDGE_KERNEL))
            method = _methods.choose(be.costs(), tuple(xb.shape), tuple(kb.shape),
                                     xb.dtype.itemsize, False)
            for what, fn in _dispatch_calls(be, wait, xb, kb, method).items():
                t0 = time.perf_counter()
                got = fn()
                first = time.perf_counter() - t0
                ok, _, why = verify(host_copy(got), ref, "float32")
                if not ok:
                    raise ValueError(f"{what}: wrong result: {why}")
                rec[what] = time_call(fn, first, opts)
            rec["method"] = method
            rec["ratio"] = rec["api"]["median_s"] / rec["kernel"]["median_s"]
        except Exception as exc:
            rec.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:300])
        out.append(rec)
    return out


def _dispatch_calls(be: Any, wait: Callable[[Any], Any], xb: Any, kb: Any, method: str
                    ) -> dict[str, Callable[[], Any]]:
    """The public call and the backend kernel it ends in, on the same prepared arrays."""
    return {"api": lambda: wait(corr2d(xb, kb)),
            "kernel": lambda: wait(be.corr2d_valid(xb, kb, method))}


def run_training(names: Sequence[str], opts: Options) -> list[dict[str, Any]]:
    """The seed's loop (10 epochs, 1×2 kernel, lr 0.03) per backend via ``learn_kernel``.

    Every backend must follow NumPy's trajectory (NumPy runs first as the truth, and is
    reported only when it was asked for).
    """
    x = edge_image()
    y = seed_loop(x, EDGE_KERNEL)

    def once(name: str) -> np.ndarray:
        res = learn_kernel(x, y, (1, 2), backend=name, lr=3e-2, epochs=EPOCHS, seed=0)
        return host_copy(res.kernel)  # waits for the device

    out = []
    truth = None
    for name in ("numpy", *[n for n in names if n != "numpy"]):
        rec: dict[str, Any] = {"backend": name, "epochs": EPOCHS, "status": "ok",
                               "reason": None}
        try:
            t0 = time.perf_counter()
            kernel = once(name)
            rec["first_call_s"] = time.perf_counter() - t0
            if truth is None:
                truth = kernel.astype(np.float64)
            ok, err, why = verify(kernel, truth, "float32")
            rec.update(verified=ok, rel_err=err, kernel=kernel.tolist())
            if not ok:
                rec.update(status="failed", reason=f"differs from NumPy's trajectory: {why}")
            else:
                rec.update(time_call(lambda name=name: once(name), rec["first_call_s"], opts))
        except Exception as exc:
            rec.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:300])
        if name in names:
            out.append(rec)
    return out
