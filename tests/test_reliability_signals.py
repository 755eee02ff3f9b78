"""Worker and client processes killed or signalled: a worker killed (-9) mid-job has its job
handed to another worker; SIGINT and SIGTERM (a Python handler that raises) end every blocking
call within 1 s; SIGTERM calling stop() finishes the job in hand first.

One client or worker used from two threads at once, and Ctrl-C with plain handlers, are in
test_signals.py.
"""
from __future__ import annotations

import signal
import time

import pytest

from pygearman import GearmanClient, GearmanWorker

from _support.gearmand import wait_for, workers_for
from _support.processes import PRELUDE
from _support.reliability import WORKER_CHILD, Background, report


@pytest.mark.timeout(60)
def test_worker_killed_mid_job_job_goes_to_another_worker(gearmand, fname, child, runners) -> None:
    fn = fname("victim")
    victim = child(WORKER_CHILD, [gearmand.address, fn, "hang", "rel-victim"], name="victim")
    victim.wait_line("READY")
    with GearmanClient(gearmand.address, timeout=30) as c:
        call = Background(lambda: c.do_normal(fn, "precious"))
        victim.wait_line("STARTED precious")
        # the second worker registers only now, so the first delivery surely went to the victim
        w = GearmanWorker(gearmand.address)
        w.add_function(fn, lambda job: b"rescued:" + job.workload)
        runners(w)
        wait_for(lambda: workers_for(gearmand, fn) == 2, 10, "the second worker to register")
        t_kill = time.monotonic()
        victim.proc.kill()
        victim.proc.wait(10)
        assert victim.proc.returncode == -signal.SIGKILL
        assert call.result(30) == b"rescued:precious"
        took = call.finished_at - t_kill
    report("worker_kill9_mid_job", result_after_kill_s=took)


SIGNAL_WITHIN = 1.0

# The SIGTERM handler raises SystemExit(3): the blocking call must give control back to Python so
# the handler can run and its exception unwind the call.
BLOCKED = PRELUDE + """\
signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
addr, fn, call = sys.argv[1:4]
if call in ("work", "run"):
    w = pygearman.GearmanWorker(addr)
    w.add_function(fn, lambda job: b"never called")
    w.echo()
    print("READY", flush=True)
    getattr(w, call)()
else:
    c = pygearman.GearmanClient(addr)
    c.echo()
    if call == "run_tasks":
        for i in range(3):
            c.add_task(fn, str(i))
    print("READY", flush=True)
    if call == "do_normal":
        c.do_normal(fn, b"no worker for this")
    elif call == "run_tasks":
        c.run_tasks()
    elif call == "submit_many":
        c.submit_many(fn, [b"a", b"b", b"c"])
    elif call == "submit_background_many":
        # background batches return at once; keep the client busy in batches until signalled
        while True:
            c.submit_background_many(fn, [b"x"] * 1000, batch=100)
print("RETURNED", flush=True)
"""

BLOCKING_CALLS = ["do_normal", "run_tasks", "submit_many", "submit_background_many", "work", "run"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("call", BLOCKING_CALLS)
def test_signal_ends_blocking_call_within_1s(call: str, sig: int, gearmand_factory, fname,
                                             child) -> None:
    # a server of its own: the background-batch case fills its queue
    server = gearmand_factory()
    c = child(BLOCKED, [server.address, fname("blocked"), call], name="blocked")
    c.wait_line("READY")
    time.sleep(0.3)                   # well inside the blocking call
    assert c.proc.poll() is None, c.stderr()
    rc, took = c.signal_and_wait(sig, SIGNAL_WITHIN)
    err = c.stderr()
    assert "RETURNED" not in c.seen
    if sig == signal.SIGINT:
        # CPython ends an uncaught KeyboardInterrupt by re-raising SIGINT on itself (rc -2)
        assert rc in (1, -signal.SIGINT) and "KeyboardInterrupt" in err, (rc, err)
    else:
        assert rc == 3, (rc, err)
    assert "Segmentation" not in err and "Fatal Python error" not in err, err
    assert took < SIGNAL_WITHIN, f"{call} took {took:.2f} s to end after {signal.Signals(sig).name}"
    report(f"signal[{call}-{signal.Signals(sig).name}]", exit_after_signal_s=took)


@pytest.mark.timeout(60)
def test_sigterm_stop_finishes_the_job_in_hand(gearmand, fname, child) -> None:
    fn = fname("finish")
    c = child(WORKER_CHILD, [gearmand.address, fn, "slow", "rel-finisher"], name="finisher")
    c.wait_line("READY")
    with GearmanClient(gearmand.address, timeout=30) as client:
        call = Background(lambda: client.do_normal(fn, "in hand"))
        c.wait_line("STARTED in hand")
        t0 = time.monotonic()
        c.proc.send_signal(signal.SIGTERM)     # the handler calls worker.stop()
        assert call.result(20) == b"finished:in hand"
        rc = c.proc.wait(10)
        took = time.monotonic() - t0
    c.drain()
    assert rc == 0, c.stderr()
    assert "STOPPED 1" in c.seen, (c.seen, c.stderr())
    report("sigterm_stop_job_in_hand", job_remaining_s=1.0, exit_after_sigterm_s=took)
