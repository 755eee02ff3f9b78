"""A worker facing gearmand restarts and a dead server: it re-registers its functions and its
identifier by itself (idle, busy in a job, after a Retry); while the server is down it backs off
instead of spinning and still stops promptly.

Each test starts and kills a gearmand of its own. Sizes and the RELIABILITY figure lines:
_support/reliability.py.
"""
from __future__ import annotations

import signal
import threading
import time

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker

from _support.gearmand import client_ids, wait_for
from _support.reliability import WORKER_CHILD, Background, report


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["idle-kill9", "idle-term", "working-kill9"])
def test_worker_reregisters_after_gearmand_restart(case: str, gearmand_factory, fname,
                                                   runners) -> None:
    server = gearmand_factory()
    fn = fname("restart")
    ident = f"rel-w-{fn[-6:]}"
    started = threading.Event()

    def work(job):  # type: ignore[no-untyped-def]
        if job.workload == b"slow":
            started.set()
            time.sleep(1.0)
        return b"w:" + job.workload

    w = GearmanWorker(server.address, identifier=ident)
    w.add_function(fn, work)
    runners(w)
    wait_for(lambda: ident in client_ids(server), 10, "the identifier in `workers`")
    inflight = None
    if case.startswith("working"):
        inflight = Background(lambda: GearmanClient(server.address, timeout=20).do_normal(fn, "slow"))
        assert started.wait(10), "the slow job never reached the worker"
    t_down = time.monotonic()
    if case.endswith("kill9"):
        server.kill()
    else:
        server.stop()
    server.start()
    t_up = time.monotonic()
    if inflight is not None:
        # the job in hand dies with the server (gearmand's queue is in memory): a clear error
        with pytest.raises(pygearman.GearmanConnectionError):
            inflight.result(10)
    with GearmanClient(server.address, timeout=20) as c:
        assert c.do_normal(fn, "next") == b"w:next"
    recovered = time.monotonic() - t_up
    ident_back = None
    if case.startswith("idle"):
        ident_back = wait_for(lambda: ident in client_ids(server), 10,
                              "the identifier to be re-sent after the restart")
    report(f"worker_restart[{case}]", downtime_s=t_up - t_down, next_job_after_restart_s=recovered,
           identifier_back_s=ident_back if ident_back is not None else "not-checked")


@pytest.mark.timeout(60)
def test_worker_identifier_comes_back_after_restart_while_working(gearmand_factory, fname,
                                                                  runners) -> None:
    """A worker busy in a job while gearmand restarts reconnects silently (libgearman reports no
    error), and libgearman never re-sends the identifier: before 405ade8 `workers` showed '-'
    for ~30 s (until pygearman's periodic refresh)."""
    server = gearmand_factory()
    fn = fname("ident")
    ident = f"rel-busy-{fn[-6:]}"
    started = threading.Event()

    def work(job):  # type: ignore[no-untyped-def]
        if job.workload == b"slow":
            started.set()
            time.sleep(1.0)
        return job.workload

    w = GearmanWorker(server.address, identifier=ident)
    w.add_function(fn, work)
    runners(w)
    wait_for(lambda: ident in client_ids(server), 10, "the identifier in `workers`")
    inflight = Background(lambda: GearmanClient(server.address, timeout=20).do_normal(fn, "slow"))
    assert started.wait(10)
    server.kill()
    server.start()
    with pytest.raises(ConnectionError):
        inflight.result(10)
    with GearmanClient(server.address, timeout=20) as c:
        assert c.do_normal(fn, "next") == b"next"
    wait_for(lambda: ident in client_ids(server), 10, "the identifier after the restart")


@pytest.mark.timeout(60)
def test_worker_with_identifier_keeps_working_after_retry(gearmand_factory, fname, runners) -> None:
    """A Retry makes libgearman drop the worker's connections (GEARMAN_ERROR). libgearman alone
    reconnects and re-registers (checked in C), but sending the identifier again on a closed
    socket connects it without the CAN_DO registrations: the worker then never got a job again."""
    server = gearmand_factory()
    fn, ok = fname("retry"), fname("ok")
    ident = f"rel-retry-{fn[-6:]}"

    def again(job):  # type: ignore[no-untyped-def]
        raise pygearman.Retry("not now")

    w = GearmanWorker(server.address, identifier=ident, max_retries=1)
    w.add_function(fn, again)
    w.add_function(ok, lambda job: b"ok")
    runners(w)
    with GearmanClient(server.address, timeout=10) as c:
        assert c.do_normal(ok, "") == b"ok"
        with pytest.raises(pygearman.JobException, match="gave up after 1 retries"):
            c.do_normal(fn, "")
        assert c.do_normal(ok, "") == b"ok"


@pytest.mark.timeout(90)
def test_worker_backs_off_while_server_is_down_and_stays_stoppable(gearmand_factory, fname,
                                                                   child) -> None:
    server = gearmand_factory()
    fn = fname("down")
    ident = f"rel-down-{fn[-6:]}"
    c = child(WORKER_CHILD, [server.address, fn, "echo", ident], name="worker")
    c.wait_line("READY")
    wait_for(lambda: ident in client_ids(server), 10, "the child worker's identifier")

    # (a) server down: measure the worker process's CPU over 3 s
    server.kill()
    time.sleep(0.5)                       # the first failed connects and backoff steps
    cpu0, t0 = c.cpu_seconds(), time.monotonic()
    time.sleep(3.0)
    cpu = (c.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    assert c.proc.poll() is None, c.stderr()
    assert cpu < 0.05, f"worker used {cpu:.1%} of a core while the server was down"

    # (b) server back: the worker re-registers (function and identifier) by itself
    server.start()
    t_up = time.monotonic()
    with GearmanClient(server.address, timeout=30) as client:
        assert client.do_normal(fn, "back") == b"child:back"
    recovered = time.monotonic() - t_up
    wait_for(lambda: ident in client_ids(server), 10, "the identifier after the server came back")

    # (c) server down again: stop() (SIGTERM handler) still ends run() promptly
    server.kill()
    time.sleep(1.0)
    rc, took = c.signal_and_wait(signal.SIGTERM, 2.0)
    assert rc == 0, c.stderr()
    assert "STOPPED 1" in c.seen, (c.seen, c.stderr())
    assert took < 2.0, f"stop() took {took:.2f} s while the server was down"
    report("worker_backoff", cpu_while_down_pct=cpu * 100, next_job_after_server_back_s=recovered,
           stop_while_down_s=took)
