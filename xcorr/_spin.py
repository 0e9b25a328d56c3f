"""Spinning workers for the NumPy backend's compiled loops (the ``fast`` extra: Numba).

``run(loop, args, bounds)`` calls ``loop(*args, bounds[s], bounds[s + 1])`` for every share
``s``: share 0 on the calling thread, the others on worker threads that, after a job, wait
for the next one by spinning for ``SPIN_SECONDS`` before they go to sleep.  It serves only
loops compiled with ``nogil=True`` (``xcorr._numba``'s direct loops, ``xcorr._numba_ncc``'s
passes); Python-level shares keep the backend's ``ThreadPoolExecutor``.

Why: a sleeping thread is expensive to wake on the project's machines (KVM guests with
``haltpoll`` at ``guest_halt_poll_ns=0``: every idle vCPU halts).  Handing a share to the
executor and waiting for its future took 76 µs a call (median of 2000 back-to-back calls of
an empty loop; 10-14 µs when the other core was busy, so not asleep), so the direct loop went
to two threads only from ~24 MB of taps and a 256² 7×7 float32 call took 109 µs on one
thread, where ``cv2.filter2D``, whose pool spins, took 107 µs on two.  With these workers the
hand-off costs ~8 µs, the direct loop goes to two threads from ~3 MB of taps, and that call
takes 71 µs.

The protocol keeps both threads off the GIL's slow path (a thread that finds the GIL taken
sleeps on a condition variable: another wake-up):

- a worker spins in compiled code (GIL released) on its ``state`` word; seeing ``POSTED`` it
  waits ``_SETTLE_SECONDS`` more, time for the poster to enter its own share (and release
  the GIL) before the worker takes the GIL to call its loop.  128² 7×7 float32 on two
  threads took 52.5 µs with 0.5 µs of it (the worker found the GIL taken and slept), 33-35
  µs with 1-3 µs, against 36 µs on one thread;
- the poster waits for the workers in compiled code too, on their ``done`` words, which a
  worker sets only after it has released the GIL again; past ``_WAIT_SECONDS`` it sleeps
  ``_POLL_SECONDS`` between checks instead (a long share).
- a worker that has spun ``SPIN_SECONDS`` without a job moves ``state`` from ``SPINNING`` to
  ``SLEEPING`` (compare-and-swap, so a job posted meanwhile is not lost) and blocks on an
  event, which the next poster sets.

Each spin step checks its word, then calls ``sched_yield``: a runnable thread on that core
(``scipy.fft``'s workers, torch's, another process's) gets it at once instead of waiting for
the spin to end.  ``XCORR_SPIN_US`` sets the spin in µs (read when the first parallel call
loads this module; ``0``: no spinning workers, the executor serves every share, and the
direct loop goes to two threads from ~24 MB of taps as before).  One caller at a time uses
the workers: ``run`` returns False, having run nothing, when another thread holds them,
and the caller takes another path.  ``run`` returns (or raises) only once every share has
ended: a Ctrl-C during the wait is raised after it, so that no share writes into an output
the caller already has, and no worker is handed a second job.  A forked child starts its
own workers.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

_SPIN_DEFAULT_US = 500.0


def _spin_seconds() -> float:
    """``XCORR_SPIN_US`` in seconds; a value that is not a finite number >= 0 warns and is
    ignored."""
    raw = os.environ.get("XCORR_SPIN_US", "").strip()
    try:
        us = float(raw) if raw else _SPIN_DEFAULT_US
        if not 0 <= us < math.inf:
            raise ValueError
    except ValueError:
        warnings.warn(f"XCORR_SPIN_US={raw!r} is not a finite number of microseconds >= 0; using "
                      f"{_SPIN_DEFAULT_US:g} (0 turns the spinning workers off)",
                      RuntimeWarning, stacklevel=2)
        us = _SPIN_DEFAULT_US
    return us * 1e-6


SPIN_SECONDS = _spin_seconds()
_WAIT_SECONDS = 0.002  # the poster's own spin on a worker's done word, then it polls
_POLL_SECONDS = 1e-4  # then it checks at this interval, asleep in between
_SETTLE_SECONDS = 2e-6  # see the module docstring (~220 x86 pauses on the project machine)

SPINNING, POSTED, RUNNING, SLEEPING = 0, 1, 2, 3

# -- primitives the compiled code needs and Numba lacks ---------------------------------------


@intrinsic
def _load(typingctx: Any, word: Any) -> Any:
    """``word[0]``, an acquire load (a plain load could be hoisted out of a spin loop)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.load_atomic(ary.data, "acquire", 8)
    return types.int64(word), codegen


@intrinsic
def _store(typingctx: Any, word: Any, value: Any) -> Any:
    """``word[0] = value``, a release store (what came before is seen before it)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        builder.store_atomic(args[1], ary.data, "release", 8)
        return context.get_dummy_value()
    return types.void(word, types.int64), codegen


@intrinsic
def _swap(typingctx: Any, word: Any, old: Any, new: Any) -> Any:
    """Compare-and-swap ``word[0]`` from ``old`` to ``new``; whether it did."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        pair = builder.cmpxchg(ary.data, args[1], args[2], "acq_rel", "acquire")
        return builder.extract_value(pair, 1)
    return types.boolean(word, types.int64, types.int64), codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def _call_void(builder: Any, name: str, returns: Any) -> None:
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(returns, []), name)
    builder.call(fn, [])


@intrinsic
def _yield(typingctx: Any) -> Any:
    """``sched_yield()``: the core to any runnable thread, else straight back."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        _call_void(builder, "sched_yield", ir.IntType(32))
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _relax(typingctx: Any) -> Any:
    """A short wait that the compiler keeps: x86's ``pause`` (10-140 cycles, by CPU), else
    ``sched_yield``."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        if _X86:
            _call_void(builder, "llvm.x86.sse2.pause", ir.VoidType())
        else:
            _call_void(builder, "sched_yield", ir.IntType(32))
        return context.get_dummy_value()
    return types.void(), codegen


jit = numba.njit(cache=True, nogil=True)


@jit
def _await_job(state, done, finished, steps, settle):  # noqa: ANN001, ANN202
    # A worker's wait: report job ``finished`` done (if > 0; RUNNING -> SPINNING first, so
    # that the poster of the next job finds it spinning), then spin until a job is posted
    # (-> RUNNING, returns POSTED) or ``steps`` pass (-> SLEEPING, returns SLEEPING)
    if finished > 0:
        _swap(state, RUNNING, SPINNING)
        _store(done, finished)
    i = 0
    while True:
        if _load(state) == POSTED:
            for _ in range(settle):
                _relax()
            _store(state, RUNNING)
            return POSTED
        i += 1
        if i >= steps and _swap(state, SPINNING, SLEEPING):
            return SLEEPING
        _yield()


@jit
def _await_done(done, job, steps):  # noqa: ANN001, ANN202
    # The poster's wait for job number ``job``: whether it was done within ``steps``
    i = 0
    while _load(done) < job:
        i += 1
        if i >= steps:
            return False
        _yield()
    return True


@jit
def _post(state):  # noqa: ANN001, ANN202
    # SPINNING -> POSTED; False where the worker sleeps (then POSTED, and the caller wakes it)
    if _swap(state, SPINNING, POSTED):
        return True
    _store(state, POSTED)
    return False


@jit
def _relaxes(n):  # noqa: ANN001, ANN202
    for _ in range(n):
        _relax()
    return n


# -- workers ----------------------------------------------------------------------------------


class _Worker:
    """One spinning thread and its words (``state``; ``done``: the last job number done).

    A job is posted only to an idle worker (``done == posted``: ``run`` waits for every job
    it posted, whatever interrupts it), so a worker never holds two.
    """

    def __init__(self, steps: int, settle: int) -> None:
        self.state = np.zeros(1, np.int64)
        self.done = np.zeros(1, np.int64)
        self.posted = 0  # the number of the last job posted
        self.wake = threading.Event()  # set by a poster that found the worker asleep
        self.job: tuple[Callable[..., None], tuple[Any, ...]] | None = None
        self.error: BaseException | None = None
        self.steps, self.settle = steps, settle
        self.thread = threading.Thread(target=self._serve, name="xcorr-spin", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        finished = 0
        while True:
            got = _await_job(self.state, self.done, finished, self.steps, self.settle)
            if got == SLEEPING:
                self._sleep()
            job, self.job = self.job, None
            try:
                fn, args = job  # type: ignore[misc]
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the poster
                self.error = exc
            finished = self.posted

    def _sleep(self) -> None:
        while True:  # (a wake-up without a job, were there one, goes back to sleep)
            self.wake.wait()
            self.wake.clear()
            if int(self.state[0]) == POSTED:  # stored before wake was set
                self.state[0] = RUNNING
                return

    def idle(self) -> bool:
        return int(self.done[0]) == self.posted and self.thread.is_alive()

    def post(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.job, self.error = (fn, args), None
        self.posted += 1
        if not _post(self.state):
            self.wake.set()

    def wait(self, steps: int) -> bool:
        """Wait for the last job posted: spinning up to ``steps``, then polling; False if
        the thread is gone (it never should be: its loop catches everything)."""
        if _await_done(self.done, self.posted, steps):
            return True
        while not _await_done(self.done, self.posted, 1):  # a long share
            if not self.thread.is_alive():
                return False
            time.sleep(_POLL_SECONDS)
        return True


def _join(workers: Sequence[_Worker], steps: int
          ) -> tuple[BaseException | None, list[BaseException]]:
    """Wait for every job posted to ``workers``, whatever is raised meanwhile (a Ctrl-C while
    a share still writes into the output would hand the caller a result being written, and
    the worker a second job): that interruption, deferred, and the workers' errors."""
    deferred: BaseException | None = None
    errors: list[BaseException] = []
    for worker in workers:
        while True:
            try:
                if not worker.wait(steps):
                    errors.append(RuntimeError("an xcorr spinning worker thread died"))
                break
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                deferred = deferred or exc
        if worker.error is not None:
            errors.append(worker.error)
            worker.error = None
    return deferred, errors


class _Pool:
    """The process's workers (as many as the largest call has needed) and the lock that
    gives them to one caller at a time."""

    def __init__(self) -> None:
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()

    def take(self, n: int, steps: int, settle: int) -> list[_Worker] | None:
        """``n`` idle workers (started as needed), or None; called holding ``lock``."""
        while len(self.workers) < n:
            self.workers.append(_Worker(steps, settle))
        workers = self.workers[:n]
        return workers if all(w.idle() for w in workers) else None


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _reset_after_fork() -> None:
    # The parent's threads did not survive the fork, and a lock held by one of them then
    # would never be released in the child.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def enabled() -> bool:
    """Whether ``run`` may serve shares (spinning on, a POSIX ``sched_yield``)."""
    return SPIN_SECONDS > 0 and sys.platform != "win32"


def run(loop: Callable[..., None], args: tuple[Any, ...], bounds: Sequence[int]) -> bool:
    """``loop(*args, bounds[s], bounds[s + 1])`` for every share ``s`` (``loop`` compiled
    with ``nogil=True``), share 0 on this thread; False, having run nothing, where another
    thread is using the workers (or spinning is off).  Returns, or raises, only once every
    share has ended."""
    if not enabled():
        return False
    steps, settle, wait_steps = _calibration()
    pool = _the_pool()
    if not pool.lock.acquire(blocking=False):
        return False
    try:
        workers = pool.take(len(bounds) - 2, steps, settle)
        if workers is None:
            return False
        posted: list[_Worker] = []
        try:
            for worker, s in zip(workers, range(1, len(bounds) - 1), strict=True):
                worker.post(loop, (*args, bounds[s], bounds[s + 1]))
                posted.append(worker)
            loop(*args, bounds[0], bounds[1])
        except BaseException:
            _join(posted, wait_steps)  # the caller's own error first; the workers' dropped
            raise
        deferred, errors = _join(posted, wait_steps)
        if deferred is not None:
            raise deferred
        if errors:
            raise errors[0]
        return True
    finally:
        pool.lock.release()


def _the_pool() -> _Pool:
    global _pool
    pool = _pool
    if pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = _Pool()
            pool = _pool
    return pool


@functools.cache
def _calibration() -> tuple[int, int, int]:
    """(spin steps after a job, settle relaxes, the poster's spin steps): from the least
    disturbed of a few timings, so that a busy moment does not shorten the spin for good."""
    per_step = min(_step_seconds() for _ in range(5))
    per_relax = min(_relax_seconds() for _ in range(5))
    cap = 2**62
    return (min(cap, max(1, round(SPIN_SECONDS / per_step))),
            min(cap, max(1, round(_SETTLE_SECONDS / per_relax))),
            min(cap, max(1, round(_WAIT_SECONDS / per_step))))


def _step_seconds() -> float:
    """Seconds one spin step (a check and a ``sched_yield``) takes here."""
    word = np.zeros(1, np.int64)
    _await_done(word, 1, 10)  # compile (or load) first
    n = 1_000
    t0 = time.perf_counter()
    _await_done(word, 1, n)
    return max((time.perf_counter() - t0) / n, 1e-9)


def _relax_seconds() -> float:
    """Seconds one ``_relax`` takes here."""
    _relaxes(10)
    n = 1_000
    t0 = time.perf_counter()
    _relaxes(n)
    return max((time.perf_counter() - t0) / n, 1e-10)
