"""Bad input and bad peers: a server that answers with text instead of Gearman (from the start,
or after gearmand died and something else took its port), a stream of a closed client, and
payloads from 0 bytes to 16 MiB.

The rest of the bad-argument catalogue is in test_errors.py and test_fuzz_api.py.
"""
from __future__ import annotations

import os
import queue
import time
from pathlib import Path
from typing import Dict

import pytest

import pygearman
from pygearman import GearmanClient

from _support.processes import run_python
from _support.reliability import report
from _support.textserver import TextServer

TESTS_DIR = Path(__file__).resolve().parent


NOT_GEARMAN_CHILD = """\
import sys
import pygearman
addr = sys.argv[1]

def attempt(name, call):
    try:
        call()
        print(name, "NO-ERROR", flush=True)
    except pygearman.GearmanError as e:
        print(name, "RAISED", type(e).__name__, str(e).replace("\\n", " ")[:200], flush=True)
    except Exception as e:
        print(name, "OTHER", type(e).__name__, e, flush=True)

c = pygearman.GearmanClient(addr, timeout=5)
attempt("do_normal", lambda: c.do_normal("f", "x"))
attempt("do_background", lambda: c.do_background("f", "x"))
attempt("submit_background_many", lambda: c.submit_background_many("f", ["a", "b"]))
def tasks():
    c.add_task("f", "x")
    for t in c.run_tasks():
        if t.error is not None:
            raise t.error
attempt("run_tasks", tasks)
attempt("echo", lambda: c.echo())
attempt("job_status", lambda: c.job_status("H:x:1"))
w = pygearman.GearmanWorker(addr)
w.add_function("f", lambda job: b"")
attempt("worker.work", lambda: w.work(timeout=3))
if "--worker-echo" in sys.argv:
    attempt("worker.echo", lambda: w.echo())
print("DONE", flush=True)
"""

NOT_GEARMAN_CALLS = ["do_normal", "do_background", "submit_background_many", "run_tasks", "echo",
                     "job_status", "worker.work"]


NOT_GEARMAN_REPLIES = [b"HTTP/1.0 400 Bad Request\r\n\r\n", b"HELLO\n", b"-ERR unknown\r\n"]
NOT_GEARMAN_IDS = ["http", "one-word-line", "redis-like"]


def _run_against_text_server(reply: bytes, tmp_path: Path, *extra: str) -> Dict[str, str]:
    with TextServer(reply) as srv:
        out = run_python(tmp_path, "not_gearman", NOT_GEARMAN_CHILD, srv.address, *extra,
                         timeout=50)
    assert out.returncode >= 0, (f"the child died from signal {-out.returncode} after "
                                 f"{out.stdout!r}; stderr: {out.stderr[-2000:]}")
    assert out.returncode == 0 and "DONE" in out.stdout, (out.stdout, out.stderr[-2000:])
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("reply", NOT_GEARMAN_REPLIES, ids=NOT_GEARMAN_IDS)
def test_non_gearman_server_raises_instead_of_crashing(reply: bytes, tmp_path: Path) -> None:
    """libgearman 1.1.20 segfaults on a text reply (docs/libgearman-1.1.20.md#text-reply-crash):
    the child must survive and every call must raise a clear pygearman error (ProtocolError:
    "not a Gearman job server")."""
    lines = _run_against_text_server(reply, tmp_path)
    for call in NOT_GEARMAN_CALLS:
        assert lines.get(call, "").startswith("RAISED ProtocolError"), (call, lines)
        assert "not a Gearman job server" in lines[call], lines[call]
    report(f"not_gearman[{reply[:12]!r}]", calls=len(NOT_GEARMAN_CALLS), exception="ProtocolError")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("reply", NOT_GEARMAN_REPLIES, ids=NOT_GEARMAN_IDS)
def test_worker_echo_against_non_gearman_server(reply: bytes, tmp_path: Path) -> None:
    """GearmanWorker.echo() goes through the non-Gearman guard too (it once reached libgearman
    directly: SIGSEGV on a one-word reply, InvalidArgumentError on an HTTP reply)."""
    lines = _run_against_text_server(reply, tmp_path, "--worker-echo")
    assert lines.get("worker.echo", "").startswith("RAISED ProtocolError"), lines


SWAPPED_PEER_CHILD = """\
import sys
import pygearman
from pygearman.testing import GearmandServer
which, tests_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, tests_dir)
from _support.textserver import TextServer
server = GearmandServer().start()
if which == "client":
    c = pygearman.GearmanClient(server.address, timeout=5)
    c.do_background("f", "x")
else:
    w = pygearman.GearmanWorker(server.address)
    w.add_function("f", lambda job: b"")
    w.work(timeout=0.5)
print("TALKED-TO-GEARMAND", flush=True)
port = server.port
server.kill()
# something else takes the port (a restart as another service, a proxy's error page, ...)
srv = TextServer(b"HELLO\\n", port=port)
try:
    if which == "client":
        c.do_background("f", "x")
    else:
        w.work(timeout=3)
    print("NO-ERROR", flush=True)
except pygearman.GearmanError as e:
    print("RAISED", type(e).__name__, flush=True)
server.cleanup()
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", [
    "client",
    pytest.param("worker", marks=pytest.mark.skip(
        reason="known limitation: libgearman's worker reconnects inside gearman_worker_work() "
               "right after EOF, with no return in between where pygearman could look at the new "
               "peer; a text reply there still crashes libgearman 1.1.20 -- see RELIABILITY.md")),
])
def test_peer_that_turns_into_a_text_server_does_not_crash(which: str, tmp_path: Path) -> None:
    """The non-Gearman guard must look again after a reconnect: gearmand dies and something
    else (another service, a proxy's error page) answers on its port."""
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin")
    out = run_python(tmp_path, "swapped", SWAPPED_PEER_CHILD, which, str(TESTS_DIR), timeout=50,
                     env=env)
    assert "TALKED-TO-GEARMAND" in out.stdout, out.stderr[-2000:]
    assert out.returncode >= 0, f"the child died from signal {-out.returncode}: {out.stdout!r}"
    assert "RAISED" in out.stdout, (out.stdout, out.stderr[-2000:])


@pytest.mark.timeout(30)
def test_stream_of_a_closed_client_raises(gearmand, fname) -> None:
    """A stream abandoned by close() must not look like a job that returned nothing."""
    c = GearmanClient(gearmand.address, timeout=5)
    chunks = c.stream(fname("never"), "x")
    c.close()
    with pytest.raises((RuntimeError, pygearman.GearmanError)):
        list(chunks)


PAYLOAD_SIZES = [0, 1, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", PAYLOAD_SIZES, ids=["0B", "1B", "64KiB", "1MiB", "16MiB"])
def test_payload_sizes_round_trip(size: int, gearmand, fname, start_worker) -> None:
    fn, bg = fname("size"), fname("size_bg")
    got_bg: "queue.Queue[bytes]" = queue.Queue()
    start_worker(gearmand.address, {fn: lambda job: job.workload,
                                    bg: lambda job: got_bg.put(bytes(job.workload))})
    data = os.urandom(size)
    with GearmanClient(gearmand.address, timeout=100) as c:
        t0 = time.monotonic()
        assert c.do_normal(fn, data) == data
        rtt = time.monotonic() - t0
        assert c.do_normal(fn, bytearray(data)) == data
        assert c.do_normal(fn, memoryview(data)) == data
        t = c.add_task(fn, data)
        c.run_tasks()
        assert t.result == data
        assert c.submit_many(fn, [data, data]) == [data, data]
        c.do_background(bg, data)
        assert got_bg.get(timeout=60) == data
    report(f"payload[{size}]", do_normal_round_trip_s=rtt)
