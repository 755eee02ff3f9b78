"""pygearman.runner: processes and threads, graceful drain, recycling, limits, per-job logs."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from pygearman import GearmanClient, JobException
from pygearman.admin import AdminClient
from pygearman.runner import Runner, plan_slots, resolve

pytestmark = pytest.mark.timeout(90)

JOBS = textwrap.dedent('''
    import os, time

    def pid(job):
        """Sleeps for the workload (seconds) and returns the process id."""
        time.sleep(float(job.workload or b"0"))
        return str(os.getpid())

    def slow(job):
        time.sleep(float(job.workload or b"1"))
        return b"finished " + job.workload

    def boom(job):
        raise ValueError("bad input")

    def __getattr__(name):
        # "rjobs:term_on_resolve": the first worker process that resolves it gets a SIGTERM
        # there, before it has put its own SIGTERM handler in place
        import multiprocessing, signal
        if name != "term_on_resolve":
            raise AttributeError(name)
        if multiprocessing.parent_process() is not None and not os.path.exists("early-term"):
            open("early-term", "w").close()
            os.kill(os.getpid(), signal.SIGTERM)
        return pid
''')


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    (tmp_path / "rjobs.py").write_text(JOBS)
    return tmp_path


class RunnerProcess:
    """``python -m pygearman worker ...`` in a subprocess (its own process group)."""

    def __init__(self, address: str, cwd: Path, args: List[str]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(cwd) + os.pathsep + env.get("PYTHONPATH", "")
        self.log_path = cwd / f"runner-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "pygearman", "worker", *args,
                                      "--servers", address],
                                     cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self._log.close()


@pytest.fixture
def runner_process(gearmand, jobs_dir):
    started: List[RunnerProcess] = []

    def start(*args: str) -> RunnerProcess:
        rp = RunnerProcess(gearmand.address, jobs_dir, list(args))
        started.append(rp)
        return rp

    yield start
    for rp in started:
        if rp.proc.poll() is None:
            try:
                os.killpg(rp.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            rp.proc.wait()


def workers_of(address: str, function: str) -> List[str]:
    """client ids of the connections that registered ``function``."""
    with AdminClient(address) as admin:
        return [w.client_id for w in admin.workers() if function in w.functions]


def wait_until(check: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def running_jobs(address: str, function: str) -> int:
    with AdminClient(address) as admin:
        return sum(fs.running for fs in admin.status() if fs.function == function)


# -- planning -----------------------------------------------------------------------------------

def test_plan_slots_limits_and_spread():
    plan = plan_slots(["a", "b", "c"], 4, {"b": 1, "c": 2})
    assert [("a" in s) for s in plan] == [True] * 4
    assert sum("b" in s for s in plan) == 1
    assert sum("c" in s for s in plan) == 2
    # the limited functions do not pile onto the same slot
    assert not any("b" in s and "c" in s for s in plan)
    assert plan_slots(["a"], 3, {"a": 5}) == [["a"], ["a"], ["a"]]


def test_runner_plan_puts_a_limited_function_in_different_processes():
    r = Runner("127.0.0.1:4730", {"a": "os:getpid", "b": "os:getpid"}, processes=3,
               threads=2, limits={"b": 2})
    plan = r.plan()
    assert len(plan) == 3 and all(len(p) == 2 for p in plan)
    with_b = [i for i, p in enumerate(plan) if any("b" in names for _, names in p)]
    assert len(with_b) == 2      # on 2 slots, in 2 different processes


def test_runner_validates_its_arguments():
    with pytest.raises(ValueError, match="no functions"):
        Runner(None, {})
    with pytest.raises(ValueError, match="not one of the functions"):
        Runner(None, {"a": "os:getpid"}, limits={"b": 1})
    with pytest.raises(ValueError, match="limits"):
        Runner(None, {"a": "os:getpid"}, limits={"a": 0})
    with pytest.raises(ValueError, match="nothing to run"):
        Runner(None, {"a": "os:getpid"}, processes=0, threads=0)
    with pytest.raises(ValueError, match="max_jobs"):
        Runner(None, {"a": "os:getpid"}, max_jobs=0)
    with pytest.raises(TypeError):
        Runner(None, {"a": 42})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="cannot import"):
        resolve("no_such_module_xyz:fn")
    with pytest.raises(ValueError, match="has no attribute"):
        resolve("os:no_such_function")
    with pytest.raises(ValueError, match="module:function"):
        resolve("os.getpid")
    assert resolve("os.path:join") is os.path.join


# -- threads in this process --------------------------------------------------------------------

class ThreadRunner:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as e:
            self.error = e

    def stop(self) -> None:
        self.runner.stop()
        self.thread.join(20)
        assert not self.thread.is_alive(), "runner did not stop"
        if self.error:
            raise self.error


def test_threads_serve_jobs_and_log_one_info_line_per_job(gearmand, fname, caplog):
    fn, bad = fname("tpid"), fname("tboom")
    seen: List[str] = []

    def work(job):
        seen.append(threading.current_thread().name)
        time.sleep(0.1)
        return job.workload[::-1]

    def boom(job):
        raise ValueError("nope")

    caplog.set_level(logging.INFO, logger="pygearman.runner")
    tr = ThreadRunner(Runner(gearmand.address, {fn: work, bad: boom}, processes=0, threads=3))
    try:
        wait_until(lambda: len(workers_of(gearmand.address, fn)) == 3, what="3 threads")
        with GearmanClient(gearmand.address, timeout=20) as c:
            assert c.submit_many(fn, [b"ab", b"cd", b"ef", b"gh", b"ij", b"kl"]) == \
                [b"ba", b"dc", b"fe", b"hg", b"ji", b"lk"]
            with pytest.raises(JobException, match="ValueError: nope"):
                c.submit(bad, b"x")
    finally:
        tr.stop()
    assert len(set(seen)) >= 2       # spread over several threads
    lines = [r for r in caplog.records if r.name == "pygearman.runner" and r.msg.startswith("job ")]
    assert len(lines) == 7
    assert all(r.levelno == logging.INFO for r in lines)
    done = [r.getMessage() for r in lines if fn in r.getMessage()]
    assert len(done) == 6 and all(" done in 0.1" in m and m.endswith(")") for m in done), done
    assert any("raised ValueError: nope in" in r.getMessage() for r in lines)


def test_threads_limit_and_recycle(gearmand, fname, caplog):
    a, b = fname("ta"), fname("tb")
    caplog.set_level(logging.INFO, logger="pygearman.runner")
    tr = ThreadRunner(Runner(gearmand.address, {a: lambda j: b"a", b: lambda j: b"b"},
                             processes=0, threads=3, limits={b: 1}, max_jobs=2))
    try:
        wait_until(lambda: len(workers_of(gearmand.address, a)) == 3, what="3 threads")
        assert len(workers_of(gearmand.address, b)) == 1
        with GearmanClient(gearmand.address, timeout=20) as c:
            for _ in range(12):
                assert c.submit(a, b"") == b"a"
        # each slot made a new connection after 2 jobs, and the limit still holds
        wait_until(lambda: len(workers_of(gearmand.address, a)) == 3, what="3 threads again")
        assert len(workers_of(gearmand.address, b)) == 1
    finally:
        tr.stop()
    recycled = [r.getMessage() for r in caplog.records if "recycled after 2 jobs" in r.getMessage()]
    assert len(recycled) >= 5, recycled


# -- processes ----------------------------------------------------------------------------------

def test_two_processes_both_process_jobs(gearmand, runner_process, fname):
    fn = fname("pid")
    rp = runner_process("rjobs:pid", "--name", fn, "--processes", "2")
    wait_until(lambda: len(workers_of(gearmand.address, fn)) == 2, what="2 processes")
    with GearmanClient(gearmand.address, timeout=30) as c:
        pids = c.submit_many(fn, [b"0.2"] * 10)
    assert len(set(pids)) == 2, pids
    assert rp.stop() == 0
    lines = [line for line in rp.log.splitlines() if f" job {fn} H:" in line]
    assert len(lines) == 10 and all(" INFO pygearman.runner[" in line and " done in 0.2" in line
                                    for line in lines), lines
    assert {line.split(" (pid ")[1].split(",")[0] for line in lines} == {p.decode() for p in pids}


def test_sigterm_drains_the_job_in_hand(gearmand, runner_process, fname):
    fn = fname("slow")
    rp = runner_process(f"{fn}=rjobs:slow", "--processes", "2")
    wait_until(lambda: len(workers_of(gearmand.address, fn)) == 2, what="2 processes")
    result: Dict[str, object] = {}

    def submit() -> None:
        try:
            with GearmanClient(gearmand.address, timeout=30) as c:
                result["value"] = c.submit(fn, b"1.5")
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=submit)
    t.start()
    wait_until(lambda: running_jobs(gearmand.address, fn) == 1, what="the job to start")
    start = time.monotonic()
    rp.signal(signal.SIGTERM)
    # the idle process leaves at once; the busy one finishes its job first
    wait_until(lambda: len(workers_of(gearmand.address, fn)) <= 1, timeout=5,
               what="the idle process to leave")
    assert rp.proc.wait(20) == 0
    t.join(20)
    assert result == {"value": b"finished 1.5"}
    assert time.monotonic() - start < 10
    assert "stopping 2 worker processes" in rp.log and "runner stopped" in rp.log
    assert workers_of(gearmand.address, fn) == []


def test_recycles_a_process_after_max_jobs(gearmand, runner_process, fname):
    fn = fname("pid")
    rp = runner_process("rjobs:pid", "--name", fn, "--processes", "1", "--max-jobs", "2")
    wait_until(lambda: len(workers_of(gearmand.address, fn)) == 1, what="the process")
    with GearmanClient(gearmand.address, timeout=30) as c:
        pids = [c.submit(fn, b"0") for _ in range(6)]
    # two jobs per process: three processes
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5], pids
    assert len(set(pids)) == 3, pids
    assert rp.log.count("(recycled); starting a replacement") >= 2
    assert rp.stop() == 0


def test_a_sigterm_before_the_worker_process_has_its_handler_is_not_lost(gearmand, runner_process,
                                                                         fname):
    """A worker process that gets SIGTERM before its own handler is in place (here: while it
    resolves its functions; in real life: the runner stopping right after starting it) stops
    cleanly once the handler is in. It used to run on with the signal lost (the parent's handler,
    inherited, ignores it in a child), so the runner waited for it forever, or die of it."""
    fn = fname("early")
    rp = runner_process("rjobs:term_on_resolve", "--name", fn, "--processes", "1")
    wait_until(lambda: "(recycled); starting a replacement" in rp.log,
               what="the worker process that got the early SIGTERM to stop cleanly")
    wait_until(lambda: len(workers_of(gearmand.address, fn)) == 1, what="its replacement")
    with GearmanClient(gearmand.address, timeout=30) as c:
        assert int(c.submit(fn, b"0")) != rp.proc.pid
    assert "exited with code" not in rp.log
    assert rp.stop() == 0


def test_recycles_a_process_after_max_seconds(gearmand, runner_process, fname):
    fn = fname("pid")
    rp = runner_process("rjobs:pid", "--name", fn, "--processes", "1", "--max-seconds", "0.7")
    wait_until(lambda: len(workers_of(gearmand.address, fn)) == 1, what="the process")
    with GearmanClient(gearmand.address, timeout=30) as c:
        first = c.submit(fn, b"0")
        time.sleep(1.5)
        second = c.submit(fn, b"0")
    assert first != second
    assert rp.stop() == 0


def test_concurrency_limit(gearmand, runner_process, fname):
    fn, heavy = fname("pid"), fname("heavy")
    rp = runner_process(f"{fn}=rjobs:pid", f"{heavy}=rjobs:slow", "--processes", "3",
                        "--limit", f"{heavy}=1")
    wait_until(lambda: len(workers_of(gearmand.address, fn)) == 3, what="3 processes")
    assert len(workers_of(gearmand.address, heavy)) == 1
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], running_jobs(gearmand.address, heavy))
            time.sleep(0.02)

    w = threading.Thread(target=watch)
    w.start()
    try:
        with GearmanClient(gearmand.address, timeout=30) as c:
            start = time.monotonic()
            assert c.submit_many(heavy, [b"0.3"] * 3) == [b"finished 0.3"] * 3
            elapsed = time.monotonic() - start
    finally:
        stop.set()
        w.join()
    assert peak[0] == 1
    assert elapsed >= 0.85      # one at a time
    assert rp.stop() == 0


def test_spawn_start_method(gearmand, runner_process, fname):
    fn = fname("pid")
    rp = runner_process("rjobs:pid", "--name", fn, "--processes", "1", "--start-method", "spawn")
    wait_until(lambda: len(workers_of(gearmand.address, fn)) == 1, timeout=30,
               what="the spawned process")
    with GearmanClient(gearmand.address, timeout=30) as c:
        assert int(c.submit(fn, b"0")) != rp.proc.pid
    assert rp.stop() == 0
    assert f" job {fn} H:" in rp.log      # the spawned child logs like a forked one


def test_job_exception_reaches_the_client_and_is_logged(gearmand, runner_process, fname):
    fn = fname("boom")
    rp = runner_process("rjobs:boom", "--name", fn, "--processes", "1")
    wait_until(lambda: len(workers_of(gearmand.address, fn)) == 1, what="the process")
    with GearmanClient(gearmand.address, timeout=30) as c:
        with pytest.raises(JobException) as info:
            c.submit(fn, b"x")
    assert info.value.message == "ValueError: bad input"
    assert rp.stop() == 0
    assert "raised ValueError: bad input in" in rp.log


def test_second_sigint_kills_busy_processes(gearmand, runner_process, fname):
    fn = fname("slow")
    rp = runner_process("rjobs:slow", "--name", fn, "--processes", "1")
    wait_until(lambda: len(workers_of(gearmand.address, fn)) == 1, what="the process")
    with GearmanClient(gearmand.address, timeout=30) as c:
        c.submit(fn, b"30", background=True)
    wait_until(lambda: running_jobs(gearmand.address, fn) == 1, what="the job to start")
    rp.signal(signal.SIGINT)           # drain: would wait 30 s for the job
    time.sleep(0.5)
    assert rp.proc.poll() is None
    start = time.monotonic()
    rp.signal(signal.SIGINT)           # second Ctrl-C: kill
    assert rp.proc.wait(10) == 0
    assert time.monotonic() - start < 5
    assert "killing worker process 0" in rp.log


def test_children_leave_when_the_parent_is_killed(gearmand, runner_process, fname):
    fn = fname("pid")
    rp = runner_process("rjobs:pid", "--name", fn, "--processes", "2")
    wait_until(lambda: len(workers_of(gearmand.address, fn)) == 2, what="2 processes")
    rp.signal(signal.SIGKILL)
    rp.proc.wait(10)
    wait_until(lambda: workers_of(gearmand.address, fn) == [], timeout=10,
               what="the orphaned children to exit")
    rp.stop()


POISON = '''
import os, time

def maybe_die(job):
    if job.workload == b"poison":
        os._exit(7)                     # a crash the job function cannot catch
    return b"ok:" + job.workload
'''


def test_a_job_that_kills_its_process_is_quarantined(gearmand, fname, tmp_path, caplog) -> None:
    """The poison job is requeued after each death; after max_job_deaths it is failed with a
    clear exception instead of being fed to the next process, and other jobs keep flowing."""
    (tmp_path / "poisonjobs.py").write_text(POISON)
    sys.path.insert(0, str(tmp_path))
    fn = fname("poison")
    runner = Runner(gearmand.address, {fn: "poisonjobs:maybe_die"}, processes=1,
                    max_job_deaths=2, start_method="fork")
    t = threading.Thread(target=runner.run, daemon=True)
    caplog.set_level(logging.INFO, logger="pygearman.runner")
    t.start()
    try:
        with GearmanClient(gearmand.address, timeout=30) as c:
            assert c.do_normal(fn, "a") == b"ok:a"
            with pytest.raises(JobException, match="killed 2 worker processes"):
                c.do_normal(fn, "poison", unique="poison-1")
            assert c.do_normal(fn, "b") == b"ok:b"
        warnings = [r for r in caplog.records if "it is failed from now on" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        runner.stop()
        t.join(30)
        sys.path.remove(str(tmp_path))
