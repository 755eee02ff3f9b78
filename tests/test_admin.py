"""pygearman.admin: the admin text protocol against a real gearmand, a scripted fake server
(old-server replies, garbled replies, silence, dropped connections) and fuzzed parsers."""
from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Union

import pytest

import pygearman
from pygearman import GearmanClient
from pygearman.admin import (AdminClient, FunctionStatus, JobInfo, PriorityStatus, UniqueJobInfo,
                             UnknownCommandError, WorkerInfo, for_each, parse_getpid, parse_ok,
                             parse_priority_status, parse_show_jobs, parse_show_unique_jobs,
                             parse_status, parse_workers, status_all, workers_all)
from pygearman.errors import (GearmanConnectionError, GearmanTimeoutError, NotSupportedError,
                              ProtocolError, ReturnCode, ServerError)
from pygearman.testing import GearmandServer, free_port

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in requirements-dev.txt
    st = None

pytestmark = pytest.mark.timeout(60)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def status_of(admin: AdminClient, fn: str) -> Optional[FunctionStatus]:
    return next((s for s in admin.status() if s.function == fn), None)


@pytest.fixture
def admin(gearmand: GearmandServer) -> Iterator[AdminClient]:
    with AdminClient(gearmand.address, timeout=10) as a:
        yield a


@pytest.fixture
def client(gearmand: GearmandServer) -> Iterator[GearmanClient]:
    with GearmanClient(gearmand.address, timeout=10) as c:
        yield c


# -- against a real gearmand -------------------------------------------------------------------

def test_status_counts_background_jobs(admin, client, fname):
    fn = fname("st")
    assert status_of(admin, fn) is None
    for i in range(3):
        client.do_background(fn, f"job {i}")
    assert status_of(admin, fn) == FunctionStatus(fn, total=3, running=0, workers=0)
    assert status_of(admin, fn).queued == 3  # type: ignore[union-attr]


def test_priority_status_counts_each_queue(admin, client, fname):
    fn = fname("prio")
    client.do_high_background(fn, "h")
    for _ in range(2):
        client.do_background(fn, "n")
    for _ in range(3):
        client.do_low_background(fn, "l")
    rows = [p for p in admin.priority_status() if p.function == fn]
    assert rows == [PriorityStatus(fn, high=1, normal=2, low=3, workers=0)]


def test_workers_lists_a_worker_and_its_functions(gearmand, admin, fname, start_worker):
    f1, f2 = fname("w1"), fname("w2")
    start_worker(gearmand.address, {f1: lambda job: b"1", f2: lambda job: b"2"})
    wait_for(lambda: any(f1 in w.functions for w in admin.workers()), what="worker registration")
    mine = [w for w in admin.workers() if f1 in w.functions]
    assert len(mine) == 1
    w = mine[0]
    assert isinstance(w, WorkerInfo)
    assert set(w.functions) == {f1, f2}
    assert w.address == "127.0.0.1" and w.fd > 0 and isinstance(w.client_id, str)
    # every connection is listed, this admin connection too (with no functions)
    assert any(not x.functions for x in admin.workers())
    assert status_of(admin, f1) == FunctionStatus(f1, 0, 0, 1)


def test_status_sees_a_running_job(gearmand, admin, fname, start_worker):
    fn = fname("run")
    started, release = threading.Event(), threading.Event()

    def slow(job):
        started.set()
        release.wait(20)
        return b"done"

    start_worker(gearmand.address, {fn: slow})
    with GearmanClient(gearmand.address, timeout=20) as c:
        handle = c.do_background(fn, "x")
        assert started.wait(10)
        try:
            assert status_of(admin, fn) == FunctionStatus(fn, total=1, running=1, workers=1)
            assert [j.handle for j in admin.show_jobs() if j.handle == handle] == [handle]
            with pytest.raises(ServerError, match="still connected workers"):
                admin.drop_function(fn)
        finally:
            release.set()
    wait_for(lambda: status_of(admin, fn) == FunctionStatus(fn, 0, 0, 1), what="job end")


def test_show_jobs_and_unique_jobs(admin, client, fname):
    fn = fname("show")
    uniques = [fname("u1"), fname("u2")]
    handles = [client.do_background(fn, "x", unique=u) for u in uniques]
    jobs = {j.handle: j for j in admin.show_jobs()}
    for h in handles:
        assert jobs[h] == JobInfo(h, retries=0, ignored=False, queued=True)
    listed = admin.show_unique_jobs()
    assert all(isinstance(u, UniqueJobInfo) for u in listed)
    assert set(uniques) <= {u.unique for u in listed}


def test_cancel_job(gearmand, admin, client, fname, start_worker):
    fn = fname("cancel")
    h1 = client.do_background(fn, "one")
    h2 = client.do_background(fn, "two")
    assert admin.cancel_job(h1) is True
    assert admin.cancel_job("H:nosuchhost:999999") is False
    # gearmand keeps a cancelled job (ignored, no longer queued) until a worker would take it
    jobs = {j.handle: j for j in admin.show_jobs()}
    assert jobs[h1] == JobInfo(h1, 0, ignored=True, queued=False)
    assert jobs[h2] == JobInfo(h2, 0, ignored=False, queued=True)
    assert status_of(admin, fn) == FunctionStatus(fn, 2, 0, 0)
    seen: List[bytes] = []
    start_worker(gearmand.address, {fn: lambda job: seen.append(job.workload)})
    wait_for(lambda: status_of(admin, fn) == FunctionStatus(fn, 0, 0, 1), what="queue drained")
    assert seen == [b"two"]
    assert admin.cancel_job(h1) is False


def test_create_and_drop_function(admin, fname):
    fn = fname("cd")
    admin.create_function(fn)
    # the full name: gearmand cuts two bytes off it unless the line ends with "\r\n"
    assert status_of(admin, fn) == FunctionStatus(fn, 0, 0, 0)
    admin.drop_function(fn)
    assert status_of(admin, fn) is None
    with pytest.raises(ServerError, match="function not found") as info:
        admin.drop_function(fn)
    assert fn in str(info.value)
    assert not isinstance(info.value, UnknownCommandError)


def test_drop_function_matches_case_insensitively(admin, fname):
    fn = fname("case")
    admin.create_function(fn)
    admin.drop_function(fn.upper())  # gearmand compares with strcasecmp
    assert status_of(admin, fn) is None


def test_maxqueue_one_size_refuses_submissions_over_the_limit(admin, client, fname):
    fn = fname("mq")
    admin.create_function(fn)  # maxqueue does nothing for a function gearmand does not know
    admin.maxqueue(fn, 2)
    client.do_background(fn, "1")
    client.do_high_background(fn, "2")
    for submit in (client.do_background, client.do_high_background, client.do_low_background):
        with pytest.raises(ServerError, match="Job queue is full") as info:
            submit(fn, "over")
        assert info.value.code == ReturnCode.QUEUE_ERROR
    assert status_of(admin, fn) == FunctionStatus(fn, 2, 0, 0)
    admin.maxqueue(fn, 0)  # 0: no limit
    client.do_background(fn, "3")


def test_maxqueue_three_sizes_limit_per_priority(admin, client, fname):
    fn = fname("mq3")
    admin.create_function(fn)
    admin.maxqueue(fn, (1, 2, 3))  # high, normal, low
    # each limit is compared with the function's total job count, whatever the priorities
    for _ in range(3):
        client.do_low_background(fn, "low")
    for submit in (client.do_low_background, client.do_background, client.do_high_background):
        with pytest.raises(ServerError, match="Job queue is full"):
            submit(fn, "over")
    assert [p for p in admin.priority_status() if p.function == fn] == \
        [PriorityStatus(fn, 0, 0, 3, 0)]

    fn2 = fname("mq3b")
    admin.create_function(fn2)
    admin.maxqueue(fn2, (3, 1, 0))
    client.do_background(fn2, "n")
    with pytest.raises(ServerError):
        client.do_background(fn2, "n2")      # normal: 1 >= 1
    client.do_high_background(fn2, "h")      # high: 1 < 3
    for _ in range(5):
        client.do_low_background(fn2, "l")   # low: 0 means no limit


def test_maxqueue_on_unknown_function_is_accepted_and_ignored(admin, client, fname):
    fn = fname("mqx")
    admin.maxqueue(fn, 1)
    assert status_of(admin, fn) is None
    client.do_background(fn, "1")
    client.do_background(fn, "2")
    assert status_of(admin, fn) == FunctionStatus(fn, 2, 0, 0)


def test_getpid_verbose_version(gearmand, admin):
    assert admin.getpid() == gearmand.pid
    assert admin.verbose() == "INFO"
    version = admin.version()
    assert version and version[0].isdigit()
    out = subprocess.run([gearmand_path(), "--version"], capture_output=True, text=True,
                         timeout=20).stdout
    assert version in out


def gearmand_path() -> str:
    from pygearman.testing import find_gearmand
    return find_gearmand()


def test_verbose_reports_the_servers_level(gearmand_factory):
    server = gearmand_factory(verbose="WARNING")
    with AdminClient(server.address) as a:
        assert a.verbose() == "WARNING"


def test_shutdown_is_gone_from_gearmand_1_1_20(gearmand_factory):
    server = gearmand_factory()
    with AdminClient(server.address) as a:
        for graceful in (False, True):
            with pytest.raises(UnknownCommandError, match="SIGTERM") as info:
                a.shutdown(graceful=graceful)
            assert isinstance(info.value, ServerError)
            assert isinstance(info.value, NotSupportedError)
            assert "UNKNOWN_COMMAND" in str(info.value)
        assert a.getpid() == server.pid  # still there, same connection usable
    assert server.running


def test_unknown_command_and_sequence_on_one_connection(admin, client, fname):
    fn = fname("seq")
    client.do_background(fn, "x")
    with pytest.raises(UnknownCommandError):
        admin._expect_ok(b"nosuchcommand", None)
    # many commands on the same connection stay in step
    for _ in range(20):
        assert status_of(admin, fn) == FunctionStatus(fn, 1, 0, 0)
        assert admin.version()
        assert [p.low for p in admin.priority_status() if p.function == fn] == [0]


def test_client_reconnects_after_server_restart(gearmand_factory):
    server = gearmand_factory()
    with AdminClient(server.address, timeout=5) as a:
        pid = a.getpid()
        server.restart()
        assert a.getpid() == server.pid != pid


def test_dead_server_raises_connection_error():
    with AdminClient(("127.0.0.1", free_port()), timeout=2) as a:
        with pytest.raises(GearmanConnectionError) as info:
            a.status()
        assert isinstance(info.value, ConnectionError)
        assert info.value.code == ReturnCode.COULD_NOT_CONNECT


def test_status_all_reports_each_server(gearmand, gearmand_factory, fname):
    other = gearmand_factory()
    dead = f"127.0.0.1:{free_port()}"
    fn = fname("all")
    with GearmanClient(other.address, timeout=10) as c:
        c.do_background(fn, "x")
    started = time.monotonic()
    result = status_all([gearmand.address, other.address, dead], timeout=3)
    assert time.monotonic() - started < 10
    assert list(result) == [gearmand.address, other.address, dead]
    assert isinstance(result[gearmand.address], list)
    other_status = result[other.address]
    assert isinstance(other_status, list)
    assert FunctionStatus(fn, 1, 0, 0) in other_status
    assert isinstance(result[dead], GearmanConnectionError)

    pids = for_each(f"{gearmand.address},{other.address}", "getpid")
    assert pids == {gearmand.address: gearmand.pid, other.address: other.pid}
    versions = for_each([(other.host, other.port)], lambda a: a.version())
    assert isinstance(versions[other.address], str)
    workers = workers_all([other.address, dead], timeout=3)
    assert isinstance(workers[other.address], list)
    assert isinstance(workers[dead], GearmanConnectionError)
    errors = for_each([other.address], lambda a: a.drop_function(fname("nope")))
    assert isinstance(errors[other.address], ServerError)


def test_for_each_checks_its_own_arguments():
    with pytest.raises(ValueError, match="no method"):
        for_each("127.0.0.1:1", "no_such_method")
    with pytest.raises(ValueError, match="no method"):
        for_each("127.0.0.1:1", "_exchange")
    with pytest.raises(TypeError):
        for_each("127.0.0.1:1", 42)  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        for_each("127.0.0.1:1", "status", timeout=0)
    with pytest.raises(ValueError):
        for_each("127.0.0.1:99999", "status")


# -- argument checks (no I/O happens: the port is dead) --------------------------------------

@pytest.fixture
def offline() -> Iterator[AdminClient]:
    with AdminClient(("127.0.0.1", free_port()), timeout=2) as a:
        yield a


@pytest.mark.parametrize("name", ["", "a b", "a\nb", "a\r", "tab\there", "nul\0", "x" * 513,
                                  b"a b", "\x7f"])
def test_bad_function_names_raise_value_error(offline, name):
    for call in (offline.create_function, offline.drop_function,
                 lambda n: offline.maxqueue(n, 1)):
        with pytest.raises(ValueError):
            call(name)
    with pytest.raises(ValueError):
        offline.cancel_job(name if name != "x" * 513 else "x" * 300)


def test_names_of_any_script_and_bytes_are_accepted(gearmand, admin, fname):
    fn = fname("naïve_名前")
    admin.create_function(fn)
    assert status_of(admin, fn) is not None
    admin.drop_function(fn.encode())
    assert status_of(admin, fn) is None


@pytest.mark.parametrize("value", [1.0, "3", None, True, [1, 2, 3], (1, 2, "3"), (1, 2, False)])
def test_bad_maxqueue_size_types(offline, value):
    with pytest.raises(TypeError):
        offline.maxqueue("fn", value)


@pytest.mark.parametrize("value", [-1, 2**31, (1, 2), (1, 2, 3, 4), (1, -2, 3)])
def test_bad_maxqueue_size_values(offline, value):
    with pytest.raises(ValueError):
        offline.maxqueue("fn", value)


@pytest.mark.parametrize("name", [None, 42, ["fn"]])
def test_bad_name_types(offline, name):
    with pytest.raises(TypeError):
        offline.create_function(name)


def test_constructor_and_timeouts():
    assert AdminClient("[::1]:4731").server == "[::1]:4731"
    assert AdminClient(("10.0.0.1", 4730)).server == "10.0.0.1:4730"
    assert AdminClient("example.org").server == "example.org:4730"
    assert AdminClient().server == "127.0.0.1:4730"
    for bad in ("a:b:c", "host:0", ("h", "1")):
        with pytest.raises((ValueError, TypeError)):
            AdminClient(bad)  # type: ignore[arg-type]
    for t in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            AdminClient(timeout=t)
    for t in (None, "1", True):
        with pytest.raises(TypeError):
            AdminClient(timeout=t)  # type: ignore[arg-type]
    a = AdminClient()
    with pytest.raises(ValueError):
        a.status(timeout=0)
    a.close()
    a.close()
    assert a.closed and "closed" in repr(a)
    with pytest.raises(RuntimeError, match="closed"):
        a.status()


# -- a scripted fake server -------------------------------------------------------------------

Reply = Union[bytes, Callable[[socket.socket], None]]


class FakeServer:
    """Answers each command line with a canned reply: bytes, or a function of the socket
    (to stay silent, close, or dribble). Records the lines it received."""

    def __init__(self, replies: Dict[bytes, Reply]) -> None:
        self.replies = replies
        self.received: List[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buf = b""
        with conn:
            while not self.stopping.is_set():
                try:
                    chunk = conn.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.received.append(line + b"\n")
                    reply = self.replies.get(line.rstrip(b"\r"), b"ERR UNKNOWN_COMMAND x\r\n")
                    try:
                        if callable(reply):
                            reply(conn)
                        else:
                            conn.sendall(reply)
                    except OSError:
                        return

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def fake() -> Iterator[Callable[[Dict[bytes, Reply]], FakeServer]]:
    servers: List[FakeServer] = []

    def make(replies: Dict[bytes, Reply]) -> FakeServer:
        s = FakeServer(replies)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def silent(conn: socket.socket) -> None:
    pass


def hang_up(conn: socket.socket) -> None:
    conn.shutdown(socket.SHUT_RDWR)
    raise OSError("closed on purpose")


def test_commands_end_with_crlf(fake):
    srv = fake({b"status": b".\n", b"getpid": b"OK 42\n"})
    with AdminClient(srv.address) as a:
        assert a.status() == []
        assert a.getpid() == 42
    assert srv.received == [b"status\r\n", b"getpid\r\n"]
    assert srv.connections == 1


def test_old_server_shutdown_ok_or_hang_up(fake):
    srv = fake({b"shutdown": b"OK\r\n", b"shutdown graceful": hang_up})
    with AdminClient(srv.address) as a:
        a.shutdown()
        a.shutdown(graceful=True)
    assert srv.received == [b"shutdown\r\n", b"shutdown graceful\r\n"]


@pytest.mark.parametrize("command,reply,call", [
    (b"status", b"fn\t1\t2\n.\n", "status"),
    (b"status", b"fn\t1\tx\t3\n.\n", "status"),
    (b"prioritystatus", b"fn\t1\t2\t3\n.\n", "priority_status"),
    (b"workers", b"xx 127.0.0.1 - : f\n.\n", "workers"),
    (b"workers", b"12 127.0.0.1 -\n.\n", "workers"),
    (b"show jobs", b"H:x:1\t0\t2\t1\n.\n", "show_jobs"),
    (b"getpid", b"OK pid\n", "getpid"),
    (b"getpid", b"hello\n", "getpid"),
    (b"version", b"OK\r\n", "version"),
    (b"version", b"VERSION 1\n", "version"),
])
def test_garbled_replies_raise_protocol_error_quoting_the_line(fake, command, reply, call):
    srv = fake({command: reply, b"getpid": b"OK 7\n"} if command != b"getpid" else
               {command: reply})
    with AdminClient(srv.address) as a:
        with pytest.raises(ProtocolError) as info:
            getattr(a, call)()
    bad_line = reply.split(b"\n")[0].decode().rstrip("\r")
    assert repr(bad_line)[1:-1].split("\\t")[0] in str(info.value)


def test_ok_to_a_list_command_is_a_protocol_error(fake):
    srv = fake({b"create function f": b"OK 1\n"})
    with AdminClient(srv.address) as a:
        with pytest.raises(ProtocolError, match="OK 1"):
            a.create_function("f")


def test_err_reply_to_a_list_command_raises_server_error(fake):
    srv = fake({b"status": b"ERR SOMETHING went+wrong\r\n", b"version": b"OK 9\n"})
    with AdminClient(srv.address) as a:
        with pytest.raises(ServerError, match="ERR SOMETHING went\\+wrong"):
            a.status()
        assert a.version() == "9"  # the connection is still in step


def test_silent_server_times_out_then_a_late_reply_is_not_misread(fake):
    def late(conn: socket.socket) -> None:
        time.sleep(0.6)
        conn.sendall(b"OK 111\n")

    srv = fake({b"getpid": late, b"version": b"OK 2\n", b"status": silent})
    with AdminClient(srv.address, timeout=5) as a:
        started = time.monotonic()
        with pytest.raises(GearmanTimeoutError) as info:
            a.getpid(timeout=0.2)
        assert time.monotonic() - started < 2
        assert isinstance(info.value, TimeoutError)
        time.sleep(0.8)
        assert a.version() == "2"     # a fresh connection: "OK 111" is not taken for this
        with pytest.raises(GearmanTimeoutError):
            a.status(timeout=0.3)
    assert srv.connections == 2   # the one that timed out was dropped


def test_connection_closed_mid_reply(fake):
    def half(conn: socket.socket) -> None:
        conn.sendall(b"fn\t1\t0\t0\n")
        hang_up(conn)

    srv = fake({b"status": half, b"version": b"OK 3\n"})
    with AdminClient(srv.address) as a:
        with pytest.raises(GearmanConnectionError, match="closed") as info:
            a.status()
        assert info.value.code == ReturnCode.LOST_CONNECTION
        assert a.version() == "3"


def test_dribbled_reply_is_reassembled(fake):
    def dribble(conn: socket.socket) -> None:
        for byte in b"f\t1\t0\t0\ng\t2\t1\t1\n.\n":
            conn.sendall(bytes([byte]))
            time.sleep(0.002)

    srv = fake({b"status": dribble})
    with AdminClient(srv.address) as a:
        assert a.status() == [FunctionStatus("f", 1, 0, 0), FunctionStatus("g", 2, 1, 1)]


def test_idle_connection_closed_by_server_is_reopened(fake):
    def answer_then_close(conn: socket.socket) -> None:
        conn.sendall(b"OK 1\n")
        hang_up(conn)

    srv = fake({b"version": answer_then_close, b"getpid": b"OK 5\n"})
    with AdminClient(srv.address) as a:
        assert a.version() == "1"
        time.sleep(0.2)           # the server's FIN reaches us while the client is idle
        assert a.getpid() == 5    # noticed before sending: a fresh connection, no error
    assert srv.connections == 2


def test_threads_share_one_client(fake):
    srv = fake({b"getpid": b"OK 77\n"})
    with AdminClient(srv.address) as a:
        results: List[int] = []

        def hammer() -> None:
            for _ in range(50):
                results.append(a.getpid())

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [77] * 200


CTRL_C = """\
import signal, socket, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from pygearman.admin import AdminClient
listener = socket.create_server(("127.0.0.1", 0))   # accepts, never answers
admin = AdminClient(listener.getsockname(), timeout=60)
print("READY", flush=True)
try:
    admin.status()
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
"""


def test_ctrl_c_interrupts_a_waiting_call(child):
    c = child(CTRL_C, [])
    c.wait_line("READY")
    assert c.seen == ["READY"]
    time.sleep(0.3)
    _, took = c.signal_and_wait(signal.SIGINT, 5.0)
    assert took < 5.0, f"the child took {took:.2f} s to exit after SIGINT"
    assert "INTERRUPTED" in c.seen, c.stderr()


# -- the parsers: exact formats, then fuzzing -------------------------------------------------

def test_parsers_on_gearmand_replies():
    assert parse_status("fb\t1\t0\t0\nfa\t2\t1\t3\n.\n") == [
        FunctionStatus("fb", 1, 0, 0), FunctionStatus("fa", 2, 1, 3)]
    assert parse_status(".\n") == [] and parse_status("") == []
    assert parse_status("with\ttab\t1\t2\t3\n.\n") == [FunctionStatus("with\ttab", 1, 2, 3)]
    assert parse_priority_status("fb\t0\t0\t1\t0\n.\n") == [PriorityStatus("fb", 0, 0, 1, 0)]
    assert parse_workers("20 127.0.0.1 - :\n19 ::1 my-id : f1 f2\n.\n") == [
        WorkerInfo(20, "127.0.0.1", "-", ()), WorkerInfo(19, "::1", "my-id", ("f1", "f2"))]
    assert parse_workers("-1 127.0.0.1  :\n.\n") == [WorkerInfo(-1, "127.0.0.1", "", ())]
    assert parse_show_jobs("H:vm:1\t0\t1\t0\nH:vm:2\t3\t0\t1\n.\n") == [
        JobInfo("H:vm:1", 0, True, False), JobInfo("H:vm:2", 3, False, True)]
    assert parse_show_unique_jobs("u1\nd9e4cc\n.\n") == [UniqueJobInfo("u1"),
                                                         UniqueJobInfo("d9e4cc")]
    assert parse_ok("OK\r\n") == "" and parse_ok("OK 1.1.20+ds\n") == "1.1.20+ds"
    assert parse_getpid("OK 16370\n") == 16370
    for bad in ("fn\t1\t0\t0\n.\nmore\n", "fn\t-1\t0\t0\n", "fn\t1\t0\t0x\n", "fn\t٣\t0\t0\n",
                "fn\t" + "9" * 5000 + "\t0\t0\n", "fn\t 1\t0\t0\n", "fn\t+1\t0\t0\n"):
        with pytest.raises(ProtocolError):
            parse_status(bad)
    for bad in ("OK\nOK\n", "ok\n", "ERR x\r\n", "", "OKAY\n"):
        with pytest.raises(ProtocolError):
            parse_ok(bad)
    with pytest.raises(ProtocolError):
        parse_getpid("OK -5\n")
    with pytest.raises(ProtocolError, match="'oops'"):
        parse_show_jobs("oops\n.\n")


PARSERS = [parse_status, parse_priority_status, parse_workers, parse_show_jobs,
           parse_show_unique_jobs, parse_ok, parse_getpid]

if st is not None:
    # text made of the characters that matter to the formats, plus anything at all
    _protocol_text = st.one_of(
        st.text(),
        st.text(alphabet="\t\n\r .:-0123456789HOKER fa", max_size=200),
        st.lists(st.lists(st.one_of(st.integers(-5, 2**40).map(str), st.text(max_size=8)),
                          max_size=6).map("\t".join), max_size=8)
        .map(lambda lines: "\n".join(lines + ["."]) + "\n"),
    )
    _name = st.text(min_size=1, max_size=30).filter(
        lambda s: "\n" not in s and "\r" not in s and s != ".")
    _u32 = st.integers(0, 2**32 - 1)

    @pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(text=_protocol_text)
    def test_parsers_never_raise_anything_but_protocol_error(parser, text):
        try:
            parser(text)
        except ProtocolError as e:
            assert str(e)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(_name, _u32, _u32, _u32), max_size=10))
    def test_status_round_trip(rows):
        text = "".join(f"{n}\t{a}\t{b}\t{c}\n" for n, a, b, c in rows) + ".\n"
        assert parse_status(text) == [FunctionStatus(*r) for r in rows]

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(_name, _u32, _u32, _u32, _u32), max_size=10))
    def test_priority_status_round_trip(rows):
        text = "".join("\t".join(map(str, r)) + "\n" for r in rows) + ".\n"
        assert parse_priority_status(text) == [PriorityStatus(*r) for r in rows]

    _token = st.text(alphabet=st.characters(blacklist_characters=" \n\r",
                                            blacklist_categories=("Cs",)),
                     min_size=1, max_size=12)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 65535), _token, _token.filter(lambda s: ":" not in s),
                              st.lists(_token, max_size=4)), max_size=8))
    def test_workers_round_trip(rows):
        text = "".join(f"{fd} {addr} {cid} :" + "".join(f" {f}" for f in fns) + "\n"
                       for fd, addr, cid, fns in rows) + ".\n"
        assert parse_workers(text) == [WorkerInfo(fd, a, c, tuple(f)) for fd, a, c, f in rows]

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(_name.filter(lambda s: "\t" not in s), _u32, st.booleans(),
                              st.booleans()), max_size=10))
    def test_show_jobs_round_trip(rows):
        text = "".join(f"{h}\t{r}\t{int(i)}\t{int(q)}\n" for h, r, i, q in rows) + ".\n"
        assert parse_show_jobs(text) == [JobInfo(*r) for r in rows]

    @settings(max_examples=200, deadline=None)
    @given(st.lists(_name, max_size=10))
    def test_show_unique_jobs_round_trip(uniques):
        text = "".join(u + "\n" for u in uniques) + ".\n"
        assert parse_show_unique_jobs(text) == [UniqueJobInfo(u) for u in uniques]
else:  # pragma: no cover
    def test_parsers_fuzz_needs_hypothesis():
        pytest.skip("hypothesis is not installed (pip install -r requirements-dev.txt)")


@pytest.mark.parametrize("method", ["status", "workers", "version"])
def test_a_port_that_is_not_gearman_says_so(method: str) -> None:
    """Like submit(): a web server on the port is 'not a Gearman job server', not a lost
    connection."""
    from _support.textserver import TextServer

    with TextServer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n") as web:
        with AdminClient(web.address, timeout=5) as a:
            with pytest.raises(pygearman.ProtocolError, match="not a Gearman job server"):
                getattr(a, method)()
