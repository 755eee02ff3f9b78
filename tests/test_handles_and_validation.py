"""Handles that know their server, cancel of a running job, background task states, and the
validation rules that apply before any I/O."""
from __future__ import annotations

import copy
import gc
import inspect
import json
import math
import pickle
import sys
import threading
import time
from typing import Any

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker, JobHandle, Retry


@pytest.fixture
def two(gearmand_factory):  # type: ignore[no-untyped-def]
    return gearmand_factory(), gearmand_factory()


def test_the_same_handle_text_on_two_servers_reaches_the_right_one(two, fname) -> None:
    """Two gearmand servers both hand out H:<host>:1: status and cancel must reach the server
    that issued the handle, and a plain str is refused when it is ambiguous."""
    a, b = two
    fn = fname("q")
    with GearmanClient(a.address) as ca, GearmanClient(b.address) as cb:
        ha = ca.do_background(fn, "on a")
        hb = cb.do_background(fn, "on b")
    assert str(ha) == str(hb)                         # the same text on both servers
    assert ha.server == a.address and hb.server == b.address
    with GearmanClient([a.address, b.address]) as c:
        assert c.job_status(ha).known and c.job_status(hb).known
        with pytest.raises(ValueError, match="several job servers"):
            c.job_status(str(ha))
        with pytest.raises(ValueError, match="several job servers"):
            c.cancel_job(str(ha))
        with pytest.raises(ValueError, match="ambiguous"):
            c.add_task_status(str(ha))
        assert c.cancel_job(ha) is True
        # B's job is untouched
        st = c.job_status(hb)
        assert st.known
        t = c.add_task_status(hb)
        c.run_tasks()
        assert t.known
    with GearmanClient(b.address) as only_b:
        assert only_b.job_status(str(hb)).known      # one server: a plain str is fine
        with pytest.raises(ValueError, match="not one of this client's servers"):
            only_b.job_status(ha)


def test_job_handles_pickle_and_compare_as_str(gearmand, fname) -> None:
    with GearmanClient(gearmand.address) as c:
        h = c.do_background(fname("p"), "x")
    assert isinstance(h, str) and isinstance(h, JobHandle)
    again = pickle.loads(pickle.dumps(h))
    assert again == h and again.server == h.server
    assert JobHandle("H:x:1", "h:1").server == "h:1" and JobHandle("H:x:1").server is None
    assert repr(h).startswith("JobHandle(")


def test_job_handles_are_untracked_strs_that_give_their_class_back(gearmand, fname) -> None:
    """Handles are made in C (_core/handle.pxi): one block like a str of the same text, not
    tracked by the cyclic GC, and each drops its reference to its class when it dies."""
    with GearmanClient(gearmand.address) as c:
        many = c.submit_background_many(fname("h"), [b"x"] * 50)
        h = c.do_background(fname("h"), "x")
    cls = type(h)
    assert all(type(x) is cls for x in many) and cls.server == gearmand.address
    assert not gc.is_tracked(h) and not any(gc.is_tracked(x) for x in many)
    assert sys.getsizeof(h) == sys.getsizeof(str(h))
    gc.collect()
    before = sys.getrefcount(cls)
    del many
    gc.collect()
    assert sys.getrefcount(cls) == before - 50
    s = str(h)
    assert type(s) is str and s == h and hash(s) == hash(h) and {s: 1}[h] == 1
    assert h + "!" == s + "!" and h.split(":") == s.split(":") and h.encode() == s.encode()
    assert h[2:] == s[2:] and f"{h}" == s and json.dumps(h) == json.dumps(s)
    assert copy.deepcopy(h) == h and copy.deepcopy(h).server == h.server
    with pytest.raises(AttributeError):
        h.note = 1  # type: ignore[attr-defined]


def test_job_handle_classes_and_a_users_subclass() -> None:
    made = JobHandle("H:é:1", "host:1")           # not ASCII: str's own constructor
    assert made == "H:é:1" and made.server == "host:1" and type(made) is type(JobHandle("x", "host:1"))
    assert pickle.loads(pickle.dumps(made)).server == "host:1"

    class Mine(JobHandle):
        pass

    m = Mine("H:x:1")
    assert m == "H:x:1" and isinstance(m, JobHandle) and m.server is None
    assert repr(m) == "JobHandle('H:x:1', server=None)"
    assert str(inspect.signature(JobHandle)) == "(handle, server=None)"


def test_php_names_are_methods_with_signatures_and_docs(gearmand, fname) -> None:
    """do_normal & co are compiled methods (no Python frame per call): they still read as
    methods of GearmanClient, check their arguments and can be overridden."""
    for name in ("do_normal", "do_high", "do_low", "do_background", "do_high_background",
                 "do_low_background"):
        m = getattr(GearmanClient, name)
        assert m.__name__ == name and m.__qualname__ == f"GearmanClient.{name}"
        assert m.__doc__.startswith("PHP ``do")
        assert list(inspect.signature(m).parameters) == [
            "self", "function", "workload", "unique", "timeout"]
    with GearmanClient(gearmand.address) as c:
        with pytest.raises(TypeError):
            c.do_background(fname("t"), "x", None, 5)  # type: ignore[misc]
        with pytest.raises(TypeError, match="workload"):
            c.do_background(fname("t"), None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            GearmanClient.do_background("not a client", fname("t"))  # type: ignore[arg-type]

    class Logged(GearmanClient):
        def do_background(self, *args: Any, **kwargs: Any) -> JobHandle:
            self.calls = getattr(self, "calls", 0) + 1
            return super().do_background(*args, **kwargs)

    with Logged(gearmand.address) as c:
        assert c.do_background(fname("t"), "x", timeout=5).server == gearmand.address
        assert c.calls == 1


def test_cancel_of_a_running_job_says_false(gearmand, fname) -> None:
    fn = fname("running")
    started = threading.Event()
    release = threading.Event()

    def work(job: Any) -> bytes:
        started.set()
        release.wait(10)
        return b"done"

    w = GearmanWorker(gearmand.address)
    w.add_function(fn, work)
    t = threading.Thread(target=w.work, kwargs={"timeout": 20})
    t.start()
    try:
        with GearmanClient(gearmand.address) as c:
            h = c.do_background(fn, "x")
            assert started.wait(10)
            assert c.job_status(h).running
            assert c.cancel_job(h) is False              # it would run to the end anyway
            queued = c.do_background(fn + "-nobody", "y")
            assert c.cancel_job(queued) is True
            assert c.cancel_job(JobHandle("H:nowhere:1", gearmand.address)) is False
    finally:
        release.set()
        t.join(10)
        w.close()


def test_background_tasks_end_created_and_timed_out_tasks_say_so(gearmand, fname) -> None:
    with GearmanClient(gearmand.address) as c:
        bg = c.add_task_background(fname("bg"), "x")
        fg = c.add_task(fname("nobody"), "y")
        with pytest.raises(pygearman.GearmanTimeoutError):
            c.run_tasks(timeout=0.5)
    assert bg.state == "created" and bg.finished and bg.handle.startswith("H:")
    assert fg.state == "error" and isinstance(fg.error, pygearman.GearmanTimeoutError)
    assert not fg.finished or fg.state == "error"


@pytest.mark.parametrize("servers", [("127.0.0.1", "4730"), ("127.0.0.1", 4730)])
def test_a_host_port_tuple_is_one_server(servers: Any) -> None:
    c = GearmanClient(servers)
    assert c.servers == ["127.0.0.1:4730"]
    c.close()


@pytest.mark.parametrize("name", ["with space", "tab\there", "new\nline", "bell\x07", "del\x7f"])
def test_function_names_with_whitespace_or_controls_are_refused(name: str) -> None:
    with GearmanClient("127.0.0.1:1") as c:
        with pytest.raises(ValueError, match="function name must not contain"):
            c.do_normal(name, "x")
        with pytest.raises(ValueError, match="function name must not contain"):
            c.add_task(name, "x")
    w = GearmanWorker("127.0.0.1:1")
    with pytest.raises(ValueError, match="function name must not contain"):
        w.add_function(name, lambda job: b"")
    w.close()


@pytest.mark.parametrize("kwargs, exc", [
    ({"delay": math.nan}, ValueError), ({"delay": math.inf}, ValueError),
    ({"delay": -1}, ValueError), ({"delay": "1"}, TypeError),
    ({"max_retries": -1}, ValueError), ({"max_retries": 1.5}, TypeError),
])
def test_retry_arguments_are_checked(kwargs: Any, exc: Any) -> None:
    with pytest.raises(exc, match="Retry"):
        Retry("again", **kwargs)


def test_namespace_and_uniques_types_are_named() -> None:
    with pytest.raises(TypeError, match="namespace must be str, bytes or None, not int"):
        GearmanClient("127.0.0.1:1", namespace=5)     # type: ignore[arg-type]
    with GearmanClient("127.0.0.1:1") as c:
        with pytest.raises(TypeError, match="sequence of uniques"):
            c.submit_many("f", [b"a", b"b"], uniques="ab")  # type: ignore[arg-type]


def _sleep_then_echo(job):  # type: ignore[no-untyped-def]
    time.sleep(float(job.workload))
    return job.workload


def test_as_completed_hands_tasks_out_as_they_finish(gearmand, fname, start_worker) -> None:
    fn = fname("sleepy")
    for _ in range(3):
        start_worker(gearmand.address, {fn: _sleep_then_echo})
    with GearmanClient(gearmand.address, timeout=20) as c:
        c.add_task(fn, "0.6")
        c.add_task(fn, "0.05")
        c.add_task(fn, "0.3")
        c.add_task_background(fname("nobody"), "q")
        with pytest.raises(RuntimeError, match="as_completed"):
            with c.as_completed() as it:
                next(it)
                c.do_normal(fn, "0")                 # the client is busy meanwhile
        time.sleep(0.8)           # the abandoned jobs still run in the workers: let them end
        for delay in ("0.6", "0.05", "0.3"):
            c.add_task(fn, delay)
        c.add_task_background(fname("nobody"), "q")
        order = []
        for task in c.as_completed():
            order.append(task.workload)
            assert task.finished
        # the background one is done once queued; the others in the order they finish
        assert order[-3:] == [b"0.05", b"0.3", b"0.6"] and b"q" in order
        # leaving the loop early abandons the rest, and the client goes on
        c.add_task(fn, "1.5")
        c.add_task(fn, "0")
        with c.as_completed() as it:
            assert next(it).workload == b"0"
        assert c.do_normal(fn, "0") == b"0"
        assert c.last_handle is not None and c.last_handle.server == gearmand.address
        assert c.do_job_handle() == c.last_handle


def test_the_same_name_object_follows_a_namespace_change(gearmand, fname) -> None:
    """Single calls remember the last function name they encoded and checked; a new namespace
    still applies to the same name object."""
    name = fname("ns-follow")
    with GearmanClient(gearmand.address, timeout=10) as c:
        assert c.do_background(name, b"1")
        assert c.do_background(name, b"2")
        c.set_namespace("ns:")
        assert c.do_background(name, b"3")
        c.set_namespace(None)
        assert c.do_background(name, b"4")
    from pygearman.admin import AdminClient
    with AdminClient(gearmand.address) as a:
        queued = {row.function: row.total for row in a.status()}
    assert queued.get(name) == 3 and queued.get("ns:" + name) == 1, queued


def test_last_handle_survives_status_queries_and_batches(gearmand, fname) -> None:
    """last_handle is the last single job's: job_status(), unique_status() and batches in
    between do not change it (they run on an engine of their own)."""
    fn = fname("last")
    with GearmanClient(gearmand.address, timeout=10) as c:
        h = c.do_background(fn, b"1", unique="last-1")
        assert c.last_handle == h
        assert c.job_status(h).known
        assert c.unique_status("last-1").known
        assert len(c.submit_background_many(fn, [b"2", b"3"])) == 2
        assert c.last_handle == h and c.last_handle.server == gearmand.address
