"""An idle worker sleeps on PRE_SLEEP like the C, PHP and Perl workers: it sends nothing until
the server's NOOP (or, every poll_interval, one GRAB_JOB for scheduled jobs), and still answers
stop() at once."""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

import pytest

from pygearman import GearmanClient, GearmanWorker
from _support.proxy import FaultProxy

GRABS = (9, 30, 39)          # GRAB_JOB, GRAB_JOB_UNIQ, GRAB_JOB_ALL


@pytest.mark.parametrize("poll_interval, most", [(None, 0), (1.0, 3)])
def test_idle_worker_sends_nothing_until_woken(gearmand, fname, poll_interval: Optional[float],
                                               most: int) -> None:
    fn = fname("idle")
    host, port = gearmand.address.split(":")
    with FaultProxy((host, int(port))) as p:
        w = GearmanWorker(p.address, poll_interval=poll_interval)
        w.add_function(fn, lambda job: b"ok:" + bytes(job.workload))
        t = threading.Thread(target=w.run, kwargs={"timeout": 20}, daemon=True)
        t.start()
        try:
            time.sleep(0.5)                             # registered, asleep
            before = sum(p.count_packets(x) for x in GRABS)
            time.sleep(2.0)
            assert sum(p.count_packets(x) for x in GRABS) - before <= most
            with GearmanClient(gearmand.address, timeout=5) as c:
                assert c.do_normal(fn, "x") == b"ok:x"  # the NOOP wakes it
            t0 = time.monotonic()
            w.stop()
            t.join(5)
            assert not t.is_alive() and time.monotonic() - t0 < 1.0
        finally:
            w.stop()
            t.join(5)
            w.close()


def test_poll_interval_is_checked() -> None:
    for bad, exc in ((0, ValueError), (-1, ValueError), ("1", TypeError), (float("nan"), ValueError)):
        with pytest.raises(exc, match="poll_interval"):
            GearmanWorker("127.0.0.1:1", poll_interval=bad)  # type: ignore[arg-type]
    w = GearmanWorker("127.0.0.1:1", poll_interval=None)
    assert w.poll_interval is None
    w.close()
