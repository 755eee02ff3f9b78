"""Error hierarchy and bad input: clear Python exceptions, raised before any I/O."""
from __future__ import annotations

import math

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker, ReturnCode, _libgearman
from pygearman.errors import NON_ERROR_CODES, error_class_for

pytestmark = pytest.mark.timeout(30)

# A port nothing listens on: any I/O attempt would show up as a ConnectionError, so a
# ValueError/TypeError proves the check happened before I/O.
DEAD = "127.0.0.1:1"


def test_return_codes_match_the_c_enum():
    compiled = _libgearman.return_code_values()
    for name, value in compiled.items():
        if name in ("MAX_RETURN", "FAIL", "ERROR"):
            continue
        assert ReturnCode[name] == value, name
    assert compiled["MAX_RETURN"] == len(ReturnCode)
    assert compiled["FAIL"] == ReturnCode.WORK_FAIL and compiled["ERROR"] == ReturnCode.WORK_ERROR


def test_every_return_code_is_a_non_error_or_mapped():
    for code in ReturnCode:
        if code in NON_ERROR_CODES:
            continue
        assert error_class_for(code) is not pygearman.GearmanError, code.name
        assert _libgearman.strerror(code)  # libgearman has a name for it


def test_hierarchy_inherits_builtins():
    assert issubclass(pygearman.GearmanConnectionError, ConnectionError)
    assert issubclass(pygearman.GearmanTimeoutError, TimeoutError)
    assert issubclass(pygearman.InvalidArgumentError, ValueError)
    assert issubclass(pygearman.JobFailed, pygearman.JobError)
    assert issubclass(pygearman.JobException, pygearman.GearmanError)
    e = pygearman.JobException("ValueError: x", ReturnCode.WORK_EXCEPTION, handle="H:1", function="f")
    assert str(e) == "ValueError: x" and e.code is ReturnCode.WORK_EXCEPTION
    assert e.message == "ValueError: x" and e.handle == "H:1" and e.function == "f"


@pytest.fixture
def dead_client():
    with GearmanClient(DEAD) as c:
        yield c


@pytest.mark.parametrize("name,exc,match", [
    (123, TypeError, "function name must be str or bytes"),
    (None, TypeError, "function name must be str or bytes"),
    ("", ValueError, "must not be empty"),
    ("f" * 513, ValueError, "513 bytes; the Gearman limit is 512"),
    ("é" * 257, ValueError, "514 bytes"),
    ("a\0b", ValueError, "NUL"),
])
def test_bad_function_names(dead_client, name, exc, match):
    with pytest.raises(exc, match=match):
        dead_client.do_normal(name, "x")
    with pytest.raises(exc, match=match):
        dead_client.do_background(name, "x")


def test_function_name_of_512_bytes_is_accepted(dead_client):
    with pytest.raises(ConnectionError):  # got as far as I/O
        dead_client.do_normal("f" * 512, "x")


@pytest.mark.parametrize("unique,exc,match", [
    (5, TypeError, "unique must be str, bytes or None"),
    ("", ValueError, "must not be empty"),
    ("u" * 64, ValueError, "64 bytes; at most 63"),
    ("u" * 65, ValueError, "65 bytes"),
    (b"a\0", ValueError, "NUL"),
])
def test_bad_uniques(dead_client, unique, exc, match):
    with pytest.raises(exc, match=match):
        dead_client.do_normal("f", "x", unique=unique)


@pytest.mark.parametrize("workload", [None, 12, 1.5, object(), ["a"], {"a": 1}])
def test_bad_workloads(dead_client, workload):
    with pytest.raises(TypeError, match="workload must be bytes-like"):
        dead_client.do_normal("f", workload)


def test_non_contiguous_buffer_is_rejected(dead_client):
    with pytest.raises(TypeError, match="bytes-like"):
        dead_client.do_normal("f", memoryview(b"abcdef")[::2])


@pytest.mark.parametrize("timeout,exc", [
    (-1, ValueError), (-0.001, ValueError), (math.nan, ValueError),
    ("1", TypeError), (True, TypeError), ([1], TypeError),
])
def test_bad_timeouts(dead_client, timeout, exc):
    with pytest.raises(exc, match="timeout"):
        dead_client.do_normal("f", "x", timeout=timeout)
    with pytest.raises(exc, match="timeout"):
        GearmanClient(DEAD, timeout=timeout)
    with GearmanWorker(DEAD) as w:
        w.add_function("f", lambda job: None)
        with pytest.raises(exc, match="timeout"):
            w.work(timeout=timeout)


def test_huge_and_infinite_timeouts_mean_no_deadline(dead_client):
    with pytest.raises(ConnectionError):
        dead_client.do_normal("f", "x", timeout=math.inf)
    with pytest.raises(ConnectionError):
        dead_client.do_normal("f", "x", timeout=1e300)


@pytest.mark.parametrize("servers,exc,match", [
    ("host:port", ValueError, "port must be a number"),
    ("host:0", ValueError, "1-65535"),
    ("host:70000", ValueError, "1-65535"),
    (":4730", ValueError, "host is empty"),
    ("", ValueError, "empty server address"),
    ("a b:1", ValueError, "not a host name"),
    ("::1:4730", ValueError, r"\[addr\]:port"),
    ("[::1", ValueError, "missing"),
    (4730, TypeError, "servers must be"),
    ([("h", "x")], TypeError, "port must be an int"),
    ([("h",)], ValueError, "must be \\(host, port\\)"),
    ([], ValueError, "empty"),
])
def test_bad_server_strings(servers, exc, match):
    with pytest.raises(exc, match=match):
        GearmanClient(servers)
    with pytest.raises(exc, match=match):
        GearmanWorker(servers)


def test_bad_priority(dead_client):
    with pytest.raises(TypeError, match="priority"):
        dead_client.submit("f", "x", priority="high")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="priority"):
        dead_client.submit("f", "x", priority=7)  # type: ignore[arg-type]


def test_bad_job_status_handles(dead_client):
    with pytest.raises(TypeError):
        dead_client.job_status(5)
    with pytest.raises(ValueError, match="not a job handle"):
        dead_client.job_status("")
    with pytest.raises(ValueError, match="not a job handle"):
        dead_client.job_status("H:" + "x" * 80)


def test_bad_worker_registrations():
    with GearmanWorker(DEAD) as w:
        with pytest.raises(TypeError, match="callable"):
            w.add_function("f", "not callable")
        with pytest.raises(ValueError, match="512"):
            w.add_function("f" * 600, lambda job: None)
        with pytest.raises(TypeError, match="whole number"):
            w.add_function("f", lambda job: None, timeout=1.5)
        with pytest.raises(ValueError, match="between 0"):
            w.add_function("f", lambda job: None, timeout=-1)
        with pytest.raises(RuntimeError, match="no functions registered"):
            w.work(timeout=0.1)


def test_unresolvable_host_is_a_connection_error_on_use_not_at_construction():
    c = GearmanClient("no-such-host.invalid:4730")
    with pytest.raises(pygearman.GearmanConnectionError, match="no-such-host"):
        c.do_normal("f", "x", timeout=10)
    c.close()


def test_empty_echo_is_rejected(dead_client):
    with pytest.raises(ValueError, match="echo data must not be empty"):
        dead_client.echo(b"")
