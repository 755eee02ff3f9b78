"""Threads: one client (a clone) or one worker per thread, many jobs, every result checked; and
clone() keeps what libgearman's clone drops (docs/libgearman-1.1.20.md#clone-drops-options).

One client or worker used from two threads at once raising RuntimeError: test_signals.py.
"""
from __future__ import annotations

import threading
import time
from typing import List, Tuple

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker

from _support.gearmand import client_ids
from _support.reliability import report, scale


@pytest.mark.timeout(120)
def test_one_client_per_thread_and_one_worker_per_thread(gearmand, fname, runners) -> None:
    fn = fname("threads")
    threads, per_thread = 8, scale(1000, 10000)
    workers = [GearmanWorker(gearmand.address) for _ in range(4)]
    for w in workers:
        w.add_function(fn, lambda job: job.workload[::-1] + b"!")
        runners(w)
    base = GearmanClient(gearmand.address, timeout=30)
    bad: List[Tuple[int, int, object]] = []
    done = [0] * threads
    errors: List[BaseException] = []

    def client_thread(t: int) -> None:
        try:
            with base.clone() as c:
                for i in range(per_thread):
                    load = f"t{t}-job{i}".encode()
                    got = c.do_normal(fn, load)
                    if got != load[::-1] + b"!":
                        bad.append((t, i, got))
                    done[t] += 1
        except BaseException as e:  # reported below
            errors.append(e)

    t0 = time.monotonic()
    ts = [threading.Thread(target=client_thread, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(100)
    elapsed = time.monotonic() - t0
    base.close()
    assert not any(t.is_alive() for t in ts), "a client thread hung"
    assert not errors, errors[:3]
    assert not bad, bad[:5]
    assert sum(done) == threads * per_thread
    processed = sum(w.jobs_processed for w in workers)
    assert processed == threads * per_thread
    report("threads", client_threads=threads, jobs_per_thread=per_thread, worker_threads=len(workers),
           checked_results=sum(done), worker_jobs=processed, seconds=elapsed,
           jobs_per_s=threads * per_thread / elapsed)


@pytest.mark.timeout(60)
def test_clone_keeps_exceptions_identifier_timeout_namespace(gearmand, fname, runners) -> None:
    """gearman_client_clone() drops the exceptions option (the clone then hangs on a job whose
    worker raises); pygearman's clone() keeps it and the identifier, timeout and namespace."""
    ns = f"ns{fname('')[1:]}:"
    ident = f"rel-clone-{ns[2:10]}"
    w = GearmanWorker(gearmand.address, namespace=ns)

    def boom(job):  # type: ignore[no-untyped-def]
        raise ValueError("raised in the worker")

    def slow(job):  # type: ignore[no-untyped-def]
        time.sleep(2.0)
        return b"late"

    w.add_function("echo", lambda job: job.workload)
    w.add_function("boom", boom)
    w.add_function("slow", slow)
    runners(w)
    # the gearmand fixture runs without --exceptions: only the client option prevents the hang
    original = GearmanClient(gearmand.address, timeout=1.0, namespace=ns, identifier=ident)
    clone = original.clone()
    try:
        assert (clone.timeout, clone.namespace, clone.identifier) == (1.0, ns, ident)
        assert clone.do_normal("echo", "via clone") == b"via clone"      # namespace applied
        t0 = time.monotonic()
        with pytest.raises(pygearman.JobException, match="ValueError: raised in the worker"):
            clone.do_normal("boom", "x", timeout=10)
        exc_s = time.monotonic() - t0
        assert exc_s < 5
        # the original never connected: an id seen by the server is the clone's
        assert ident in client_ids(gearmand)
        t0 = time.monotonic()
        with pytest.raises(pygearman.GearmanTimeoutError):
            clone.do_normal("slow", "x")                                 # default timeout 1.0
        timeout_s = time.monotonic() - t0
        assert 0.9 <= timeout_s < 1.9
        report("clone_options", exception_after_s=exc_s, timed_out_after_s=timeout_s)
    finally:
        clone.close()
        original.close()
