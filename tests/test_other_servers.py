"""Other Gearman job servers than gearmand: gear's Server (pure Python, the job server behind
Zuul/OpenStack CI) never answers OPTION_REQ nor ECHO_REQ. pygearman clients work with it, without
the "exceptions" option (a worker's exception then arrives as a failure)."""
from __future__ import annotations

import subprocess
import sys
import threading
from typing import Iterator

import pytest

import pygearman
from pygearman import GearmanClient
from pygearman.testing import free_port

GEAR_SERVER = """
import sys, time
import gear
gear.Server(port=int(sys.argv[1]), host="127.0.0.1")
print("READY", flush=True)
while True:
    time.sleep(3600)
"""


@pytest.fixture
def gear_server() -> Iterator[str]:
    pytest.importorskip("gear", reason="gear is in requirements-dev.txt")
    port = free_port()
    p = subprocess.Popen([sys.executable, "-c", GEAR_SERVER, str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "READY"
        yield f"127.0.0.1:{port}"
    finally:
        p.kill()
        p.wait(10)


def test_client_against_gears_server(gear_server: str, caplog) -> None:
    with GearmanClient(gear_server, timeout=15) as c:
        h = c.do_background("fx", "hello")
        assert h.startswith("H:")
        assert c.job_status(h).known
        assert c.submit_background_many("fx", ["a", "b"])[0].startswith("H:")
        c.add_task_background("fx", "t")
        assert c.run_tasks()[0].state == "created"
        with pytest.raises(pygearman.NotSupportedError, match="ECHO"):
            c.echo(timeout=5)
    assert any("does not answer the 'exceptions' option" in r.getMessage() for r in caplog.records)


def test_foreground_job_through_gears_server(gear_server: str) -> None:
    """A gear worker (gear.Worker) runs it; the pygearman client gets the result."""
    import gear

    host, port = gear_server.split(":")
    w = gear.Worker("w")
    w.addServer(host, int(port))
    w.waitForServer()
    w.registerFunction("rev")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                job = w.getJob()
            except gear.InterruptedError:
                return
            job.sendWorkComplete(job.arguments[::-1])

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with GearmanClient(gear_server, timeout=15) as c:
            assert c.do_normal("rev", "abc") == b"cba"
            assert c.submit_many("rev", ["xy", "z"]) == [b"yx", b"z"]
    finally:
        stop.set()
        w.stopWaitingForJobs()
        w.shutdown()


PERL_WORKER = r"""
use strict; use warnings;
use Gearman::Worker;
my ($server, $fn) = @ARGV;
my $w = Gearman::Worker->new;
$w->job_servers($server);
$w->register_function($fn => sub { return scalar reverse $_[0]->arg });
$| = 1; print "READY\n";
$w->work while 1;
"""


@pytest.fixture
def perl_server() -> Iterator[str]:
    """Debian's gearman-server: the Perl Gearman::Server (its /usr/bin/gearmand)."""
    import os
    import shutil
    import time

    path = "/usr/bin/gearmand"
    if not os.path.exists("/usr/share/perl5/Gearman/Server.pm"):
        pytest.skip("the Perl Gearman::Server is not installed (Debian gearman-server)")
    port = free_port()
    p = subprocess.Popen([path, "--port", str(port), "--listen", "127.0.0.1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        import socket
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Perl gearmand did not start"
                time.sleep(0.05)
        assert shutil.which("perl")
        yield f"127.0.0.1:{port}"
    finally:
        p.kill()
        p.wait(10)


def test_client_against_the_perl_server(perl_server: str, tmp_path) -> None:
    import time

    script = tmp_path / "w.pl"
    script.write_text(PERL_WORKER)
    w = subprocess.Popen(["perl", str(script), perl_server, "rev"], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert w.stdout is not None and w.stdout.readline().strip() == "READY"
        with GearmanClient(perl_server, timeout=15) as c:
            h = c.do_background("fx", "hello")
            assert c.job_status(h).known
            assert c.echo()
            assert c.do_normal("rev", "abc") == b"cba"
            assert c.submit_many("rev", ["xy", "z"]) == [b"yx", b"z"]
            with pytest.raises(pygearman.NotSupportedError, match="SUBMIT_JOB_EPOCH"):
                c.submit("fx", "later", background=True, when=time.time() + 60)
            assert c.do_normal("rev", "ok") == b"ko"            # and the client goes on
    finally:
        w.kill()
        w.wait(10)


def test_pygearman_worker_on_gears_and_perls_servers(gear_server: str, perl_server: str) -> None:
    """libgearman's default GRAB_JOB_ALL is unknown to both: the worker asks with GRAB_JOB_UNIQ
    (gear), and with GRAB_JOB where that is answered with ERROR (Perl)."""
    from pygearman import GearmanWorker

    for server in (gear_server, perl_server):
        w = GearmanWorker(server)
        w.add_function("up", lambda job: bytes(job.workload).upper())
        t = threading.Thread(target=w.run, kwargs={"timeout": 15}, daemon=True)
        t.start()
        try:
            with GearmanClient(server, timeout=10) as c:
                assert c.do_normal("up", "abc") == b"ABC", server
        finally:
            w.stop()
            t.join(10)
            w.close()
