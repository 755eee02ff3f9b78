"""Three job servers, one killed (-9) mid-run: background submissions fail over without a
failed call, no job goes to the dead server after the kill, and nothing is lost but what the
killed server held; no job runs twice.
"""
from __future__ import annotations

import time
from typing import Dict, Optional

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker

from _support.gearmand import queued, wait_for
from _support.reliability import Seen, report, scale


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pace", ["workers-keep-up", "backlog"])
def test_three_servers_one_killed_midrun(pace: str, gearmand_factory, fname, runners) -> None:
    servers = [gearmand_factory() for _ in range(3)]
    a = servers[0]
    addrs = [s.address for s in servers]
    fn = fname("three")
    n = scale(3000, 30000)
    kill_at = n // 3
    seen = Seen()

    def work(job):  # type: ignore[no-untyped-def]
        seen.add(job.workload)
        if pace == "backlog":
            time.sleep(0.001)   # workers slower than the client: queues build up
        return b""

    for _ in range(2):
        w = GearmanWorker(addrs)
        w.add_function(fn, work)
        runners(w)

    where: Dict[int, Optional[str]] = {}
    failed = 0
    slowest_after_kill = 0.0
    a_queue_at_kill = 0
    t0 = time.monotonic()
    with GearmanClient(addrs, timeout=20) as c:
        for i in range(n):
            if i == kill_at:
                a_queue_at_kill = queued(a, fn)
                a.kill()
            t_sub = time.monotonic()
            try:
                h = c.do_background(fn, str(i))
            except pygearman.GearmanError:
                failed += 1
                continue
            if i >= kill_at:
                slowest_after_kill = max(slowest_after_kill, time.monotonic() - t_sub)
            where[i] = h.server
        submit_s = time.monotonic() - t0
    assert failed == 0, f"{failed} background submissions failed after the failover"
    on_a = {i for i, s in where.items() if s == a.address}
    assert on_a and all(i < kill_at for i in on_a), "jobs went to the dead server after the kill"
    survivors = [str(i).encode() for i, s in where.items() if s != a.address]

    def drained() -> bool:
        counts = seen.snapshot()
        return all(counts[w] for w in survivors) and all(queued(s, fn) == 0 for s in servers[1:])

    drain_s = wait_for(drained, 90, "the workers to drain the surviving servers", interval=0.1)
    time.sleep(0.3)
    counts = seen.snapshot()
    processed = sum(1 for i in range(n) if counts[str(i).encode()])
    lost = sorted(i for i in range(n) if not counts[str(i).encode()])
    dups = sum(1 for v in counts.values() if v > 1)
    # every job that was not processed had been accepted by the killed server before its death
    assert set(lost) <= on_a
    assert len(lost) <= a_queue_at_kill
    assert dups == 0
    report(f"three_servers_one_killed[{pace}]", submitted=n, failed_submissions=failed,
           accepted_by_killed_server=len(on_a), queued_on_killed_at_kill=a_queue_at_kill,
           processed=processed, lost_with_killed_server=len(lost), duplicates=dups,
           slowest_submit_after_kill_s=slowest_after_kill, submit_s=submit_s, drain_after_submit_s=drain_s)
