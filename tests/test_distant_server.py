"""A job server 150 ms away each way: every request goes out once (a wait that times out is
never answered by re-sending on the same connection), and no late reply breaks the next call."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pygearman import GearmanClient, GearmanWorker
from _support.proxy import FaultProxy

ECHO_REQ, GET_STATUS, OPTION_REQ = 16, 15, 26


@pytest.fixture
def far(gearmand):  # type: ignore[no-untyped-def]
    host, port = gearmand.address.split(":")
    with FaultProxy((host, int(port)), delay=0.15) as p:
        yield p


def test_requests_go_out_once_over_a_slow_link(gearmand, far, fname) -> None:
    fn = fname("echo")
    w = GearmanWorker(gearmand.address)          # the worker is near, the client far
    w.add_function(fn, lambda job: b"r:" + bytes(job.workload))
    t = threading.Thread(target=w.run, kwargs={"timeout": 30}, daemon=True)
    t.start()
    try:
        with GearmanClient(far.address, timeout=10) as c:
            assert c.echo(b"ping") is True
            handle = c.do_background(fn + "-nobody", "q")
            for _ in range(3):
                st = c.job_status(handle)
                assert st.known and not st.running
            assert c.do_normal(fn, "x") == b"r:x"
            assert c.echo(b"pong") is True
        # two echo() calls, plus the one ECHO_REQ of pygearman's own check that the peer is a
        # Gearman server (made once, when the first connection opens)
        assert far.count_packets(ECHO_REQ) == 3
        assert far.count_packets(GET_STATUS) == 3
        assert far.count_packets(OPTION_REQ) == 1
    finally:
        w.stop()
        t.join(10)
        w.close()


def test_a_frozen_link_costs_the_deadline_not_more(gearmand, fname) -> None:
    host, port = gearmand.address.split(":")
    with FaultProxy((host, int(port))) as p:
        with GearmanClient(p.address, timeout=5) as c:
            assert c.echo()
            p.stall()
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                c.echo(timeout=0.5)
            assert time.monotonic() - t0 <= 1.5
            p.resume()
            assert c.echo()
