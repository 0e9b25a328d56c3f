"""The NumPy backend's spinning workers (``xcorr._spin``): hand-off, sleep and wake-up,
errors, long shares, concurrent callers, fork, and the switch that turns them off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from xcorr import _numba, corr2d, reference

pytestmark = pytest.mark.skipif(_numba.kernel() is None,
                                reason="numba: not installed (the 'fast' extra), or "
                                "XCORR_DISABLE_NUMBA=1")
if _numba.kernel() is not None:
    from xcorr import _spin
    from xcorr.backends import _numpy as be
needs_posix = pytest.mark.skipif(sys.platform == "win32",
                                 reason="Windows: no sched_yield, the executor serves")


def _recorder() -> tuple[dict[int, int], object]:
    seen: dict[int, int] = {}

    def share(first: int, last: int) -> None:
        seen[first] = threading.get_ident()
    return seen, share


@needs_posix
def test_each_share_runs_once_and_share_zero_on_the_caller():
    seen, share = _recorder()
    assert _spin.run(share, (), [0, 1, 2, 3])
    assert sorted(seen) == [0, 1, 2]
    assert seen[0] == threading.get_ident()
    assert len({seen[1], seen[2], seen[0]}) == 3  # two workers of their own


@needs_posix
def test_a_sleeping_worker_is_woken_by_the_next_post():
    worker = _spin._Worker(steps=1, settle=1)  # spins one step, then sleeps
    for rounds in range(5):
        deadline = time.monotonic() + 5
        while worker.state[0] != _spin.SLEEPING:  # wait until it has gone to sleep
            assert time.monotonic() < deadline, "the worker never went to sleep"
            time.sleep(0.001)
        out: list[int] = []
        worker.post(out.append, (rounds,))
        assert worker.wait(steps=10)
        assert out == [rounds]


@needs_posix
def test_a_long_share_is_awaited_past_the_spin():
    worker = _spin._Worker(steps=1000, settle=1)
    out: list[str] = []

    def slow() -> None:
        time.sleep(0.05)
        out.append("done")
    worker.post(slow, ())
    assert worker.wait(steps=1)  # gives up spinning at once, then polls
    assert out == ["done"]


@needs_posix
def test_an_error_in_a_worker_share_reaches_the_caller_and_the_pool_goes_on():
    def share(first: int, last: int) -> None:
        if first == 1:
            raise ZeroDivisionError("share 1")

    with pytest.raises(ZeroDivisionError, match="share 1"):
        _spin.run(share, (), [0, 1, 2])
    seen, ok = _recorder()
    assert _spin.run(ok, (), [0, 1, 2])
    assert sorted(seen) == [0, 1]


@needs_posix
def test_an_error_on_the_caller_waits_for_the_workers_first():
    done = threading.Event()

    def share(first: int, last: int) -> None:
        if first == 0:
            raise KeyError("caller")
        time.sleep(0.02)
        done.set()

    with pytest.raises(KeyError):
        _spin.run(share, (), [0, 1, 2])
    assert done.is_set()  # the worker's share had ended when the error was raised


@needs_posix
def test_a_second_caller_is_refused_while_the_pool_is_busy():
    inside, release = threading.Event(), threading.Event()
    answers: list[bool] = []

    def share(first: int, last: int) -> None:
        if first == 0:
            inside.set()
            release.wait(5)

    t = threading.Thread(target=lambda: answers.append(_spin.run(share, (), [0, 1, 2])))
    t.start()
    assert inside.wait(5)
    assert _spin.run(lambda first, last: None, (), [0, 1, 2]) is False  # ran nothing
    release.set()
    t.join(5)
    assert answers == [True]


def test_threads_calling_at_once_get_the_bits_of_one_call():
    # A large direct call goes to the workers; callers that find them busy take the
    # executor: every result is the single-threaded one.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 310), dtype=np.float32)
    ks = [rng.standard_normal((7, 7), dtype=np.float32) for _ in range(6)]
    assert x.size * 49 * 4 >= be._parallel_min_tap_bytes()
    expected = [reference.corr2d(x.astype(np.float64), k.astype(np.float64)) for k in ks]
    serial = [corr2d(x, k, method="direct") for k in ks]
    results: dict[int, list[np.ndarray]] = {}

    def work(i: int) -> None:
        results[i] = [corr2d(x, ks[i], method="direct") for _ in range(20)]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(6):
        np.testing.assert_allclose(serial[i], expected[i], rtol=1e-4, atol=1e-4)
        for r in results[i]:
            np.testing.assert_array_equal(r, serial[i])


_CHILD = """
import os, sys, threading
import numpy as np
from xcorr import corr2d
from xcorr.backends import _numpy as be
be._thread_count = lambda: 2
x = np.random.default_rng(0).standard_normal((400, 400), dtype=np.float32)
k = np.ones((7, 7), np.float32)
first = corr2d(x, k, method="direct")
names = sorted(t.name for t in threading.enumerate())
{body}
"""


def _run(body: str, **env: str) -> str:
    code = textwrap.dedent(_CHILD).format(body=textwrap.dedent(body))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


@needs_posix
def test_a_forked_child_starts_workers_of_its_own():
    out = _run("""
        print("spin" if "xcorr-spin" in names else "none")
        pid = os.fork()
        if pid == 0:  # the parent's workers did not survive the fork
            again = corr2d(x, k, method="direct")
            os._exit(0 if np.array_equal(again, first) else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    assert out.split() == ["spin", "0"]


def test_xcorr_spin_us_0_turns_the_workers_off():
    out = _run("""
        print("spin" if "xcorr-spin" in names else "none", be._parallel_min_tap_bytes())
        print(np.array_equal(first, corr2d(x, k, method="direct")))
    """, XCORR_SPIN_US="0")
    assert out.split() == ["none", str(be._PARALLEL_MIN_TAP_BYTES_ASLEEP), "True"]


@pytest.mark.parametrize("value", ["fast", "-5", "nan", "inf"])
def test_a_bad_xcorr_spin_us_warns_and_keeps_the_default(monkeypatch, value):
    monkeypatch.setenv("XCORR_SPIN_US", value)
    with pytest.warns(RuntimeWarning, match="XCORR_SPIN_US=.* using 500"):  # (inf: an
        # OverflowError in every parallel call)
        assert _spin._spin_seconds() == pytest.approx(500e-6)
    monkeypatch.setenv("XCORR_SPIN_US", "80")
    assert _spin._spin_seconds() == pytest.approx(80e-6)


def _slow_share(log: list[str], first: int, last: int) -> None:
    time.sleep(0.05 if first else 0)
    log.append(f"share {first}")


@needs_posix
def test_an_interrupt_while_waiting_waits_for_the_shares_then_raises(monkeypatch):
    # A Ctrl-C in the wait for a slower worker returned at once: the share went on writing
    # into the output after run() had returned, and the next call's job went to a busy
    # worker (its share never ran, then every call hung).
    real = _spin._Worker.wait
    calls = {"n": 0}

    def interrupted(self, steps):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(self, steps)
    monkeypatch.setattr(_spin._Worker, "wait", interrupted)
    log: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        _spin.run(_slow_share, (log,), [0, 1, 2])
    assert sorted(log) == ["share 0", "share 1"]  # ended before the interrupt was raised
    monkeypatch.setattr(_spin._Worker, "wait", real)
    log.clear()
    assert _spin.run(_slow_share, (log,), [0, 1, 2])
    assert sorted(log) == ["share 0", "share 1"]


@needs_posix
def test_an_interrupt_between_posts_waits_for_the_posted_shares(monkeypatch):
    real = _spin._Worker.post
    posts = {"n": 0}

    def interrupted(self, fn, args):
        posts["n"] += 1
        if posts["n"] == 2:
            raise KeyboardInterrupt
        real(self, fn, args)
    monkeypatch.setattr(_spin._Worker, "post", interrupted)
    log: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        _spin.run(_slow_share, (log,), [0, 1, 2, 3])
    assert log == ["share 1"]  # the one posted share ended first; the caller's never began
    monkeypatch.setattr(_spin._Worker, "post", real)
    log.clear()
    assert _spin.run(_slow_share, (log,), [0, 1, 2, 3])
    assert sorted(log) == ["share 0", "share 1", "share 2"]


@needs_posix
def test_one_set_of_workers_serves_every_share_count():
    pool = _spin._the_pool()
    before = len(pool.workers)
    for n in (2, 3, 4):
        seen, share = _recorder()
        assert _spin.run(share, (), list(range(n + 1)))
        assert sorted(seen) == list(range(n))
    assert len(pool.workers) == max(before, 3)  # not 1 + 2 + 3 threads


@needs_posix
def test_a_busy_pool_leaves_small_problems_to_the_calling_thread(monkeypatch):
    # Below the executor's threshold, waking its threads costs more than it saves (2-4 user
    # threads calling at once were 20-30% slower): the caller computes every share.
    x = np.random.default_rng(1).standard_normal((256, 256), dtype=np.float32)
    k = np.ones((7, 7), np.float32)
    taps = 250 * 250 * 49 * 4
    assert be._parallel_min_tap_bytes() <= taps < be._PARALLEL_MIN_TAP_BYTES_ASLEEP
    want = corr2d(x, k, method="direct")

    def no_executor(workers):
        raise AssertionError("the executor was used")
    monkeypatch.setattr(be, "_pool", no_executor)
    monkeypatch.setattr(be, "_thread_count", lambda: 2)
    pool = _spin._the_pool()
    with pool.lock:  # another thread has the spinning workers
        got = corr2d(x, k, method="direct")
    np.testing.assert_array_equal(got, want)


@needs_posix
def test_a_fork_while_another_thread_holds_a_pool_lock_does_not_hang_the_child():
    out = _run("""
        from xcorr import _spin
        held = [_spin._pool_lock, be._pools_lock]
        for lock in held:
            lock.acquire()  # as a thread starting the workers would, at the fork
        pid = os.fork()
        if pid == 0:
            import signal
            signal.alarm(20)  # a hang fails the test instead of the suite
            be._PARALLEL_MIN_TAP_BYTES = be._PARALLEL_MIN_TAP_BYTES_ASLEEP = 1
            again = corr2d(x, k, method="direct")
            be._pool(1).submit(int).result()
            os._exit(0 if np.array_equal(again, first) else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    assert out.split() == ["0"]
