"""Interop of task sets, progress packets (WORK_DATA / WORK_WARNING / WORK_STATUS) and streaming
with PHP (php-gearman) and with the ``gearman`` command-line tool.

Every foreign process is started by the test itself and killed in a ``finally`` block; every
subprocess.run has a timeout, every pygearman call a deadline (helpers: _support/).

Observed with gearmand 1.1.20, libgearman 1.1.20, php-gearman 2.1.0 and gearman-tools 1.1.20:

* php-gearman's ``addTask`` puts each task at the head of libgearman's list, so a PHP task set
  is submitted last-added-first; the per-task order of events is still created, then the
  worker's packets in the order it sent them, then complete/exception.
* In PHP's exception callback ``$task->data()`` is the pygearman worker's ``"Type: message"``
  text and ``$task->returnCode()`` is still GEARMAN_SUCCESS (0); the fail callback is not
  called and neither is the complete callback.
* A throwing PHP worker sends php-gearman's fixed text ``"Unable to add worker function"``;
  ``$job->sendFail()`` reaches pygearman as WORK_FAIL (state 'failed', JobFailed).
* The ``gearman`` CLI client prints WORK_DATA chunks and the result to stdout, a status as
  ``"NN% Complete"`` and warnings to stderr. It does not ask for exceptions: against a raising
  worker it waits forever on a plain gearmand (gearmand drops WORK_EXCEPTION for such clients),
  and prints the exception text on stderr with ``gearmand --exceptions``. Only the latter is run.
* ``gearman -w -n`` (a CLI worker sending a data packet per line) sends the output *so far* in
  each packet (cumulative); PHP sees exactly the same chunks as pygearman.
* libgearman 1.1.20 matches JOB_CREATED to tasks by a per-connection counter, and a GET_STATUS
  task keeps counter value 0. So when ``add_task_status()`` comes before a job task on a
  connection that has not had a job yet, the job's JOB_CREATED would go to the status task and
  ``run_tasks`` would hang until its deadline. php-gearman does not hit this because it sets
  GEARMAN_CLIENT_FREE_TASKS (the finished status task leaves the list first); pygearman runs
  status queries in a round of their own after the jobs (regression test below).
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from pygearman import GearmanClient, GearmanJob, JobException, JobFailed
from pygearman.testing import GearmandServer

from _support.foreign import foreign_worker
from _support.gearmand import wait_for
from _support.processes import run, write

pytestmark = pytest.mark.timeout(60)


# -- helpers ---------------------------------------------------------------------------------

def _php_json(php: str, script: str, *args: str) -> Dict[str, Any]:
    r = run([php, script, *args])
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        out: Dict[str, Any] = json.loads(r.stdout)
    except ValueError:
        pytest.fail(f"PHP did not print JSON:\nstdout={r.stdout!r}\nstderr={r.stderr!r}")
    return out


# -- PHP scripts ------------------------------------------------------------------------------

PHP_TASKSET = r"""<?php
// usage: php taskset.php PORT GOOD_FN BAD_FN BG_FN N
// N tasks of GOOD_FN (one of them high, one low priority), one of BAD_FN, one background of
// BG_FN; prints every callback it got, in order, as JSON.
$port = (int)$argv[1]; $good = $argv[2]; $bad = $argv[3]; $bg = $argv[4]; $n = (int)$argv[5];
$events = [];
$c = new GearmanClient();
$c->addServer('127.0.0.1', $port);
$c->setTimeout(30000);
$c->setCreatedCallback(function ($t, $ctx) use (&$events) {
    $events[] = ['created', $ctx, $t->jobHandle()]; });
$c->setDataCallback(function ($t, $ctx) use (&$events) {
    $events[] = ['data', $ctx, $t->data()]; });
$c->setWarningCallback(function ($t, $ctx) use (&$events) {
    $events[] = ['warning', $ctx, $t->data()]; });
$c->setStatusCallback(function ($t, $ctx) use (&$events) {
    $events[] = ['status', $ctx, [$t->taskNumerator(), $t->taskDenominator()]]; });
$c->setCompleteCallback(function ($t, $ctx) use (&$events) {
    $events[] = ['complete', $ctx, $t->data()]; });
$c->setExceptionCallback(function ($t, $ctx) use (&$events) {
    $events[] = ['exception', $ctx, $t->data(), $t->returnCode()]; });
$c->setFailCallback(function ($t, $ctx) use (&$events) {
    $events[] = ['fail', $ctx, $t->returnCode()]; });
$tasks = [];
for ($i = 0; $i < $n; $i++) {
    $ctx = "good$i";
    if ($i == 0) {
        $tasks[$ctx] = $c->addTaskHigh($good, "job$i", $ctx, "uniq-$i-$good");
    } elseif ($i == 1) {
        $tasks[$ctx] = $c->addTaskLow($good, "job$i", $ctx, "uniq-$i-$good");
    } else {
        $tasks[$ctx] = $c->addTask($good, "job$i", $ctx, "uniq-$i-$good");
    }
}
$tasks['bad'] = $c->addTask($bad, "oops", "bad");
$tasks['bg'] = $c->addTaskBackground($bg, "in the background", "bg");
$ok = $c->runTasks();
$after = [];
foreach ($tasks as $ctx => $t) {
    $after[$ctx] = ['rc' => $t->returnCode()];   // (jobHandle() is false by now)
}
echo json_encode(['run' => $ok, 'rc' => $c->returnCode(), 'events' => $events, 'after' => $after,
                  'SUCCESS' => GEARMAN_SUCCESS, 'WORK_EXCEPTION' => GEARMAN_WORK_EXCEPTION,
                  'WORK_FAIL' => GEARMAN_WORK_FAIL]);
"""

PHP_WORKER = r"""<?php
// usage: php worker.php PORT FUNCTION MODE (chatty|gated|throw|fail)
$port = (int)$argv[1]; $fn = $argv[2]; $mode = $argv[3];
$w = new GearmanWorker();
$w->addServer('127.0.0.1', $port);
if ($mode === 'throw') {
    $w->addFunction($fn, function ($job) { throw new Exception("php says no"); });
} elseif ($mode === 'fail') {
    $w->addFunction($fn, function ($job) { $job->sendFail(); });
} elseif ($mode === 'gated') {
    // first chunk, then wait for the file named by the workload, then the rest
    $w->addFunction($fn, function ($job) {
        $gate = $job->workload();
        $job->sendData("before the gate");
        for ($i = 0; $i < 400 && !file_exists($gate); $i++) { usleep(50000); }
        $job->sendData(file_exists($gate) ? "after the gate" : "gate timed out");
        $job->sendData("last");
        return "gated done";
    });
} else {
    $w->addFunction($fn, function ($job) {
        $wl = $job->workload();
        $job->sendData("a:$wl");
        $job->sendStatus(1, 3);
        $job->sendWarning("warn:$wl");
        $job->sendData("b:$wl");
        $job->sendStatus(2, 3);
        $job->sendData("c:$wl");
        $job->sendStatus(3, 3);
        return "result:$wl";
    });
}
while ($w->work());
fwrite(STDERR, "work() returned false: " . $w->returnCode() . " " . $w->error() . "\n");
"""

PHP_BACKGROUND = r"""<?php
// usage: php background.php PORT FUNCTION WORKLOAD; prints the job handle
$c = new GearmanClient();
$c->addServer('127.0.0.1', (int)$argv[1]);
$c->setTimeout(30000);
$handle = $c->doBackground($argv[2], $argv[3]);
if ($c->returnCode() != GEARMAN_SUCCESS) {
    fwrite(STDERR, "doBackground failed: " . $c->returnCode() . " " . $c->error() . "\n");
    exit(1);
}
echo $handle;
"""

PHP_DATA_CLIENT = r"""<?php
// usage: php data_client.php PORT FUNCTION WORKLOAD; prints the data chunks and result as JSON
$c = new GearmanClient();
$c->addServer('127.0.0.1', (int)$argv[1]);
$c->setTimeout(30000);
$chunks = []; $result = null;
$c->setDataCallback(function ($t) use (&$chunks) { $chunks[] = $t->data(); });
$c->setCompleteCallback(function ($t) use (&$result) { $result = $t->data(); });
$c->addTask($argv[2], $argv[3]);
$ok = $c->runTasks();
echo json_encode(['run' => $ok, 'chunks' => $chunks, 'result' => $result]);
"""


def _chatty_expected(wl: str) -> List[Tuple[str, Any]]:
    """What the PHP 'chatty' worker reports for workload wl, in order."""
    return [("data", f"a:{wl}".encode()), ("status", (1, 3)), ("warning", f"warn:{wl}".encode()),
            ("data", f"b:{wl}".encode()), ("status", (2, 3)), ("data", f"c:{wl}".encode()),
            ("status", (3, 3))]


# -- 1) PHP task set -> pygearman workers -----------------------------------------------------

def test_php_task_set_served_by_pygearman_workers(php: str, any_gearmand: GearmandServer,
                                                  fname: Callable[[str], str],
                                                  start_worker: Callable[..., Any],
                                                  tmp_path: Path) -> None:
    good_fn, bad_fn, bg_fn = fname("good"), fname("bad"), fname("bg")
    n = 4
    seen: List[Tuple[bytes, str]] = []
    background: List[bytes] = []

    def good(job: GearmanJob) -> bytes:
        w = job.workload
        seen.append((w, job.unique))
        job.send_data(b"first:" + w)
        job.send_status(1, 3)
        job.send_warning(b"careful:" + w)
        job.send_data(b"second:" + w)
        job.send_status(3, 3)
        return b"done:" + w

    def bad(job: GearmanJob) -> bytes:
        raise ValueError("no good: " + job.workload.decode())

    def bg(job: GearmanJob) -> bytes:
        background.append(job.workload)
        return b"nobody reads this"

    # two worker threads, so that jobs overlap and the events of different tasks interleave
    start_worker(any_gearmand.address, {good_fn: good, bad_fn: bad, bg_fn: bg})
    start_worker(any_gearmand.address, {good_fn: good})
    script = write(tmp_path, "taskset.php", PHP_TASKSET)
    out = _php_json(php, script, str(any_gearmand.port), good_fn, bad_fn, bg_fn, str(n))

    assert out["run"] is True, out
    per_task: Dict[str, List[List[Any]]] = {}
    for ev in out["events"]:
        per_task.setdefault(ev[1], []).append(ev)

    assert set(per_task) == {f"good{i}" for i in range(n)} | {"bad", "bg"}, out["events"]
    handles = set()
    for i in range(n):
        ctx, wl = f"good{i}", f"job{i}"
        evs = per_task[ctx]
        assert evs[0][0] == "created" and evs[0][2].startswith("H:"), evs
        handles.add(evs[0][2])
        # the worker's packets, in the order it sent them, then WORK_COMPLETE's payload
        assert [e[0] for e in evs] == ["created", "data", "status", "warning", "data", "status",
                                       "complete"], evs
        assert [e[2] for e in evs[1:]] == [f"first:{wl}", [1, 3], f"careful:{wl}",
                                           f"second:{wl}", [3, 3], f"done:{wl}"], evs
        assert out["after"][ctx]["rc"] == out["SUCCESS"], out["after"]

    # the raising pygearman job: PHP's exception callback (not fail, not complete), with the
    # worker's "Type: message" text
    bad_evs = per_task["bad"]
    assert [e[0] for e in bad_evs] == ["created", "exception"], bad_evs
    kind, _, text, rc_in_callback = bad_evs[1]
    assert text == "ValueError: no good: oops"
    assert rc_in_callback in (out["SUCCESS"], out["WORK_EXCEPTION"]), bad_evs  # observed: 0
    assert out["after"]["bad"]["rc"] in (out["SUCCESS"], out["WORK_EXCEPTION"]), out["after"]

    # the background task: only 'created' on the PHP side, and the job reaches our worker
    assert [e[0] for e in per_task["bg"]] == ["created"], per_task["bg"]
    assert per_task["bg"][0][2].startswith("H:")
    handles.add(per_task["bg"][0][2])
    handles.add(bad_evs[0][2])
    assert len(handles) == n + 2
    wait_for(lambda: background == [b"in the background"], 20,
             "the background job to reach the worker")

    # PHP's unique keys arrived at the worker unchanged
    assert sorted(seen) == sorted((f"job{i}".encode(), f"uniq-{i}-{good_fn}") for i in range(n))


# -- 2) pygearman task set -> PHP workers -----------------------------------------------------

def test_pygearman_task_set_served_by_php_workers(php: str, any_gearmand: GearmandServer,
                                                  fname: Callable[[str], str],
                                                  tmp_path: Path) -> None:
    chatty_fn, throw_fn, fail_fn = fname("chatty"), fname("throw"), fname("fail")
    script = write(tmp_path, "worker.php", PHP_WORKER)
    port = str(any_gearmand.port)
    with contextlib.ExitStack() as stack:
        for fn, mode in ((chatty_fn, "chatty"), (throw_fn, "throw"), (fail_fn, "fail")):
            stack.enter_context(foreign_worker([php, script, port, fn, mode], tmp_path,
                                               any_gearmand, fn, f"php-{mode}"))
        with GearmanClient(any_gearmand.address, timeout=20) as client:
            finished: List[Tuple[str, Any]] = []
            client.set_complete_callback(lambda t: finished.append(("complete", t.context)))
            client.set_exception_callback(lambda t: finished.append(("exception", t.context)))
            client.set_fail_callback(lambda t: finished.append(("fail", t.context)))

            logs: Dict[str, List[Tuple[str, Any]]] = {}

            def per_task(ctx: str) -> Dict[str, Any]:
                log = logs.setdefault(ctx, [])
                return dict(
                    on_created=lambda t: log.append(("created", t.handle)),
                    on_data=lambda t, chunk: log.append(("data", chunk)),
                    on_warning=lambda t, chunk: log.append(("warning", chunk)),
                    on_status=lambda t: log.append(("status", (t.numerator, t.denominator))))

            workloads = {"w0": "zero", "w1": "one", "w2": "two", "w3": "three"}
            tasks = [
                client.add_task(chatty_fn, workloads["w0"], "w0", **per_task("w0")),
                client.add_task_high(chatty_fn, workloads["w1"], "w1", **per_task("w1")),
                client.add_task_low(chatty_fn, workloads["w2"].encode(), "w2", **per_task("w2")),
                client.add_task(chatty_fn, workloads["w3"], "w3", "uniq-w3", **per_task("w3")),
                client.add_task(throw_fn, "x", "throw", **per_task("throw")),
                client.add_task(fail_fn, "y", "fail", **per_task("fail")),
            ]
            out = client.run_tasks(timeout=30)

    assert out == tasks                          # run_tasks returns the tasks in added order
    assert all(t.finished for t in out)
    # every task finished once, in whatever order
    assert sorted(finished, key=repr) == sorted(
        [("complete", c) for c in workloads] + [("exception", "throw"), ("fail", "fail")], key=repr)

    for t in out[:4]:
        wl = workloads[t.context]
        assert t.state == "complete", (t, t.error)
        assert t.result == f"result:{wl}".encode()
        assert t.data == [f"a:{wl}".encode(), f"b:{wl}".encode(), f"c:{wl}".encode()]
        assert t.warnings == [f"warn:{wl}".encode()]
        assert (t.numerator, t.denominator) == (3, 3)
        assert t.error is None and t.exception is None
        assert t.handle is not None and t.handle.startswith("H:")
        # callbacks saw created, then the PHP worker's packets in the order it sent them
        assert logs[t.context] == [("created", t.handle)] + _chatty_expected(wl)
    assert out[3].unique == "uniq-w3"
    assert len({t.handle for t in out}) == len(out)

    thrown = out[4]
    assert thrown.state == "exception"
    assert isinstance(thrown.error, JobException)
    # php-gearman's fixed text, not the PHP exception's message
    assert thrown.exception == "Unable to add worker function"
    assert thrown.error.message == thrown.exception
    assert thrown.error.function == throw_fn
    assert thrown.result is None and thrown.data == [] and thrown.warnings == []

    failed = out[5]
    assert failed.state == "failed"
    assert isinstance(failed.error, JobFailed) and not isinstance(failed.error, JobException)
    assert failed.error.function == fail_fn
    assert failed.result is None and failed.exception is None


# -- 3) synchronous calls with callbacks, and stream(), against a PHP worker ------------------

def test_submit_with_callbacks_and_stream_against_php_worker(php: str, gearmand: GearmandServer,
                                                             fname: Callable[[str], str],
                                                             tmp_path: Path) -> None:
    chatty_fn, gated_fn = fname("chatty"), fname("gated")
    script = write(tmp_path, "worker.php", PHP_WORKER)
    port = str(gearmand.port)
    with foreign_worker([php, script, port, chatty_fn, "chatty"], tmp_path, gearmand, chatty_fn,
                        "php-chatty"), \
         foreign_worker([php, script, port, gated_fn, "gated"], tmp_path, gearmand, gated_fn,
                        "php-gated"):
        with GearmanClient(gearmand.address, timeout=20) as client:
            events: List[Tuple[str, Any]] = []
            result = client.submit(chatty_fn, "sync",
                                   on_data=lambda chunk: events.append(("data", chunk)),
                                   on_warning=lambda chunk: events.append(("warning", chunk)),
                                   on_status=lambda n, d: events.append(("status", (n, d))))
            assert result == b"result:sync"
            assert events == _chatty_expected("sync")

            # the same call without callbacks still returns just the result
            assert client.submit(chatty_fn, b"plain") == b"result:plain"

            with client.stream(chatty_fn, "streamed") as chunks:
                got = list(chunks)
            assert got == [b"a:streamed", b"b:streamed", b"c:streamed"]
            assert chunks.result == b"result:streamed"

            # chunks are handed out while the job still runs: the PHP worker sends its first
            # chunk and then waits for a file that only we create after we have that chunk
            gate = tmp_path / "gate"
            stream = client.stream(gated_fn, str(gate), timeout=20)
            try:
                assert next(stream) == b"before the gate"
                assert stream.result is None          # not complete yet
                gate.write_text("open")
                assert list(stream) == [b"after the gate", b"last"]
                assert stream.result == b"gated done"
            finally:
                stream.close()

            # the client is usable afterwards
            assert client.submit(chatty_fn, "again") == b"result:again"


# -- 4) PHP background job, status through a pygearman task set -------------------------------

def test_php_background_job_status_via_add_task_status(php: str, gearmand: GearmandServer,
                                                       fname: Callable[[str], str],
                                                       start_worker: Callable[..., Any],
                                                       tmp_path: Path) -> None:
    fn, echo_fn = fname("progress"), fname("echo")
    reported = threading.Event()
    release = threading.Event()
    seen: List[bytes] = []

    def progress(job: GearmanJob) -> bytes:
        seen.append(job.workload)
        job.send_status(2, 7)
        reported.set()
        release.wait(20)            # hold the job open until the test has looked at it
        return b"done"

    start_worker(gearmand.address, {fn: progress})
    start_worker(gearmand.address, {echo_fn: lambda job: job.workload[::-1]})  # not blocked
    try:
        script = write(tmp_path, "background.php", PHP_BACKGROUND)
        r = run([php, script, str(gearmand.port), fn, "from php"])
        assert r.returncode == 0, r.stderr
        handle = r.stdout.strip()
        assert handle.startswith("H:"), r.stdout
        assert reported.wait(20), "the PHP background job never reached the pygearman worker"

        with GearmanClient(gearmand.address, timeout=10) as client:
            # the worker's WORK_STATUS and our GET_STATUS travel on different sockets: poll
            deadline = time.monotonic() + 10
            while True:
                called: List[Tuple[str, Any]] = []
                # the job task goes first: see test_status_task_ahead_of_job_on_fresh_connection
                other = client.add_task(echo_fn, "mixed in", "echo")
                st = client.add_task_status(
                    handle, "php-job",
                    on_status=lambda t: called.append(("status", t.context)),
                    on_complete=lambda t: called.append(("complete", t.context)))
                unknown = client.add_task_status("H:nowhere:424242", "bogus")
                tasks = client.run_tasks(timeout=10)
                assert tasks == [other, st, unknown]
                assert st.state == "complete", (st, st.error)
                assert st.known and st.running, (st.known, st.running)
                if st.numerator == 2:
                    break
                assert time.monotonic() < deadline, f"status 2/7 never showed up: {st.numerator}"
                time.sleep(0.02)
            assert (st.numerator, st.denominator) == (2, 7)
            assert st.context == "php-job" and st.handle == handle
            assert ("status", "php-job") in called or ("complete", "php-job") in called, called
            assert unknown.state == "complete"
            assert (unknown.known, unknown.running) == (False, False)
            assert other.state == "complete" and other.result == b"ni dexim"

            release.set()
            # once the job has finished the server forgets it
            deadline = time.monotonic() + 20
            while True:
                st = client.add_task_status(handle)
                client.run_tasks(timeout=10)
                if not st.known:
                    break
                assert time.monotonic() < deadline, "job still known after 20 s"
                time.sleep(0.05)
            assert (st.known, st.running) == (False, False)
        assert seen == [b"from php"]
    finally:
        release.set()


def test_status_task_ahead_of_job_on_fresh_connection(php: str, gearmand: GearmandServer,
                                                      fname: Callable[[str], str],
                                                      start_worker: Callable[..., Any],
                                                      tmp_path: Path) -> None:
    """add_task_status(handle) added before a job task, on a client whose connection has not
    run a job yet: the job runs on the worker but its task never learns so (observed: the
    status task ends 'running', the job task stays 'queued', run_tasks hits its deadline).
    The same PHP task set (addTaskStatus + addTask, either order) works."""
    fn, echo_fn = fname("hold"), fname("echo")
    reported = threading.Event()
    release = threading.Event()

    def hold(job: GearmanJob) -> bytes:
        job.send_status(1, 2)
        reported.set()
        release.wait(20)
        return b"done"

    start_worker(gearmand.address, {fn: hold})
    start_worker(gearmand.address, {echo_fn: lambda job: job.workload[::-1]})
    try:
        script = write(tmp_path, "background.php", PHP_BACKGROUND)
        r = run([php, script, str(gearmand.port), fn, "held"])
        assert r.returncode == 0, r.stderr
        handle = r.stdout.strip()
        assert reported.wait(20)
        with GearmanClient(gearmand.address, timeout=10) as client:   # fresh connection
            st = client.add_task_status(handle)
            job = client.add_task(echo_fn, "abc")
            client.run_tasks(timeout=3)
            assert st.known and st.running
            assert job.result == b"cba"
    finally:
        release.set()


# -- 5) the gearman CLI client against pygearman workers --------------------------------------

def test_gearman_cli_client_against_pygearman_worker(gearman_cli: str, gearmand: GearmandServer,
                                                     fname: Callable[[str], str],
                                                     start_worker: Callable[..., Any]) -> None:
    echo_fn, chatty_fn, bg_fn = fname("echo"), fname("chatty"), fname("bg")
    got: List[Tuple[str, bytes, str]] = []
    lock = threading.Lock()

    def echo(job: GearmanJob) -> bytes:
        with lock:
            got.append((echo_fn, job.workload, job.unique))
        return b"<" + job.workload + b">"

    def chatty(job: GearmanJob) -> bytes:
        job.send_data(b"d1;")
        job.send_status(1, 2)
        job.send_warning(b"mind the gap")
        job.send_data(b"d2;")
        return b"end"

    def bg(job: GearmanJob) -> None:
        with lock:
            got.append((bg_fn, job.workload, job.unique))

    start_worker(gearmand.address, {echo_fn: echo, chatty_fn: chatty, bg_fn: bg})
    base = [gearman_cli, "-h", "127.0.0.1", "-p", str(gearmand.port)]

    def received(fn: str) -> List[bytes]:
        with lock:
            return [w for f, w, _ in got if f == fn]

    # several workloads as arguments: one foreground job each, results in order
    r = run(base + ["-f", echo_fn, "one", "two", "three"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "<one><two><three>"
    assert received(echo_fn) == [b"one", b"two", b"three"]

    # one job per line of stdin (-N strips the newline), with and without -P
    r = run(base + ["-N", "-f", echo_fn], input="x\ny\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "<x><y>"
    r = run(base + ["-P", "-N", "-f", echo_fn], input="p\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{echo_fn}: <p>"

    # high and low priority
    for flag in ("-I", "-L"):
        r = run(base + [flag, "-f", echo_fn, f"prio{flag}"])
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"<prio{flag}>"

    # WORK_DATA chunks, the result and the status reach the CLI's stdout, the warning its stderr
    r = run(base + ["-f", chatty_fn, "c"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("d1;d2;end"), r.stdout
    assert "50%" in r.stdout, r.stdout
    assert "mind the gap" in r.stderr, r.stderr

    # background: the CLI returns at once, our worker gets the jobs (with the CLI's unique key)
    before = len(received(bg_fn))
    r = run(base + ["-b", "-f", bg_fn, "back1"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    r = run(base + ["-b", "-N", "-f", bg_fn], input="l1\nl2\n")
    assert r.returncode == 0, r.stderr
    r = run(base + ["-b", "-u", f"cli-unique-{bg_fn}", "-f", bg_fn, "u1"])
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len(received(bg_fn)) == before + 4, 20,
             "the CLI background jobs to reach the worker")
    assert sorted(received(bg_fn)) == [b"back1", b"l1", b"l2", b"u1"]
    with lock:
        uniques = {w: u for f, w, u in got if f == bg_fn}
    assert uniques[b"u1"] == f"cli-unique-{bg_fn}"
    assert len(set(uniques.values())) == 4


def test_gearman_cli_client_sees_pygearman_exception(gearman_cli: str,
                                                     gearmand_exc: GearmandServer,
                                                     fname: Callable[[str], str],
                                                     start_worker: Callable[..., Any]) -> None:
    """The CLI does not ask for exceptions, so this is run on gearmand --exceptions only (on a
    plain gearmand the CLI would wait forever; see the module docstring)."""
    fn = fname("bad")

    def bad(job: GearmanJob) -> bytes:
        raise ValueError("cli sees this")

    start_worker(gearmand_exc.address, {fn: bad})
    r = run([gearman_cli, "-h", "127.0.0.1", "-p", str(gearmand_exc.port), "-f", fn, "c"],
            timeout=20)
    assert "ValueError: cli sees this" in r.stderr, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""


def test_gearman_cli_worker_data_packets_same_for_pygearman_and_php(
        php: str, gearman_cli: str, gearmand: GearmandServer, fname: Callable[[str], str],
        tmp_path: Path) -> None:
    """`gearman -w -n` sends a WORK_DATA packet per output line: a pygearman task set, stream()
    and a PHP task set all see the same chunks."""
    fn = fname("lines")
    cmd = [gearman_cli, "-w", "-n", "-h", "127.0.0.1", "-p", str(gearmand.port), "-f", fn,
           "--", "cat"]
    workload = "l1\nl2\nl3\n"
    with foreign_worker(cmd, tmp_path, gearmand, fn, "gearman-worker"):
        script = write(tmp_path, "data_client.php", PHP_DATA_CLIENT)
        php_out = _php_json(php, script, str(gearmand.port), fn, workload)
        with GearmanClient(gearmand.address, timeout=20) as client:
            t1 = client.add_task(fn, workload)
            t2 = client.add_task_low(fn, "solo\n")
            client.run_tasks(timeout=20)
            with client.stream(fn, workload) as chunks:
                streamed = list(chunks)
    assert php_out["run"] is True
    assert t1.state == "complete" and t2.state == "complete"
    assert t1.data == [c.encode() for c in php_out["chunks"]]
    assert streamed == t1.data
    assert t1.result == php_out["result"].encode() == chunks.result
    assert len(t1.data) == 3
    for i, line in enumerate(["l1\n", "l2\n", "l3\n"]):
        assert line.encode() in t1.data[i]     # observed: cumulative, b"l1\nl2\n" etc.
    assert t2.data[-1].endswith(b"solo\n")
