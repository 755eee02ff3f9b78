#!/usr/bin/env python3
"""Memory growth of pygearman over many jobs: a leak check for the client and the worker.

    python benchmarks/memory.py                       # 1,000,000 jobs per mode (several minutes)
    python benchmarks/memory.py --n 20000 --json      # quick (tests/test_reliability_memory.py)
    python benchmarks/memory.py --modes sync,worker --n 200000

Modes (each one: warm-up, RSS sample, N jobs with RSS samples every 10%, final RSS sample):

  sync         do_normal() one job at a time (an echo worker runs in a thread of this process)
  background   do_background() one job at a time; the in-process worker drains them
  taskset      add_task() x 100 + run_tasks(), repeated (task-set callbacks, GearmanTask objects)
  submit_many  submit_many() in calls of 1000 jobs (the C batch path)
  worker       only the worker side lives in this process: a child process submits the jobs
               (submit_background_many) and this process's worker runs them

RSS is VmRSS from /proc/self/status after gc.collect(). Growth after warm-up that stays within a
few percent (allocator noise, interned strings) is normal; a leak grows with N. The process talks
to its own gearmand (pygearman.testing.GearmandServer) unless --server is given.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"

from pygearman import GearmanClient, GearmanWorker  # noqa: E402
from pygearman.testing import GearmandServer  # noqa: E402

MODES = ["sync", "background", "taskset", "submit_many", "worker"]
MIB = 1 << 20


def rss_bytes() -> int:
    """VmRSS of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def settled_rss() -> int:
    gc.collect()
    return rss_bytes()


class Echo:
    """A worker in a thread of this process that answers every job with its workload."""

    def __init__(self, server: str, fn: str) -> None:
        self.worker = GearmanWorker(server)
        self.worker.add_function(fn, lambda job: job.workload)
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as e:  # reported by stop()
            self.error = e

    @property
    def processed(self) -> int:
        return self.worker.jobs_processed

    def wait_processed(self, target: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.processed < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker processed {self.processed} of {target} jobs in {timeout} s")
            if self.error is not None:
                raise self.error
            time.sleep(0.01)

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(30)
        self.worker.close()
        if self.error is not None:
            raise self.error


# -- the job loops: each runs `count` jobs starting at number `start` --------------------------

def run_sync(client: GearmanClient, fn: str, start: int, count: int, echo: Echo) -> None:
    for i in range(start, start + count):
        w = b"%d" % i
        if client.do_normal(fn, w) != w:
            raise AssertionError(f"wrong result for job {i}")


def run_background(client: GearmanClient, fn: str, start: int, count: int, echo: Echo) -> None:
    target = echo.processed + count
    for i in range(start, start + count):
        client.do_background(fn, b"%d" % i)
    echo.wait_processed(target, 120 + count / 500)


def run_taskset(client: GearmanClient, fn: str, start: int, count: int, echo: Echo) -> None:
    done = [0]

    def on_complete(task: Any) -> None:
        done[0] += 1

    i = start
    while i < start + count:
        k = min(100, start + count - i)
        for j in range(i, i + k):
            client.add_task(fn, b"%d" % j, context=j, on_complete=on_complete)
        tasks = client.run_tasks()
        for t in tasks:
            if t.result != b"%d" % t.context:
                raise AssertionError(f"wrong result for task {t.context}")
        i += k
    if done[0] != count:
        raise AssertionError(f"{done[0]} of {count} completion callbacks ran")


def run_submit_many(client: GearmanClient, fn: str, start: int, count: int, echo: Echo) -> None:
    i = start
    while i < start + count:
        k = min(1000, start + count - i)
        loads = [b"%d" % j for j in range(i, i + k)]
        if client.submit_many(fn, loads) != loads:
            raise AssertionError("wrong results from submit_many")
        i += k


SUBMITTER = """\
import sys
from pygearman import GearmanClient
addr, fn, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with GearmanClient(addr, timeout=600) as c:
    i = start
    while i < start + count:
        k = min(10000, start + count - i)
        c.submit_background_many(fn, [b"%d" % j for j in range(i, i + k)])
        i += k
"""


def run_worker_only(server: str, fn: str, start: int, count: int, echo: Echo) -> None:
    target = echo.processed + count
    subprocess.run([sys.executable, "-c", SUBMITTER, server, fn, str(start), str(count)],
                   check=True, timeout=600 + count / 100)
    echo.wait_processed(target, 120 + count / 500)


# -- one mode -----------------------------------------------------------------------------------

_LEAK: List[bytes] = []


def measure(mode: str, server: str, n: int, warmup: int, samples: int,
            inject_leak: int = 0) -> Dict[str, Any]:
    fn = f"mem_{mode}_{os.getpid()}"
    echo = Echo(server, fn)
    client = GearmanClient(server, timeout=600)
    step: Callable[[int, int], None]
    if mode == "sync":
        step = lambda s, c: run_sync(client, fn, s, c, echo)  # noqa: E731
    elif mode == "background":
        step = lambda s, c: run_background(client, fn, s, c, echo)  # noqa: E731
    elif mode == "taskset":
        step = lambda s, c: run_taskset(client, fn, s, c, echo)  # noqa: E731
    elif mode == "submit_many":
        step = lambda s, c: run_submit_many(client, fn, s, c, echo)  # noqa: E731
    elif mode == "worker":
        step = lambda s, c: run_worker_only(server, fn, s, c, echo)  # noqa: E731
    else:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if inject_leak:
        # self-test of this check: keep inject_leak bytes per job, as a leaking binding would
        real_step = step

        def step(s: int, c: int) -> None:
            real_step(s, c)
            _LEAK.extend(os.urandom(inject_leak) for _ in range(c))
    try:
        step(0, warmup)
        rss_warm = settled_rss()
        trace: List[int] = []
        chunk = max(1, n // samples)
        done = 0
        t0 = time.monotonic()
        while done < n:
            k = min(chunk, n - done)
            step(warmup + done, k)
            done += k
            trace.append(settled_rss())
        seconds = time.monotonic() - t0
        rss_end = trace[-1]
    finally:
        client.close()
        echo.stop()
    growth = rss_end - rss_warm
    return {
        "mode": mode, "jobs": n, "warmup_jobs": warmup,
        "rss_after_warmup": rss_warm, "rss_end": rss_end, "rss_max": max(trace),
        "growth_bytes": growth, "growth_pct": 100.0 * growth / rss_warm,
        "bytes_per_job": growth / n, "seconds": seconds, "jobs_per_s": n / seconds if seconds else 0.0,
        "trace": trace,
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="jobs per mode after warm-up (default 1,000,000)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="warm-up jobs per mode (default: 10%% of --n, at least 1000, at most 50,000)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {','.join(MODES)}")
    ap.add_argument("--samples", type=int, default=10, help="RSS samples per mode after warm-up")
    ap.add_argument("--server", default=None, help="host:port of a gearmand to use (default: start one)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    ap.add_argument("--inject-leak", type=int, default=0, metavar="BYTES",
                    help="self-test: deliberately keep BYTES per job, to see the check notice a leak")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    if args.n < 1:
        ap.error("--n must be positive")
    warmup = args.warmup if args.warmup is not None else min(50_000, max(1000, args.n // 10))

    own: Optional[GearmandServer] = None
    server = args.server
    if server is None:
        own = GearmandServer(threads=1).start()
        server = own.address
    results = []
    try:
        for mode in modes:
            r = measure(mode, server, args.n, warmup, args.samples, args.inject_leak)
            results.append(r)
            if not args.json:
                print(f"{mode:12s} {r['jobs']:>9,d} jobs  RSS {r['rss_after_warmup'] / MIB:7.1f} -> "
                      f"{r['rss_end'] / MIB:7.1f} MiB  growth {r['growth_bytes'] / MIB:+7.2f} MiB "
                      f"({r['growth_pct']:+6.2f}%, {r['bytes_per_job']:+.2f} B/job)  "
                      f"{r['jobs_per_s']:>8,.0f} jobs/s", flush=True)
    finally:
        if own is not None:
            own.cleanup()
    if args.json:
        json.dump({"python": sys.version.split()[0], "n": args.n, "warmup": warmup,
                   "results": results}, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
