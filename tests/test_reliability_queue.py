"""A persistent (libsqlite3) queue: gearmand killed (-9) in the middle of a stream of background
submissions and restarted on the same database loses no acknowledged job (delivery is at least
once: the figures line says whether any job ran twice).
"""
from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker

from _support.gearmand import queued, wait_for
from _support.reliability import Seen, report, scale


@pytest.mark.timeout(180)
def test_persistent_queue_survives_kill9(tmp_path: Path, gearmand_factory, fname, runners) -> None:
    db = tmp_path / "queue.db"
    server = gearmand_factory(args=["-q", "libsqlite3", "--libsqlite3-db", str(db)])
    fn = fname("persist")
    n = scale(2000, 10000)
    kill_after = n // 2
    seen = Seen()
    marks: Dict[str, float] = {}

    def work(job):  # type: ignore[no-untyped-def]
        seen.add(job.workload)
        if "up" in marks and "first_job_after_restart" not in marks:
            marks["first_job_after_restart"] = time.monotonic()
        return b""

    w = GearmanWorker(server.address)
    w.add_function(fn, work)
    runners(w)

    acked: Dict[bytes, str] = {}      # workload -> handle the client received
    lock = threading.Lock()

    def killer() -> None:
        while True:
            with lock:
                if len(acked) >= kill_after:
                    break
            time.sleep(0.001)
        marks["queued_at_kill"] = queued(server, fn)
        server.kill()
        marks["killed"] = time.monotonic()
        time.sleep(0.5)
        server.start()                 # same port, same database
        marks["up"] = time.monotonic()

    kt = threading.Thread(target=killer, daemon=True)
    kt.start()

    # Workloads are "<job>:<attempt>": a submission that got no handle is retried as a new attempt,
    # so a job can legitimately run once per attempt that gearmand stored; a workload processed
    # twice is a redelivery by the queue itself.
    attempts: "collections.Counter[int]" = collections.Counter()   # job -> attempts made
    unacked: List[bytes] = []
    failed_calls = 0
    todo = collections.deque(range(n))
    t0 = time.monotonic()
    with GearmanClient(server.address, timeout=10) as c:
        while todo:
            assert time.monotonic() - t0 < 120, "could not submit every job within 120 s"
            chunk = [todo.popleft() for _ in range(min(50, len(todo)))]
            loads = [f"{i}:{attempts[i]}".encode() for i in chunk]
            for i in chunk:
                attempts[i] += 1
            try:
                handles: List[Optional[str]] = list(c.submit_background_many(fn, loads, batch=50))
            except pygearman.GearmanConnectionError as e:
                failed_calls += 1
                handles = list(getattr(e, "results", None) or [None] * len(chunk))
                time.sleep(0.05)
            with lock:
                for i, load, h in zip(chunk, loads, handles):
                    if h:
                        acked[load] = h
                    else:
                        unacked.append(load)
                        todo.appendleft(i)
        submit_s = time.monotonic() - t0
    kt.join(30)
    assert "up" in marks, "the killer thread never restarted gearmand"
    assert failed_calls > 0, "the kill did not interrupt the submission stream"

    def drained() -> bool:
        counts = seen.snapshot()
        return all(counts[load] for load in acked) and queued(server, fn) == 0

    drain_s = wait_for(drained, 120, "every acknowledged job to be processed", interval=0.1)
    time.sleep(0.5)                   # late redeliveries would show up here
    counts = seen.snapshot()
    lost = [load for load in acked if not counts[load]]
    redelivered = {load: k for load, k in counts.items() if k > 1}
    jobs_done = collections.Counter(load.split(b":")[0] for load in counts)
    ran_per_attempt = sum(1 for k in jobs_done.values() if k > 1)
    unacked_processed = sum(1 for load in unacked if counts[load])
    assert not lost, f"{len(lost)} acknowledged jobs were never processed, e.g. {lost[:5]}"
    assert len(jobs_done) == n
    report("persistent_queue_kill9", jobs=n, acked=len(acked), kill_after_acks=kill_after,
           queued_at_kill=marks["queued_at_kill"], failed_submit_calls=failed_calls,
           unacked_attempts=len(unacked), unacked_but_processed=unacked_processed,
           processed_distinct=len(counts), processed_total=sum(counts.values()), lost=len(lost),
           redelivered_workloads=len(redelivered), extra_runs=sum(k - 1 for k in redelivered.values()),
           jobs_run_under_two_attempts=ran_per_attempt,
           delivery="exactly-once" if not redelivered and not ran_per_attempt else "at-least-once",
           downtime_s=marks["up"] - marks["killed"],
           first_job_after_restart_s=marks.get("first_job_after_restart", float("nan")) - marks["up"],
           submit_s=submit_s, drain_after_submit_s=drain_s)
