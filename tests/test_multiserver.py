"""Several job servers: jobs spread across them, failover, and no job lost to reconnects."""
from __future__ import annotations

import threading
import time

import pytest

from pygearman import GearmanClient, GearmanWorker
from pygearman.testing import free_port

from _support.gearmand import queued

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def two(gearmand_factory):
    return gearmand_factory(), gearmand_factory()


def test_jobs_spread_across_servers(two, fname):
    a, b = two
    fn = fname("spread")
    with GearmanClient([a.address, b.address], timeout=20) as c:
        handles = [c.do_background(fn, str(i)) for i in range(20)]
        assert len(handles) == 20
        assert queued(a, fn) == 10 and queued(b, fn) == 10
        # a given unique always goes to the same server
        for _ in range(3):
            c.do_background(fn, "u", unique="sticky")
        assert {queued(a, fn), queued(b, fn)} == {10, 11}   # coalesced on one server
        # task sets and batches spread too
        c.submit_background_many(fn, [b"x"] * 10, batch=5)
        assert queued(a, fn) + queued(b, fn) == 31


def test_job_status_asks_the_right_server(two, fname):
    a, b = two
    fn = fname("where")
    with GearmanClient([a.address, b.address], timeout=20) as c:
        hs = [c.do_background(fn, "") for _ in range(4)]
        for h in hs:
            assert c.job_status(h).known


def test_failover_when_a_server_is_down(gearmand, fname, start_worker):
    fn = fname("failover")
    dead = f"127.0.0.1:{free_port()}"
    start_worker(gearmand.address, {fn: lambda job: job.workload})
    with GearmanClient([dead, gearmand.address], timeout=20) as c:
        for i in range(6):
            assert c.do_normal(fn, str(i)) == str(i).encode()
            assert c.do_background(fn, "bg").startswith("H:")
        assert c.submit_many(fn, [b"a", b"b"]) == [b"a", b"b"]
        t = c.add_task(fn, "task")
        c.run_tasks()
        assert t.result == b"task"


def test_server_killed_mid_run_no_failed_background_submission(two, fname):
    a, b = two
    fn = fname("kill")
    with GearmanClient([a.address, b.address], timeout=20) as c:
        handles = []
        for i in range(50):
            if i == 20:
                a.kill()
            handles.append(c.do_background(fn, str(i)))
        assert len(handles) == 50
        assert queued(b, fn) >= 30
        # a comes back: it takes jobs again once its retry delay passes, none lost
        a.start()
        time.sleep(1.1)
        for i in range(10):
            c.do_background(fn, "after")
        assert queued(a, fn) > 0


def test_worker_on_all_servers_drains_every_queue(two, fname):
    a, b = two
    fn = fname("drain")
    with GearmanClient([a.address, b.address], timeout=20) as c:
        c.submit_background_many(fn, [b"j"] * 40, batch=10)
    done = []
    w = GearmanWorker([a.address, b.address])
    w.add_function(fn, lambda job: done.append(1))
    t = threading.Thread(target=w.run)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while len(done) < 40:
            assert time.monotonic() < deadline, len(done)
            time.sleep(0.05)
    finally:
        w.stop()
        t.join(10)
        w.close()
    assert queued(a, fn) == 0 and queued(b, fn) == 0


def test_echo_checks_every_server(two):
    a, b = two
    with GearmanClient([a.address, b.address]) as c:
        assert c.echo()
        b.stop()
        with pytest.raises(ConnectionError, match=str(b.port)):
            c.echo()


def test_a_worker_with_two_servers_in_a_cycle_frees_its_connections(two, fname):
    """One libgearman handle per server: when the cycle collector frees a worker (here it is
    reachable from its own function), every handle's connection is closed."""
    import gc
    import os
    import socket as _socket
    import warnings
    a, b = two
    peers = {("127.0.0.1", int(s.address.rsplit(":", 1)[1])) for s in (a, b)}

    def connections() -> int:
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                    continue
                dup = os.dup(int(fd))
            except OSError:
                continue
            try:
                s = _socket.socket(fileno=dup)
            except OSError:
                os.close(dup)
                continue
            with s:
                try:
                    n += s.getpeername()[:2] in peers
                except (OSError, TypeError, ValueError):
                    pass
        return n

    fn = fname("cycle")
    for _ in range(2):
        w = GearmanWorker([a.address, b.address])
        w.add_function(fn, lambda job, w=w: w)          # a reference cycle
        assert w.work(timeout=0.3) is False              # connected to both, no job
        assert connections() == 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del w
            gc.collect()
        assert connections() == 0
