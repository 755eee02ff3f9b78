"""Sizes, figures and small helpers of the test_reliability_* modules.

Sizes are small enough for CI; PYGEARMAN_FULL=1 raises them to the full sizes (about 2 min 15 s;
scripts/reliability-full.sh). Every reliability test prints one ``RELIABILITY <name> key=value ...``
line with its figures (``pytest -s`` shows them); RELIABILITY.md reports them.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from typing import Callable, List, Tuple

from _support.processes import PRELUDE

FULL = os.environ.get("PYGEARMAN_FULL") == "1"


def scale(ci: int, full: int) -> int:
    """CI size, or the full size with PYGEARMAN_FULL=1."""
    return full if FULL else ci


def report(name: str, **figures: object) -> None:
    """One greppable line of figures per test (for RELIABILITY.md)."""
    fields = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in figures.items())
    print(f"\nRELIABILITY {name} {fields}", flush=True)


class Seen:
    """Thread-safe count of processed workloads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: "collections.Counter[bytes]" = collections.Counter()

    def add(self, workload: bytes) -> None:
        with self.lock:
            self.counts[workload] += 1

    def snapshot(self) -> "collections.Counter[bytes]":
        with self.lock:
            return collections.Counter(self.counts)

    def __len__(self) -> int:
        with self.lock:
            return len(self.counts)

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())


class Background:
    """Run fn() in a thread; .result() returns its value or raises its exception."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._fn = fn
        self._out: List[Tuple[str, object]] = []
        self.finished_at = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._out.append(("ok", self._fn()))
        except BaseException as e:  # handed to result()
            self._out.append(("err", e))
        self.finished_at = time.monotonic()

    def result(self, timeout: float) -> object:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"call still blocked after {timeout} s"
        kind, value = self._out[0]
        if kind == "err":
            assert isinstance(value, BaseException)
            raise value
        return value


# A worker in its own process (for the `child` fixture), to kill or signal: argv is ADDRESS
# FUNCTION MODE IDENTIFIER. Mode "echo" answers b"child:" + workload; "hang" prints STARTED and
# never returns; "slow" prints STARTED, works 1 s, then answers. SIGTERM calls stop() (finish the
# job in hand, then return from run()).
WORKER_CHILD = PRELUDE + """\
addr, fn, mode, ident = sys.argv[1:5]
worker = pygearman.GearmanWorker(addr, identifier=ident)

def job_fn(job):
    if mode != "echo":
        print("STARTED", job.workload.decode(), flush=True)
        if mode == "hang":
            time.sleep(3600)
        time.sleep(1.0)
        return b"finished:" + job.workload
    return b"child:" + job.workload

worker.add_function(fn, job_fn)
signal.signal(signal.SIGTERM, lambda *a: worker.stop())
worker.echo()
print("READY", flush=True)
n = worker.run()
worker.close()
print("STOPPED", n, flush=True)
"""
