"""Task sets, batches, streaming, namespaces, identifiers, epoch jobs, retries and the other
client features beyond a single job."""
from __future__ import annotations

import threading
import time

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker, Priority

pytestmark = pytest.mark.timeout(60)


def echo(job):  # type: ignore[no-untyped-def]
    return job.workload


def chatty(job):  # type: ignore[no-untyped-def]
    for i in range(3):
        job.send_data(b"chunk%d" % i)
        job.send_status(i + 1, 3)
    job.send_warning(b"careful")
    return b"end"


def boom(job):  # type: ignore[no-untyped-def]
    raise ValueError("no " + job.workload.decode())


def test_tasks_reach_the_server_in_the_order_added(gearmand, fname):
    """libgearman 1.1.20 sends a task set LIFO; pygearman compensates."""
    fn = fname("order")
    seen = []
    with GearmanClient(gearmand.address, timeout=20) as c:
        for i in range(20):
            c.add_task_background(fn, str(i))
        tasks = c.run_tasks()
        # queued, not done: background tasks end as 'created', with their handle
        assert all(t.state == "created" and t.finished and t.handle.startswith("H:")
                   for t in tasks)
    with GearmanWorker(gearmand.address) as w:
        w.add_function(fn, lambda job: seen.append(int(job.workload)))
        for _ in range(20):
            assert w.work(timeout=10)
    assert seen == list(range(20))


def test_task_set_results_callbacks_and_context(gearmand, client, fname, start_worker):
    fe, fc, fb = fname("echo"), fname("chatty"), fname("boom")
    start_worker(gearmand.address, {fe: echo, fc: chatty, fb: boom})
    events = []
    completed = []
    client.set_complete_callback(lambda t: completed.append(t.context))
    t1 = client.add_task(fe, "one", context="ctx-1")
    t2 = client.add_task_high(fe, b"two", context={"k": 2})
    t3 = client.add_task(fc, "", on_created=lambda t: events.append(("created", t.handle)),
                         on_data=lambda t, chunk: events.append(("data", chunk)),
                         on_status=lambda t: events.append(("status", t.numerator, t.denominator)),
                         on_warning=lambda t, chunk: events.append(("warning", chunk)),
                         on_complete=lambda t: events.append(("complete", t.result)))
    t4 = client.add_task_low(fb, "x", on_exception=lambda t: events.append(("exception", t.exception)))
    assert client.pending_tasks == [t1, t2, t3, t4] and t1.state == "new"
    tasks = client.run_tasks()
    assert tasks == [t1, t2, t3, t4] and client.pending_tasks == []
    assert (t1.result, t1.state, t1.context) == (b"one", "complete", "ctx-1")
    assert t2.result == b"two" and t2.priority == Priority.HIGH
    assert t3.result == b"end" and t3.data == [b"chunk0", b"chunk1", b"chunk2"]
    assert t3.warnings == [b"careful"] and (t3.numerator, t3.denominator) == (3, 3)
    assert t4.state == "exception" and t4.exception == "ValueError: no x"
    assert isinstance(t4.error, pygearman.JobException)
    kinds = [e[0] for e in events]
    assert kinds[0] == "created" and events[0][1].startswith("H:")
    assert [e for e in events if e[0] == "data"] == [("data", b"chunk0"), ("data", b"chunk1"),
                                                     ("data", b"chunk2")]
    assert ("status", 3, 3) in events and ("warning", b"careful") in events
    assert ("complete", b"end") in events and ("exception", "ValueError: no x") in events
    # the client-wide complete callback ran for the tasks without their own
    assert sorted(map(str, completed)) == sorted(["ctx-1", "{'k': 2}"])
    client.clear_callbacks()


def test_a_raising_callback_ends_run_tasks_and_keeps_state(gearmand, client, fname, start_worker):
    fn = fname("echo")
    start_worker(gearmand.address, {fn: echo})

    class Stop(Exception):
        pass

    def explode(t):
        raise Stop(t.result)

    ok = client.add_task(fn, "first")
    bad = client.add_task(fn, "second", on_complete=explode)
    with pytest.raises(Stop):
        client.run_tasks()
    assert bad.result == b"second"           # its state was recorded before the callback ran
    assert ok.state in ("complete", "queued", "created", "running")
    # the client is usable afterwards
    assert client.do_normal(fn, "after") == b"after"


def test_duplicate_uniques_in_one_task_set_do_not_hang(gearmand, client, fname, start_worker):
    fn = fname("echo")
    start_worker(gearmand.address, {fn: echo})
    a = client.add_task(fn, "a", unique="same")
    b = client.add_task(fn, "b", unique="same")
    c = client.add_task(fn, "c", unique="-")
    d = client.add_task(fn, "c", unique="-")
    client.run_tasks(timeout=20)
    assert [t.state for t in (a, b, c, d)] == ["complete"] * 4
    assert a.result == b"a" and c.result == d.result == b"c"


def test_add_task_status(gearmand, client, fname, start_worker):
    fn = fname("slow")
    gate = threading.Event()
    started = threading.Event()

    def slow(job):
        job.send_status(1, 2)
        started.set()
        gate.wait(10)

    start_worker(gearmand.address, {fn: slow})
    handle = client.do_background(fn, "")
    assert started.wait(10)
    st = client.add_task_status(handle, context="q")
    client.run_tasks()
    assert (st.known, st.running, st.numerator, st.denominator) == (True, True, 1, 2)
    gate.set()


def test_task_set_validates_before_io():
    c = GearmanClient("127.0.0.1:1")
    with pytest.raises(TypeError):
        c.add_task(123, "x")
    with pytest.raises(TypeError):
        c.add_task("f", None)
    with pytest.raises(TypeError, match="callable"):
        c.add_task("f", "x", on_complete="nope")
    with pytest.raises(ValueError):
        c.add_task("f", "x", unique="u" * 64)
    assert c.pending_tasks == []
    c.close()


def test_submit_many_in_input_order(gearmand, client, fname, start_worker):
    fn = fname("echo")
    start_worker(gearmand.address, {fn: echo})
    start_worker(gearmand.address, {fn: echo})
    data = [str(i).encode() * (i % 7) for i in range(2500)]
    assert client.submit_many(fn, data, batch=700) == data
    assert client.submit_many(fn, ["a", bytearray(b"b"), memoryview(b"c"), b""]) == [b"a", b"b", b"c", b""]
    assert client.submit_many(fn, []) == []


def test_submit_many_failures(gearmand, client, fname, start_worker):
    fn = fname("maybe")

    def maybe(job):
        if job.workload == b"bad":
            raise RuntimeError("bad item")
        return job.workload

    start_worker(gearmand.address, {fn: maybe})
    out = client.submit_many(fn, ["ok", "bad", "ok2"], return_exceptions=True)
    assert out[0] == b"ok" and out[2] == b"ok2"
    assert isinstance(out[1], pygearman.JobException) and out[1].message == "RuntimeError: bad item"
    with pytest.raises(pygearman.JobException) as info:
        client.submit_many(fn, ["ok", "bad"])
    assert info.value.results[0] == b"ok"


def test_submit_many_validates_before_io():
    c = GearmanClient("127.0.0.1:1")
    with pytest.raises(TypeError, match="workload 1"):
        c.submit_many("f", [b"ok", 5])
    with pytest.raises(TypeError, match="sequence of uniques"):
        c.submit_many("f", [b"a", b"b"], uniques="ab")
    with pytest.raises(ValueError, match="2 uniques for 1"):
        c.submit_many("f", [b"a"], uniques=["u", "v"])
    with pytest.raises(TypeError, match="iterable of workloads"):
        c.submit_many("f", b"abc")
    with pytest.raises(ValueError, match="batch"):
        c.submit_many("f", [b"a"], batch=0)
    c.close()


def test_submit_background_many(gearmand, client, fname):
    fn = fname("bgmany")
    handles = client.submit_background_many(fn, [b"x"] * 3000, batch=1000)
    assert len(handles) == 3000 and len(set(handles)) == 3000
    uniq = [f"u{i}" for i in range(10)]
    handles2 = client.submit_background_many(fn, [b"y"] * 10, uniques=uniq)
    assert len(set(handles2)) == 10
    status = gearmand.admin("status")
    line = next(l for l in status.splitlines() if l.startswith(fn + "\t"))
    assert line.split("\t")[1] == "3010"


def test_stream_iterates_data_chunks(gearmand, client, fname, start_worker):
    fn = fname("chatty")
    start_worker(gearmand.address, {fn: chatty})
    with client.stream(fn, "") as chunks:
        got = list(chunks)
    assert got == [b"chunk0", b"chunk1", b"chunk2"]
    assert chunks.result == b"end"
    with pytest.raises(RuntimeError, match="stream"):
        s = client.stream(fn, "")
        client.do_normal(fn, "")
    s.close()
    assert client.do_normal(fn, "") == b"end"


def test_stream_of_a_failing_job_raises(gearmand, client, fname, start_worker):
    fn = fname("boom")
    start_worker(gearmand.address, {fn: boom})
    with pytest.raises(pygearman.JobException, match="no z"):
        list(client.stream(fn, "z"))


def test_sync_call_callbacks(gearmand, client, fname, start_worker):
    fn = fname("chatty")
    start_worker(gearmand.address, {fn: chatty})
    got = []
    result = client.submit(fn, "", on_data=lambda c: got.append(("d", c)),
                           on_status=lambda n, d: got.append(("s", n, d)),
                           on_warning=lambda c: got.append(("w", c)))
    assert result == b"end"
    assert got == [("d", b"chunk0"), ("s", 1, 3), ("d", b"chunk1"), ("s", 2, 3),
                   ("d", b"chunk2"), ("s", 3, 3), ("w", b"careful")]
    with pytest.raises(ValueError, match="foreground"):
        client.submit(fn, "", background=True, on_data=print)


def test_unique_status(gearmand, client, fname, start_worker):
    fn = fname("slow")
    gate = threading.Event()
    started = threading.Event()

    def slow(job):
        job.send_status(2, 5)
        started.set()
        gate.wait(10)

    start_worker(gearmand.address, {fn: slow})
    client.do_background(fn, "", unique="status-by-unique")
    assert started.wait(10)
    assert client.unique_status("status-by-unique") == (True, True, 2, 5)
    gate.set()
    deadline = time.monotonic() + 10
    while client.unique_status("status-by-unique").known:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(ValueError):
        client.unique_status("")


def test_namespaces_separate_functions(gearmand, fname):
    fn = fname("ns")
    with GearmanWorker(gearmand.address, namespace="teamA-") as wa, \
            GearmanClient(gearmand.address, namespace="teamA-", timeout=20) as ca, \
            GearmanClient(gearmand.address, timeout=20) as plain:
        wa.add_function(fn, lambda job: b"A")
        ca.do_background(fn, "")
        plain.do_background(fn, "")      # same name, no namespace: another queue
        assert wa.work(timeout=10)
        status = gearmand.admin("status")
        assert any(l.startswith("teamA-" + fn + "\t") for l in status.splitlines())
        assert any(l.startswith(fn + "\t1\t") for l in status.splitlines())
        assert ca.namespace == "teamA-"
    with pytest.raises(ValueError, match="511"):
        GearmanClient(gearmand.address, namespace="n" * 600)


def test_client_and_worker_identifiers(gearmand, fname):
    fn = fname("ident")
    with GearmanWorker(gearmand.address, identifier="py-worker-7") as w, \
            GearmanClient(gearmand.address, identifier="py-client-7") as c:
        w.add_function(fn, echo)
        c.do_background(fn, "")
        assert w.work(timeout=10)
        workers = gearmand.admin("workers")
        assert "py-worker-7" in workers and "py-client-7" in workers
        assert c.identifier == "py-client-7" and w.identifier == "py-worker-7"
    for bad in ("has space", "", "x" * 300):
        with pytest.raises(ValueError):
            GearmanClient(gearmand.address, identifier=bad)


def test_worker_identifier_survives_a_server_restart(gearmand_factory, fname):
    server = gearmand_factory()
    fn = fname("ident")
    w = GearmanWorker(server.address, identifier="survivor-1")
    w.add_function(fn, echo)
    t = threading.Thread(target=w.run)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while "survivor-1" not in server.admin("workers"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.restart()
        with GearmanClient(server.address, timeout=20) as c:
            assert c.do_normal(fn, "back") == b"back"   # the worker re-registered
        deadline = time.monotonic() + 10
        while "survivor-1" not in server.admin("workers"):
            assert time.monotonic() < deadline, server.admin("workers")
            time.sleep(0.05)
    finally:
        w.stop()
        t.join(10)
        w.close()


def test_epoch_job_runs_at_its_time(gearmand, client, fname, start_worker):
    fn = fname("later")
    ran = []
    start_worker(gearmand.address, {fn: lambda job: ran.append(time.time())})
    when = time.time() + 1.5
    handle = client.submit(fn, "", background=True, when=when)
    assert handle.startswith("H:")
    deadline = time.monotonic() + 15
    while not ran:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ran[0] >= when - 0.05
    import datetime
    with pytest.raises(ValueError, match="background"):
        client.submit(fn, "", when=datetime.datetime.now())
    with pytest.raises(TypeError):
        client.submit(fn, "", background=True, when="tomorrow")


def test_worker_several_functions_unregister_all(gearmand, client, fname):
    f1, f2 = fname("f1"), fname("f2")
    with GearmanWorker(gearmand.address) as w:
        w.add_function(f1, lambda job: b"1")
        w.add_function(f2, lambda job: b"2")
        client.do_background(f1, "")
        client.do_background(f2, "")
        assert w.work(timeout=10) and w.work(timeout=10)
        w.unregister_all()
        assert w.functions == []


def test_can_do_timeout_requeues_a_slow_job(gearmand, client, fname, start_worker):
    """CAN_DO_TIMEOUT in gearmand 1.1.20: when it passes, the server hands the job to another
    worker (it does not fail it). The late worker's result is refused; it keeps working."""
    fn = fname("tooslow")
    attempts = []

    def sometimes_slow(job):
        attempts.append(threading.get_ident())
        if len(attempts) == 1:
            time.sleep(2.5)
            return b"late"
        return b"second"

    workers = [GearmanWorker(gearmand.address) for _ in range(2)]
    threads = []
    for w in workers:
        w.add_function(fn, sometimes_slow, timeout=1)
        threads.append(threading.Thread(target=w.run))
        threads[-1].start()
    try:
        assert client.do_normal(fn, "", timeout=20) == b"second"
        assert len(attempts) == 2
        time.sleep(2.0)   # the first worker finishes its late job and gets ERROR back
        assert all(t.is_alive() for t in threads)   # ... and keeps working
        assert client.do_normal(fn, "", timeout=20) == b"second"
    finally:
        for w, t in zip(workers, threads):
            w.stop()
            t.join(10)
            w.close()


def test_retry_hands_the_job_back_then_gives_up(gearmand, client, fname):
    fn = fname("retry")
    attempts = []
    with GearmanWorker(gearmand.address, max_retries=2) as w:
        def flaky(job):
            attempts.append(job.handle)
            if len(attempts) < 3:
                raise pygearman.Retry("not yet")
            return b"third time"
        w.add_function(fn, flaky)
        t = threading.Thread(target=w.run)
        t.start()
        try:
            assert client.do_normal(fn, "", timeout=20) == b"third time"
            assert len(attempts) == 3 and len(set(attempts)) == 1   # same job each time
            attempts.clear()

            def always(job):
                attempts.append(1)
                raise pygearman.Retry("never")
            w.stop()
            t.join(10)
            w.add_function(fn, always)
            t = threading.Thread(target=w.run)
            t.start()
            with pytest.raises(pygearman.JobException, match="gave up after 2 retries: never"):
                client.do_normal(fn, "", timeout=20)
            assert len(attempts) == 3
        finally:
            w.stop()
            t.join(10)


def test_retry_with_gearmand_job_retries(gearmand_factory, fname):
    server = gearmand_factory(args=["--job-retries=2"])
    fn = fname("retry")
    attempts = []
    with GearmanWorker(server.address, max_retries=100) as w, \
            GearmanClient(server.address, timeout=20) as c:
        def always(job):
            attempts.append(1)
            raise pygearman.Retry()
        w.add_function(fn, always)
        t = threading.Thread(target=w.run)
        t.start()
        try:
            with pytest.raises(pygearman.JobError):
                c.do_normal(fn, "")
        finally:
            w.stop()
            t.join(10)
    assert len(attempts) == 2


def test_cancel_a_queued_job(gearmand, client, fname):
    fn = fname("cancel")
    keep = client.do_background(fn, "keep")
    drop = client.do_background(fn, "drop")
    assert client.cancel_job(drop) is True
    assert client.cancel_job("H:nowhere:999999") is False
    ran = []
    with GearmanWorker(gearmand.address) as w:
        w.add_function(fn, lambda job: ran.append(job.workload))
        while w.work(timeout=1.0):
            pass
    assert ran == [b"keep"]
    assert not client.job_status(keep).known
    with pytest.raises(ValueError):
        client.cancel_job("has space")


def test_unique_status_does_not_break_the_next_job(gearmand, client, fname, start_worker):
    """libgearman 1.1.20 counts a status-by-unique query as a submission: without a fresh
    connection afterwards, the next job's JOB_CREATED would never match."""
    fn = fname("echo")
    start_worker(gearmand.address, {fn: echo})
    for _ in range(3):
        assert client.unique_status("nope") == (False, False, 0, 0)
        assert client.do_normal(fn, "abc", timeout=10) == b"abc"


def test_worker_clone_keeps_everything(gearmand, fname):
    fn = fname("cl")
    with GearmanWorker(gearmand.address, identifier="orig-1", namespace="ns-",
                       max_retries=7) as w:
        w.add_function(fn, lambda job: b"cloned", timeout=5)
        w2 = w.clone()
    with w2, GearmanClient(gearmand.address, namespace="ns-", timeout=20) as c:
        assert (w2.identifier, w2.max_retries, w2.functions) == ("orig-1", 7, [fn])
        c.do_background(fn, "")
        assert w2.work(timeout=10)
        assert "orig-1" in gearmand.admin("workers")


def test_client_clone_keeps_options(gearmand, fname, start_worker):
    fn = fname("boom")
    start_worker(gearmand.address, {fn: boom})
    with GearmanClient(gearmand.address, timeout=7, identifier="orig-c") as c:
        c.set_complete_callback(print)
        c2 = c.clone()
    with c2:
        assert (c2.timeout, c2.identifier, c2.servers) == (7, "orig-c", [gearmand.address])
        with pytest.raises(pygearman.JobException):   # the exceptions option too: no hang
            c2.do_normal(fn, "x")


def _task_fields(t):  # type: ignore[no-untyped-def]
    handle = t.handle
    return (t.state, t.finished, t.result, t.data, t.warnings, t.numerator, t.denominator,
            t.known, t.running, t.exception, type(t.error).__name__,
            handle is not None and handle.startswith("H:"), getattr(handle, "server", None))


def test_a_task_set_without_callbacks_ends_with_the_same_fields(gearmand, client, fname,
                                                                 start_worker):
    """Tasks that no callback can watch get their created/complete/fail events after the run
    (no GIL per event); every field must end as it does for a watched task."""
    fe, fc, fb = fname("echo"), fname("chatty"), fname("boom")
    start_worker(gearmand.address, {fe: echo, fc: chatty, fb: boom})

    def run(watched: bool):  # type: ignore[no-untyped-def]
        cb = {"on_complete": lambda t: None} if watched else {}
        tasks = [client.add_task(fe, "one", **cb), client.add_task(fc, "", **cb),
                 client.add_task(fb, "x", **cb), client.add_task_background(fe, "bg", **cb),
                 client.add_task(fe, "same", None, "dup-" + str(watched), **cb),
                 client.add_task(fe, "same", None, "dup-" + str(watched), **cb)]
        client.run_tasks(timeout=20)
        return [_task_fields(t) for t in tasks]

    quiet, watched = run(False), run(True)
    assert quiet == watched
    assert [f[0] for f in quiet] == ["complete", "complete", "exception", "created",
                                     "complete", "complete"]
    assert quiet[1][3] == [b"chunk0", b"chunk1", b"chunk2"] and quiet[1][4] == [b"careful"]
    assert quiet[3][7] is True            # a queued background job is known
    # the client-wide callbacks make every task watched: still the same fields
    seen = []
    client.set_complete_callback(lambda t: seen.append(t.result))
    assert run(False) == quiet
    assert sorted(seen) == sorted([b"one", b"end", b"same", b"same"])


def test_a_watched_twin_of_an_unwatched_task_gets_its_callbacks(gearmand, client, fname,
                                                                 start_worker):
    """Coalesced tasks get their events through the first of them: a callback on a later twin
    must fire even when the first task has none."""
    fe = fname("echo")
    start_worker(gearmand.address, {fe: echo})
    seen = []
    first = client.add_task(fe, "same", None, "twin-key")
    second = client.add_task(fe, "same", None, "twin-key",
                             on_created=lambda t: seen.append(("created", t.handle)),
                             on_complete=lambda t: seen.append(("complete", t.result)))
    client.run_tasks(timeout=20)
    assert first.result == second.result == b"same"
    assert [e[0] for e in seen] == ["created", "complete"] and seen[1][1] == b"same"
