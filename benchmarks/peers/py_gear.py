"""Benchmark driver for gear (PyPI ``gear`` 0.16, the OpenStack Zuul Gearman library).

Runs in the peers venv. Usage and output: ../drivers/_common.py.

API used: gear.Client.submitJob(gear.Job(...), background=...) and gear.Worker.getJob() +
WorkerJob.sendWorkComplete(). gear runs a poll thread per client/worker; submitJob() blocks until
JOB_CREATED, so it has no pipelined submit (the W1 batch modes report n/a). Foreground results
arrive on the poll thread: as gear's docs suggest, the client subclass overrides the
handleWork* event handlers to wake the waiting caller.

Quirk: gear does not set TCP_NODELAY. Its worker writes WORK_COMPLETE and then GRAB_JOB as two
small packets, so Nagle's algorithm holds the second one until the server's delayed ACK (about
40 ms): a gear worker manages about 23 jobs/s on loopback. With GEAR_TCP_NODELAY=1 (the harness's
``gear`` column) this driver sets TCP_NODELAY on gear's sockets after connect; the ``gear-raw``
column runs gear exactly as shipped.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "drivers"))
import _common  # noqa: E402
from _common import Args, Timer, finish, not_available  # noqa: E402

try:
    import gear
except ImportError as e:
    print(f"cannot import gear: {e}", file=sys.stderr)
    sys.exit(2)


if os.environ.get("GEAR_TCP_NODELAY") == "1":
    _connect = gear.Connection.connect

    def _connect_nodelay(self: Any) -> None:
        _connect(self)
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    gear.Connection.connect = _connect_nodelay


def version() -> Dict[str, Any]:
    from importlib.metadata import version as dist_version
    return {"gear": dist_version("gear"), "python": sys.version.split()[0]}


class _Job(gear.Job):
    def __init__(self, name: str, arguments: bytes, unique: Any = None) -> None:
        super().__init__(name, arguments, unique)
        self.done = threading.Event()


class _Client(gear.Client):
    """Signals job completion (gear itself only sets job.complete, with nothing to wait on)."""

    def __init__(self) -> None:
        super().__init__("bench-client")
        self.finished = 0
        self.all_done = threading.Event()
        self.expect = -1

    def _done(self, job: Any) -> Any:
        job.done.set()
        self.finished += 1  # only the poll thread writes
        if self.finished == self.expect:
            self.all_done.set()
        return job

    def handleWorkComplete(self, packet: Any) -> Any:
        return self._done(super().handleWorkComplete(packet))

    def handleWorkFail(self, packet: Any) -> Any:
        return self._done(super().handleWorkFail(packet))

    def handleWorkException(self, packet: Any) -> Any:
        return self._done(super().handleWorkException(packet))


def _ok(job: Any, size: int) -> bool:
    return bool(job.complete and not job.failure and len(b"".join(job.data)) == size)


def client(a: Args) -> None:
    if a.base_mode == "many":
        not_available("no batch call (W3-tasks submits job by job)")
    if a.mode in ("aio", "threads"):
        not_available("W6 measures asyncio clients and pygearman's sync modes only")
    if a.mode in ("bg_batch", "bg_batch_uniq"):
        not_available("gear has no pipelined submit (submitJob waits for JOB_CREATED per job)")
    c = _Client()
    c.addServer(a.host, a.port)
    c.waitForServer(10)
    p = _common.payload(a.size)
    fn = a.function
    ok = 0
    extra: Dict[str, Any] = {}
    if a.mode in ("bg_loop", "bg_loop_uniq"):
        api = "submitJob(background=True)"
        us: List[Any] = _common.uniques(a.n) if a.own_uniques else [None] * a.n
        with Timer() as t:
            for u in us:
                job = gear.Job(fn, p, unique=u)
                c.submitJob(job, background=True)
                if job.handle:
                    ok += 1
    elif a.mode == "rt":
        api = "submitJob + wait for WORK_COMPLETE"
        lat: List[float] = []
        now = time.perf_counter
        with Timer() as t:
            for _ in range(a.n):
                t0 = now()
                job = _Job(fn, p)
                c.submitJob(job)
                job.done.wait()
                lat.append(now() - t0)
                if _ok(job, a.size):
                    ok += 1
        extra = _common.latency_extra(lat)
    elif a.base_mode == "taskset":
        api = f"submitJob xN{'(unique)' if a.own_uniques else ''}, then wait for all WORK_COMPLETE"
        c.expect = a.n
        us = _common.uniques(a.n) if a.own_uniques else [None] * a.n
        with Timer() as t:
            jobs = []
            for u in us:
                job = _Job(fn, p, u)
                c.submitJob(job)
                jobs.append(job)
            c.all_done.wait()
        ok = sum(1 for j in jobs if _ok(j, a.size))
    else:
        raise AssertionError(a.mode)
    finish(a, ok, t, api, **extra)


def worker(a: Args) -> None:
    w = gear.Worker("bench-worker")
    w.addServer(a.host, a.port)
    w.waitForServer(10)
    w.registerFunction(a.function)
    limit = a.n if a.mode == "drain" else -1
    count = 0
    with Timer() as t:
        while count != limit:
            job = w.getJob()
            job.sendWorkComplete(job.arguments)
            count += 1
    finish(a, count, t, "registerFunction+getJob+sendWorkComplete")


if __name__ == "__main__":
    _common.run_driver(version, client, worker)
