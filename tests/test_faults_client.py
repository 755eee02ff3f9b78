"""A client facing stalled servers, calls given up with data unsent, batches cut short, and
payloads no Gearman packet can carry."""
from __future__ import annotations

import gc
import mmap
import threading
import time
from typing import Any, List

import pytest

import pygearman
from pygearman import GearmanClient
from _support.gearmand import queued
from _support.proxy import FaultProxy


def _target(gearmand: Any) -> Any:
    host, port = gearmand.address.split(":")
    return host, int(port)


def test_a_frozen_server_is_set_aside(gearmand_factory, fname, caplog) -> None:
    """One of two servers stops answering: the call that met it fails at its deadline, the
    server is set aside (one log line), and the next calls go to the other one at once."""
    a, b = gearmand_factory(), gearmand_factory()
    fn = fname("bg")
    with FaultProxy(_target(a)) as frozen:
        frozen.stall()
        with GearmanClient([frozen.address, b.address], timeout=1.0) as c:
            failures = 0
            for i in range(8):
                t0 = time.monotonic()
                try:
                    assert c.do_background(fn, str(i)).startswith("H:")
                except pygearman.GearmanTimeoutError:
                    failures += 1
                assert time.monotonic() - t0 <= 2.0          # deadline + 1 s at most
            assert failures == 1
    assert queued(b, fn) == 7
    assert sum("sending jobs to the other servers" in r.getMessage() for r in caplog.records) == 1


def test_a_call_given_up_with_data_unsent_returns_at_its_deadline(gearmand, fname) -> None:
    """The server stops reading while a 64 MiB workload is being sent: the call ends at its
    deadline (closing a socket with unsent data would linger 10 s), and the process goes on
    meanwhile (another thread keeps running)."""
    ticks: List[float] = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    with FaultProxy(_target(gearmand)) as p:
        with GearmanClient(p.address, timeout=5) as c:
            assert c.echo()
            p.stall()
            t = threading.Thread(target=ticker)
            t.start()
            t0 = time.monotonic()
            with pytest.raises(pygearman.GearmanTimeoutError):
                c.do_normal(fname("big"), b"x" * (64 << 20), timeout=1.0)
            elapsed = time.monotonic() - t0
            stop.set()
            t.join()
            p.resume()
            assert elapsed <= 2.0
            gaps = [y - x for x, y in zip(ticks, ticks[1:])]
            assert max(gaps) < 0.5
            assert c.echo()                              # and the client works again


def _sleep_then_echo(job):  # type: ignore[no-untyped-def]
    time.sleep(float(job.workload))
    return job.workload


def test_a_batch_that_times_out_keeps_what_arrived(gearmand, fname, start_worker) -> None:
    fn = fname("sleepy")
    for _ in range(4):
        start_worker(gearmand.address, {fn: _sleep_then_echo})
    with GearmanClient(gearmand.address) as c:
        with pytest.raises(pygearman.GearmanTimeoutError) as ei:
            c.submit_many(fn, ["0", "5", "0", "5"], timeout=1.5)
        results = ei.value.results
        assert results[0] == b"0" and results[2] == b"0"
        # acknowledged by the server, not finished: an exception, not None (not resubmitted)
        assert isinstance(results[1], pygearman.GearmanTimeoutError)
        assert isinstance(results[3], pygearman.GearmanTimeoutError)


def test_a_batch_cut_short_keeps_the_handles_it_got(gearmand, fname) -> None:
    fn = fname("cut")
    with FaultProxy(_target(gearmand), close_after=3000) as p:
        with GearmanClient(p.address, timeout=10) as c:
            with pytest.raises(pygearman.GearmanConnectionError) as ei:
                c.submit_background_many(fn, [str(i) for i in range(300)])
    results = ei.value.results
    assert len(results) == 300
    handles = [h for h in results if h is not None]
    assert handles and all(isinstance(h, str) and h.startswith("H:") for h in handles)
    assert len(handles) < 300
    # every handle the client kept is a job the server really has
    assert queued(gearmand, fn) >= len(handles)


def test_payloads_no_packet_can_carry_are_refused_before_any_copy() -> None:
    huge = mmap.mmap(-1, (4 << 30) + 1)        # 4 GiB + 1 of address space, never touched
    try:
        view = memoryview(huge)
        with GearmanClient("127.0.0.1:1") as c:
            t0 = time.monotonic()
            with pytest.raises(ValueError, match="at most"):
                c.do_normal("f", view)
            with pytest.raises(ValueError, match="workload 1"):
                c.submit_many("f", [b"x", view])
            with pytest.raises(ValueError, match="at most"):
                c.add_task("f", view)
            assert time.monotonic() - t0 < 5        # no 4 GiB copy was made
        view.release()
    finally:
        huge.close()


def test_a_stream_gives_its_workload_buffer_back(gearmand, fname) -> None:
    buf = bytearray(b"abc")
    c = GearmanClient(gearmand.address)
    s = c.stream(fname("nobody"), buf)
    with pytest.raises(BufferError):
        buf.extend(b"d")                          # exported while the stream holds it
    del c, s
    gc.collect()
    buf.extend(b"d")                              # released with the client
    assert buf == b"abcd"
