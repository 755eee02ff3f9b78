"""Interop with the seed's own language (PHP, php-gearman) and with the ``gearman`` command-line tool.

Every foreign process is started by the test itself and killed in a ``finally`` block; every
subprocess.run has a timeout, every pygearman call a deadline.

Observed with gearmand 1.1.20, libgearman 1.1.20 and php-gearman 2.1.0:

* php-gearman's ``addServer()`` enables the "exceptions" option by default (third argument
  ``setupExceptionHandler = true``), so a PHP client sees WORK_EXCEPTION (23) from a pygearman
  worker that raises, with or without ``gearmand --exceptions``. A PHP client that opts out
  (``addServer(host, port, false)``) on a plain gearmand waits forever: gearmand forwards
  WORK_EXCEPTION only to clients that asked for it, then drops the job. A throwing PHP worker does
  exactly the same to such a client, so that is gearmand's behaviour, not pygearman's.
* A PHP worker that throws sends WORK_EXCEPTION with php-gearman's fixed text
  ``"Unable to add worker function"`` (not the PHP exception's message), and the PHP process then
  dies of the uncaught exception. A pygearman client gets ``JobException`` (code WORK_EXCEPTION)
  straight away, with either server configuration (pygearman always sets the option).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from pygearman import GearmanClient, JobException, JobFailed
from pygearman.demo import title_function
from pygearman.testing import GearmandServer

from _support.foreign import foreign_worker
from _support.processes import run, write

SHAKESPEARE = "AlL THE World's a sTagE"
TITLED = "All The World's A Stage"

pytestmark = pytest.mark.timeout(60)


# -- helpers ----------------------------------------------------------------------------------

PHP_CLIENT = r"""<?php
// usage: php client.php PORT FUNCTION WORKLOAD [exceptions=1|0]
$port = (int)$argv[1];
$fn = $argv[2];
$workload = $argv[3];
$exceptions = ($argv[4] ?? '1') === '1';
$c = new GearmanClient();
$c->addServer('127.0.0.1', $port, $exceptions);
$c->setTimeout(30000);
$result = $c->doNormal($fn, $workload);
fwrite(STDERR, "RC=" . $c->returnCode() . "\n");
fwrite(STDERR, "ERROR=" . $c->error() . "\n");
echo $result;
"""

PHP_CLIENT_RC = r"""<?php
// usage: php client_rc.php PORT FUNCTION [exceptions=1|0]; prints what doNormal left behind
$port = (int)$argv[1];
$fn = $argv[2];
$exceptions = ($argv[3] ?? '1') === '1';
$c = new GearmanClient();
$c->addServer('127.0.0.1', $port, $exceptions);
$c->setTimeout(30000);
$result = $c->doNormal($fn, "some work");
$rc = $c->returnCode();
$names = [GEARMAN_SUCCESS => 'GEARMAN_SUCCESS', GEARMAN_WORK_EXCEPTION => 'GEARMAN_WORK_EXCEPTION',
          GEARMAN_WORK_FAIL => 'GEARMAN_WORK_FAIL', GEARMAN_TIMEOUT => 'GEARMAN_TIMEOUT'];
echo "RESULT=" . var_export($result, true) . "\n";
echo "RC=" . $rc . "\n";
echo "RC_NAME=" . ($names[$rc] ?? 'other') . "\n";
echo "ERROR=" . $c->error() . "\n";
echo "WORK_EXCEPTION=" . GEARMAN_WORK_EXCEPTION . "\n";
echo "WORK_FAIL=" . GEARMAN_WORK_FAIL . "\n";
echo "SUCCESS=" . GEARMAN_SUCCESS . "\n";
"""

PHP_BACKGROUND = r"""<?php
// usage: php background.php PORT FUNCTION; prints the job handle
$c = new GearmanClient();
$c->addServer('127.0.0.1', (int)$argv[1]);
$c->setTimeout(30000);
$handle = $c->doBackground($argv[2], "background work");
if ($c->returnCode() != GEARMAN_SUCCESS) {
    fwrite(STDERR, "doBackground failed: " . $c->returnCode() . " " . $c->error() . "\n");
    exit(1);
}
echo $handle;
"""

PHP_WORKER = r"""<?php
// usage: php worker.php PORT FUNCTION MODE (title|throw)
$port = (int)$argv[1];
$fn = $argv[2];
$mode = $argv[3];
$w = new GearmanWorker();
$w->addServer('127.0.0.1', $port);
if ($mode === 'throw') {
    $w->addFunction($fn, function ($job) { throw new Exception("php says no"); });
} else {
    $w->addFunction($fn, function ($job) { return ucwords(strtolower($job->workload())); });
}
while ($w->work());
"""


def _kv(text: str) -> Dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _raise_bad(job: object) -> bytes:
    raise ValueError("bad")


# -- a) PHP client -> pygearman worker --------------------------------------------------------

def test_php_client_calls_pygearman_worker(php: str, gearmand: GearmandServer, fname: Callable[[str], str],
                                           start_worker: Callable[..., object], tmp_path: Path) -> None:
    fn = fname("title")
    start_worker(gearmand.address, {fn: title_function})
    script = write(tmp_path, "client.php", PHP_CLIENT)
    r = run([php, script, str(gearmand.port), fn, SHAKESPEARE])
    assert r.returncode == 0, r.stderr
    assert r.stdout == TITLED, r.stderr


# -- b) pygearman client -> PHP worker --------------------------------------------------------

def test_pygearman_client_calls_php_worker(php: str, gearmand: GearmandServer, fname: Callable[[str], str],
                                           tmp_path: Path) -> None:
    fn = fname("title")
    script = write(tmp_path, "worker.php", PHP_WORKER)
    with foreign_worker([php, script, str(gearmand.port), fn, "title"], tmp_path, gearmand, fn,
                        "php-worker"):
        with GearmanClient(gearmand.address) as client:
            assert client.do_normal(fn, SHAKESPEARE, timeout=20) == TITLED.encode()
            # the same PHP worker keeps serving
            assert client.do_normal(fn, "hello WORLD", timeout=20) == b"Hello World"


# -- c) PHP worker throws -> pygearman client -------------------------------------------------

def test_php_worker_exception_reaches_pygearman_client(php: str, any_gearmand: GearmandServer,
                                                       fname: Callable[[str], str],
                                                       tmp_path: Path) -> None:
    fn = fname("throws")
    script = write(tmp_path, "worker.php", PHP_WORKER)
    with foreign_worker([php, script, str(any_gearmand.port), fn, "throw"], tmp_path, any_gearmand,
                        fn, "php-worker"):
        with GearmanClient(any_gearmand.address) as client:
            # What arrives (observed, with and without --exceptions): JobException with code
            # WORK_EXCEPTION and php-gearman's fixed text "Unable to add worker function" -- not
            # "php says no". The PHP process then dies of the uncaught exception. We only require
            # a job error within the deadline (never a hang, never a GearmanTimeoutError).
            with pytest.raises((JobException, JobFailed)) as info:
                client.do_normal(fn, SHAKESPEARE, timeout=15)
    assert info.value.function == fn


# -- d) pygearman worker raises -> PHP client -------------------------------------------------

def test_pygearman_worker_exception_seen_by_php_client(php: str, any_gearmand: GearmandServer,
                                                       fname: Callable[[str], str],
                                                       start_worker: Callable[..., object],
                                                       tmp_path: Path) -> None:
    fn = fname("bad")
    start_worker(any_gearmand.address, {fn: _raise_bad})
    script = write(tmp_path, "client_rc.php", PHP_CLIENT_RC)
    r = run([php, script, str(any_gearmand.port), fn])   # fails the test if PHP hangs
    assert r.returncode == 0, r.stdout + r.stderr
    out = _kv(r.stdout)
    # Observed: RC=23 (GEARMAN_WORK_EXCEPTION), error() "GEARMAN_WORK_EXCEPTION", result ''
    # on both servers (php-gearman's addServer turns the exceptions option on by itself).
    assert out["RC"] in (out["WORK_EXCEPTION"], out["WORK_FAIL"]), r.stdout
    assert out["RC_NAME"] in ("GEARMAN_WORK_EXCEPTION", "GEARMAN_WORK_FAIL"), r.stdout
    assert out["RC"] != out["SUCCESS"]


def test_php_client_without_exception_handler_on_exceptions_server(
        php: str, gearmand_exc: GearmandServer, fname: Callable[[str], str],
        start_worker: Callable[..., object], tmp_path: Path) -> None:
    """addServer(host, port, false) does not ask for exceptions; gearmand --exceptions sends them
    anyway. (On a plain gearmand such a client would wait forever -- see the module docstring --
    so that combination is not run.)"""
    fn = fname("bad")
    start_worker(gearmand_exc.address, {fn: _raise_bad})
    script = write(tmp_path, "client_rc.php", PHP_CLIENT_RC)
    r = run([php, script, str(gearmand_exc.port), fn, "0"])
    assert r.returncode == 0, r.stdout + r.stderr
    out = _kv(r.stdout)
    assert out["RC"] in (out["WORK_EXCEPTION"], out["WORK_FAIL"]), r.stdout


# -- e) PHP background job, status seen by pygearman ------------------------------------------

def test_php_background_job_status_seen_by_pygearman(php: str, gearmand: GearmandServer,
                                                     fname: Callable[[str], str],
                                                     start_worker: Callable[..., object],
                                                     tmp_path: Path) -> None:
    fn = fname("progress")
    reported_first = threading.Event()
    release = threading.Event()
    seen: List[bytes] = []

    def progress(job):  # type: ignore[no-untyped-def]
        seen.append(job.workload)
        job.send_status(1, 4)
        reported_first.set()
        release.wait(20)            # hold the job open until the test has looked at it
        for i in range(2, 5):
            time.sleep(0.05)
            job.send_status(i, 4)
        return b"done"

    start_worker(gearmand.address, {fn: progress})
    try:
        script = write(tmp_path, "background.php", PHP_BACKGROUND)
        r = run([php, script, str(gearmand.port), fn])
        assert r.returncode == 0, r.stderr
        handle = r.stdout.strip()
        assert handle.startswith("H:"), r.stdout

        with GearmanClient(gearmand.address, timeout=10) as client:
            assert reported_first.wait(20), "the background job never reached the worker"
            # gearmand reads the worker's WORK_STATUS and our GET_STATUS on different sockets:
            # poll briefly rather than assume which it handles first
            deadline = time.monotonic() + 10
            while True:
                st = client.job_status(handle)
                assert st.known and st.running, st
                if st.numerator == 1:
                    break
                assert time.monotonic() < deadline, f"status 1/4 never showed up: {st}"
                time.sleep(0.02)
            assert (st.numerator, st.denominator) == (1, 4)
            assert st.fraction == 0.25
            release.set()

            deadline = time.monotonic() + 20
            while True:
                st = client.job_status(handle)
                if not st.known:
                    break
                assert st.denominator == 4
                assert time.monotonic() < deadline, f"job still known after 20 s: {st}"
                time.sleep(0.05)
            assert st == (False, False, 0, 0)
        assert seen == [b"background work"]
    finally:
        release.set()


# -- f) gearman CLI client -> pygearman worker ------------------------------------------------

def test_gearman_cli_client_calls_pygearman_worker(gearman_cli: str, gearmand: GearmandServer,
                                                   fname: Callable[[str], str],
                                                   start_worker: Callable[..., object]) -> None:
    fn = fname("title")
    start_worker(gearmand.address, {fn: title_function})
    r = run([gearman_cli, "-h", "127.0.0.1", "-p", str(gearmand.port), "-f", fn, SHAKESPEARE])
    assert r.returncode == 0, r.stderr
    assert TITLED in r.stdout


# -- g) pygearman client -> gearman CLI worker ------------------------------------------------

def test_pygearman_client_calls_gearman_cli_worker(gearman_cli: str, gearmand: GearmandServer,
                                                   fname: Callable[[str], str],
                                                   tmp_path: Path) -> None:
    fn = fname("upper")
    # worker mode: run `tr a-z A-Z` for each job, workload on stdin, stdout is the result
    cmd = [gearman_cli, "-w", "-h", "127.0.0.1", "-p", str(gearmand.port), "-f", fn,
           "--", "tr", "a-z", "A-Z"]
    with foreign_worker(cmd, tmp_path, gearmand, fn, "gearman-worker"):
        with GearmanClient(gearmand.address) as client:
            # registered already; the deadline only bounds the test if something goes wrong
            assert client.do_normal(fn, SHAKESPEARE, timeout=20) == SHAKESPEARE.upper().encode()
            assert client.do_normal(fn, b"second job", timeout=20) == b"SECOND JOB"
