"""Workers facing a stalled job server (issue 11): a big result sent to a server that stops
reading, a server frozen (SIGSTOP) under work()/run(), stop() and Ctrl-C while a send is stuck,
and two servers of which one is frozen. Real gearmand processes and the FaultProxy only."""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, List

import pytest

from pygearman import GearmanClient, GearmanWorker

from _support.gearmand import wait_for, workers_for
from _support.processes import PRELUDE
from _support.proxy import FaultProxy
from _support.reliability import report

pytestmark = pytest.mark.timeout(90)

BIG = 48 << 20          # more than every socket buffer on the way (4 MiB each, and the proxy's)


def _submit_in_background(address: str, fn: str, n: int = 1) -> None:
    with GearmanClient(address, timeout=10) as c:
        for i in range(n):
            c.do_background(fn, str(i))


def _stalling_function(proxy: FaultProxy, size: int = BIG):
    big = b"r" * size

    def stall_then_return(job: Any) -> bytes:
        proxy.stall()                   # the server stops reading before the result goes out
        return big
    return stall_then_return


def _in_thread(target, *args, **kwargs) -> "tuple[threading.Thread, List[Any]]":
    out: List[Any] = []

    def run() -> None:
        try:
            out.append(target(*args, **kwargs))
        except BaseException as e:      # noqa: BLE001 - reported by the test
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _proxy_for(server) -> FaultProxy:
    host, port = server.address.split(":")
    return FaultProxy((host, int(port)))


def test_big_result_to_a_server_that_stops_reading_honours_the_deadline(gearmand, fname) -> None:
    fn = fname("stallbig")
    with _proxy_for(gearmand) as p:
        w = GearmanWorker(p.address)
        w.add_function(fn, _stalling_function(p))
        _submit_in_background(gearmand.address, fn)
        t0 = time.monotonic()
        t, out = _in_thread(w.work, timeout=2)
        t.join(2 + 3)
        took = time.monotonic() - t0
        stuck = t.is_alive()
        p.close()                       # unblocks a stuck send (reset) so the thread can end
        t.join(10)
        report("worker_big_result_stalled_server", work_timeout_s=2, returned_after_s=round(took, 2),
               stuck=stuck)
        assert not stuck, f"work(timeout=2) still blocked after {took:.1f} s"
        assert out and out[0] is True, out      # the job was handed to the function
        w.close()
    # gearmand saw the connection go and requeued the job: another worker gets it
    with GearmanWorker(gearmand.address) as w2:
        w2.add_function(fn, lambda job: b"")
        assert w2.work(timeout=10) is True


def test_stop_from_another_thread_ends_a_stuck_send(gearmand, fname) -> None:
    fn = fname("stallstop")
    started = threading.Event()
    with _proxy_for(gearmand) as p:
        w = GearmanWorker(p.address)
        big = b"s" * BIG

        def f(job: Any) -> bytes:
            p.stall()
            started.set()
            return big
        w.add_function(f"{fn}", f)
        _submit_in_background(gearmand.address, fn)
        t, out = _in_thread(w.run)
        assert started.wait(10)
        time.sleep(0.5)                 # in the send by now
        t0 = time.monotonic()
        w.stop()
        t.join(3)
        took = time.monotonic() - t0
        stuck = t.is_alive()
        p.close()
        t.join(10)
        report("worker_stop_during_stuck_send", returned_after_stop_s=round(took, 2), stuck=stuck)
        assert not stuck, f"run() still blocked {took:.1f} s after stop()"
        assert out == [1], out
        w.close()


SIGINT_CHILD = PRELUDE + """\
addr, fn, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
big = b"c" * size
def f(job):
    print("SENDING", flush=True)
    return big
w = pygearman.GearmanWorker(addr)
w.add_function(fn, f)
w.echo()
print("READY", flush=True)
try:
    w.run()
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    sys.exit(7)
"""


def test_ctrl_c_ends_a_stuck_send(gearmand, fname, child) -> None:
    fn = fname("stallint")
    with _proxy_for(gearmand) as p:
        c = child(SIGINT_CHILD, [p.address, fn, str(BIG)], name="sigint")
        c.wait_line("READY")
        p.stall()
        _submit_in_background(gearmand.address, fn)
        # the job reaches the worker through the stalled proxy once it moves again: resume only
        # for the assignment, then stall before the result
        p.resume()
        c.wait_line("SENDING")
        p.stall()
        time.sleep(0.5)
        rc, took = c.signal_and_wait(signal.SIGINT, within=3.0)
        report("worker_sigint_during_stuck_send", exited_after_s=round(took, 2), rc=rc)
        assert rc == 7 and "INTERRUPTED" in c.seen, (rc, c.seen, c.stderr())
        assert took < 3.0, f"SIGINT took {took:.1f} s"


def _freeze(server) -> None:
    os.kill(server.pid, signal.SIGSTOP)


def _thaw(server) -> None:
    os.kill(server.pid, signal.SIGCONT)


@pytest.mark.parametrize("frozen_first", [True, False])
def test_two_servers_one_frozen_the_healthy_one_is_served(gearmand_factory, fname,
                                                         frozen_first: bool) -> None:
    a, b = gearmand_factory(), gearmand_factory()         # a gets frozen, b stays healthy
    fn = fname("halffrozen")
    done: List[bytes] = []
    servers = [a.address, b.address] if frozen_first else [b.address, a.address]
    w = GearmanWorker(servers)
    w.add_function(fn, lambda job: done.append(bytes(job.workload)) or b"")
    t, out = _in_thread(w.run, timeout=30)
    try:
        wait_for(lambda: workers_for(a, fn) == 1 and workers_for(b, fn) == 1, 10,
                 "the worker to register on both servers")
        _freeze(a)
        try:
            t0 = time.monotonic()
            _submit_in_background(b.address, fn, 6)
            deadline = t0 + 10
            while len(done) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            took = time.monotonic() - t0
            served = len(done)
            report("worker_two_servers_one_frozen", frozen_first=frozen_first,
                   served_of_6=served, seconds=round(took, 2))
            assert served == 6, f"{served} of 6 jobs served on the healthy server in {took:.1f} s"
            t1 = time.monotonic()
            w.stop()
            t.join(5)
            assert not t.is_alive(), "run() did not end 5 s after stop() with a server frozen"
            report("worker_stop_with_a_frozen_server", seconds=round(time.monotonic() - t1, 2))
        finally:
            _thaw(a)
    finally:
        w.stop()
        t.join(10)
        w.close()


def test_a_server_frozen_under_work_returns_by_the_deadline(gearmand_factory, fname) -> None:
    a = gearmand_factory()
    fn = fname("frozenwork")
    with GearmanWorker(a.address) as w:
        w.add_function(fn, lambda job: b"")
        assert w.work(timeout=0.5) is False            # connected, registered, no job
        _freeze(a)
        try:
            for _ in range(3):
                t0 = time.monotonic()
                t, out = _in_thread(w.work, timeout=1)
                t.join(1 + 3)
                took = time.monotonic() - t0
                assert not t.is_alive(), f"work(timeout=1) blocked {took:.1f} s"
                assert out and out[0] is False, out
            # run() and stop() from another thread while the server is frozen
            t, out = _in_thread(w.run)
            time.sleep(1.0)
            t0 = time.monotonic()
            w.stop()
            t.join(3)
            assert not t.is_alive(), "run() did not end 3 s after stop()"
            report("worker_frozen_server_stop", seconds=round(time.monotonic() - t0, 2))
        finally:
            _thaw(a)
        # and serves again once the server moves
        _submit_in_background(a.address, fn)
        assert w.work(timeout=10) is True


def test_big_result_to_a_frozen_gearmand_honours_the_deadline(gearmand_factory, fname) -> None:
    """The issue's figure: a real gearmand frozen (SIGSTOP) for 8 s while a 48 MiB result goes
    to it took 17.8 s to return from work(timeout=2)."""
    a = gearmand_factory()
    fn = fname("frozenbig")
    big = b"f" * BIG
    thaw = threading.Timer(8.0, _thaw, (a,))

    def freeze_then_return(job: Any) -> bytes:
        _freeze(a)
        thaw.start()
        return big

    _submit_in_background(a.address, fn)
    try:
        with GearmanWorker(a.address) as w:
            w.add_function(fn, freeze_then_return)
            t0 = time.monotonic()
            t, out = _in_thread(w.work, timeout=2)
            t.join(2 + 3)
            took = time.monotonic() - t0
            stuck = t.is_alive()
            t.join(20)
            report("worker_big_result_frozen_gearmand", work_timeout_s=2,
                   returned_after_s=round(took, 2), stuck=stuck)
            assert not stuck, f"work(timeout=2) still blocked after {took:.1f} s"
            assert out == [True], out
    finally:
        thaw.join(15)
        _thaw(a)
    # the connection was dropped: gearmand requeued the job
    with GearmanWorker(a.address) as w2:
        w2.add_function(fn, lambda job: b"")
        assert w2.work(timeout=10) is True


def test_a_server_that_stops_reading_is_set_aside_and_the_other_served(gearmand_factory, fname,
                                                                       caplog) -> None:
    """run() without a deadline: a result stuck in a server that stopped reading is given up
    once nothing has moved for 10 s; that server is set aside (one warning) and the other
    server's jobs are served."""
    import logging
    caplog.set_level(logging.WARNING, logger="pygearman")
    a, b = gearmand_factory(), gearmand_factory()
    fn = fname("asideb")
    done: List[bytes] = []
    with _proxy_for(a) as p:
        big = b"a" * BIG

        def f(job: Any) -> bytes:
            if bytes(job.workload) == b"big":
                p.stall()
                return big
            done.append(bytes(job.workload))
            return b""
        w = GearmanWorker([p.address, b.address])
        w.add_function(fn, f)
        t, out = _in_thread(w.run, timeout=60)
        try:
            wait_for(lambda: workers_for(a, fn) == 1 and workers_for(b, fn) == 1, 10,
                     "the worker to register on both servers")
            with GearmanClient(a.address, timeout=10) as c:
                c.do_background(fn, "big")
            time.sleep(0.5)                         # the worker is in the big send
            t0 = time.monotonic()
            _submit_in_background(b.address, fn, 6)
            deadline = t0 + 10 + 8
            while len(done) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            took = time.monotonic() - t0
            report("worker_stalled_send_server_set_aside", served_of_6=len(done),
                   seconds=round(took, 2))
            assert len(done) == 6, f"{len(done)} of 6 served on the healthy server in {took:.1f} s"
            assert sum("stopped reading" in r.getMessage() for r in caplog.records) == 1
        finally:
            w.stop()
            t.join(10)
            assert not t.is_alive()
            w.close()


def test_an_idle_worker_with_two_servers_sends_nothing_and_wakes_on_either(gearmand_factory,
                                                                          fname) -> None:
    """One handle per server: the idle worker still sleeps on each server's PRE_SLEEP (no
    GRAB_JOB with poll_interval=None) and a job on either server wakes it."""
    a, b = gearmand_factory(), gearmand_factory()
    fn = fname("idle2")
    with _proxy_for(a) as pa, _proxy_for(b) as pb:
        w = GearmanWorker([pa.address, pb.address], poll_interval=None)
        w.add_function(fn, lambda job: b"ok:" + bytes(job.workload))
        t, out = _in_thread(w.run, timeout=30)
        try:
            wait_for(lambda: workers_for(a, fn) == 1 and workers_for(b, fn) == 1, 10,
                     "the worker to register on both servers")
            time.sleep(0.5)
            grabs = (9, 30, 39)
            before = [sum(p.count_packets(x) for x in grabs) for p in (pa, pb)]
            time.sleep(2.0)
            after = [sum(p.count_packets(x) for x in grabs) for p in (pa, pb)]
            assert after == before, (before, after)
            for server in (a, b):
                with GearmanClient(server.address, timeout=5) as c:
                    assert c.do_normal(fn, "x") == b"ok:x"
            t0 = time.monotonic()
            w.stop()
            t.join(5)
            assert not t.is_alive() and time.monotonic() - t0 < 1.0
            assert out == [2], out
        finally:
            w.stop()
            t.join(5)
            w.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_ends_its_stuck_sends_too(gearmand_factory, fname) -> None:
    """The helper thread that interrupts long sends does not survive fork(): a child starts its
    own. The parent starts it first (one 1 MiB result), then a child's 48 MiB result to a frozen
    gearmand must still return by work(timeout=2)'s deadline."""
    a = gearmand_factory()
    fn = fname("forkstall")
    with GearmanWorker(a.address) as w:
        w.add_function(fn, lambda job: b"p" * (1 << 20))
        _submit_in_background(a.address, fn)
        assert w.work(timeout=10) is True
    _submit_in_background(a.address, fn)
    pid = os.fork()
    if pid == 0:                                    # the child
        code = 2
        try:
            big = b"c" * BIG

            def f(job: Any) -> bytes:
                _freeze(a)
                return big
            with GearmanWorker(a.address) as cw:
                cw.add_function(fn, f)
                t0 = time.monotonic()
                ok = cw.work(timeout=2)
                code = 0 if ok and time.monotonic() - t0 < 2 + 3 else 1
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(st)
                break
            time.sleep(0.02)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert status == 0, f"child exit status {status} (None: hung)"
    finally:
        _thaw(a)


# -- the asyncio worker runs GearmanWorker in threads: the same path -------------------------

def test_async_worker_big_result_to_a_stalled_server_and_two_servers_one_frozen(
        gearmand_factory, fname) -> None:
    import asyncio
    from pygearman.aio import AsyncJob, AsyncWorker
    a, b = gearmand_factory(), gearmand_factory()
    fn = fname("aiostall")
    big = b"y" * BIG
    done: List[bytes] = []
    with _proxy_for(a) as p:

        async def stall_then_return(job: AsyncJob) -> bytes:
            p.stall()
            return big

        async def one_server() -> float:
            w = AsyncWorker(p.address)
            w.add_function(fn, stall_then_return)
            t0 = time.monotonic()
            await w.run(timeout=2)
            return time.monotonic() - t0

        _submit_in_background(a.address, fn)
        took = asyncio.run(asyncio.wait_for(one_server(), 2 + 8))
        report("async_worker_big_result_stalled_server", run_timeout_s=2, returned_after_s=took)
        assert took < 2 + 3, took

    fn2 = fname("aiofrozen")

    async def record(job: AsyncJob) -> bytes:
        done.append(job.workload)
        return b""

    async def two_servers() -> int:
        w = AsyncWorker([a.address, b.address])
        w.add_function(fn2, record)
        task = asyncio.ensure_future(w.run(timeout=30))
        await asyncio.to_thread(wait_for, lambda: workers_for(a, fn2) == 1 and
                                workers_for(b, fn2) == 1, 10, "registration on both")
        _freeze(a)
        try:
            await asyncio.to_thread(_submit_in_background, b.address, fn2, 6)
            deadline = time.monotonic() + 10
            while len(done) < 6 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            w.stop()
            return await asyncio.wait_for(task, 10)
        finally:
            _thaw(a)

    asyncio.run(two_servers())
    report("async_worker_two_servers_one_frozen", served_of_6=len(done))
    assert len(done) == 6, len(done)
