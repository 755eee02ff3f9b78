"""Acceptance tests for the client engine: leaving a stream early, objects made with __new__,
task sets over several servers and in several chunks that overlap in time, coalescing of
duplicate uniques, which callbacks a single job calls, and the failure paths of a task set.

Scenarios that crashed the interpreter (segfaults inside libgearman) run in a child process, so
a crash fails one test instead of killing pytest. Timing assertions compare the order of events
(every job started before any finished), never durations, except generous upper bounds.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker
from pygearman.testing import GearmandServer, free_port

from _support.gearmand import available_workers
from _support.processes import run

pytestmark = pytest.mark.timeout(60)


# -- helpers (local to this file) ------------------------------------------------------------

class WorkerPool:
    """GearmanWorkers in threads; all stopped together (stop every one, then join)."""

    def __init__(self) -> None:
        self.items: List[Tuple[GearmanWorker, threading.Thread]] = []
        self.errors: List[BaseException] = []

    def add(self, servers: object, functions: Dict[str, Callable[..., object]],
            count: int = 1) -> None:
        for _ in range(count):
            w = GearmanWorker(servers)  # type: ignore[arg-type]
            for name, fn in functions.items():
                w.add_function(name, fn)
            t = threading.Thread(target=self._run, args=(w,), daemon=True)
            self.items.append((w, t))
            t.start()

    def _run(self, w: GearmanWorker) -> None:
        try:
            w.run()
        except BaseException as e:  # reported at teardown
            self.errors.append(e)

    def stop(self) -> None:
        for w, _ in self.items:
            w.stop()
        for w, t in self.items:
            t.join(15)
            assert not t.is_alive(), "a worker thread did not stop within 15 s"
            w.close()
        self.items = []


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool()
    try:
        yield p
    finally:
        p.stop()
    if p.errors:
        raise p.errors[0]


def wait_registered(server: GearmandServer, fn: str, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while available_workers(server, fn) < n:
        if time.monotonic() > deadline:
            pytest.fail(f"only {available_workers(server, fn)} of {n} workers registered for {fn} "
                        f"on {server.address}")
        time.sleep(0.02)


class Spans:
    """(start, end, tag) of every job run by the recording worker functions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: List[Tuple[float, float, str]] = []

    def sleeper(self, tag: str, seconds: float) -> Callable[[Any], bytes]:
        def fn(job: Any) -> bytes:
            start = time.monotonic()
            time.sleep(seconds)
            end = time.monotonic()
            with self.lock:
                self.spans.append((start, end, tag))
            return b"r:" + bytes(job.workload)
        return fn

    def assert_all_overlap(self, expected: int) -> None:
        spans = list(self.spans)
        assert len(spans) == expected, spans
        starts = sorted(s for s, _, _ in spans)
        ends = sorted(e for _, e, _ in spans)
        t0 = starts[0]
        assert starts[-1] < ends[0], (
            "a job started only after another had finished (jobs ran in rounds): "
            f"starts={[round(s - t0, 3) for s in starts]} ends={[round(e - t0, 3) for e in ends]}")


def run_child(code: str, *args: str, timeout: float = 30.0) -> "subprocess.CompletedProcess[str]":
    """python -c code args...; a hang fails the test (a crash shows in returncode)."""
    return run([sys.executable, "-c", code, *args], timeout=timeout)


def describe_exit(proc: "subprocess.CompletedProcess[str]") -> str:
    rc = proc.returncode
    how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
    return f"child {how}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"


def echo(job: Any) -> bytes:
    return bytes(job.workload)


# =============================================================================================
# 1. leaving a stream early, then using the same client (crashed in gearman_client_run_tasks)
# =============================================================================================

CHUNKS = 6

STREAM_CHILD = r'''
import sys
from pygearman import GearmanClient

address, chunky, echo, how, first = sys.argv[1:6]

def say(*a):
    print(*a, flush=True)

c = GearmanClient(address, timeout=15)
got = []
if how == "break":
    with c.stream(chunky, "s") as chunks:
        for ch in chunks:
            got.append(ch)
            break
elif how == "exception":
    class Boom(Exception):
        pass
    try:
        with c.stream(chunky, "s") as chunks:
            for ch in chunks:
                got.append(ch)
                raise Boom("inside the loop")
    except Boom:
        say("CAUGHT")
elif how == "close":
    chunks = c.stream(chunky, "s")
    got.append(next(chunks))
    chunks.close()
elif how == "close_unstarted":
    chunks = c.stream(chunky, "s")
    chunks.close()
else:
    raise SystemExit("unknown scenario " + how)
say("LEFT", got)

def do_normal():
    say("DO_NORMAL", c.do_normal(echo, "one"))

def submit():
    say("SUBMIT", c.submit(echo, "two"))

def task_set():
    ts = [c.add_task(echo, "t%d" % i) for i in range(3)]
    out = c.run_tasks()
    say("TASKS", out == ts, [(t.state, t.result) for t in ts])

steps = {"do_normal": do_normal, "submit": submit, "run_tasks": task_set}
order = [first] + [k for k in ("do_normal", "submit", "run_tasks") if k != first]
for name in order:
    steps[name]()
say("MANY", c.submit_many(echo, ["m1", "m2"]))
with c.stream(chunky, "again") as chunks2:
    rest = list(chunks2)
say("STREAM", len(rest), chunks2.result)
c.close()
say("CHILD-OK")
'''


@pytest.fixture
def stream_functions(gearmand: GearmandServer, fname: Callable[[str], str],
                     pool: WorkerPool) -> Tuple[str, str]:
    chunky_fn, echo_fn = fname("chunky"), fname("echo")

    def chunky(job: Any) -> bytes:
        for i in range(CHUNKS):
            job.send_data(b"c%d" % i)
            time.sleep(0.05)
        return b"done:" + bytes(job.workload)

    # the abandoned job keeps one worker busy for a while: the others serve the next calls
    pool.add(gearmand.address, {chunky_fn: chunky, echo_fn: echo}, count=3)
    wait_registered(gearmand, echo_fn, 3)
    return chunky_fn, echo_fn


@pytest.mark.timeout(40)
@pytest.mark.parametrize("first", ["do_normal", "submit", "run_tasks"])
@pytest.mark.parametrize("how", ["break", "exception", "close", "close_unstarted"])
def test_client_works_after_leaving_a_stream_early(how: str, first: str, gearmand: GearmandServer,
                                                   stream_functions: Tuple[str, str]) -> None:
    """break out of the loop, raise inside it, or close() the stream before its job ended: the
    same client then runs do_normal, submit and a task set (each of them first, in turn),
    submit_many and another stream, with correct results."""
    chunky_fn, echo_fn = stream_functions
    proc = run_child(STREAM_CHILD, gearmand.address, chunky_fn, echo_fn, how, first)
    assert proc.returncode == 0, describe_exit(proc)
    lines = proc.stdout.splitlines()
    expected_left = "LEFT []" if how == "close_unstarted" else "LEFT [b'c0']"
    expected = {
        "LEFT": expected_left,
        "DO_NORMAL": "DO_NORMAL b'one'",
        "SUBMIT": "SUBMIT b'two'",
        "TASKS": "TASKS True [('complete', b't0'), ('complete', b't1'), ('complete', b't2')]",
        "MANY": "MANY [b'm1', b'm2']",
        "STREAM": f"STREAM {CHUNKS} b'done:again'",
    }
    for key, line in expected.items():
        assert line in lines, describe_exit(proc)
    if how == "exception":
        assert "CAUGHT" in lines
    assert lines[-1] == "CHILD-OK", describe_exit(proc)


# =============================================================================================
# 2. objects made with __new__ (no constructor ran) raise, never crash
# =============================================================================================

NEW_CHILD = r'''
import sys
from pygearman._libgearman import GearmanJob, GearmanTask, JobStream
kind, expr = sys.argv[1], sys.argv[2]
obj = {"JobStream": JobStream, "GearmanTask": GearmanTask, "GearmanJob": GearmanJob}[kind]
obj = obj.__new__(obj)
try:
    value = eval(expr, {"obj": obj})
    print("RETURNED", type(value).__name__, flush=True)
except Exception as e:
    print("RAISED", type(e).__name__, e, flush=True)
del obj
import gc
gc.collect()
print("CHILD-OK", flush=True)
'''

NEW_CASES = [
    ("JobStream", "next(obj)"),
    ("JobStream", "obj.__next__()"),
    ("JobStream", "list(obj)"),
    ("JobStream", "obj.result"),
    ("JobStream", "obj.task"),
    ("JobStream", "obj.close()"),
    ("JobStream", "obj.__exit__(None, None, None)"),
    ("JobStream", "repr(obj)"),
] + [("GearmanTask", f"obj.{p}") for p in (
    "function_name", "unique", "workload", "priority", "background", "handle", "state", "result",
    "error", "exception", "numerator", "denominator", "known", "running", "finished", "data",
    "warnings", "context")] + [
    ("GearmanTask", "repr(obj)"),
    ("GearmanTask", "str(obj)"),
] + [("GearmanJob", e) for e in (
    "obj.workload", "obj.handle", "obj.unique", "obj.function_name", "obj.send_status(1, 2)",
    "obj.send_data(b'x')", "obj.send_warning(b'x')", "obj.send_complete(b'x')", "obj.send_fail()",
    "obj.send_exception('boom')", "repr(obj)")]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind,expr", NEW_CASES, ids=[f"{k}-{e}" for k, e in NEW_CASES])
def test_objects_made_with_new_raise_or_return_never_crash(kind: str, expr: str) -> None:
    proc = run_child(NEW_CHILD, kind, expr, timeout=20)
    assert proc.returncode == 0, describe_exit(proc)
    out = proc.stdout.splitlines()
    assert out and out[-1] == "CHILD-OK", describe_exit(proc)
    assert out[0].startswith(("RETURNED", "RAISED")), describe_exit(proc)
    if kind == "JobStream" and expr in ("next(obj)", "obj.__next__()", "list(obj)"):
        assert out[0].startswith(("RAISED TypeError", "RAISED RuntimeError")), out[0]


# =============================================================================================
# 3. a task set over two servers: both servers' jobs run at the same time
# =============================================================================================

@pytest.fixture
def two(gearmand_factory: Callable[..., GearmandServer]) -> Tuple[GearmandServer, GearmandServer]:
    return gearmand_factory(), gearmand_factory()


@pytest.mark.timeout(40)
@pytest.mark.parametrize("uniques", [False, True], ids=["round-robin", "uniques"])
def test_two_server_task_set_jobs_overlap(uniques: bool, two: Tuple[GearmandServer, GearmandServer],
                                          fname: Callable[[str], str], pool: WorkerPool) -> None:
    a, b = two
    fn = fname("overlap")
    spans = Spans()
    # 10 workers per server: any split of the 10 tasks finds a free worker for every job
    pool.add(a.address, {fn: spans.sleeper("a", 0.6)}, count=10)
    pool.add(b.address, {fn: spans.sleeper("b", 0.6)}, count=10)
    wait_registered(a, fn, 10)
    wait_registered(b, fn, 10)
    with GearmanClient([a.address, b.address], timeout=30) as c:
        tasks = [c.add_task(fn, f"w{i}", unique=f"job-{i}" if uniques else None)
                 for i in range(10)]
        assert c.run_tasks() == tasks
    assert [(t.state, t.result) for t in tasks] == [("complete", b"r:w%d" % i) for i in range(10)]
    tags = {tag for _, _, tag in spans.spans}
    assert tags == {"a", "b"}, f"only {tags} got work: pick other uniques"
    spans.assert_all_overlap(10)


# =============================================================================================
# 4. a task set / batch larger than one chunk: the chunks' jobs run at the same time
# =============================================================================================

@pytest.mark.timeout(40)
@pytest.mark.parametrize("api", ["run_tasks", "submit_many"])
def test_jobs_of_several_chunks_overlap(api: str, gearmand_factory: Callable[..., GearmandServer],
                                        fname: Callable[[str], str], pool: WorkerPool) -> None:
    server = gearmand_factory()
    fn = fname("chunks")
    spans = Spans()
    pool.add(server.address, {fn: spans.sleeper("s", 0.6)}, count=12)
    wait_registered(server, fn, 12)
    data = [b"w%d" % i for i in range(12)]
    with GearmanClient(server.address, timeout=30) as c:
        if api == "run_tasks":
            tasks = [c.add_task(fn, d) for d in data]
            c.run_tasks(batch=5)
            assert [t.state for t in tasks] == ["complete"] * 12
            results = [t.result for t in tasks]
        else:
            results = c.submit_many(fn, data, batch=5)
    assert results == [b"r:" + d for d in data]
    spans.assert_all_overlap(12)


# =============================================================================================
# 5. coalescing: duplicate uniques in one task set / batch run one job
# =============================================================================================

class Counter:
    """A worker function that counts its runs and returns the run number."""

    def __init__(self, fail: bool = False, seconds: float = 0.3) -> None:
        self.n = 0
        self.lock = threading.Lock()
        self.fail = fail
        self.seconds = seconds

    def __call__(self, job: Any) -> bytes:
        with self.lock:
            self.n += 1
            run = self.n
        time.sleep(self.seconds)   # the duplicates reach the server while the job runs
        if self.fail:
            raise ValueError(f"run {run} failed")
        return b"run-%d" % run


@pytest.mark.timeout(30)
@pytest.mark.parametrize("copies", [2, 3])
def test_duplicate_uniques_in_a_task_set_run_one_job(copies: int, gearmand: GearmandServer,
                                                     client: GearmanClient,
                                                     fname: Callable[[str], str],
                                                     pool: WorkerPool) -> None:
    fn = fname("coalesce")
    counter = Counter()
    pool.add(gearmand.address, {fn: counter}, count=3)
    wait_registered(gearmand, fn, 3)
    tasks = [client.add_task(fn, "same", unique="dup") for _ in range(copies)]
    client.run_tasks(timeout=20)
    assert counter.n == 1, f"{counter.n} jobs ran for {copies} tasks with one unique"
    assert [t.state for t in tasks] == ["complete"] * copies
    assert {t.result for t in tasks} == {b"run-1"}
    assert len({t.handle for t in tasks}) == 1


@pytest.mark.timeout(30)
def test_mixed_duplicate_uniques_in_a_task_set(gearmand: GearmandServer, client: GearmanClient,
                                               fname: Callable[[str], str],
                                               pool: WorkerPool) -> None:
    fn = fname("coalesce_mixed")
    counter = Counter()
    pool.add(gearmand.address, {fn: counter}, count=3)
    wait_registered(gearmand, fn, 3)
    tasks = [client.add_task(fn, w, unique=u) for w, u in (("wa", "a"), ("wb", "b"), ("wa", "a"))]
    client.run_tasks(timeout=20)
    assert counter.n == 2
    assert [t.state for t in tasks] == ["complete"] * 3
    assert tasks[0].result == tasks[2].result != tasks[1].result


@pytest.mark.timeout(30)
@pytest.mark.parametrize("copies", [2, 3])
def test_submit_many_duplicate_uniques_run_one_job(copies: int, gearmand: GearmandServer,
                                                   client: GearmanClient,
                                                   fname: Callable[[str], str],
                                                   pool: WorkerPool) -> None:
    fn = fname("coalesce_many")
    counter = Counter()
    pool.add(gearmand.address, {fn: counter}, count=3)
    wait_registered(gearmand, fn, 3)
    out = client.submit_many(fn, [b"w"] * copies, uniques=["u"] * copies)
    assert out == [b"run-1"] * copies
    assert counter.n == 1


@pytest.mark.timeout(90)
def test_big_batches_one_after_another(gearmand: GearmandServer, client: GearmanClient,
                                       fname: Callable[[str], str], pool: WorkerPool) -> None:
    """Batches whose spec arrays take megabytes (mapped, not from malloc), a bigger one, a small
    one, then a big foreground one: the client's engine is reused and grown each time, and every
    handle and result comes back in input order."""
    fn = fname("big")
    for n in (4000, 9000, 50):
        hs = client.submit_background_many(fn, [b"%d" % i for i in range(n)], batch=500)
        assert len(hs) == n and len(set(hs)) == n
        assert all(h.server == gearmand.address for h in hs)
    echo = fname("big_echo")
    pool.add(gearmand.address, {echo: lambda job: job.workload}, count=2)
    wait_registered(gearmand, echo, 2)
    ws = [b"%d" % i for i in range(4000)]
    assert client.submit_many(echo, ws) == ws
    assert client.submit_many(echo, ws[:3], uniques=["a", "b", "a"]) == [b"0", b"1", b"0"]


@pytest.mark.timeout(30)
def test_submit_many_mixed_duplicate_uniques(gearmand: GearmandServer, client: GearmanClient,
                                             fname: Callable[[str], str], pool: WorkerPool) -> None:
    fn = fname("coalesce_many_mixed")
    counter = Counter()
    pool.add(gearmand.address, {fn: counter}, count=3)
    wait_registered(gearmand, fn, 3)
    out = client.submit_many(fn, [b"wa", b"wb", b"wa"], uniques=["a", "b", "a"])
    assert counter.n == 2
    assert out[0] == out[2] != out[1]
    assert set(out) == {b"run-1", b"run-2"}


@pytest.mark.timeout(30)
def test_coalesced_job_that_raises_fails_every_duplicate_task(gearmand: GearmandServer,
                                                              client: GearmanClient,
                                                              fname: Callable[[str], str],
                                                              pool: WorkerPool) -> None:
    fn = fname("coalesce_boom")
    counter = Counter(fail=True)
    pool.add(gearmand.address, {fn: counter}, count=3)
    wait_registered(gearmand, fn, 3)
    tasks = [client.add_task(fn, "x", unique="boom") for _ in range(3)]
    client.run_tasks(timeout=20)
    assert counter.n == 1
    for t in tasks:
        assert t.state in ("exception", "error"), (t, t.error)
        assert isinstance(t.error, pygearman.JobException), (t, t.error)
        assert t.error.message == "ValueError: run 1 failed"
        assert t.result is None


@pytest.mark.timeout(30)
def test_coalesced_job_that_raises_fails_every_duplicate_of_a_batch(
        gearmand: GearmandServer, client: GearmanClient, fname: Callable[[str], str],
        pool: WorkerPool) -> None:
    fn = fname("coalesce_boom_many")
    counter = Counter(fail=True)
    pool.add(gearmand.address, {fn: counter}, count=3)
    wait_registered(gearmand, fn, 3)
    out = client.submit_many(fn, [b"y"] * 3, uniques=["boom"] * 3, return_exceptions=True)
    assert counter.n == 1
    assert all(isinstance(r, pygearman.JobException) for r in out), out
    assert {r.message for r in out} == {"ValueError: run 1 failed"}
    with pytest.raises(pygearman.JobException):
        client.submit_many(fn, [b"z"] * 2, uniques=["boom2"] * 2)
    assert counter.n == 2


@pytest.mark.timeout(30)
def test_background_duplicates_share_one_handle(gearmand_factory: Callable[..., GearmandServer],
                                                fname: Callable[[str], str]) -> None:
    server = gearmand_factory()
    fn = fname("coalesce_bg")   # no worker: the jobs stay queued
    with GearmanClient(server.address, timeout=20) as c:
        tasks = [c.add_task_background(fn, "bg", unique="bgdup") for _ in range(3)]
        other = c.add_task_background(fn, "bg", unique="bgother")
        c.run_tasks()
        # queued, not done: background tasks end as 'created'
        assert [t.state for t in tasks + [other]] == ["created"] * 4
        assert all(t.handle and t.handle.startswith("H:") for t in tasks + [other])
        assert len({t.handle for t in tasks}) == 1
        assert other.handle != tasks[0].handle
        assert c.do_background(fn, "bg", unique="bgdup") == tasks[0].handle
    assert server.admin("status").count(fn + "\t2\t") == 1   # two jobs queued, not five


# =============================================================================================
# 6. a single job's callbacks are its own: the client-wide task-set callbacks stay out of it
# =============================================================================================

@pytest.fixture
def wide_callbacks(client: GearmanClient) -> Iterator[List[str]]:
    calls: List[str] = []
    client.set_created_callback(lambda t: calls.append("created"))
    client.set_data_callback(lambda t, chunk: calls.append("data"))
    client.set_warning_callback(lambda t, chunk: calls.append("warning"))
    client.set_status_callback(lambda t: calls.append("status"))
    client.set_complete_callback(lambda t: calls.append("complete"))
    client.set_fail_callback(lambda t: calls.append("fail"))
    client.set_exception_callback(lambda t: calls.append("exception"))
    yield calls
    client.clear_callbacks()


def chatty(job: Any) -> bytes:
    for i in range(3):
        job.send_data(b"chunk%d" % i)
        job.send_status(i + 1, 3)
    job.send_warning(b"careful")
    return b"end"


def chatty_boom(job: Any) -> bytes:
    job.send_data(b"partial")
    raise ValueError("nope")


@pytest.fixture
def chatty_fns(gearmand: GearmandServer, fname: Callable[[str], str],
               pool: WorkerPool) -> Tuple[str, str]:
    fc, fb = fname("chatty"), fname("chatty_boom")
    pool.add(gearmand.address, {fc: chatty, fb: chatty_boom})
    wait_registered(gearmand, fc, 1)
    return fc, fb


def test_plain_submit_does_not_call_client_wide_callbacks(client: GearmanClient,
                                                          wide_callbacks: List[str],
                                                          chatty_fns: Tuple[str, str]) -> None:
    fc, fb = chatty_fns
    assert client.submit(fc, "") == b"end"
    assert client.do_normal(fc, "") == b"end"
    with pytest.raises(pygearman.JobException):
        client.submit(fb, "")
    assert wide_callbacks == []


def test_submit_with_on_data_does_not_call_client_wide_callbacks(
        client: GearmanClient, wide_callbacks: List[str], chatty_fns: Tuple[str, str]) -> None:
    fc, fb = chatty_fns
    got: List[bytes] = []
    assert client.submit(fc, "", on_data=got.append) == b"end"
    assert got == [b"chunk0", b"chunk1", b"chunk2"]
    assert wide_callbacks == [], "submit(on_data=...) called the client-wide task-set callbacks"


def test_submit_with_on_status_does_not_call_client_wide_callbacks(
        client: GearmanClient, wide_callbacks: List[str], chatty_fns: Tuple[str, str]) -> None:
    fc, fb = chatty_fns
    got: List[Tuple[int, int]] = []
    assert client.submit(fc, "", on_status=lambda n, d: got.append((n, d))) == b"end"
    assert got == [(1, 3), (2, 3), (3, 3)]
    assert wide_callbacks == [], "submit(on_status=...) called the client-wide task-set callbacks"


def test_failing_submit_with_on_data_does_not_call_client_wide_callbacks(
        client: GearmanClient, wide_callbacks: List[str], chatty_fns: Tuple[str, str]) -> None:
    fc, fb = chatty_fns
    got: List[bytes] = []
    with pytest.raises(pygearman.JobException, match="nope"):
        client.submit(fb, "", on_data=got.append)
    assert got == [b"partial"]
    assert wide_callbacks == [], "submit(on_data=...) called the client-wide task-set callbacks"


def test_stream_does_not_call_client_wide_callbacks(client: GearmanClient,
                                                    wide_callbacks: List[str],
                                                    chatty_fns: Tuple[str, str]) -> None:
    """Not in the brief's list: stream() is a single job too (same code path as submit)."""
    fc, fb = chatty_fns
    with client.stream(fc, "") as chunks:
        assert list(chunks) == [b"chunk0", b"chunk1", b"chunk2"]
    assert chunks.result == b"end"
    assert wide_callbacks == [], "stream() called the client-wide task-set callbacks"


def test_task_sets_still_call_client_wide_callbacks(client: GearmanClient,
                                                    wide_callbacks: List[str],
                                                    chatty_fns: Tuple[str, str]) -> None:
    """The control: after single jobs with callbacks, a task set still reports client-wide."""
    fc, fb = chatty_fns
    assert client.submit(fc, "", on_data=lambda chunk: None) == b"end"
    wide_callbacks.clear()
    t = client.add_task(fc, "")
    client.run_tasks()
    assert t.result == b"end"
    assert wide_callbacks.count("data") == 3 and wide_callbacks.count("complete") == 1
    assert wide_callbacks[0] == "created" and wide_callbacks[-1] == "complete"


# =============================================================================================
# 7. failure paths of a multi-server task set
# =============================================================================================

@pytest.mark.timeout(40)
@pytest.mark.parametrize("dead_first", [True, False], ids=["dead-first", "dead-second"])
def test_task_set_fails_over_from_a_closed_port(dead_first: bool, gearmand: GearmandServer,
                                                fname: Callable[[str], str],
                                                pool: WorkerPool) -> None:
    fn = fname("failover")
    pool.add(gearmand.address, {fn: echo}, count=2)
    wait_registered(gearmand, fn, 2)
    dead = f"127.0.0.1:{free_port()}"
    servers = [dead, gearmand.address] if dead_first else [gearmand.address, dead]
    with GearmanClient(servers, timeout=20) as c:
        plain = [c.add_task(fn, f"p{i}") for i in range(6)]
        uniq = [c.add_task(fn, f"u{i}", unique=f"fo-{i}") for i in range(10)]
        high = c.add_task_high(fn, "h")
        assert c.run_tasks() == plain + uniq + [high]
        for t in plain + uniq + [high]:
            assert (t.state, t.result) == ("complete", bytes(t.workload)), (t, t.error)
        assert c.submit_many(fn, [b"a", b"b", b"c", b"d"], batch=2) == [b"a", b"b", b"c", b"d"]
        assert c.submit_many(fn, [b"x%d" % i for i in range(6)],
                             uniques=[f"fm-{i}" for i in range(6)]) == [b"x%d" % i for i in range(6)]
        # a second task set on the same client, now that the dead server is known
        again = [c.add_task(fn, f"q{i}", unique=f"fo2-{i}") for i in range(6)]
        c.run_tasks()
        assert [(t.state, t.result) for t in again] == [("complete", b"q%d" % i) for i in range(6)]


@pytest.mark.timeout(40)
def test_task_set_fails_over_when_a_server_went_down(two: Tuple[GearmandServer, GearmandServer],
                                                     fname: Callable[[str], str],
                                                     pool: WorkerPool) -> None:
    """The client talked to both servers, then one stops: the next task set completes on the
    other (its connection to the stopped one is stale, not refused at connect)."""
    a, b = two
    fn = fname("failover_stale")
    pool.add(a.address, {fn: echo}, count=2)
    pool.add(b.address, {fn: echo}, count=2)
    wait_registered(a, fn, 2)
    wait_registered(b, fn, 2)
    with GearmanClient([a.address, b.address], timeout=20) as c:
        first = [c.add_task(fn, f"f{i}") for i in range(4)]
        c.run_tasks()
        assert [t.state for t in first] == ["complete"] * 4
        b.stop()
        tasks = [c.add_task(fn, f"s{i}") for i in range(6)] + \
                [c.add_task(fn, f"v{i}", unique=f"st-{i}") for i in range(6)]
        c.run_tasks()
        for t in tasks:
            assert (t.state, t.result) == ("complete", bytes(t.workload)), (t, t.error)


@pytest.mark.timeout(40)
@pytest.mark.parametrize("servers", [1, 2], ids=["one-server", "two-servers"])
def test_deadline_in_the_middle_of_a_task_set(servers: int,
                                              gearmand_factory: Callable[..., GearmandServer],
                                              fname: Callable[[str], str],
                                              pool: WorkerPool) -> None:
    """A deadline passes while one slow job runs: run_tasks raises GearmanTimeoutError and the
    tasks that finished before keep 'complete' and their result. With two servers the slow task
    is the first (it goes to the first server), so the other server's tasks finish in time only
    if both servers' jobs run at the same time."""
    srvs = [gearmand_factory() for _ in range(servers)]
    fast, slow = fname("fast"), fname("slow")
    release = threading.Event()

    def slow_fn(job: Any) -> bytes:
        release.wait(8)
        return b"late"

    try:
        for s in srvs:
            pool.add(s.address, {fast: echo, slow: slow_fn}, count=4)
        for s in srvs:
            wait_registered(s, fast, 4)
        done: List[str] = []
        with GearmanClient([s.address for s in srvs], timeout=20) as c:
            slow_task = c.add_task(slow, "s", on_complete=lambda t: done.append("slow"))
            fast_tasks = [c.add_task(fast, f"f{i}", context=i,
                                     on_complete=lambda t: done.append(t.context))
                          for i in range(8)]
            deadline = 1.5
            t0 = time.monotonic()
            with pytest.raises(pygearman.GearmanTimeoutError):
                c.run_tasks(timeout=deadline)
            assert time.monotonic() - t0 < deadline + 2.0
            assert "slow" not in done
            assert slow_task.state != "complete" and slow_task.result is None
            for t in fast_tasks:
                if t.context in done:
                    assert (t.state, t.result) == ("complete", b"f%d" % t.context), t
            assert sorted(i for i in done if i != "slow") == list(range(8)), \
                f"only these fast tasks finished before the deadline: {done}"
            release.set()
            # the client is usable afterwards
            assert c.do_normal(fast, "after") == b"after"
            t = c.add_task(fast, "again")
            c.run_tasks()
            assert t.result == b"again"
    finally:
        release.set()
