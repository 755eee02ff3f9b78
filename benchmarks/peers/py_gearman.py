"""Benchmark driver for python-gearman (PyPI ``pygearman`` 0.2.6, imports as ``gearman``).

Runs only in the peers venv (benchmarks/.venv-peers): that distribution is also named
``pygearman``, so it cannot share a venv with this project. Usage and output: ../drivers/_common.py.

API used: GearmanClient.submit_job / submit_multiple_jobs (background=True,
wait_until_complete=False for W1), GearmanWorker.register_task + work(); the worker
leaves work() when after_job() returns False (W4). python-gearman always sends a unique:
when none is given it makes one client-side (16 random bytes, hex).

Quirk (0.2.6 on Python 3): a task registered under a str name never matches, because the
JOB_ASSIGN packet carries bytes and recv_job_assign_uniq asserts ``task in abilities`` (the worker
dies with AssertionError). The worker therefore registers the name as bytes.

Quirk 2: submit_job()/submit_multiple_jobs() with the default poll_timeout=None return right after
JOB_CREATED without waiting for the result (submit_multiple_requests only waits when
``time_remaining is not None``), and the late WORK_COMPLETE then raises KeyError inside the next
call (the request was only weakly referenced). Foreground calls here pass a long poll_timeout.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "drivers"))
import _common  # noqa: E402
from _common import Args, Timer, finish, not_available  # noqa: E402

try:
    import gearman
    from gearman.constants import JOB_COMPLETE, JOB_CREATED
except ImportError as e:
    print(f"cannot import gearman (python-gearman): {e}", file=sys.stderr)
    sys.exit(2)


# See the module docstring: without a poll_timeout, foreground jobs are not waited for.
_FOREVER = 24 * 3600.0


def version() -> Dict[str, Any]:
    from importlib.metadata import version as dist_version
    return {"python-gearman": dist_version("pygearman"), "python": sys.version.split()[0]}


def client(a: Args) -> None:
    if a.base_mode == "many":
        not_available("submit_multiple_jobs is already its task-set call (W3-tasks)")
    if a.mode in ("aio", "threads"):
        not_available("W6 measures asyncio clients and pygearman's sync modes only")
    c = gearman.GearmanClient([a.address])
    p = _common.payload(a.size)
    fn = a.function
    ok = 0
    extra: Dict[str, Any] = {}
    if a.mode in ("bg_loop", "bg_loop_uniq"):
        api = "submit_job(background=True, wait_until_complete=False)"
        us: List[Any] = _common.uniques(a.n) if a.own_uniques else [None] * a.n
        with Timer() as t:
            for u in us:
                r = c.submit_job(fn, p, unique=u, background=True, wait_until_complete=False)
                if r.state == JOB_CREATED:
                    ok += 1
    elif a.mode in ("bg_batch", "bg_batch_uniq"):
        api = f"submit_multiple_jobs(background=True, wait_until_complete=False), batches of {a.batch}"
        us = _common.uniques(a.n) if a.own_uniques else [None] * a.n
        with Timer() as t:
            for start in range(0, a.n, a.batch):
                jobs = [{"task": fn, "data": p, "unique": u} for u in us[start:start + a.batch]]
                done = c.submit_multiple_jobs(jobs, background=True, wait_until_complete=False)
                ok += sum(1 for r in done if r.state == JOB_CREATED)
    elif a.mode == "rt":
        api = "submit_job"
        lat: List[float] = []
        now = time.perf_counter
        with Timer() as t:
            for _ in range(a.n):
                t0 = now()
                r = c.submit_job(fn, p, poll_timeout=_FOREVER)
                lat.append(now() - t0)
                if r.state == JOB_COMPLETE and r.result == p:
                    ok += 1
        extra = _common.latency_extra(lat)
    elif a.base_mode == "taskset":
        api = (f"submit_multiple_jobs(wait_until_complete=True{', uniques' if a.own_uniques else ''}), "
               f"batches of {a.batch}")
        us = _common.uniques(a.n) if a.own_uniques else [None] * a.n
        with Timer() as t:
            for start in range(0, a.n, a.batch):
                jobs = [{"task": fn, "data": p, "unique": u} for u in us[start:start + a.batch]]
                done = c.submit_multiple_jobs(jobs, background=False, wait_until_complete=True,
                                              poll_timeout=_FOREVER)
                ok += sum(1 for r in done if r.state == JOB_COMPLETE and len(r.result) == a.size)
    else:
        raise AssertionError(a.mode)
    finish(a, ok, t, api, **extra)


class _DrainWorker(gearman.GearmanWorker):
    """Leaves work() after N jobs (python-gearman's documented hook is after_job(); it also
    runs after a GRAB_JOB that got NO_JOB, so the jobs are counted in the function)."""

    target = 0
    count = 0

    def after_job(self) -> bool:
        return self.count < self.target


def worker(a: Args) -> None:
    if a.mode == "echo":
        w = gearman.GearmanWorker([a.address])
        w.register_task(a.function.encode(), lambda _worker, job: job.data)
        with Timer() as t:
            w.work()
        finish(a, 0, t, "register_task+work")
    d = _DrainWorker([a.address])
    d.target = a.n

    def drain(_worker: Any, job: Any) -> bytes:
        d.count += 1
        return job.data

    d.register_task(a.function.encode(), drain)
    with Timer() as t:
        d.work()
    finish(a, d.count, t, "register_task+work (after_job() stops at N)")


if __name__ == "__main__":
    _common.run_driver(version, client, worker)
