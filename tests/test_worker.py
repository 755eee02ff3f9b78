"""Worker: functions, the job object, results, exceptions, work()/run()/stop()."""
from __future__ import annotations

import threading
import time

import pytest

import pygearman
from pygearman import GearmanClient, GearmanJob, GearmanWorker

pytestmark = pytest.mark.timeout(60)


def test_job_attributes(gearmand, client, fname, start_worker):
    fn = fname("attrs")
    seen = {}

    def work(job):
        seen.update(handle=job.handle, unique=job.unique, function_name=job.function_name,
                    workload=job.workload)
        return None

    start_worker(gearmand.address, {fn: work})
    assert client.do_normal(fn, b"\x00data", unique="u-1") == b""
    assert seen["handle"].startswith("H:")
    assert seen == {**seen, "unique": "u-1", "function_name": fn, "workload": b"\x00data"}
    assert type(seen["workload"]) is bytes


@pytest.mark.parametrize("result,expected", [
    (b"bytes", b"bytes"), (bytearray(b"ba"), b"ba"), (memoryview(b"mv"), b"mv"),
    ("stré", "stré".encode()), (None, b""), (b"", b""),
])
def test_return_types(gearmand, client, fname, start_worker, result, expected):
    fn = fname("ret")
    start_worker(gearmand.address, {fn: lambda job: result})
    assert client.do_normal(fn, "") == expected


def test_bad_return_type_reaches_client_as_exception(gearmand, client, fname, start_worker):
    fn = fname("badret")
    start_worker(gearmand.address, {fn: lambda job: 42})
    with pytest.raises(pygearman.JobException, match="returned int"):
        client.do_normal(fn, "")


def test_worker_exception_reaches_client_with_message(any_gearmand, fname, start_worker):
    fn = fname("boom")
    calls = []

    def boom(job):
        calls.append(1)
        raise ValueError(f"cannot title {job.workload.decode()!r}")

    start_worker(any_gearmand.address, {fn: boom})
    with GearmanClient(any_gearmand.address, timeout=15) as c:
        with pytest.raises(pygearman.JobException) as info:
            c.do_normal(fn, "abc")
    assert info.value.message == "ValueError: cannot title 'abc'"
    assert info.value.code == pygearman.ReturnCode.WORK_EXCEPTION
    assert info.value.function == fn and info.value.handle.startswith("H:")
    time.sleep(0.3)
    assert calls == [1], "a failing job must not be retried"


def test_send_fail_and_explicit_outcomes(gearmand, client, fname, start_worker):
    fail, exc, complete = fname("fail"), fname("exc"), fname("complete")

    def do_fail(job):
        job.send_fail()

    def do_exc(job):
        job.send_exception("explicit message")

    def do_complete(job):
        job.send_complete(b"early")
        return b"ignored"

    start_worker(gearmand.address, {fail: do_fail, exc: do_exc, complete: do_complete})
    with pytest.raises(pygearman.JobFailed):
        client.do_normal(fail, "")
    with pytest.raises(pygearman.JobException, match="^explicit message$"):
        client.do_normal(exc, "")
    assert client.do_normal(complete, "") == b"early"


def test_status_data_warning_do_not_break_sync_result(gearmand, client, fname, start_worker):
    fn = fname("chatty")

    def work(job):
        job.send_status(1, 3)
        job.send_data(b"partial")
        job.send_warning("careful")
        job.send_status(3, 3)
        return b"final"

    start_worker(gearmand.address, {fn: work})
    assert client.do_normal(fn, "") == b"final"


def test_job_used_after_function_returned_raises(gearmand, client, fname, start_worker):
    fn, barrier = fname("escape"), fname("barrier")
    kept = []
    # One worker, one thread: it takes the barrier job only after the escape job's function has
    # returned and pygearman has let go of that job. The escape job's result alone is no such
    # signal: WORK_COMPLETE leaves (and the client returns) while the worker thread is still in
    # pygearman's send, before the job is marked finished.
    start_worker(gearmand.address, {fn: lambda job: kept.append(job), barrier: lambda job: None})
    client.do_normal(fn, "x")
    client.do_normal(barrier, "")
    (job,) = kept
    assert job.workload == b"x"  # data copied out stays readable
    for call in (lambda: job.send_status(1, 2), lambda: job.send_data(b"x"),
                 lambda: job.handle, lambda: job.send_complete(b"")):
        with pytest.raises(RuntimeError, match="finished"):
            call()
    assert "finished" in repr(job)


def test_job_cannot_be_constructed():
    with pytest.raises(TypeError):
        GearmanJob()


def test_work_processes_one_job_and_times_out(gearmand, fname):
    fn = fname("one")
    with GearmanWorker(gearmand.address) as w, GearmanClient(gearmand.address) as c:
        w.add_function(fn, lambda job: job.workload.upper())
        t0 = time.monotonic()
        assert w.work(timeout=0.3) is False
        assert time.monotonic() - t0 < 2
        c.do_background(fn, "a")
        c.do_background(fn, "b")
        assert w.work(timeout=10) is True
        assert w.jobs_processed == 1
        assert w.work(timeout=10) is True
        assert w.jobs_processed == 2


def test_work_after_a_failed_job_still_processes_the_next_job(gearmand, fname):
    """libgearman returns WORK_FAIL after a failed job, then SUCCESS without a job."""
    bad, good = fname("bad"), fname("good")
    done = []
    with GearmanWorker(gearmand.address) as w, GearmanClient(gearmand.address) as c:
        w.add_function(bad, lambda job: 1 / 0)
        w.add_function(good, lambda job: done.append(job.workload))
        c.do_background(bad, "x")
        assert w.work(timeout=10)
        c.do_background(good, "y")
        assert w.work(timeout=10)
        assert done == [b"y"]


def test_decorator_and_functions_dict(gearmand, client, fname):
    fa, fb = fname("a"), fname("b")
    w = GearmanWorker(gearmand.address, functions={fa: lambda job: b"A"})

    @w.function(fb)
    def handler(job):
        return b"B"

    assert handler(None) == b"B"  # the decorator returns the function unchanged
    assert sorted(w.functions) == sorted([fa, fb])
    t = threading.Thread(target=w.run)
    t.start()
    try:
        assert client.do_normal(fa, "") == b"A"
        assert client.do_normal(fb, "") == b"B"
    finally:
        w.stop()
        t.join(10)
        w.close()
    with pytest.raises(TypeError, match="parentheses"):
        w.function(lambda job: None)  # type: ignore[arg-type]


def test_replacing_and_unregistering_a_function(gearmand, client, fname):
    fn = fname("swap")
    with GearmanWorker(gearmand.address) as w:
        w.add_function(fn, lambda job: b"old")
        w.add_function(fn, lambda job: b"new")
        h = client.do_background(fn, "")
        assert w.work(timeout=10)
        w.unregister(fn)
        assert w.functions == []
        with pytest.raises(KeyError):
            w.unregister(fn)
        with pytest.raises(RuntimeError, match="no functions"):
            w.work(timeout=0.1)
        assert h


def test_stop_finishes_job_in_hand_and_client_gets_result(gearmand, fname):
    fn = fname("stopme")
    started = threading.Event()
    w = GearmanWorker(gearmand.address)

    def work(job):
        started.set()
        time.sleep(0.5)
        return b"finished anyway"

    w.add_function(fn, work)
    t = threading.Thread(target=w.run)
    t.start()
    result = []
    ct = threading.Thread(target=lambda: result.append(
        GearmanClient(gearmand.address, timeout=20).do_normal(fn, "")))
    ct.start()
    assert started.wait(10)
    w.stop()  # from another thread, while the job runs
    t.join(10)
    assert not t.is_alive()
    ct.join(10)
    assert result == [b"finished anyway"]
    w.close()


def test_stop_before_run_and_run_again(gearmand, fname):
    fn = fname("again")
    with GearmanWorker(gearmand.address) as w:
        w.add_function(fn, lambda job: None)
        w.stop()
        assert w.run(timeout=5) == 0  # returns at once
        assert w.run(timeout=0.2) == 0  # a stop is consumed, the next run waits normally


def test_worker_exceptions_in_base_exception_requeue(gearmand, fname):
    """KeyboardInterrupt inside a job: the worker stops and the job goes back to the queue."""
    fn = fname("kbi")
    with GearmanClient(gearmand.address, timeout=20) as c:
        c.do_background(fn, "")
        with GearmanWorker(gearmand.address) as w:
            def interrupt(job):
                raise KeyboardInterrupt
            w.add_function(fn, interrupt)
            with pytest.raises(KeyboardInterrupt):
                w.work(timeout=10)
        got = []
        with GearmanWorker(gearmand.address) as w2:
            w2.add_function(fn, lambda job: got.append(1))
            assert w2.work(timeout=10)
        assert got == [1]


def test_worker_echo_and_context_manager(gearmand):
    with GearmanWorker(gearmand.address) as w:
        assert w.echo(b"x")
    assert w.closed
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.work(timeout=0.1)


def test_worker_without_server_backs_off_and_is_stoppable(fname):
    from pygearman.testing import free_port
    w = GearmanWorker(f"127.0.0.1:{free_port()}")
    w.add_function(fname("x"), lambda job: None)
    t0 = time.process_time()
    threading.Timer(1.0, w.stop).start()
    w0 = time.monotonic()
    assert w.run(timeout=10) == 0
    assert time.monotonic() - w0 < 3
    assert time.process_time() - t0 < 0.5  # a bare libgearman loop would burn the whole second
    w.close()
