"""Deadlines and handlers hold while signals arrive every few milliseconds (a sampling profiler, a
periodic timer): libgearman restarts its poll() on every interruption, so without care a wait
would last as long as the signals do."""
from __future__ import annotations

import json
import sys

from _support.processes import run_python

STORM = r"""
import json, signal, sys, threading, time
import pygearman
from pygearman import GearmanClient, GearmanWorker

address, fn = sys.argv[1], sys.argv[2]
ticks = []
signal.signal(signal.SIGALRM, lambda *a: ticks.append(time.monotonic()))
signal.setitimer(signal.ITIMER_REAL, 0.005, 0.005)          # a signal every 5 ms

w = GearmanWorker(address)
w.add_function(fn, lambda job: (time.sleep(0.6), b"ok:" + job.workload)[1])
t = threading.Thread(target=w.run, kwargs={"timeout": 20}, daemon=True)
t.start()
out = {}
with GearmanClient(address) as c:
    t0 = time.monotonic()
    try:
        c.do_normal("nobody-" + fn, "x", timeout=1.0)
        out["timeout"] = "no exception"
    except pygearman.GearmanTimeoutError:
        out["timeout"] = time.monotonic() - t0
    n0 = len(ticks)
    t0 = time.monotonic()
    out["result"] = c.do_normal(fn, "y", timeout=10).decode()
    out["job_s"] = time.monotonic() - t0
    gaps = [b - a for a, b in zip(ticks[n0:], ticks[n0 + 1:])]
    out["max_gap"] = max(gaps) if gaps else None
    out["ticks_during_job"] = len(ticks) - n0
signal.setitimer(signal.ITIMER_REAL, 0)
w.stop(); t.join(5); w.close()
print(json.dumps(out))
"""


def test_deadline_and_handlers_under_a_signal_storm(gearmand, fname, tmp_path) -> None:
    r = run_python(tmp_path, "storm", STORM, gearmand.address, fname("slow"), timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # the deadline holds: at most deadline + 1 s
    assert isinstance(out["timeout"], float) and out["timeout"] <= 2.0, out
    assert out["result"] == "ok:y", out
    # handlers kept running while the client waited (held at most one slice of 100 ms)
    assert out["ticks_during_job"] >= 3, out
    assert out["max_gap"] is not None and out["max_gap"] <= 1.0, out


WORKER_STORM = r"""
import json, signal, sys, time
import pygearman
from pygearman import GearmanClient, GearmanWorker

address, fn = sys.argv[1], sys.argv[2]
ticks = []
signal.signal(signal.SIGALRM, lambda *a: ticks.append(time.monotonic()))
signal.setitimer(signal.ITIMER_REAL, 0.005, 0.005)          # a signal every 5 ms
out = {}
with GearmanWorker(address) as w:
    w.add_function(fn, lambda job: (time.sleep(0.3), b"ok")[1])
    t0 = time.monotonic()
    out["idle"] = w.work(timeout=1.0)                       # no job: returns at its deadline
    out["idle_s"] = time.monotonic() - t0
    with GearmanClient(address) as c:
        c.do_background(fn, "x")
    n0 = len(ticks)
    t0 = time.monotonic()
    out["busy"] = w.work(timeout=10)
    out["busy_s"] = time.monotonic() - t0
    out["ticks_in_job"] = len(ticks) - n0                   # the job function got its signals
signal.setitimer(signal.ITIMER_REAL, 0)
print(json.dumps(out))
"""


def test_worker_deadline_under_a_signal_storm(gearmand, fname, tmp_path) -> None:
    r = run_python(tmp_path, "wstorm", WORKER_STORM, gearmand.address, fname("w"), timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["idle"] is False and out["idle_s"] <= 2.0, out
    assert out["busy"] is True, out
    # time.sleep(0.3) in the job is interrupted by each signal and resumed by Python: the
    # handler ran during the job, not only after it
    assert out["ticks_in_job"] >= 20, out
