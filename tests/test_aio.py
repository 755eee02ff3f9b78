"""pygearman.aio: AsyncClient, task sets, cancellation, AsyncWorker (against a real gearmand)."""
from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any, Awaitable, Callable, List, TypeVar

import pytest

from pygearman import GearmanClient, GearmanTimeoutError, JobException, JobFailed
from pygearman.admin import AdminClient
from pygearman.aio import AsyncClient, AsyncJob, AsyncTask, AsyncWorker

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def eventually(check: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def sleeper(seconds: float) -> Callable[[Any], bytes]:
    def fn(job: Any) -> bytes:
        time.sleep(seconds)
        return b"slept " + job.workload
    return fn


# -- AsyncClient --------------------------------------------------------------------------------

def test_event_loop_keeps_ticking_while_a_slow_job_runs(gearmand, fname, start_worker):
    fn = fname("slow")
    start_worker(gearmand.address, {fn: sleeper(1.0)})

    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async with AsyncClient(gearmand.address, timeout=20) as client:
            t = asyncio.create_task(ticker())
            start = time.monotonic()
            assert await client.submit(fn, b"x") == b"slept x"
            elapsed = time.monotonic() - start
            t.cancel()
        assert 1.0 <= elapsed < 3
        assert ticks >= 40, ticks          # ~100 at 10 ms; a blocked loop would give ~1

    run(main())


def test_concurrent_submits_run_in_parallel(gearmand, fname, start_worker):
    fn = fname("slow")
    for _ in range(4):
        start_worker(gearmand.address, {fn: sleeper(0.5)})

    async def main() -> None:
        async with AsyncClient(gearmand.address, timeout=20, max_workers=4) as client:
            start = time.monotonic()
            results = await asyncio.gather(*(client.submit(fn, str(i)) for i in range(4)))
            assert time.monotonic() - start < 1.5       # not 4 x 0.5 s
            assert results == [b"slept 0", b"slept 1", b"slept 2", b"slept 3"]
            # the four calls of one loop turn went out as one pipelined batch, in one thread
            assert client.threads == 1

    run(main())


def test_exceptions_map_to_job_exception(gearmand, fname, start_worker):
    fn, fail = fname("boom"), fname("fail")

    def boom(job: Any) -> bytes:
        raise ValueError("bad input")

    def failing(job: Any) -> None:
        job.send_fail()

    start_worker(gearmand.address, {fn: boom, fail: failing})

    async def main() -> None:
        async with AsyncClient(gearmand.address, timeout=20) as client:
            with pytest.raises(JobException) as info:
                await client.submit(fn, b"x")
            assert info.value.message == "ValueError: bad input"
            with pytest.raises(JobFailed):
                await client.submit(fail, b"x")
            results = await client.submit_many(fn, [b"a", b"b"], return_exceptions=True)
            assert [type(r) for r in results] == [JobException, JobException]
            with pytest.raises(GearmanTimeoutError):
                await client.submit(fname("nobody"), b"x", timeout=0.3)

    run(main())


def test_background_status_and_batches(gearmand, fname, start_worker):
    fn = fname("echo")
    done = threading.Event()

    def echo(job: Any) -> bytes:
        if job.workload == b"wait":
            job.send_status(1, 2)
            done.wait(10)
        return job.workload

    start_worker(gearmand.address, {fn: echo})

    async def main() -> None:
        async with AsyncClient(gearmand.address, timeout=20) as client:
            handle = await client.submit_background(fn, b"wait")
            assert handle.startswith("H:")
            for _ in range(200):
                status = await client.job_status(handle)
                if status.running and status.numerator:   # running, and the status has arrived
                    break
                await asyncio.sleep(0.02)
            assert status.known and status.running and (status.numerator, status.denominator) == (1, 2)
            done.set()
            for _ in range(200):
                if not (await client.job_status(handle)).known:
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the background job did not finish")
            statuses: List[Any] = []
            loop_thread = threading.current_thread()
            assert await client.submit(fn, b"wait", on_status=lambda n, d: statuses.append(
                (n, d, threading.current_thread() is loop_thread))) == b"wait"
            await asyncio.sleep(0.05)
            assert statuses == [(1, 2, True)]      # called on the event loop's thread
            h2 = await client.submit(fn, b"bg", background=True)
            assert isinstance(h2, str) and h2.startswith("H:")
            assert await client.submit_many(fn, [b"1", b"2", b"3"]) == [b"1", b"2", b"3"]
            handles = await client.submit_background_many(fn, [b"4", b"5"])
            assert len(handles) == 2 and all(h.startswith("H:") for h in handles)
            assert await client.echo(b"hello")

    run(main())


def test_task_set_as_completed(gearmand, fname, start_worker):
    fn, bad = fname("sleepy"), fname("bad")

    def sleepy(job: Any) -> bytes:
        time.sleep(float(job.workload))
        return job.workload

    def boom(job: Any) -> bytes:
        raise RuntimeError("no")

    for _ in range(4):
        start_worker(gearmand.address, {fn: sleepy, bad: boom})

    async def main() -> None:
        async with AsyncClient(gearmand.address, timeout=20) as client:
            ts = client.task_set()
            for d in ("0.6", "0.1", "0.35"):
                ts.add(fn, d, context=d)
            err = ts.add(bad, b"x", context="bad")
            assert isinstance(err, AsyncTask) and isinstance(err, asyncio.Future)
            order: List[Any] = []
            async for task in ts.as_completed():
                if task.exception() is not None:
                    order.append((task.context, type(task.exception()).__name__))
                else:
                    order.append((task.context, task.result()))
                    assert task.handle and task.handle.startswith("H:")
            assert order == [("bad", "JobException"), ("0.1", b"0.1"), ("0.35", b"0.35"),
                             ("0.6", b"0.6")]
            assert str(err.exception()) == "RuntimeError: no"
            # gather, asyncio.as_completed, background tasks, async with
            async with client.task_set() as ts2:
                a = ts2.add(fn, "0.05")
                b = ts2.add(fn, "0", background=True)
            assert a.result() == b"0.05" and b.result().startswith("H:")
            ts3 = client.task_set()
            futs = [ts3.add(fn, "0") for _ in range(5)]
            got = [await f for f in asyncio.as_completed(futs)]
            assert got == [b"0"] * 5
            assert await ts3.gather() == [b"0"] * 5

    run(main())


def test_task_set_timeout_and_cancel(gearmand, fname, start_worker):
    fn = fname("sleepy")
    calls: List[bytes] = []

    def sleepy(job: Any) -> bytes:
        calls.append(job.workload)
        time.sleep(float(job.workload))
        return job.workload

    start_worker(gearmand.address, {fn: sleepy})
    start_worker(gearmand.address, {fn: sleepy})

    async def main() -> None:
        async with AsyncClient(gearmand.address, timeout=20) as client:
            ts = client.task_set(timeout=0.5)
            quick = ts.add(fn, "0.05")
            slow = ts.add(fn, "2")
            assert await quick == b"0.05"
            with pytest.raises(GearmanTimeoutError):
                await slow
            # a task cancelled before its batch is sent never reaches the server
            ts2 = client.task_set()
            dropped = ts2.add(fn, "0.01", context="dropped")
            kept = ts2.add(fn, "0.02")
            dropped.cancel()
            seen = [t async for t in ts2.as_completed()]
            assert seen == [kept] and kept.result() == b"0.02"
            assert b"0.01" not in calls

    run(main())


def test_cancelling_a_running_submit_does_not_hang_or_leak(gearmand, fname, start_worker):
    fn = fname("slow")
    start_worker(gearmand.address, {fn: sleeper(1.5)})
    baseline = threading.active_count()

    async def main() -> None:
        client = AsyncClient(gearmand.address, idle_timeout=0.3)
        try:
            call = asyncio.create_task(client.submit(fn, b"x", timeout=10))
            await eventually(lambda: client.busy == 1, what="the call to start")
            await asyncio.sleep(0.2)
            start = time.monotonic()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert time.monotonic() - start < 0.2          # no hang
            assert client.abandoned == 1
            assert threading.active_count() == baseline + 1
            # the thread is freed when the job completes (~1.5 s), then exits when idle
            await eventually(lambda: client.abandoned == 0, 5, "the abandoned call to end")
            await eventually(lambda: threading.active_count() == baseline, 5,
                             "the thread to exit")
            # wait_for + timeout is the same thing
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.submit(fn, b"y", timeout=10), 0.3)
            assert client.abandoned == 1
            await eventually(lambda: client.abandoned == 0, 5, "the second call to end")
        finally:
            await client.aclose()
        await eventually(lambda: threading.active_count() == baseline, 5, "all threads to exit")

    run(main())


def test_cancelled_call_without_worker_ends_at_its_deadline(gearmand, fname):
    fn = fname("nobody")
    baseline = threading.active_count()

    async def main() -> None:
        async with AsyncClient(gearmand.address, idle_timeout=0.2) as client:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.submit(fn, b"x", timeout=1.0), 0.2)
            assert client.abandoned == 1
            start = time.monotonic()
            await eventually(lambda: client.abandoned == 0, 5, "the deadline")
            assert time.monotonic() - start < 1.5
        await eventually(lambda: threading.active_count() == baseline, 5, "the thread to exit")

    run(main())


def test_a_call_cancelled_while_queued_is_never_sent(gearmand, fname, start_worker):
    fn = fname("count")
    calls: List[bytes] = []

    def count(job: Any) -> bytes:
        calls.append(job.workload)
        time.sleep(0.3)
        return job.workload

    start_worker(gearmand.address, {fn: count})

    async def main() -> None:
        async with AsyncClient(gearmand.address, timeout=10, max_workers=1) as client:
            first = asyncio.create_task(client.submit(fn, b"first"))
            await asyncio.sleep(0.05)           # a later loop turn: a batch of its own, which
            second = asyncio.create_task(client.submit(fn, b"second"))   # waits for the thread
            await asyncio.sleep(0.1)
            second.cancel()
            third = asyncio.create_task(client.submit(fn, b"third"))
            third.cancel()                      # cancelled in the turn it was made: never sent
            assert await first == b"first"
            with pytest.raises(asyncio.CancelledError):
                await second
            with pytest.raises(asyncio.CancelledError):
                await third
            assert client.abandoned == 0
            await asyncio.sleep(0.5)
        assert calls == [b"first"]

    run(main())


def test_pipelined_submits_keep_per_call_options(gearmand, fname, start_worker):
    from pygearman import Priority
    fn, boom, nobody = fname("echo"), fname("boom"), fname("nobody")

    def explode(job: Any) -> bytes:
        raise ValueError("only me")

    start_worker(gearmand.address, {fn: lambda job: job.workload + b"/" + job.unique.encode(),
                                    boom: explode})

    async def main() -> None:
        async with AsyncClient(gearmand.address, timeout=20) as client:
            tasks_before = len(asyncio.all_tasks())
            calls = [client.submit(fn, b"%d" % i) for i in range(200)]
            assert all(isinstance(c, asyncio.Future) for c in calls)   # no Task per call
            if sys.version_info >= (3, 10):     # 3.9's gather() wraps anything coroutine-like
                assert len(asyncio.all_tasks()) == tasks_before
            calls += [client.submit(boom, b"x"),
                      client.submit(fn, b"hi", priority=Priority.HIGH, unique="u-hi"),
                      client.submit(fn, b"lo", priority=Priority.LOW, unique="u-lo"),
                      client.submit(fn, b"bg", background=True),
                      client.submit(fn, b"bad", priority=7),             # type: ignore[arg-type]
                      client.submit(nobody, b"x", timeout=0.3)]
            out = await asyncio.gather(*calls, return_exceptions=True)
            assert all(o.startswith(b"%d/" % i) for i, o in enumerate(out[:200]))
            assert isinstance(out[200], JobException) and out[200].message == "ValueError: only me"
            assert out[201] == b"hi/u-hi" and out[202] == b"lo/u-lo"
            assert isinstance(out[203], str) and out[203].startswith("H:")
            assert isinstance(out[204], ValueError)
            assert isinstance(out[205], GearmanTimeoutError)
            assert isinstance(out[205], asyncio.TimeoutError)
            # still a coroutine for create_task(), and awaitable once done
            t = asyncio.create_task(client.submit(fn, b"t", unique="u-t"))
            assert await t == b"t/u-t"
            c = client.submit(fn, b"twice", unique="u-2")
            assert await c == b"twice/u-2" and await c == b"twice/u-2"

    run(main())
    # no running loop when called: a coroutine, run by asyncio.run
    client = AsyncClient(gearmand.address, timeout=20)
    assert run(client.submit(fn, b"r", unique="u-r")) == b"r/u-r"
    run(client.aclose())


def test_aclose_with_calls_pending_and_loop_gone(gearmand, fname, start_worker):
    fn = fname("slow")
    start_worker(gearmand.address, {fn: sleeper(0.5)})
    client = AsyncClient(gearmand.address, timeout=10, max_workers=1, idle_timeout=0.3)

    async def first() -> None:
        running = client.submit(fn, b"a")
        await asyncio.sleep(0.1)                 # its batch holds the only thread
        queued = client.submit(fn, b"b")
        await asyncio.sleep(0.05)
        await client.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await queued                          # never sent
        assert await running == b"slept a"       # a running batch finishes

    run(first())
    client = AsyncClient(gearmand.address, timeout=10, idle_timeout=0.3)

    async def leave() -> None:
        asyncio.create_task(client.submit(fn, b"left"))
        client.submit(fn, b"never awaited")      # its result arrives after the loop is gone
        await asyncio.sleep(0.1)                 # running when asyncio.run() ends

    run(leave())                                 # cancels the task, closes the loop
    assert client.abandoned == 1

    async def later() -> None:
        await eventually(lambda: client.abandoned == 0 and client.busy == 0, 5,
                         "the jobs to end")
        assert await client.submit(fn, b"again") == b"slept again"
        await client.aclose()

    run(later())


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_a_client_used_before_fork_works_in_the_child(gearmand, fname, start_worker):
    import os
    fn = fname("echo")
    start_worker(gearmand.address, {fn: lambda job: job.workload})
    client = AsyncClient(gearmand.address, timeout=10)

    async def some(tag: bytes) -> List[Any]:
        return list(await asyncio.gather(*(client.submit(fn, tag) for _ in range(20))))

    assert run(some(b"p")) == [b"p"] * 20            # threads and connections made before
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if run(asyncio.wait_for(some(b"c"), 8)) == [b"c"] * 20 else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child hung")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(status) == 0
    assert run(some(b"p2")) == [b"p2"] * 20
    run(client.aclose())


def test_aio_examples(gearmand):
    import os
    import signal
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    worker = subprocess.Popen([sys.executable, os.path.join(root, "examples", "aio_worker.py"),
                               gearmand.address], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        out = subprocess.run([sys.executable, os.path.join(root, "examples", "aio_client.py"),
                              gearmand.address], capture_output=True, text=True, timeout=40)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "All The World's A Stage"
        assert sorted(lines[1:3]) == ["line 0: To Be, Or Not To Be", "line 1: That Is The Question"]
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    assert worker.stdout is not None and worker.stdout.read() == "processed 4 jobs\n"


def test_aclose_and_closed_client(gearmand):
    async def main() -> None:
        client = AsyncClient(gearmand.address)
        assert not client.closed
        await client.aclose()
        await client.aclose()
        assert client.closed
        with pytest.raises(RuntimeError, match="closed"):
            await client.submit("x", b"")
        with pytest.raises(RuntimeError, match="closed"):
            client.task_set()

    run(main())
    with pytest.raises(ValueError):
        AsyncClient(gearmand.address, max_workers=0)
    with pytest.raises(ValueError):
        AsyncClient("not a server:xx")


# -- AsyncWorker --------------------------------------------------------------------------------

def sync_client_call(address: str, fn: str, data: bytes, **kw: Any) -> Any:
    with GearmanClient(address, timeout=20) as c:
        return c.submit(fn, data, **kw)


def test_async_worker_serves_a_sync_client(gearmand, fname):
    fn, bad, plain = fname("async_title"), fname("async_bad"), fname("plain")

    async def main() -> None:
        worker = AsyncWorker(gearmand.address)
        loop_thread = threading.current_thread()
        seen_threads: List[Any] = []

        @worker.function(fn)
        async def title(job: AsyncJob) -> str:
            seen_threads.append(threading.current_thread())
            await job.send_status(1, 2)
            await job.send_data(b"chunk")
            await asyncio.sleep(0.05)
            return job.workload.decode().title()

        @worker.function(bad)
        async def failing(job: AsyncJob) -> bytes:
            await asyncio.sleep(0)
            raise KeyError("missing")

        def sync_fn(job: Any) -> bytes:
            seen_threads.append(threading.current_thread())
            return job.workload.upper()

        worker.add_function(plain, sync_fn)
        runner = asyncio.create_task(worker.run())
        loop = asyncio.get_running_loop()
        statuses: List[Any] = []
        chunks: List[bytes] = []
        result = await loop.run_in_executor(None, lambda: sync_client_call(
            gearmand.address, fn, b"hello world", on_status=lambda n, d: statuses.append((n, d)),
            on_data=chunks.append))
        assert result == b"Hello World"
        assert statuses == [(1, 2)] and chunks == [b"chunk"]
        with pytest.raises(JobException) as info:
            await loop.run_in_executor(None, sync_client_call, gearmand.address, bad, b"x")
        assert info.value.message == "KeyError: 'missing'"
        assert await loop.run_in_executor(None, sync_client_call, gearmand.address, plain,
                                          b"abc") == b"ABC"
        assert seen_threads[0] is loop_thread          # the coroutine ran on the loop
        assert seen_threads[1] is not loop_thread      # the plain function in the worker thread
        worker.stop()
        assert await asyncio.wait_for(runner, 10) == 3
        assert not worker.running and worker.jobs_processed == 3

    run(main())


def test_async_worker_concurrency_and_loop_stays_free(gearmand, fname):
    fn = fname("async_sleep")

    async def main() -> None:
        worker = AsyncWorker(gearmand.address, concurrency=3, identifier="aw")

        @worker.function(fn)
        async def nap(job: AsyncJob) -> bytes:
            await asyncio.sleep(0.5)
            return job.workload

        runner = asyncio.create_task(worker.run())
        async with AsyncClient(gearmand.address, timeout=20) as client:
            with AdminClient(gearmand.address) as admin:
                await eventually(lambda: sum(fs.workers for fs in admin.status()
                                             if fs.function == fn) == 3, what="3 connections")
            start = time.monotonic()
            results = await client.submit_many(fn, [b"a", b"b", b"c"])
            assert results == [b"a", b"b", b"c"]
            assert time.monotonic() - start < 1.2        # 3 at once, not 1.5 s
        worker.stop()
        assert await asyncio.wait_for(runner, 10) == 3

    run(main())


def test_cancelling_worker_run_finishes_the_job_in_hand(gearmand, fname):
    fn = fname("async_long")

    async def main() -> None:
        worker = AsyncWorker(gearmand.address)
        started = asyncio.Event()

        @worker.function(fn)
        async def long(job: AsyncJob) -> bytes:
            started.set()
            await asyncio.sleep(0.5)
            return b"done " + job.workload

        runner = asyncio.create_task(worker.run())
        loop = asyncio.get_running_loop()
        pending = loop.run_in_executor(None, sync_client_call, gearmand.address, fn, b"x")
        await asyncio.wait_for(started.wait(), 10)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert await asyncio.wait_for(pending, 10) == b"done x"
        assert not worker.running

    run(main())


def test_async_worker_run_timeout_and_errors(gearmand, fname):
    async def main() -> None:
        worker = AsyncWorker(gearmand.address)
        with pytest.raises(RuntimeError, match="no functions"):
            await worker.run()

        async def f(job: AsyncJob) -> bytes:
            return b""

        worker.add_function(fname("f"), f)
        start = time.monotonic()
        assert await worker.run(timeout=0.3) == 0
        assert time.monotonic() - start < 3
        with pytest.raises(TypeError):
            worker.add_function("x", 42)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            AsyncWorker(gearmand.address, concurrency=0)

    run(main())


def test_async_stream_yields_chunks_then_the_result(gearmand, fname) -> None:
    import asyncio
    import threading
    import time

    from pygearman import GearmanWorker
    from pygearman.aio import AsyncClient

    fn = fname("chunks")

    def chunky(job):  # type: ignore[no-untyped-def]
        for i in range(4):
            job.send_data(b"c%d" % i)
            time.sleep(0.02)
        return b"done"

    w = GearmanWorker(gearmand.address)
    w.add_function(fn, chunky)
    t = threading.Thread(target=w.run, kwargs={"timeout": 30}, daemon=True)
    t.start()

    async def main() -> None:
        async with AsyncClient(gearmand.address, timeout=10) as c:
            async with c.stream(fn, "x") as chunks:
                got = [chunk async for chunk in chunks]
            assert got == [b"c0", b"c1", b"c2", b"c3"] and chunks.result == b"done"
            async with c.stream(fn, "y") as chunks:          # leave early
                async for chunk in chunks:
                    assert chunk == b"c0"
                    break
            assert await c.submit(fn, "z") == b"done"          # the client goes on

    try:
        asyncio.run(main())
    finally:
        w.stop()
        t.join(10)
        w.close()


def test_concurrent_submit_background_calls_go_out_together(gearmand, fname) -> None:
    """submit_background() without when= joins the turn's pipelined batch: every call gets its
    own JobHandle (with its server), and every job reaches the queue once."""
    fn = fname("bg-batch")

    async def main() -> List[Any]:
        async with AsyncClient(gearmand.address, timeout=20) as client:
            hs = await asyncio.gather(*(client.submit_background(fn, b"%d" % i)
                                        for i in range(300)))
            dup = await asyncio.gather(client.submit_background(fn, b"x", unique="same"),
                                       client.submit_background(fn, b"x", unique="same"))
            return list(hs) + list(dup)

    handles = run(main())
    assert all(h.startswith("H:") and h.server == gearmand.address for h in handles)
    assert len(set(handles[:300])) == 300 and handles[300] == handles[301]
    with AdminClient(gearmand.address) as admin:
        queued = {row.function: row.total for row in admin.status()}
    assert queued.get(fn) == 301
