"""Property tests over the public API's argument space.

A client or worker pointed at a dead port (127.0.0.1:1, where nothing listens) gets random
function names, workloads, uniques, timeouts, priorities, handles and server strings, wrong types
included (NUL bytes, surrogates, huge sizes, None, floats, containers). Every call must raise
TypeError, ValueError or a pygearman.GearmanError -- never crash the interpreter, never hang (each
test is time-bounded) -- and when every argument is valid, the error must be the connection error
(the checks happen before I/O, and nothing else goes wrong on the way to the socket).
Server strings are only parsed (no I/O: random host names would mean DNS look-ups).
The admin text parser has its own fuzz test in tests/test_admin.py.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pygearman
from pygearman import GearmanClient, GearmanWorker, Priority

DEAD = "127.0.0.1:1"
CLEAN = (TypeError, ValueError, pygearman.GearmanError)

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])

# -- strategies ---------------------------------------------------------------------------------

safe_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"))
junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                 st.just(object()), st.just(1j), st.just(Ellipsis))
huge = st.sampled_from([1, 511, 512, 513, 1023, 1024, 4096, 1 << 16, 1 << 20])

any_name = st.one_of(
    st.text(max_size=600), st.binary(max_size=600), junk,
    huge.map(lambda n: "f" * n), huge.map(lambda n: b"f" * n),
    st.text(max_size=20).map(lambda s: s + "\0" + s),
)
# function names: no whitespace or control characters (the admin protocol is tab/line separated)
name_text = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=" "))
valid_name = st.one_of(name_text, st.binary().filter(lambda b: all(c > 32 and c != 127 for c in b))).filter(
    lambda n: 0 < len(n.encode("utf-8") if isinstance(n, str) else n) <= 512)

any_workload = st.one_of(
    st.binary(max_size=2000), st.text(max_size=200), junk,
    st.binary(max_size=200).map(bytearray), st.binary(max_size=200).map(memoryview),
    st.binary(min_size=2, max_size=200).map(lambda b: memoryview(b)[::2]),    # not contiguous
    huge.map(lambda n: b"w" * n), st.just(b"w" * (16 << 20)),
    st.just(memoryview(b"abcd").cast("B", shape=[2, 2])),                      # 2-D buffer
    st.just(__import__("array").array("i", [1, 2, 3])),
)
valid_workload = st.one_of(st.binary(max_size=2000), safe_text,
                           st.binary(max_size=200).map(bytearray),
                           st.binary(max_size=200).map(memoryview))

any_unique = st.one_of(st.none(), st.text(max_size=100), st.binary(max_size=100), junk,
                       st.sampled_from(["-", "#", "u" * 63, "u" * 64, "a b", "a\0b"]))
valid_unique = st.one_of(st.none(), safe_text, st.binary().filter(lambda b: b"\0" not in b)).filter(
    lambda u: u is None or 0 < len(u.encode("utf-8") if isinstance(u, str) else u) <= 63)

any_timeout = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                        st.integers(min_value=-(10 ** 30), max_value=10 ** 30), st.booleans(),
                        st.text(max_size=5), st.just([1]), st.just(math.nan))
# a dead port fails at once, so even long deadlines end quickly
valid_timeout = st.one_of(st.none(), st.floats(min_value=0, max_value=1e300, allow_nan=False),
                          st.integers(min_value=0, max_value=10 ** 9), st.just(math.inf))

any_priority = st.one_of(st.sampled_from(list(Priority)), st.integers(-5, 10), junk, st.text(max_size=4))
valid_priority = st.one_of(st.sampled_from(list(Priority)), st.sampled_from([0, 1, 2]))

any_handle = st.one_of(st.text(max_size=100), st.binary(max_size=100), junk,
                       st.sampled_from(["H:x:1", "", " ", "H:" + "x" * 80, "H:\0:1"]))

any_servers = st.one_of(
    st.text(max_size=300), st.binary(max_size=50), junk,
    st.lists(st.one_of(st.text(max_size=30), st.tuples(st.text(max_size=20), st.integers()),
                       st.tuples(st.text(max_size=5)), junk), max_size=4),
    st.builds(lambda h, p: f"{h}:{p}", st.text(max_size=20), st.integers(-10, 70000)),
    st.builds(lambda h, p: f"[{h}]:{p}", st.text(max_size=20), st.integers(0, 70000)),
)

CALLS = ["do_normal", "do_high", "do_low", "do_background", "do_high_background",
         "do_low_background", "submit", "submit_many", "submit_background_many", "add_task",
         "stream"]


def call_client(c: GearmanClient, how: str, fn: Any, workload: Any, unique: Any, timeout: Any,
                priority: Any) -> None:
    if how == "submit":
        c.submit(fn, workload, unique=unique, timeout=timeout, priority=priority)
    elif how == "submit_many":
        c.submit_many(fn, [workload, workload], uniques=[unique, None], timeout=timeout,
                      priority=priority)
    elif how == "submit_background_many":
        c.submit_background_many(fn, [workload], uniques=[unique], timeout=timeout,
                                 priority=priority)
    elif how == "add_task":
        c.add_task(fn, workload, None, unique, priority=priority)
        tasks = c.run_tasks(timeout=timeout)
        for t in tasks:
            if t.error is not None:
                raise t.error
    elif how == "stream":
        with c.stream(fn, workload, unique=unique, timeout=timeout, priority=priority) as chunks:
            list(chunks)
    else:
        getattr(c, how)(fn, workload, unique=unique, timeout=timeout)


def raises_cleanly(thunk: Callable[[], object]) -> BaseException:
    try:
        thunk()
    except CLEAN as e:
        return e
    pytest.fail("the call against a dead port returned instead of raising")


# -- client ---------------------------------------------------------------------------------------

@FUZZ
@given(how=st.sampled_from(CALLS), fn=any_name, workload=any_workload, unique=any_unique,
       timeout=any_timeout, priority=any_priority)
def test_any_arguments_raise_cleanly(how, fn, workload, unique, timeout, priority) -> None:
    with GearmanClient(DEAD) as c:
        raises_cleanly(lambda: call_client(c, how, fn, workload, unique, timeout, priority))
        # the client is still usable after whatever happened
        with pytest.raises(ConnectionError):
            c.do_background("f", b"x", timeout=5)


@FUZZ
@given(how=st.sampled_from(CALLS), fn=valid_name, workload=valid_workload, unique=valid_unique,
       timeout=valid_timeout, priority=valid_priority)
def test_valid_arguments_reach_the_socket(how, fn, workload, unique, timeout, priority) -> None:
    with GearmanClient(DEAD) as c:
        e = raises_cleanly(lambda: call_client(c, how, fn, workload, unique, timeout, priority))
        assert isinstance(e, pygearman.GearmanConnectionError), repr(e)


@FUZZ
@given(handle=any_handle, unique=any_unique, data=any_workload, timeout=any_timeout)
def test_status_and_echo_arguments(handle, unique, data, timeout) -> None:
    with GearmanClient(DEAD) as c:
        raises_cleanly(lambda: c.job_status(handle, timeout=timeout))
        raises_cleanly(lambda: c.unique_status(unique, timeout=timeout))
        raises_cleanly(lambda: c.echo(data, timeout=timeout))
        raises_cleanly(lambda: c.cancel_job(handle, timeout=1.0))

        def status_task() -> None:
            c.add_task_status(handle)
            for t in c.run_tasks(timeout=5):
                if t.error is not None:
                    raise t.error
        raises_cleanly(status_task)


@FUZZ
@given(fn=any_name, workloads=st.one_of(st.lists(any_workload, max_size=5), junk, st.text(max_size=5)),
       uniques=st.one_of(st.none(), st.lists(any_unique, max_size=6), junk),
       batch=st.one_of(st.integers(-3, 5000), junk), priority=any_priority)
def test_batch_arguments(fn, workloads, uniques, batch, priority) -> None:
    with GearmanClient(DEAD) as c:
        def call() -> None:
            c.submit_many(fn, workloads, uniques=uniques, batch=batch, priority=priority, timeout=5)
            # an empty batch is a valid no-op
            raise pygearman.GearmanError("returned without I/O")
        raises_cleanly(call)


@FUZZ
@given(servers=any_servers, timeout=any_timeout,
       namespace=st.one_of(st.none(), st.text(max_size=20), st.binary(max_size=20), junk,
                           huge.map(lambda n: "n" * n)),
       identifier=st.one_of(st.none(), st.text(max_size=300), junk, st.just("id-1")))
def test_constructor_arguments(servers, timeout, namespace, identifier) -> None:
    """Only parsing: a client that could be built is closed without I/O."""
    for make in (lambda: GearmanClient(servers, timeout=timeout, namespace=namespace,
                                       identifier=identifier),
                 lambda: GearmanWorker(servers, namespace=namespace, identifier=identifier)):
        try:
            obj = make()
        except CLEAN:
            continue
        assert obj.servers and all(isinstance(s, str) for s in obj.servers)
        obj.close()


@FUZZ
@given(namespace=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                         min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 511),
       fn=valid_name)
def test_namespace_plus_name_limit(namespace, fn) -> None:
    """namespace + function name must stay under libgearman's 1024-byte stack buffer."""
    with GearmanClient(DEAD, namespace=namespace) as c:
        e = raises_cleanly(lambda: c.do_background(fn, b"x", timeout=5))
        total = len(namespace.encode()) + len(fn.encode() if isinstance(fn, str) else fn)
        if total > 1023:
            assert isinstance(e, ValueError) and not isinstance(e, ConnectionError)
        else:
            assert isinstance(e, ConnectionError), repr(e)


HUGE_INTS = [2 ** 31, 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 30]


@pytest.mark.parametrize("big", HUGE_INTS)
def test_huge_ints_raise_value_error(big: int) -> None:
    """Ints beyond C int range are out of range (ValueError), not an OverflowError from the
    int conversion (the fuzz found that for priority=, batch= and max_retries=)."""
    with GearmanClient(DEAD) as c:
        for call in (lambda: c.submit("f", "x", priority=big),
                     lambda: c.submit("f", "x", priority=big, background=True),
                     lambda: c.add_task("f", "x", priority=big),
                     lambda: c.submit_many("f", ["x"], priority=big),
                     lambda: c.submit_background_many("f", ["x"], priority=big),
                     lambda: c.submit_many("f", ["x"], batch=big),
                     lambda: list(c.stream("f", "x", priority=big)),
                     lambda: GearmanWorker(DEAD, max_retries=big)):
            with pytest.raises(ValueError):
                call()


@pytest.mark.parametrize("batch", [5.5, 5.0, True, math.inf, 2.0 ** 31, math.nan])
def test_batch_must_be_a_positive_int(batch: Any) -> None:
    """Floats and bools are refused (TypeError or ValueError, naming batch=), never truncated
    into a batch size nor turned into OverflowError."""
    with GearmanClient(DEAD) as c:
        for call in (lambda: c.submit_many("f", ["x"], batch=batch),
                     lambda: c.submit_background_many("f", ["x"], batch=batch),
                     lambda: c.run_tasks(batch=batch)):
            with pytest.raises((TypeError, ValueError), match="batch"):
                call()


# -- worker ----------------------------------------------------------------------------------------

callables = st.one_of(st.just(lambda job: job.workload), st.just(print), st.just(len))
any_function = st.one_of(callables, junk, st.text(max_size=5))
any_fn_timeout = st.one_of(st.integers(-(2 ** 40), 2 ** 40), junk, st.floats(allow_nan=True), st.text(max_size=3))


@FUZZ
@given(names=st.lists(any_name, min_size=1, max_size=4), function=any_function,
       timeout=any_fn_timeout)
def test_worker_add_function_arguments(names: List[Any], function, timeout) -> None:
    with GearmanWorker(DEAD) as w:
        for name in names:
            try:
                w.add_function(name, function, timeout)
            except (TypeError, ValueError):
                continue
            except pygearman.GearmanError:
                continue
            assert callable(function)
            key = (name.decode("utf-8", "replace") if isinstance(name, bytes) else name)
            assert key in w.functions
            w.unregister(name)
            assert key not in w.functions
        # whatever was registered, the worker still runs against the dead port and says that no
        # server could be reached (not "no job")
        w.add_function("ok", lambda job: b"")
        with pytest.raises(pygearman.GearmanConnectionError, match="could be reached"):
            w.work(timeout=0.002)


@FUZZ
@given(data=any_workload, identifier=st.one_of(st.text(max_size=300), junk),
       timeout=any_timeout)
def test_worker_other_arguments(data, identifier, timeout) -> None:
    with GearmanWorker(DEAD) as w:
        raises_cleanly(lambda: w.echo(data))
        try:
            w.set_identifier(identifier)
        except CLEAN:
            pass
        w.add_function("f", lambda job: b"")
        if timeout is None or (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
                               and not math.isnan(timeout) and timeout > 0.002):
            timeout = 0.002       # a valid timeout against a dead port just waits it out
        try:
            assert w.work(timeout=timeout) is False
        except CLEAN:
            pass
