#!/bin/sh
# Valgrind memcheck over a short script that exercises pygearman's client and worker (issue 5,
# item 8), then a summary of what valgrind found in frames of the extension (_libgearman) or of
# libgearman: invalid reads/writes and definite leaks.
#
#   scripts/reliability-valgrind.sh [PYTHON] [ROUNDS] [PART]
#
# PYTHON defaults to .venv/bin/python (then python3); ROUNDS (default 100) scales the number of
# jobs per API. PART: all (default), sync (the client and worker), or aio (the asyncio part
# alone: concurrent submits, a cancelled await, timed-out awaits, aclose() with awaits pending,
# a stream left early, a task set, AsyncWorker). gearmand runs outside valgrind (a child process valgrind does not follow).
# The full log is kept in $OUT (default: a temporary directory, printed at the end).
#
# The last part leaves streams early (break, an exception in the loop, close() before the job
# ended) and then uses the same client again (do_normal, submit, a task set): that crashed inside
# gearman_client_run_tasks. If the exercise dies, the summary is still printed (with the fatal
# signal) and the script exits 1; the gearmand it started is stopped by its pid.
set -eu

PY=${1:-}
ROUNDS=${2:-100}
PART=${3:-all}
case "$PART" in all|sync|aio) ;; *) echo "PART must be all, sync or aio" >&2; exit 2;; esac
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
OUT=${OUT:-$(mktemp -d /tmp/pygearman-valgrind.XXXXXX)}
export PATH="$PATH:/usr/sbin:/sbin"

cat > "$OUT/exercise.py" <<'EOF'
"""Everything a client and a worker do, a few times each, with one gearmand."""
import sys, threading, time
import pygearman
from pygearman import GearmanClient, GearmanWorker
from pygearman.testing import GearmandServer, free_port

ROUNDS = int(sys.argv[1])
PIDFILE = sys.argv[2]
PART = sys.argv[3]
kept = []

def echo(job):
    return job.workload

def chatty(job):
    job.send_status(1, 2)
    job.send_data(b"chunk")
    job.send_warning(b"warn")
    return b"end"

def boom(job):
    raise ValueError("no")

def keep(job):
    kept.append(job)          # used after return below: must raise, not crash
    return None

def retry(job):
    raise pygearman.Retry("later")

def chunky(job):
    for i in range(4):
        job.send_data(b"c%d" % i)
        time.sleep(0.05)
    return b"done"

def slow(job):
    time.sleep(0.3)
    return job.workload

class Boom(Exception):
    pass

def exercise_aio(address):
    """The asyncio client and worker: the pipelined submit path and its ways out."""
    import asyncio
    from pygearman.aio import AsyncClient, AsyncWorker

    async def client_part():
        async with AsyncClient(address, timeout=120) as ac:
            for _ in range(max(1, ROUNDS // 10)):
                calls = [ac.submit("echo", b"a%d" % i) for i in range(50)]
                calls += [ac.submit("boom", b""), ac.submit("echo", b"bg", background=True),
                          ac.submit("echo", b"u", unique="vg-u", priority=pygearman.Priority.HIGH),
                          ac.submit("echo", 12)]
                out = await asyncio.gather(*calls, return_exceptions=True)
                assert out[:50] == [b"a%d" % i for i in range(50)], out[:3]
                assert isinstance(out[50], pygearman.JobException) and isinstance(out[53], TypeError)
                t = asyncio.create_task(ac.submit("echo", b"t"))
                assert await t == b"t"
            # a cancelled await (its batch running), timed-out awaits (the call's own deadline,
            # wait_for), then the abandoned calls end
            t = asyncio.create_task(ac.submit("slow", b"c"))
            await asyncio.sleep(0.1)
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                pass
            try:
                await ac.submit("nobody-serves-this", b"x", timeout=0.3)
            except pygearman.GearmanTimeoutError:
                pass
            try:
                await asyncio.wait_for(ac.submit("slow", b"w"), 0.05)
            except asyncio.TimeoutError:
                pass
            while ac.abandoned:
                await asyncio.sleep(0.05)
            # a stream left early, a stream to its end, a task set
            async with ac.stream("chunky", b"") as chunks:
                async for chunk in chunks:
                    break
            async with ac.stream("chatty", b"") as chunks:
                assert [c async for c in chunks] == [b"chunk"]
            async with ac.task_set() as ts:
                for i in range(10):
                    ts.add("echo", b"%d" % i)
                ts.add("boom", b"")
            assert [await ac.submit_many("echo", [b"m"] * 5)] == [[b"m"] * 5]
        # closed with awaits pending: one running, one queued behind it
        ac = AsyncClient(address, timeout=120, max_workers=1, idle_timeout=0.2)
        running = ac.submit("slow", b"r")
        await asyncio.sleep(0.05)
        queued = ac.submit("echo", b"q")
        await asyncio.sleep(0.05)
        await ac.aclose()
        try:
            await queued
        except RuntimeError:
            pass
        assert await running == b"r"

    asyncio.run(client_part())
    # a call whose loop is gone before its result arrives
    ac = AsyncClient(address, timeout=120, idle_timeout=0.2)

    async def leave():
        ac.submit("slow", b"gone")
        asyncio.create_task(ac.submit("slow", b"cancelled by asyncio.run"))
        await asyncio.sleep(0.05)

    asyncio.run(leave())
    time.sleep(0.8)
    asyncio.run(ac.aclose())

    async def worker_part():
        aw = AsyncWorker(address, concurrency=2)

        @aw.function("vg-async")
        async def vg_async(job):
            await job.send_status(1, 2)
            await job.send_data(b"d")
            if job.workload == b"boom":
                raise ValueError("no")
            await asyncio.sleep(0)
            return job.workload

        runner = asyncio.create_task(aw.run())
        loop = asyncio.get_running_loop()

        def sync_calls():
            with GearmanClient(address, timeout=120) as c:
                for i in range(max(1, ROUNDS // 5)):
                    assert c.do_normal("vg-async", b"%d" % i) == b"%d" % i
                try:
                    c.do_normal("vg-async", b"boom")
                except pygearman.JobException:
                    pass

        await loop.run_in_executor(None, sync_calls)
        aw.stop()
        await runner

    asyncio.run(worker_part())
    print("AIO-OK", flush=True)

def leave_stream(c, how):
    """Leave a stream before its job ended."""
    if how == "break":
        with c.stream("chunky", "") as chunks:
            for chunk in chunks:
                break
    elif how == "exception":
        try:
            with c.stream("chunky", "") as chunks:
                for chunk in chunks:
                    raise Boom()
        except Boom:
            pass
    else:
        chunks = c.stream("chunky", "")
        next(chunks)
        chunks.close()

with GearmandServer() as server:
    with open(PIDFILE, "w") as f:       # the shell stops it if this process dies
        f.write(str(server.pid))
    # no identifier here: with one, a Retry leaves the worker registered for nothing (a bug
    # reported in RELIABILITY.md), and the "retry" job below would never finish
    w = GearmanWorker(server.address, max_retries=1)
    for name, fn in (("echo", echo), ("chatty", chatty), ("boom", boom), ("keep", keep), ("retry", retry),
                     ("chunky", chunky), ("slow", slow)):
        w.add_function(name, fn)
    wt = threading.Thread(target=w.run, daemon=True)
    wt.start()
    if PART in ("all", "aio"):
        exercise_aio(server.address)
    if PART == "aio":
        w.stop()
        wt.join()
        w.close()
        print("EXERCISE-OK")
        sys.exit(0)
    c = GearmanClient(server.address, timeout=120, identifier="vg-client")
    for i in range(ROUNDS):
        assert c.do_normal("echo", b"x%d" % i) == b"x%d" % i
        c.do_background("echo", "bg")
        assert c.do_normal("chatty", "") == b"end"
        try:
            c.do_normal("boom", "")
        except pygearman.JobException:
            pass
    c.do_normal("keep", "")
    for job in kept:
        try:
            job.workload
        except RuntimeError:
            pass
    try:
        c.do_normal("retry", "")
    except pygearman.JobError:
        pass
    for _ in range(max(1, ROUNDS // 10)):
        got = []
        for i in range(20):
            c.add_task("echo", str(i), context=i, on_complete=lambda t: got.append(t.result))
        c.add_task("chatty", "", on_data=lambda t, d: None, on_status=lambda t: None)
        c.add_task("boom", "", on_exception=lambda t: None)
        c.add_task_background("echo", "bgt")
        c.run_tasks()
        # a task set nobody watches (events settled after the run), with coalesced uniques,
        # a failing job and a background one; then the same with one watched twin
        quiet = [c.add_task("echo", "d", None, "vg-dup-%d" % (i % 5)) for i in range(15)]
        quiet.append(c.add_task("boom", "q"))
        quiet.append(c.add_task_background("echo", "qbg"))
        c.run_tasks()
        assert [t.result for t in quiet[:15]] == [b"d"] * 15 and quiet[15].state == "exception"
        c.add_task("echo", "w", None, "vg-twin")
        c.add_task("echo", "w", None, "vg-twin", on_complete=lambda t: got.append(t.result))
        c.run_tasks()
        assert c.submit_many("echo", [b"a", b"b", b"c"] * 10) == [b"a", b"b", b"c"] * 10
        hs = c.submit_background_many("echo", [b"q"] * 10)
        c.job_status(hs[0])
        if _ == 0:
            # a batch whose spec array is mapped (over 1 MiB), then a small one reusing nothing
            big = c.submit_background_many("vg-nobody", [b"b"] * 3500, batch=500)
            assert len(set(big)) == 3500
            assert len(c.submit_background_many("vg-nobody", [b"s"] * 3)) == 3
        c.unique_status("nope")
        with c.stream("chatty", "") as chunks:
            list(chunks)
        res = c.submit_many("boom", ["1", "2"], return_exceptions=True)
        assert all(isinstance(r, pygearman.JobException) for r in res)
    c2 = c.clone()
    assert c2.do_normal("echo", "clone") == b"clone"
    c2.close()
    assert c.echo(b"ping")
    big = bytes(range(256)) * 4096        # 1 MiB
    assert c.do_normal("echo", big) == big
    # errors: a dead port, bad arguments, a deadline
    dead = GearmanClient("127.0.0.1:%d" % free_port(), timeout=2)
    for call in (lambda: dead.do_normal("f", "x"), lambda: dead.submit_many("f", ["a"]),
                 lambda: dead.do_normal("", "x"), lambda: dead.do_normal("f", 12)):
        try:
            call()
        except (pygearman.GearmanError, TypeError, ValueError):
            pass
    dead.close()
    try:
        c.do_normal("nobody-serves-this", "x", timeout=0.3)
    except pygearman.GearmanTimeoutError:
        pass
    c.close()
    print("MAIN-OK", flush=True)
    # leaving a stream early, then the same client again
    for _ in range(max(1, ROUNDS // 20)):
        for how in ("break", "exception", "close"):
            for then in ("do_normal", "run_tasks"):
                cs = GearmanClient(server.address, timeout=120)
                leave_stream(cs, how)
                print("LEFT", how, "then", then, flush=True)
                if then == "do_normal":
                    assert cs.do_normal("echo", "after") == b"after"
                    assert cs.submit("echo", "s") == b"s"
                t = cs.add_task("echo", "t")
                cs.run_tasks()
                assert t.result == b"t"
                if then == "run_tasks":
                    assert cs.do_normal("echo", "after") == b"after"
                cs.close()
    print("STREAMS-OK", flush=True)
    w.stop()
    wt.join()
    w.close()
    dw = GearmanWorker("127.0.0.1:%d" % free_port())
    dw.add_function("f", echo)
    try:
        dw.work(timeout=0.5)
    except pygearman.GearmanConnectionError:     # what a dead port gives now
        pass
    dw.close()
print("EXERCISE-OK")
EOF

echo "valgrind memcheck: $PY $OUT/exercise.py $ROUNDS (this takes a few minutes)"
PYTHONMALLOC=malloc valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --num-callers=40 --log-file="$OUT/valgrind.log" \
    "$PY" "$OUT/exercise.py" "$ROUNDS" "$OUT/gearmand.pid" "$PART" > "$OUT/stdout.txt" 2>&1 || true
FAILED=0
if ! grep -q EXERCISE-OK "$OUT/stdout.txt"; then
    FAILED=1
    echo "the exercise script failed (summary below):"
    tail -20 "$OUT/stdout.txt"
    # it died inside the with-block: stop the gearmand it started (by its pid only)
    if [ -s "$OUT/gearmand.pid" ]; then
        GPID=$(cat "$OUT/gearmand.pid")
        if kill -0 "$GPID" 2>/dev/null && grep -q gearmand "/proc/$GPID/cmdline" 2>/dev/null; then
            kill "$GPID" 2>/dev/null || true
        fi
    fi
fi

# Split the log into records (blank-line separated) and keep those with a frame in our code.
"$PY" - "$OUT/valgrind.log" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
records = re.split(r"\n==\d+== \n", text)
ours = re.compile(r"_libgearman|libgearman[-\w]*\.so")   # also a wheel's renamed copy
kinds = {"invalid read": r"Invalid read", "invalid write": r"Invalid write",
         "invalid free": r"Invalid free|Mismatched free", "uninitialised": r"uninitialised|Uninitialised",
         "definitely lost": r"definitely lost in"}
counts = {k: 0 for k in kinds}
totals = {k: 0 for k in kinds}
shown = 0
for rec in records:
    for k, pat in kinds.items():
        if re.search(pat, rec):
            totals[k] += 1
            if ours.search(rec):
                counts[k] += 1
                if shown < 10:
                    print(re.sub(r"==\d+== ?", "", rec).strip()[:3000], "\n")
                    shown += 1
fatal = re.search(r"Process terminating with default action of signal.*", text)
if fatal:
    i = fatal.start()
    lines = re.sub(r"==\d+== ?", "", text[i:i + 3000]).strip().splitlines()
    print("FATAL:", "\n".join(lines[:6]), "\n")
summary = re.search(r"ERROR SUMMARY: .*", text)
leaks = re.search(r"definitely lost: .*", text)
print("valgrind records, all frames / with a frame in _libgearman or libgearman:")
for k in kinds:
    print(f"  {k:16s} {totals[k]:5d} / {counts[k]}")
print(" ", summary.group(0) if summary else "no ERROR SUMMARY")
print(" ", leaks.group(0) if leaks else "definitely lost: none reported")
EOF
echo "full log: $OUT/valgrind.log"
exit $FAILED
