"""Benchmark driver for pygearman (this project), run in the harness's own venv.

Usage and output: see _common.py. APIs that are newer than the installed build
(submit_background_many, submit_many, add_task/run_tasks) are feature-detected: a mode
whose API is missing reports "n/a" instead of falling back to something slower. Batch sizes
come from the harness (--batch, 1000 by default, as for C and PHP), not the library default.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Dict, List

import _common
from _common import Args, Timer, finish, not_available

try:
    import pygearman
    from pygearman import GearmanClient, GearmanWorker
except ImportError as e:  # reported by the harness as a setup error
    print(f"cannot import pygearman: {e}", file=sys.stderr)
    sys.exit(2)


def version() -> Dict[str, Any]:
    return {"pygearman": pygearman.__version__, "libgearman": pygearman.libgearman_version(),
            "python": sys.version.split()[0]}


def _count_ok(results: List[Any], size: int) -> int:
    return sum(1 for r in results if isinstance(r, (bytes, bytearray, memoryview)) and len(r) == size)


def _call_batched(method: Any, batch: int, *args: Any) -> Any:
    """method(*args, batch=batch), or without ``batch`` on builds that do not take it."""
    try:
        return method(*args, batch=batch)
    except TypeError as e:
        if "batch" not in str(e):
            raise
        return method(*args)


def client(a: Args) -> None:
    c = GearmanClient(a.address)
    p = _common.payload(a.size)
    ok = 0
    extra: Dict[str, Any] = {}
    if a.mode in ("bg_loop", "bg_loop_uniq"):
        api = "do_background(unique)" if a.own_uniques else "do_background"
        us = _common.uniques(a.n) if a.own_uniques else None
        fn, do_bg = a.function, c.do_background
        with Timer() as t:
            if us is None:
                for _ in range(a.n):
                    do_bg(fn, p)
                    ok += 1
            else:
                for u in us:
                    do_bg(fn, p, unique=u)
                    ok += 1
    elif a.mode in ("bg_batch", "bg_batch_uniq"):
        if not hasattr(c, "submit_background_many"):
            not_available("GearmanClient.submit_background_many is not in this build")
        api = f"submit_background_many(batch={a.batch}{', uniques' if a.own_uniques else ''})"
        workloads = [p] * a.n
        us = _common.uniques(a.n) if a.own_uniques else None
        with Timer() as t:
            handles = c.submit_background_many(a.function, workloads, uniques=us, batch=a.batch)
        ok = sum(1 for h in handles if h)
    elif a.mode == "rt":
        api = "do_normal"
        lat: List[float] = []
        fn, do, now = a.function, c.do_normal, time.perf_counter
        with Timer() as t:
            for _ in range(a.n):
                t0 = now()
                r = do(fn, p)
                lat.append(now() - t0)
                if r == p:
                    ok += 1
        extra = _common.latency_extra(lat)
    elif a.base_mode == "taskset":
        if not (hasattr(c, "add_task") and hasattr(c, "run_tasks")):
            not_available("add_task/run_tasks are not in this build")
        api = f"add_task xN{'(unique)' if a.own_uniques else ''} + run_tasks(batch={a.batch})"
        fn, add = a.function, c.add_task
        with Timer() as t:
            if a.own_uniques:
                for u in _common.uniques(a.n):
                    add(fn, p, None, u)
            else:
                for _ in range(a.n):
                    add(fn, p)
            tasks = _call_batched(c.run_tasks, a.batch)
        ok = _count_ok([getattr(x, "result", None) for x in tasks], a.size)
    elif a.base_mode == "many":
        if not hasattr(c, "submit_many"):
            not_available("GearmanClient.submit_many is not in this build")
        api = f"submit_many(batch={a.batch}{', uniques' if a.own_uniques else ''})"
        workloads = [p] * a.n
        if a.own_uniques:
            us = _common.uniques(a.n)
            with Timer() as t:
                results = c.submit_many(a.function, workloads, uniques=us, batch=a.batch)
        else:
            with Timer() as t:
                results = _call_batched(c.submit_many, a.batch, a.function, workloads)
        ok = _count_ok(results, a.size)
    elif a.mode == "aio":
        c.close()
        t, ok, api = _aio(a, p)
    elif a.mode == "threads":
        c.close()
        t, ok, api = _threads(a, p)
    else:
        raise AssertionError(a.mode)
    finish(a, ok, t, api, **extra)


def _aio(a: Args, p: bytes) -> Any:
    """W6: N concurrent ``await client.submit()`` from one AsyncClient (asyncio.gather)."""
    try:
        from pygearman.aio import AsyncClient
    except ImportError as e:
        not_available(f"pygearman.aio is not in this build: {e}")
    import asyncio

    async def main() -> Any:
        async with AsyncClient(a.address, timeout=600) as ac:
            await ac.submit(a.function, b"warm")
            with Timer() as t:
                out = await asyncio.gather(*(ac.submit(a.function, p) for _ in range(a.n)))
        return t, _count_ok(out, a.size)

    t, ok = asyncio.run(main())
    return t, ok, "AsyncClient.submit x N, asyncio.gather"


def _threads(a: Args, p: bytes) -> Any:
    """W6: a ThreadPoolExecutor(16) around the sync client, one GearmanClient per thread."""
    import concurrent.futures
    import threading

    local = threading.local()

    def one(_: int) -> bytes:
        cl = getattr(local, "c", None)
        if cl is None:
            cl = local.c = GearmanClient(a.address)
        return cl.do_normal(a.function, p)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(32)))  # every thread has its client and connection
        with Timer() as t:
            out = list(pool.map(one, range(a.n)))
    return t, _count_ok(out, a.size), "ThreadPoolExecutor(16) + do_normal (one client per thread)"


def worker(a: Args) -> None:
    w = GearmanWorker(a.address)
    if a.mode == "echo":
        w.add_function(a.function, lambda job: job.workload)
        with Timer() as t:
            w.run()
        finish(a, w.jobs_processed, t, "add_function+run")
    count = 0
    n = a.n

    def drain(job: Any) -> Any:
        nonlocal count
        count += 1
        if count >= n:
            w.stop()  # run() returns after this job is completed
        return job.workload

    w.add_function(a.function, drain)
    with Timer() as t:
        while count < n:
            w.run()
    finish(a, count, t, "add_function+run (stop() at N)")


if __name__ == "__main__":
    _common.run_driver(version, client, worker)
