"""Client modes against a real gearmand: synchronous, background, priorities, unique, status."""
from __future__ import annotations

import threading
import time

import pytest

import pygearman
from pygearman import GearmanClient, JobStatus, Priority
from pygearman.demo import title_function

pytestmark = pytest.mark.timeout(60)


def echo(job):  # type: ignore[no-untyped-def]
    return job.workload


def test_do_normal_runs_the_seed_example(gearmand, client, fname, start_worker):
    fn = fname("title")
    start_worker(gearmand.address, {fn: title_function})
    assert client.do_normal(fn, "AlL THE World's a sTagE") == b"All The World's A Stage"


@pytest.mark.parametrize("method", ["do_normal", "do_high", "do_low"])
def test_sync_priorities_return_bytes(gearmand, client, fname, start_worker, method):
    fn = fname("echo")
    start_worker(gearmand.address, {fn: echo})
    result = getattr(client, method)(fn, b"payload")
    assert result == b"payload" and type(result) is bytes


@pytest.mark.parametrize("workload,expected", [
    ("héllo wörld", "héllo wörld".encode()),
    (b"\x00\x01binary\xff", b"\x00\x01binary\xff"),
    (bytearray(b"ba"), b"ba"),
    (memoryview(b"xxmemviewxx")[2:-2], b"memview"),
    (b"", b""),
    ("", b""),
])
def test_workload_types(gearmand, client, fname, start_worker, workload, expected):
    fn = fname("echo")
    start_worker(gearmand.address, {fn: echo})
    assert client.do_normal(fn, workload) == expected


def test_large_workload_round_trip(gearmand, client, fname, start_worker):
    fn = fname("echo")
    start_worker(gearmand.address, {fn: echo})
    data = bytes(range(256)) * 256  # 64 KiB
    assert client.do_normal(fn, data) == data


def test_submit_is_the_pythonic_front(gearmand, client, fname, start_worker):
    fn = fname("echo")
    start_worker(gearmand.address, {fn: echo})
    assert client.submit(fn, "x", priority=Priority.HIGH) == b"x"
    handle = client.submit(fn, "y", background=True, priority=Priority.LOW)
    assert isinstance(handle, str) and handle.startswith("H:")


def test_priorities_order_queued_jobs(gearmand, fname):
    """Queue low, normal, high with no worker; a worker started afterwards takes high first."""
    fn = fname("order")
    seen = []
    with GearmanClient(gearmand.address, timeout=20) as c:
        c.do_low_background(fn, "low")
        c.do_background(fn, "normal")
        c.do_high_background(fn, "high")
    w = pygearman.GearmanWorker(gearmand.address)
    w.add_function(fn, lambda job: seen.append(job.workload.decode()))
    for _ in range(3):
        assert w.work(timeout=10)
    w.close()
    assert seen == ["high", "normal", "low"]


def test_background_returns_handle_and_job_runs(gearmand, client, fname, start_worker):
    fn = fname("bg")
    done = threading.Event()
    got = []

    def work(job):
        got.append(job.workload)
        done.set()

    start_worker(gearmand.address, {fn: work})
    for method in ("do_background", "do_high_background", "do_low_background"):
        done.clear()
        handle = getattr(client, method)(fn, method)
        assert handle.startswith("H:")
        assert done.wait(10)
    assert got == [b"do_background", b"do_high_background", b"do_low_background"]


def test_job_status_of_running_background_job(gearmand, client, fname, start_worker):
    fn = fname("progress")
    release = threading.Event()
    reported = threading.Event()

    def work(job):
        job.send_status(1, 4)
        reported.set()
        release.wait(10)
        job.send_status(4, 4)
        return b"done"

    start_worker(gearmand.address, {fn: work})
    handle = client.do_background(fn, "x")
    assert reported.wait(10)
    st = client.job_status(handle)
    assert isinstance(st, JobStatus)
    assert st == JobStatus(True, True, 1, 4)
    assert st.fraction == 0.25
    release.set()
    deadline = time.monotonic() + 10
    while client.job_status(handle).known:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.job_status(handle) == JobStatus(False, False, 0, 0)


def test_job_status_of_queued_job_without_worker(client, fname):
    handle = client.do_background(fname("nobody"), "x")
    assert client.job_status(handle) == JobStatus(True, False, 0, 0)


def test_unique_coalesces_concurrent_jobs(gearmand, fname, start_worker):
    """Two clients submitting the same function+unique share one execution."""
    fn = fname("coalesce")
    runs = []
    gate = threading.Event()

    def work(job):
        runs.append(job.unique)
        gate.wait(10)
        return b"shared"

    start_worker(gearmand.address, {fn: work})
    results = []

    def submit():
        with GearmanClient(gearmand.address, timeout=20) as c:
            results.append(c.do_normal(fn, "same", unique="the-key"))

    threads = [threading.Thread(target=submit) for _ in range(2)]
    threads[0].start()
    deadline = time.monotonic() + 10
    while not runs:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    threads[1].start()
    time.sleep(0.3)  # let the second submission reach the server while the job still runs
    gate.set()
    for t in threads:
        t.join(20)
    assert results == [b"shared", b"shared"]
    assert runs == ["the-key"]


def test_unique_is_passed_to_the_worker_and_generated_when_absent(gearmand, client, fname,
                                                                  start_worker):
    fn = fname("uniq")
    start_worker(gearmand.address, {fn: lambda job: job.unique})
    assert client.do_normal(fn, "", unique="my-key") == b"my-key"
    a = client.do_normal(fn, "")
    b = client.do_normal(fn, "")
    assert a and b and a != b
    assert client.do_normal(fn, "", unique="u" * 63) == b"u" * 63


def test_echo(client):
    assert client.echo() is True
    assert client.echo(b"hello") is True


def test_timeout_is_a_deadline_and_the_client_stays_usable(gearmand, fname, start_worker):
    slow, fast = fname("slow"), fname("fast")

    def slow_fn(job):
        # keeps the connection busy with status packets: libgearman's own timeout
        # (per poll) would never fire; ours is a deadline
        for i in range(30):
            job.send_status(i, 30)
            time.sleep(0.05)
        return b"late"

    start_worker(gearmand.address, {slow: slow_fn, fast: echo})
    with GearmanClient(gearmand.address) as c:
        t0 = time.monotonic()
        with pytest.raises(pygearman.GearmanTimeoutError) as info:
            c.do_normal(slow, "x", timeout=0.3)
        assert time.monotonic() - t0 < 1.2
        assert isinstance(info.value, TimeoutError)
        assert info.value.code == pygearman.ReturnCode.TIMEOUT
        assert c.do_normal(fast, "still works", timeout=10) == b"still works"


def test_default_timeout_from_constructor(gearmand, fname):
    with GearmanClient(gearmand.address, timeout=0.2) as c:
        assert c.timeout == 0.2
        with pytest.raises(TimeoutError):
            c.do_normal(fname("nobody"), "x")


def test_servers_forms_and_env(gearmand, monkeypatch):
    host, port = gearmand.address.split(":")
    assert GearmanClient(f"{host}:{port}").servers == [f"{host}:{port}"]
    assert GearmanClient([(host, int(port))]).servers == [f"{host}:{port}"]
    assert GearmanClient([f"{host}:{port}", "localhost"]).servers == [f"{host}:{port}",
                                                                      "localhost:4730"]
    assert GearmanClient("a:1,b:2").servers == ["a:1", "b:2"]
    assert GearmanClient("[::1]:4731").servers == ["[::1]:4731"]
    monkeypatch.setenv("GEARMAN_SERVERS", gearmand.address)
    with GearmanClient() as c:
        assert c.servers == [gearmand.address]
        assert c.echo()
    monkeypatch.delenv("GEARMAN_SERVERS")
    assert GearmanClient().servers == ["127.0.0.1:4730"]


def test_add_server_and_add_servers(gearmand):
    host, port = gearmand.address.split(":")
    c = GearmanClient(gearmand.address)
    c.add_server(host, int(port) + 0)
    c.add_servers("127.0.0.1:1,127.0.0.1:2")
    assert c.servers == [gearmand.address, gearmand.address, "127.0.0.1:1", "127.0.0.1:2"]
    c.close()


def test_context_manager_and_idempotent_close(gearmand):
    with GearmanClient(gearmand.address) as c:
        assert c.echo()
    assert c.closed
    c.close()
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.do_normal("x", "y")


def test_unclosed_client_warns(gearmand):
    c = GearmanClient(gearmand.address)
    with pytest.warns(ResourceWarning):
        del c
        import gc
        gc.collect()


def test_server_down_is_a_connection_error_then_recovers(gearmand_factory, fname):
    server = gearmand_factory()
    addr = server.address
    server.stop()
    with GearmanClient(addr, timeout=10) as c:  # no I/O at construction
        with pytest.raises(pygearman.GearmanConnectionError) as info:
            c.do_normal(fname("f"), "x")
        assert isinstance(info.value, ConnectionError)
        assert addr in str(info.value)
        with pytest.raises(ConnectionError):
            c.do_background(fname("f"), "x")
        server.start()
        # libgearman 1.1.20 would lose this first job after a failed connect; we must not
        assert c.do_background(fname("f"), "x").startswith("H:")


def test_php_style_positional_unique(gearmand, client, fname, start_worker):
    """PHP: doNormal($function, $workload, $unique); the same order works here."""
    fn = fname("uq")
    start_worker(gearmand.address, {fn: lambda job: job.unique})
    assert client.do_normal(fn, "x", "php-style-unique") == b"php-style-unique"
    assert client.do_background(fn, "x", "php-style-bg").startswith("H:")
