"""A worker facing poison jobs, broken exceptions, names that do not resolve yet, and no server
at all."""
from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker, JobException


class MyStop(BaseException):
    """A user's own BaseException subclass: not a request to stop the worker."""


class BrokenStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def _serve(w: GearmanWorker) -> threading.Thread:
    t = threading.Thread(target=w.run, kwargs={"timeout": 20}, daemon=True)
    t.start()
    return t


def test_any_exception_fails_the_job_and_the_worker_goes_on(gearmand, fname, caplog) -> None:
    fn = fname("poison")

    def poison(job: Any) -> bytes:
        kind = bytes(job.workload)
        if kind == b"base":
            raise MyStop("user BaseException")
        if kind == b"brokenstr":
            raise BrokenStr()
        if kind == b"generator":
            raise GeneratorExit()
        return b"ok"

    w = GearmanWorker(gearmand.address)
    w.add_function(fn, poison)
    caplog.set_level(logging.ERROR, logger="pygearman")
    t = _serve(w)
    try:
        with GearmanClient(gearmand.address, timeout=10) as c:
            with pytest.raises(JobException, match="MyStop: user BaseException"):
                c.do_normal(fn, "base")
            with pytest.raises(JobException, match="BrokenStr: \\(its str\\(\\) failed"):
                c.do_normal(fn, "brokenstr")
            with pytest.raises(JobException, match="GeneratorExit"):
                c.do_normal(fn, "generator")
            assert c.do_normal(fn, "fine") == b"ok"          # the same worker, still running
        assert t.is_alive()
        tracebacks = [r for r in caplog.records if r.exc_info and fn in r.getMessage()]
        assert len(tracebacks) == 3                           # one traceback per failed job
        assert all(r.levelno == logging.ERROR for r in tracebacks)
    finally:
        w.stop()
        t.join(10)
        w.close()


def test_a_server_name_that_does_not_resolve_yet_does_not_stop_the_worker(gearmand, fname,
                                                                        caplog) -> None:
    fn = fname("half")
    caplog.set_level(logging.WARNING, logger="pygearman")
    w = GearmanWorker([gearmand.address, "gearman-2.invalid:4730"])
    assert w.servers == [gearmand.address, "gearman-2.invalid:4730"]
    w.add_function(fn, lambda job: b"served")
    t = _serve(w)
    try:
        with GearmanClient(gearmand.address, timeout=10) as c:
            assert c.do_normal(fn, "x") == b"served"
        assert any("does not resolve" in r.getMessage() for r in caplog.records)
    finally:
        w.stop()
        t.join(10)
        w.close()


def test_work_tells_no_job_from_no_server(gearmand, fname) -> None:
    with GearmanWorker(gearmand.address) as w:
        w.add_function(fname("none"), lambda job: b"")
        assert w.work(timeout=0.5) is False                  # a server, no job
    with GearmanWorker("127.0.0.1:1") as dead:
        dead.add_function("f", lambda job: b"")
        with pytest.raises(pygearman.GearmanConnectionError, match="could be reached"):
            dead.work(timeout=0.5)
    with GearmanWorker("gearman-3.invalid:4730") as nowhere:
        nowhere.add_function("f", lambda job: b"")
        with pytest.raises(pygearman.GearmanConnectionError, match="resolves"):
            nowhere.work(timeout=0.5)


def test_first_result_of_a_new_worker_is_not_throttled(gearmand, fname) -> None:
    """A job already queued when the worker starts: its 8 MiB result goes out with the socket
    buffers already lifted (libgearman's 32 KiB made this take 4-5 s)."""
    fn = fname("big")
    big = b"x" * (8 << 20)
    out: list = []

    def submit() -> None:
        with GearmanClient(gearmand.address, timeout=3.0) as c:
            try:
                out.append(c.do_normal(fn, "go"))
            except Exception as e:          # noqa: BLE001 - reported below
                out.append(e)

    t = threading.Thread(target=submit)
    t.start()
    import time
    time.sleep(0.3)                                   # queued before any worker exists
    with GearmanWorker(gearmand.address) as w:
        w.add_function(fn, lambda job: big)
        assert w.work(timeout=5)
    t.join(10)
    assert out and out[0] == big, repr(out[0])[:200] if out else "no result"


def test_a_closed_worker_says_so_everywhere() -> None:
    w = GearmanWorker("127.0.0.1:1")
    w.add_function("f", lambda job: b"")
    w.close()
    for call in (lambda: w.unregister("f"), w.unregister_all, lambda: w.add_function("g", len),
                 w.clone, w.echo, lambda: w.work(timeout=0.1)):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    c = GearmanClient("127.0.0.1:1")
    c.close()
    for call in (c.clone, lambda: c.cancel_job("H:x:1"), lambda: c.do_normal("f"),
                 lambda: c.job_status("H:x:1")):
        with pytest.raises(RuntimeError, match="closed"):
            call()
