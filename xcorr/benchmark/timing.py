"""The clock: check a result, then time it honestly; one implementation on one cell at a time.

- Every implementation's first call is timed on its own (JAX compiles then) and its result is
  checked against the suite's float64 reference *before* any timing: a wrong value or dtype
  is recorded as a failure and never timed.
- One more untimed warm-up for cheap calls, then ``timeit`` repeats (several loops per repeat
  for sub-millisecond calls); we report the median and the interquartile range. The repeats
  of a cell's implementations are interleaved (one of each in turn, in an order shuffled
  from round to round), so a change in the machine's load falls on all of them alike and
  the ratios between them stay fair.
- Each timed call ends with its framework's synchronisation (``block_until_ready``,
  ``torch.cuda.synchronize``, the CuPy stream, Dask's ``compute``), so asynchronous dispatch
  cannot stop the clock early.
- A cell whose extrapolated time (from the same implementation at the previous size) exceeds
  ``--max-call`` seconds is skipped with that estimate, so the full run stays short.

Peak memory per call is measured on one extra call: ``tracemalloc``'s peak, which sees
NumPy-allocated buffers, and on CUDA torch's ``max_memory_allocated`` above what the inputs
hold. Torch on CPU, XLA and CuPy allocate where neither can see: ``None`` there.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import timeit
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from .._interop import host_copy
from .cases import Cell

Builder = Callable[..., Callable[[], Any]]
"""``build(*arrays, **cell.params)`` returns the zero-argument, synchronised call to time."""

Check = Callable[[Any, np.ndarray, Cell], "tuple[bool, float | None, str | None]"]


@dataclass
class Impl:
    """One row of the benchmark: how to build a synchronised zero-argument call for a cell.

    ``build(*arrays, **cell.params)`` converts the cell's NumPy inputs (outside the clock) and
    returns the call to time, which must wait for its result (see :func:`sync`).

    Examples
    --------
    >>> import numpy as np
    >>> from xcorr.benchmark import Impl
    >>> twice = Impl("numpy 2x", "peer", None, lambda a: (lambda: a * 2))
    >>> twice.build(np.ones(3))().tolist()
    [2.0, 2.0, 2.0]
    """

    label: str
    group: str  # a backend name, or "peer"
    method: str | None
    build: Builder
    uses_jax: bool = False  # float64 cells run with JAX's x64 on
    # runs the call once and returns its peak memory in bytes, where that is measurable
    memory: Callable[[Callable[[], Any]], int] | None = None
    applies: Callable[[Cell], str | None] = lambda cell: None  # a reason to skip, or None


@dataclass
class Options:
    """How long to time: ``target`` seconds per cell, within the repeat bounds.

    Examples
    --------
    >>> from xcorr.benchmark import Options
    >>> Options(threads=1, max_call=1.0, target=0.05, min_repeat=3, max_repeat=10,
    ...         min_loop=1e-3).target
    0.05
    """

    threads: int
    max_call: float
    target: float  # seconds of timing per case
    min_repeat: int
    max_repeat: int
    min_loop: float  # seconds per timeit loop group, for tiny calls


def fmt_time(s: float | None) -> str:
    """``"1.23 ms"``; ``"—"`` for a missing time.

    Examples
    --------
    >>> fmt_time(0.00123), fmt_time(2.5e-6), fmt_time(None)
    ('1.23 ms', '2.5 µs', '—')
    """
    if s is None or not math.isfinite(s):
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def sync(name: str) -> Callable[[Any], Any]:
    """The function that waits for a result of backend ``name`` (and returns it)."""
    if name == "jax":
        import jax

        return jax.block_until_ready
    if name == "torch":
        import torch

        def wait(r: Any) -> Any:
            if r.is_cuda:
                torch.cuda.synchronize(r.device)
            return r

        return wait
    if name == "cupy":
        import cupy

        def wait_stream(r: Any) -> Any:
            cupy.cuda.get_current_stream().synchronize()
            return r

        return wait_stream
    if name == "dask":
        return lambda r: r.compute()  # lazy: the work happens here
    return lambda r: r


@contextlib.contextmanager
def precision(dtype: str, uses_jax: bool) -> Iterator[None]:
    """JAX float64 needs x64; switch it on for this block only (the user's setting elsewhere)."""
    if uses_jax and dtype == "float64":
        from .._compat import jax_x64

        with jax_x64(True):
            yield
    else:
        yield


def verify(got: Any, ref: np.ndarray, dtype: str) -> tuple[bool, float | None, str | None]:
    """Check a result against the float64 reference: shape, dtype, and a normwise error.

    The bound ``1e4 · eps · max|ref|`` admits FFT round-off (which scales with the norms of
    the whole image, not the local window) and rejects any real mistake (a flipped kernel or
    an off-by-one window gives errors of the order of ``max|ref|``).

    Parameters
    ----------
    got : array_like
        The result (a host array).
    ref : numpy.ndarray
        The float64 reference.
    dtype : str
        The dtype ``got`` must have.

    Returns
    -------
    (ok, rel_err, why) : (bool, float or None, str or None)
        Whether it passed, the error relative to ``max|ref|`` (None when not comparable or
        not finite), and why it failed (None when it passed).

    Examples
    --------
    >>> ref = np.array([[1.0, 2.0]])
    >>> verify(ref.astype("float32"), ref, "float32")[0]
    True
    >>> verify(ref[:, ::-1].astype("float32"), ref, "float32")[2]
    'relative error 0.5 > 0.00119'
    """
    got = np.asarray(got)
    if got.shape != ref.shape:
        return False, None, f"shape {got.shape}, expected {ref.shape}"
    if got.dtype != np.dtype(dtype):
        return False, None, f"dtype {got.dtype}, expected {dtype}"
    scale = float(np.max(np.abs(ref))) or 1.0
    err = float(np.max(np.abs(got.astype(np.float64) - ref))) / scale
    tol = 1e4 * float(np.finfo(dtype).eps)
    if not err <= tol:  # also catches NaN (stored as None: JSON has no NaN)
        return False, err if math.isfinite(err) else None, f"relative error {err:.3g} > {tol:.3g}"
    return True, err, None


def verify_cell(got: Any, ref: np.ndarray, cell: Cell) -> tuple[bool, float | None, str | None]:
    """:func:`verify` in the cell's dtype: the default check of a suite."""
    return verify(got, ref, cell.dtype)


def host_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes that ``tracemalloc`` sees during one call (NumPy's allocator reports to it)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def cuda_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes of torch's CUDA caching allocator during one call."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    return torch.cuda.max_memory_allocated() - before


def memory_probe(name: str, device: str | None) -> Callable[[Callable[[], Any]], int] | None:
    """How to measure a backend's peak memory, or None where nothing per call is measurable."""
    if name in ("numpy", "dask"):
        return host_peak
    if name == "torch" and device == "cuda":
        return cuda_peak
    return None  # torch CPU and XLA allocate outside tracemalloc; CuPy's pool has no peak


def plan(fn: Callable[[], Any], first: float, opts: Options) -> tuple[int, int]:
    """(loops per repeat, repeats) for ``fn``, whose first call took ``first`` seconds.

    Cheap calls get one more untimed warm-up (it settles caches and allocators, and its time
    is the estimate). A call slower than ``opts.max_call`` is timed once.
    """
    steady = first
    if first < 0.25:
        t0 = time.perf_counter()
        fn()
        steady = time.perf_counter() - t0
    steady = max(steady, 1e-7)
    loops = max(1, math.ceil(opts.min_loop / steady))
    repeats = int(min(opts.max_repeat, max(opts.min_repeat if steady < 0.5 else 3,
                                           round(opts.target / (steady * loops)))))
    if steady > opts.max_call:  # slower than predicted (e.g. threads starved on a busy
        repeats = 1             # machine): one timed call keeps the run's length bounded
    return loops, repeats


def summary(times: Sequence[float], loops: int) -> dict[str, Any]:
    """Median, quartiles and raw per-call times of ``timeit`` repeats."""
    q1, med, q3 = (float(v) for v in np.percentile(times, [25, 50, 75]))
    return {"median_s": med, "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1, "repeats": len(times),
            "loops": loops, "times_s": list(times)}


def time_call(fn: Callable[[], Any], first: float, opts: Options) -> dict[str, Any]:
    """Warm up, then ``timeit`` repeats of ``fn``: per-call median, quartiles and raw times.

    Parameters
    ----------
    fn : callable
        The zero-argument call to time; it must wait for its own result.
    first : float
        Seconds its first call took (it sets the loops per repeat and the repeats).
    opts : Options
        The timing budget.

    Returns
    -------
    dict
        ``median_s``, ``q1_s``, ``q3_s``, ``iqr_s`` (seconds per call), ``repeats``,
        ``loops`` and ``times_s`` (each repeat's time per call).

    Raises
    ------
    Exception
        Whatever ``fn`` raises.

    Examples
    --------
    >>> from xcorr.benchmark import Options, time_call
    >>> opts = Options(threads=1, max_call=1.0, target=0.01, min_repeat=3, max_repeat=5,
    ...                min_loop=1e-4)
    >>> r = time_call(lambda: sum(range(100)), 1e-5, opts)
    >>> 3 <= r["repeats"] <= 5, r["q1_s"] <= r["median_s"] <= r["q3_s"]
    (True, True)
    """
    loops, repeats = plan(fn, first, opts)
    timer = timeit.Timer(fn)
    return summary([timer.timeit(loops) / loops for _ in range(repeats)], loops)


def _record(impl: Impl, cell: Cell) -> dict[str, Any]:
    return {**cell.as_record(), "impl": impl.label, "group": impl.group,
            "method": impl.method, "status": None, "reason": None, "verified": False,
            "rel_err": None, "first_call_s": None, "median_s": None, "q1_s": None,
            "q3_s": None, "iqr_s": None, "repeats": 0, "loops": 0, "times_s": [],
            "gflops": None, "peak_fraction": None, "peak_mem_bytes": None, "estimate_s": None}


@dataclass
class _Trial:
    """One implementation on one cell between its check and its last timed repeat."""

    impl: Impl
    rec: dict[str, Any]
    fn: Callable[[], Any] | None = None  # None once it is skipped or failed
    loops: int = 1
    repeats: int = 0
    times: list[float] = field(default_factory=list)

    def fail(self, exc: Exception) -> None:
        tracemalloc.stop()
        self.rec.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:300])
        self.fn = None


def _prepare(impl: Impl, cell: Cell, inputs: Sequence[np.ndarray], ref: np.ndarray,
             opts: Options, estimate: float | None, source: str | None,
             check: Check) -> _Trial:
    """Skip, or build, call once (timed apart), check, and plan the repeats."""
    trial = _Trial(impl, _record(impl, cell))
    rec = trial.rec
    reason = impl.applies(cell)
    if reason is None and estimate is not None and estimate > opts.max_call:
        reason = (f"would take ~{estimate:.2g} s per call (extrapolated from "
                  f"{source or 'the previous size'})")
        rec["estimate_s"] = estimate
    if reason is not None:
        rec.update(status="skipped", reason=reason)
        return trial
    try:
        with precision(cell.dtype, impl.uses_jax):
            fn = impl.build(*inputs, **cell.kwargs)
            t0 = time.perf_counter()
            out = fn()
            rec["first_call_s"] = time.perf_counter() - t0
            ok, err, why = check(host_copy(out), ref, cell)
            rec.update(verified=ok, rel_err=err)
            if not ok:
                rec.update(status="failed", reason=f"wrong result, not timed: {why}")
                return trial
            del out
            trial.loops, trial.repeats = plan(fn, rec["first_call_s"], opts)
            trial.fn = fn
    except Exception as exc:  # a benchmark reports a crash and goes on
        trial.fail(exc)
    return trial


def _repeat(trial: _Trial, dtype: str) -> None:
    """One timed repeat (``loops`` calls) of a prepared trial."""
    assert trial.fn is not None
    try:
        with precision(dtype, trial.impl.uses_jax):  # JAX float64 calls need x64 each time
            trial.times.append(timeit.Timer(trial.fn).timeit(trial.loops) / trial.loops)
    except Exception as exc:
        trial.fail(exc)


def _finish(trial: _Trial, cell: Cell, peaks: dict[str, float]) -> dict[str, Any]:
    """Summarise the repeats, measure the memory of one more call, derive GF/s."""
    rec = trial.rec
    if trial.fn is None:
        return rec
    rec.update(summary(trial.times, trial.loops))
    if trial.impl.memory is not None:
        try:
            with precision(cell.dtype, trial.impl.uses_jax):
                rec["peak_mem_bytes"] = trial.impl.memory(trial.fn)
        except Exception as exc:
            trial.fail(exc)
            return rec
    rec["status"] = "ok"
    if cell.flops:
        rec["gflops"] = cell.flops / rec["median_s"] / 1e9
        if cell.dtype in peaks:
            rec["peak_fraction"] = rec["gflops"] / peaks[cell.dtype]
    return rec


def measure(impl: Impl, cell: Cell, inputs: Sequence[np.ndarray], ref: np.ndarray,
            opts: Options, estimate: float | None, peaks: dict[str, float],
            source: str | None = None, check: Check = verify_cell) -> dict[str, Any]:
    """Verify, then time, one implementation on one cell; never raises.

    ``inputs`` are the operation's NumPy arrays (``build`` converts them outside the clock);
    ``estimate`` (seconds per call, extrapolated from ``source``) above ``opts.max_call``
    skips the cell. ``peaks`` maps a dtype to the matmul GF/s measured in this run.

    Parameters
    ----------
    impl : Impl
        What to time.
    cell : Cell
        The input configuration.
    inputs : sequence of numpy.ndarray
        The cell's inputs.
    ref : numpy.ndarray
        The float64 result ``check`` compares with, before any timing.
    opts : Options
        The timing budget.
    estimate : float or None
        Predicted seconds per call; above ``opts.max_call`` the cell is skipped.
    peaks : dict
        dtype name -> matmul GF/s, for the record's fraction of the peak.
    source : str, optional
        Where ``estimate`` comes from, for the skip message.
    check : callable
        ``check(got, ref, cell) -> (ok, rel_err, why)``; default :func:`verify` in the
        cell's dtype.

    Returns
    -------
    dict
        The record: the cell's fields, ``impl``, ``status`` (``"ok"``, ``"skipped"`` or
        ``"failed"``), ``reason``, ``verified``, ``rel_err``, ``first_call_s``, the timing
        summary of :func:`time_call`, ``gflops``, ``peak_fraction``, ``peak_mem_bytes``.
        Crashes and wrong results are recorded here, not raised.

    Examples
    --------
    >>> import numpy as np
    >>> from xcorr.benchmark import Cell, Impl, Options, measure
    >>> cell = Cell("demo", "grid", (1, 64, 64), 1, "float64")
    >>> x = np.ones((64, 64))
    >>> opts = Options(threads=1, max_call=1.0, target=0.01, min_repeat=3, max_repeat=5,
    ...                min_loop=1e-4)
    >>> good = Impl("2x", "peer", None, lambda a: (lambda: a * 2))
    >>> bad = Impl("3x", "peer", None, lambda a: (lambda: a * 3))
    >>> rec = measure(good, cell, [x], x * 2, opts, None, {})
    >>> rec["status"], rec["verified"], rec["median_s"] > 0
    ('ok', True, True)
    >>> rec = measure(bad, cell, [x], x * 2, opts, None, {})
    >>> rec["status"], rec["reason"]
    ('failed', 'wrong result, not timed: relative error 0.5 > 2.22e-12')
    """
    return measure_together([impl], cell, inputs, ref, opts, [estimate], peaks, [source],
                            check)[0]


def measure_together(impls: Sequence[Impl], cell: Cell, inputs: Sequence[np.ndarray],
                     ref: np.ndarray, opts: Options, estimates: Sequence[float | None],
                     peaks: dict[str, float], sources: Sequence[str | None],
                     check: Check = verify_cell) -> list[dict[str, Any]]:
    """:func:`measure` for several implementations of one cell, their repeats interleaved.

    Every implementation is checked (and its first call timed) before any is timed; then the
    repeats go in rounds, one of each in turn, so a change in the machine's load during the
    cell falls on all of them alike and their ratios stay fair.  Each round takes them in a
    new order (the same orders every run): after a call, torch's OpenMP threads, XLA's and
    OpenCV's workers spin for a while on every core, and a fixed order would slow the same
    implementation every round (torch's auto right after ``F.conv2d`` at 4096² k15: 110-142
    against 65-90 ms).
    """
    trials = [_prepare(impl, cell, inputs, ref, opts, est, src, check)
              for impl, est, src in zip(impls, estimates, sources, strict=True)]
    order, shuffle = list(trials), random.Random(0)
    for round_ in range(max((t.repeats for t in trials), default=0)):
        for trial in order:
            if trial.fn is not None and round_ < trial.repeats:
                _repeat(trial, cell.dtype)
        shuffle.shuffle(order)
    return [_finish(trial, cell, peaks) for trial in trials]


def run_cells(impls: Sequence[Impl], cells: Sequence[Cell],
              inputs: Callable[[Cell], tuple[np.ndarray, ...]],
              reference: Callable[[Cell, tuple[np.ndarray, ...]], np.ndarray],
              opts: Options, peaks: dict[str, float], log: TextIO,
              check: Check = verify_cell) -> list[dict[str, Any]]:
    """Every implementation on every cell, cell by cell (:func:`measure_together`).

    The estimate that skips a slow cell scales the *fastest* repeat of the same
    implementation at the previous size by the number of flops (or of input elements): the
    minimum is the least disturbed by a busy machine, and fixed per-call costs make the linear
    scaling an overestimate.
    """
    records = []
    last: dict[tuple[Any, ...], tuple[float, float, str]] = {}
    for cell in cells:
        arrays = inputs(cell)
        ref = reference(cell, arrays)
        work = float(cell.flops or math.prod(cell.shape))
        keys = [(impl.label, cell.case, cell.k, cell.dtype, cell.params) for impl in impls]
        estimates: list[float | None] = []
        sources: list[str | None] = []
        for key in keys:
            done, seconds, source = last.get(key, (0.0, 0.0, None))
            estimates.append(seconds * work / done if done else None)
            sources.append(source)
        recs = measure_together(impls, cell, arrays, ref, opts, estimates, peaks, sources,
                                check)
        size = f"{cell.size}²"
        for key, impl, rec in zip(keys, impls, recs, strict=True):
            if rec["status"] == "ok":
                fastest = min(rec["times_s"])
                last[key] = (work, fastest, f"{fmt_time(fastest)} at {size}")
            elif rec["estimate_s"] is not None:
                last[key] = (work, rec["estimate_s"], f"~{fmt_time(rec['estimate_s'])} at {size}")
            shown = fmt_time(rec["median_s"]) if rec["status"] == "ok" else rec["status"]
            print(f"  {cell.label():<24} {impl.label:<22} {shown}", file=log, flush=True)
        records += recs
    return records
