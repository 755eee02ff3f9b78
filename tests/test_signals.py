"""Ctrl-C, SIGTERM, the GIL and thread misuse.

libgearman 1.1.20 restarts poll() on EINTR with the full timeout, so pygearman waits in short
GIL-free slices and looks at signals between them. Each signal test runs a small script in a
child Python (``sys.executable``) that prints READY just before it blocks; the test signals it and
requires it to be gone within 2 s (the only timing bound here). The ``child`` fixture kills
every child still alive at teardown.
"""
from __future__ import annotations

import signal
import threading
import time
from typing import Callable, List

import pytest

from pygearman import GearmanClient, GearmanWorker
from pygearman.testing import GearmandServer

from _support.processes import PRELUDE, Child

EXIT_WITHIN = 2.0   # seconds a signalled child may take to exit

pytestmark = pytest.mark.timeout(60)

CLIENT_WAITS = PRELUDE + """\
client = pygearman.GearmanClient(sys.argv[1])
client.echo()                       # connected and answering before we say READY
print("READY", flush=True)
client.do_normal(sys.argv[2], b"wait for me")
print("RETURNED", flush=True)
"""

WORKER_RUN = PRELUDE + """\
worker = pygearman.GearmanWorker(sys.argv[1])
worker.add_function(sys.argv[2], lambda job: b"never called")
worker.echo()
print("READY", flush=True)
worker.run()
print("RETURNED", flush=True)
"""

WORKER_WORK = PRELUDE + """\
worker = pygearman.GearmanWorker(sys.argv[1])
worker.add_function(sys.argv[2], lambda job: b"never called")
worker.echo()
print("READY", flush=True)
worker.work()
print("RETURNED", flush=True)
"""

WORKER_SIGTERM = PRELUDE + """\
worker = pygearman.GearmanWorker(sys.argv[1])
worker.add_function(sys.argv[2], lambda job: b"never called")
signal.signal(signal.SIGTERM, lambda *a: worker.stop())
worker.echo()
print("READY", flush=True)
n = worker.run()
worker.close()
print("STOPPED", n, flush=True)
"""


def _exits_in_time(c: Child, sig: int) -> int:
    """Send sig; the exit status, once the child is gone (within EXIT_WITHIN, or the test fails)."""
    rc, took = c.signal_and_wait(sig, EXIT_WITHIN)
    assert took < EXIT_WITHIN, (f"child took {took:.2f} s to exit after signal {sig} (bound "
                                f"{EXIT_WITHIN} s); stdout {c.seen}")
    return rc


def _assert_interrupted(c: Child) -> None:
    rc = _exits_in_time(c, signal.SIGINT)
    err = c.stderr()
    assert rc != 0, f"exit status 0 after SIGINT; stderr:\n{err}"
    assert "KeyboardInterrupt" in err, err
    assert "RETURNED" not in c.seen


# -- a) client blocked in do_normal -----------------------------------------------------------

@pytest.mark.parametrize("case", ["slow_worker", "no_worker"])
def test_sigint_interrupts_client_do_normal(case: str, gearmand: GearmandServer,
                                            fname: Callable[[str], str],
                                            start_worker: Callable[..., object],
                                            child: Callable[..., Child]) -> None:
    fn = fname("sleepy")
    started = threading.Event()
    cancel = threading.Event()

    def sleepy(job):  # type: ignore[no-untyped-def]
        started.set()
        for _ in range(300):        # up to 30 s, in small steps so teardown is quick
            if cancel.wait(0.1):
                break
        return b"late"

    try:
        if case == "slow_worker":
            start_worker(gearmand.address, {fn: sleepy})
        c = child(CLIENT_WAITS, [gearmand.address, fn])
        c.wait_line("READY")
        if case == "slow_worker":
            assert started.wait(20), "the job never reached the worker"
        time.sleep(0.5)
        _assert_interrupted(c)
    finally:
        cancel.set()


# -- b) / c) idle worker ----------------------------------------------------------------------

@pytest.mark.parametrize("script", [WORKER_RUN, WORKER_WORK], ids=["run", "work"])
def test_sigint_interrupts_idle_worker(script: str, gearmand: GearmandServer,
                                       fname: Callable[[str], str],
                                       child: Callable[..., Child]) -> None:
    c = child(script, [gearmand.address, fname("idle")])
    c.wait_line("READY")
    time.sleep(0.5)
    _assert_interrupted(c)


# -- d) SIGTERM handler calls stop() ----------------------------------------------------------

def test_sigterm_handler_stops_run(gearmand: GearmandServer, fname: Callable[[str], str],
                                   child: Callable[..., Child]) -> None:
    c = child(WORKER_SIGTERM, [gearmand.address, fname("idle")])
    c.wait_line("READY")
    time.sleep(0.5)
    rc = _exits_in_time(c, signal.SIGTERM)
    assert rc == 0, c.stderr()
    assert "STOPPED 0" in c.seen, (c.seen, c.stderr())


# -- e) the GIL is released while a client waits ----------------------------------------------

def test_other_threads_run_while_client_waits(gearmand: GearmandServer, fname: Callable[[str], str],
                                              start_worker: Callable[..., object]) -> None:
    fn = fname("slow")

    def slow(job):  # type: ignore[no-untyped-def]
        time.sleep(1.0)
        return job.workload

    start_worker(gearmand.address, {fn: slow})
    counter = [0]
    done = threading.Event()

    def count() -> None:
        while not done.is_set():
            counter[0] += 1

    with GearmanClient(gearmand.address, timeout=30) as client:
        client.echo()
        t = threading.Thread(target=count, daemon=True)
        t.start()
        try:
            before = counter[0]
            assert client.do_normal(fn, b"payload") == b"payload"
            during = counter[0] - before
        finally:
            done.set()
            t.join(10)
    assert during > 1000, f"the counter thread ran only {during} times during a ~1 s wait"


# -- f) one client / worker used from two threads at once --------------------------------------

def test_client_used_from_two_threads_raises(gearmand: GearmandServer, fname: Callable[[str], str],
                                             start_worker: Callable[..., object]) -> None:
    fn = fname("held")
    started = threading.Event()
    release = threading.Event()

    def held(job):  # type: ignore[no-untyped-def]
        started.set()
        release.wait(20)
        return b"A's result"

    start_worker(gearmand.address, {fn: held})
    results: List[object] = []

    with GearmanClient(gearmand.address, timeout=30) as client:
        def thread_a() -> None:
            try:
                results.append(client.do_normal(fn, b"a"))
            except BaseException as e:  # reported below
                results.append(e)

        a = threading.Thread(target=thread_a)
        a.start()
        try:
            assert started.wait(20), "thread A's job never reached the worker"
            # thread B (this one) while A is waiting on the same client
            with pytest.raises(RuntimeError, match="in use|thread-safe"):
                client.do_normal(fn, b"b", timeout=5)
            with pytest.raises(RuntimeError, match="in use|thread-safe"):
                client.echo()
        finally:
            release.set()
            a.join(30)
        assert not a.is_alive()
        assert results == [b"A's result"]
        # the client is usable again once A is done
        assert client.do_normal(fn, b"again") == b"A's result"


def test_worker_used_from_two_threads_raises(gearmand: GearmandServer, fname: Callable[[str], str],
                                             start_worker: Callable[..., object]) -> None:
    fn = fname("held")
    started = threading.Event()
    release = threading.Event()

    def held(job):  # type: ignore[no-untyped-def]
        started.set()
        release.wait(20)
        return b"ok"

    wt = start_worker(gearmand.address, {fn: held})
    worker: GearmanWorker = wt.worker  # type: ignore[attr-defined]
    try:
        with GearmanClient(gearmand.address, timeout=30) as client:
            handle = client.do_background(fn, b"x")
            # the job being in hand proves run() is active in the worker thread
            assert started.wait(20), "the job never reached the worker"
            with pytest.raises(RuntimeError, match="in use|thread-safe"):
                worker.work(timeout=1)
            with pytest.raises(RuntimeError):
                worker.close()
            release.set()
            deadline = time.monotonic() + 20
            while client.job_status(handle).known:
                assert time.monotonic() < deadline, "the held job did not finish"
                time.sleep(0.05)
    finally:
        release.set()
    # run() survived the misuse; the fixture's teardown stops it and re-raises any error
    assert wt.thread.is_alive()  # type: ignore[attr-defined]
