"""A client facing a dead or dying server: made while the server is down, it fails fast and
clearly, then works at once when the server is back (every API); a job in flight when the server
is killed raises GearmanConnectionError promptly; an abandoned single-job call frees its task
once; a foreground job already acknowledged is never re-sent to another server.

Each test starts and kills a gearmand of its own.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker

from _support.gearmand import queued
from _support.processes import run_python
from _support.reliability import Background, Seen, report


def _call(api: str, c: GearmanClient, fn: str) -> object:
    if api == "do_normal":
        return c.do_normal(fn, "x")
    if api == "do_background":
        return c.do_background(fn, "x")
    if api == "submit_many":
        return c.submit_many(fn, ["a", "b", "c"])
    if api == "submit_background_many":
        return c.submit_background_many(fn, ["a", "b", "c"])
    if api == "run_tasks":
        ts = [c.add_task(fn, s) for s in ("a", "b")]
        c.run_tasks()
        errs = [t.error for t in ts if t.error is not None]
        if errs:
            raise errs[0]
        return [t.result for t in ts]
    if api == "stream":
        with c.stream(fn, "x") as chunks:
            list(chunks)
        return chunks.result
    if api == "echo":
        return c.echo()
    raise AssertionError(api)


CLIENT_APIS = ["do_normal", "do_background", "submit_many", "submit_background_many",
               "run_tasks", "stream", "echo"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", CLIENT_APIS)
def test_client_made_while_server_down_fails_clearly_then_works_at_once(api: str, gearmand_factory,
                                                                       fname, start_worker) -> None:
    server = gearmand_factory()
    server.stop()
    fn = fname("later")
    c = GearmanClient(server.address, timeout=10)   # no I/O, no error
    try:
        for _ in range(2):    # two failed connects: libgearman's counter skew grows with each
            t0 = time.monotonic()
            with pytest.raises(pygearman.GearmanConnectionError) as info:
                _call(api, c, fn)
            assert isinstance(info.value, ConnectionError)
            assert server.address in str(info.value)
            assert time.monotonic() - t0 < 2.0, "a refused connection must fail fast"
        server.start()
        start_worker(server.address, {fn: lambda job: job.workload})
        t0 = time.monotonic()
        result = _call(api, c, fn)
        first = time.monotonic() - t0
        # libgearman 1.1.20 alone would lose this first job and wait for the 10 s deadline
        assert first < 2.0, f"the first {api} after the server came back took {first:.2f} s"
        if api == "do_normal":
            assert result == b"x"
        elif api == "submit_many" or api == "run_tasks":
            assert result == [b"a", b"b", b"c"][:len(result)] and len(result) >= 2  # type: ignore
        elif api == "stream":
            assert result == b"x"
        report(f"client_server_later[{api}]", first_call_after_server_up_s=first)
    finally:
        c.close()


INFLIGHT_APIS = ["do_normal", "submit_many", "run_tasks", "stream"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", INFLIGHT_APIS)
def test_job_in_flight_when_server_is_killed_raises_connection_error(api: str, gearmand_factory,
                                                                     fname, start_worker) -> None:
    server = gearmand_factory()
    fn = fname("inflight")
    started = threading.Event()
    release = threading.Event()

    def slow(job):  # type: ignore[no-untyped-def]
        started.set()
        release.wait(10)
        return job.workload

    start_worker(server.address, {fn: slow})
    deadline = 30.0
    c = GearmanClient(server.address, timeout=deadline)
    try:
        c.echo()
        call = Background(lambda: _call(api, c, fn))
        assert started.wait(10), "the job never reached the worker"
        time.sleep(0.2)
        t_kill = time.monotonic()
        server.kill()
        with pytest.raises(pygearman.GearmanConnectionError):
            call.result(deadline)
        took = call.finished_at - t_kill
        assert took < 3.0, f"{api} took {took:.2f} s to report the dead server"
        report(f"inflight_server_killed[{api}]", error_after_kill_s=took, deadline_s=deadline)
    finally:
        release.set()
        c.close()


# gearmand belongs to the test (so a crashing child leaves no server behind); the child kills it
# by pid in the server-killed case.
ABANDONED_CALL_CHILD = """\
import os, signal, sys, threading
import pygearman
how, addr, server_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = pygearman.GearmanClient(addr)
c.echo()
try:
    if how == "deadline":
        c.do_normal("nobody-serves-this", "x", timeout=0.2)
    elif how == "server-killed":
        threading.Timer(0.3, lambda: os.kill(server_pid, signal.SIGKILL)).start()
        c.do_normal("nobody-serves-this", "x", timeout=20)
    elif how == "sigint":
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        c.do_normal("nobody-serves-this", "x", timeout=20)
except (pygearman.GearmanError, KeyboardInterrupt) as e:
    print("RAISED", type(e).__name__, flush=True)
c.close()
print("SURVIVED", flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["deadline", "server-killed", "sigint"])
def test_abandoned_do_normal_frees_its_task_once(how: str, tmp_path: Path, gearmand_factory) -> None:
    """An abandoned single-job call (deadline, lost connection, Ctrl-C) resets its connection,
    which frees every task with the old libgearman handle; the call must not free its task a
    second time (found by valgrind: an invalid read in gearman_task_free; MALLOC_PERTURB_ turns
    it into a SIGSEGV, which is what this test would see)."""
    server = gearmand_factory()
    # glibc fills freed memory with a pattern: a read of a freed task then crashes at once
    env = dict(os.environ, MALLOC_PERTURB_="165")
    out = run_python(tmp_path, "abandon", ABANDONED_CALL_CHILD, how, server.address,
                     str(server.pid), timeout=50, env=env)
    assert out.returncode == 0 and "SURVIVED" in out.stdout, (out.returncode, out.stdout,
                                                               out.stderr[-2000:])


@pytest.mark.timeout(60)
def test_foreground_job_in_flight_is_not_resubmitted_to_another_server(gearmand_factory, fname,
                                                                       runners) -> None:
    """A job the server acknowledged may be running: resending it elsewhere would run it twice.
    Before 405ade8 the client retried it on the next server and do_normal returned the second
    run's result."""
    a, b = gearmand_factory(), gearmand_factory()
    fn = fname("twice")
    seen = Seen()
    started = threading.Event()

    def slow(job):  # type: ignore[no-untyped-def]
        seen.add(job.workload)
        started.set()
        time.sleep(1.0)
        return job.workload

    w = GearmanWorker([a.address, b.address])
    w.add_function(fn, slow)
    runners(w)
    with GearmanClient([a.address, b.address], timeout=20) as c:
        c.echo()
        call = Background(lambda: c.do_normal(fn, "once"))
        assert started.wait(10)
        (a if queued(a, fn) else b).kill()
        with pytest.raises(pygearman.GearmanConnectionError):
            call.result(20)
    assert seen.snapshot()[b"once"] == 1
