"""A client used before fork(): each child gets its own connections on first use, the parent's
sockets are never touched by a child (no byte, no shutdown), and a call another thread had in
progress at fork time does not leave the child's client busy."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from typing import Any, List

import pytest

from pygearman import GearmanClient

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def _echo(job: Any) -> bytes:
    return b"echo:" + bytes(job.workload)


def _slow(job: Any) -> bytes:
    time.sleep(0.8)
    return b"slow:" + bytes(job.workload)


def _wait_child(pid: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(f"child {pid} hung")


def _in_child(body: Any) -> int:
    """fork(); the child runs body() and exits 0 if it returned True, 1 if False, 2 on error."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            code = 0 if body() else 1
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def test_children_of_a_used_client_get_their_own_results(gearmand, fname, start_worker) -> None:
    fn = fname("echo")
    start_worker(gearmand.address, {fn: _echo})
    start_worker(gearmand.address, {fn: _echo})
    with GearmanClient(gearmand.address, timeout=20) as c:
        assert c.do_normal(fn, "parent") == b"echo:parent"     # connected before the fork

        def child(k: int) -> Any:
            def body() -> bool:
                for i in range(60):
                    w = f"{k}-{i}"
                    if c.do_normal(fn, w) != b"echo:" + w.encode():
                        return False
                got = c.submit_many(fn, [f"{k}-m{i}" for i in range(20)])
                return got == [f"echo:{k}-m{i}".encode() for i in range(20)]
            return body

        pids = [_in_child(child(k)) for k in range(4)]
        for i in range(60):                                   # the parent keeps going meanwhile
            assert c.do_normal(fn, f"p{i}") == f"echo:p{i}".encode()
        assert [_wait_child(p) for p in pids] == [0, 0, 0, 0]
        assert c.do_normal(fn, "after") == b"echo:after"


def test_child_that_closes_the_client_leaves_the_parents_job_alone(gearmand, fname,
                                                                   start_worker) -> None:
    """Fork while another thread is inside a call: the child's client is not busy, and a child
    that uses, closes and drops it does not cut the parent's job in flight."""
    slow, echo = fname("slow"), fname("echo")
    start_worker(gearmand.address, {slow: _slow})
    start_worker(gearmand.address, {echo: _echo})
    c = GearmanClient(gearmand.address, timeout=20)
    c.do_normal(echo, "warm")
    result: List[Any] = []
    t = threading.Thread(target=lambda: result.append(c.do_normal(slow, "x")))
    t.start()
    time.sleep(0.3)                       # the thread is waiting for the slow job now

    def body() -> bool:
        ok = c.do_normal(echo, "child") == b"echo:child"
        c.close()
        return ok

    pid = _in_child(body)
    assert _wait_child(pid) == 0
    t.join(10)
    assert result == [b"slow:x"]
    assert c.do_normal(echo, "again") == b"echo:again"
    c.close()


_pool_client: Any = None
_pool_fn = ""


def _pool_job(i: int) -> bytes:
    return _pool_client.do_normal(_pool_fn, str(i))   # type: ignore[no-any-return]


def test_multiprocessing_pool_with_an_inherited_client(gearmand, fname, start_worker) -> None:
    global _pool_client, _pool_fn
    _pool_fn = fname("echo")
    for _ in range(3):
        start_worker(gearmand.address, {_pool_fn: _echo})
    _pool_client = GearmanClient(gearmand.address, timeout=20)
    try:
        assert _pool_client.echo()
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(4) as pool:
            got = pool.map(_pool_job, range(400), chunksize=10)
        assert got == [f"echo:{i}".encode() for i in range(400)]
        assert _pool_client.do_normal(_pool_fn, "parent") == b"echo:parent"
    finally:
        _pool_client.close()
        _pool_client = None


def test_a_worker_connected_before_fork_works_in_each_child(gearmand, fname) -> None:
    """Each child gets its own connection: no crash, no shifted result, and the parent's
    worker keeps its own."""
    from pygearman import GearmanWorker

    fn = fname("forked")
    w = GearmanWorker(gearmand.address)
    w.add_function(fn, lambda job: f"pid{os.getpid()}:".encode() + bytes(job.workload))
    assert w.echo()                                       # connected in the parent

    def body() -> bool:
        w.run(timeout=4)        # which child gets how many jobs is up to the server
        return True

    pids = [_in_child(body) for _ in range(2)]
    with GearmanClient(gearmand.address, timeout=10) as c:
        results = c.submit_many(fn, [f"j{i}" for i in range(40)])
    assert all(r.endswith(f":j{i}".encode()) for i, r in enumerate(results))
    served = {r.split(b":")[0] for r in results}
    assert served and served <= {f"pid{p}".encode() for p in pids}
    assert [_wait_child(p) for p in pids] == [0, 0]
    # the parent's worker still works on its own connection
    t = threading.Thread(target=lambda: w.work(timeout=5))
    t.start()
    with GearmanClient(gearmand.address, timeout=10) as c:
        assert c.do_normal(fn, "p") == f"pid{os.getpid()}:p".encode()
    t.join(10)
    w.close()
