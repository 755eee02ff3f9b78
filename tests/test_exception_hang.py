"""libgearman 1.1.20 hangs forever on a job whose worker raises unless the client's
"exceptions" option is in force (docs/libgearman-1.1.20.md#exception-hang). pygearman must never
hang on one."""
from __future__ import annotations

import pytest

import pygearman
from pygearman import GearmanClient

pytestmark = pytest.mark.timeout(60)


def boom(job):  # type: ignore[no-untyped-def]
    raise RuntimeError("worker says no")


@pytest.mark.parametrize("exceptions", [False, True], ids=["plain", "--exceptions"])
def test_server_up_later_than_the_client(gearmand_factory, start_worker, fname, exceptions):
    server = gearmand_factory(exceptions=exceptions)
    server.stop()
    fn = fname("boom")
    with GearmanClient(server.address, timeout=15) as c:
        with pytest.raises(ConnectionError):
            c.do_normal(fn, "x")
        server.start()
        start_worker(server.address, {fn: boom})
        for _ in range(3):
            with pytest.raises(pygearman.JobException, match="^RuntimeError: worker says no$"):
                c.do_normal(fn, "x")


@pytest.mark.parametrize("exceptions", [False, True], ids=["plain", "--exceptions"])
def test_after_a_server_restart(gearmand_factory, start_worker, fname, exceptions):
    server = gearmand_factory(exceptions=exceptions)
    fn, ok = fname("boom"), fname("ok")
    start_worker(server.address, {fn: boom, ok: lambda job: b"fine"})
    with GearmanClient(server.address, timeout=15) as c:
        with pytest.raises(pygearman.JobException):
            c.do_normal(fn, "x")
        server.restart()
        assert c.do_normal(ok, "x") == b"fine"  # the worker reconnects by itself
        with pytest.raises(pygearman.JobException, match="worker says no"):
            c.do_normal(fn, "x")


@pytest.mark.parametrize("method", ["do_normal", "do_high", "do_low"])
def test_every_priority(any_gearmand, start_worker, fname, method):
    fn = fname("boom")
    start_worker(any_gearmand.address, {fn: boom})
    with GearmanClient(any_gearmand.address, timeout=15) as c:
        with pytest.raises(pygearman.JobException, match="worker says no"):
            getattr(c, method)(fn, "x")


def test_many_clients_many_failures(any_gearmand, start_worker, fname):
    fn = fname("boom")
    start_worker(any_gearmand.address, {fn: boom})
    for _ in range(5):
        with GearmanClient(any_gearmand.address, timeout=15) as c:
            for _ in range(5):
                with pytest.raises(pygearman.JobException):
                    c.do_normal(fn, "")
