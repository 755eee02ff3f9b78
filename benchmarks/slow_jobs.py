#!/usr/bin/env python3
"""Slow jobs: N jobs of D seconds each, as many workers as jobs, one fresh gearmand per run.

    python benchmarks/slow_jobs.py                       # 1000 jobs x 0.2 s, 1000 workers, 3 repeats
    python benchmarks/slow_jobs.py --quick               # 100 jobs x 0.2 s
    python benchmarks/slow_jobs.py --jobs 500 --duration 0.5 --repeat 5
    python benchmarks/slow_jobs.py --impls pygearman-tasks,php,c --batch 1000

Every job can run at the same time, so the ideal wall time is the job duration (with fewer
workers than jobs: ceil(N / workers) x D). A client that waits for one chunk of jobs to finish
before it sends the next, or for one server's jobs before the next server's, shows up here as a
multiple of the ideal.

Implementations (``--impls``):

* ``pygearman-tasks``  ``add_task`` x N + ``run_tasks()`` (this Python, pygearman installed here)
* ``pygearman-many``   ``submit_many(fn, workloads)``
* ``php``              PHP's ``addTask`` x N + one ``runTasks()`` (php-cli with the pecl gearman
                       extension; driven through benchmarks/php/gmbench.php, mode taskset)
* ``c``                raw libgearman, ``gearman_client_add_task`` x N + one ``run_tasks``
                       (benchmarks/c/gmbench.c, mode taskset; not in the default set)

pygearman runs with its own default batch size unless ``--batch`` is given; PHP and C get every
task in one ``runTasks()`` (that is what a PHP user writes) unless ``--batch`` is given.

The workers are one C process (benchmarks/c/slowworker.c, compiled here with gcc like
benchmarks/run.py compiles gmbench.c): K threads, each with its own gearman_worker_st, whose
function sleeps D and echoes the workload. Every measurement gets a fresh gearmand
(``pygearman.testing.GearmandServer``) and a fresh worker process; repeats are interleaved
(for repeat: for implementation) and the report gives medians. The time is the client's own
timed region (from the first add_task/submit to the last result), as each driver reports it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent

# gearmand is in /usr/sbin on Debian, which is not on a normal user's PATH.
os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"

try:
    import pygearman
    from pygearman.testing import GearmandServer
except ImportError as exc:  # pragma: no cover - the harness needs the package
    sys.exit(f"slow_jobs.py needs pygearman installed in this Python ({sys.executable}): {exc}")

ALL_IMPLS = ("pygearman-tasks", "pygearman-many", "php", "c")
DEFAULT_IMPLS = ("pygearman-tasks", "pygearman-many", "php")

# The pygearman client, run in a child process like the others (a crash or a hang stays there).
PY_DRIVER = r'''
import json, sys, time
from pygearman import GearmanClient
mode, host, port, fn, n, size, batch = sys.argv[1:8]
n, size, batch = int(n), int(size), int(batch)
alphabet = bytes(range(ord("a"), ord("a") + 26))
payload = (alphabet * (size // 26 + 1))[:size]
kw = {"batch": batch} if batch > 0 else {}
c = GearmanClient("%s:%s" % (host, port), timeout=3600)
if mode == "tasks":
    api = "add_task x N + run_tasks(%s)" % ("batch=%d" % batch if batch > 0 else "")
    t0 = time.perf_counter()
    for _ in range(n):
        c.add_task(fn, payload)
    tasks = c.run_tasks(**kw)
    elapsed = time.perf_counter() - t0
    ok = sum(1 for t in tasks if t.state == "complete" and t.result == payload)
else:
    api = "submit_many(%s)" % ("batch=%d" % batch if batch > 0 else "")
    t0 = time.perf_counter()
    results = c.submit_many(fn, [payload] * n, **kw)
    elapsed = time.perf_counter() - t0
    ok = sum(1 for r in results if r == payload)
print(json.dumps({"n": n, "ok": ok, "elapsed": elapsed, "api": api}), flush=True)
'''


def pygearman_build() -> Tuple[str, float]:
    """Where the compiled core of this pygearman lives and when it was written: the driver
    imports it afresh in each child, so a reinstall during a run would mix two builds."""
    path = getattr(sys.modules.get("pygearman._libgearman"), "__file__", None) or ""
    try:
        return path, os.stat(path).st_mtime
    except OSError:
        return path, 0.0


def log(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


def compile_c(src: Path, exe: Path, libs: Sequence[str]) -> Tuple[Optional[str], str]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        return None, "no C compiler (gcc) on PATH"
    cmd = [gcc, "-O2", str(src), "-o", str(exe), *libs]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{' '.join(cmd)}: {e}"
    if out.returncode != 0:
        return None, f"{' '.join(cmd)} failed: {(out.stderr or out.stdout).strip()[-300:]}"
    return str(exe), ""


def php_usable() -> Tuple[Optional[str], str]:
    php = shutil.which("php")
    if php is None:
        return None, "php (php-cli) is not installed"
    try:
        mods = subprocess.run([php, "-m"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"php -m: {e}"
    if "gearman" not in [m.strip().lower() for m in mods.splitlines()]:
        return None, "php has no gearman extension (Debian: php-gearman)"
    return php, ""


def raise_fd_limit(need: int) -> None:
    """gearmand and the worker process each hold one socket per worker."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            log(f"warning: open-file limit {new} < {want}: not every worker may connect")


def registered(server: GearmandServer, fn: str) -> int:
    for line in server.admin("status").splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == fn:
            return int(parts[3])
    return 0


class Runner:
    def __init__(self, args: argparse.Namespace, worker_exe: str, exes: Dict[str, List[str]],
                 workdir: Path) -> None:
        self.args = args
        self.worker_exe = worker_exe
        self.exes = exes          # impl -> command prefix
        self.workdir = workdir

    def client_cmd(self, impl: str, host: str, port: int, fn: str) -> List[str]:
        a = self.args
        n, size = str(a.jobs), str(a.size)
        if impl.startswith("pygearman"):
            mode = "tasks" if impl == "pygearman-tasks" else "many"
            return [sys.executable, "-c", PY_DRIVER, mode, host, str(port), fn, n, size,
                    str(a.batch or 0)]
        # gmbench.php / gmbench: client taskset HOST PORT FUNCTION N SIZE BATCH
        batch = str(a.batch or a.jobs)
        return [*self.exes[impl], "client", "taskset", host, str(port), fn, n, size, batch]

    def measure(self, rep: int, impl: str) -> Dict[str, Any]:
        a = self.args
        fn = f"slow_{rep}_{impl.replace('-', '_')}"
        m: Dict[str, Any] = {"impl": impl, "rep": rep}
        with GearmandServer(threads=a.gearmand_threads) as server:
            wlog = open(self.workdir / f"worker-{rep}-{impl}.log", "wb")
            worker = subprocess.Popen(
                [self.worker_exe, server.host, str(server.port), fn, str(a.workers),
                 str(int(round(a.duration * 1000)))],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=wlog)
            try:
                deadline = time.monotonic() + 60
                while registered(server, fn) < a.workers:
                    if worker.poll() is not None:
                        m["error"] = f"the worker process exited ({worker.returncode})"
                        return m
                    if time.monotonic() > deadline:
                        m["error"] = (f"only {registered(server, fn)} of {a.workers} workers "
                                      f"registered within 60 s")
                        return m
                    time.sleep(0.05)
                cmd = self.client_cmd(impl, server.host, server.port, fn)
                t0 = time.perf_counter()
                try:
                    out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout,
                                         stdin=subprocess.DEVNULL)
                except subprocess.TimeoutExpired:
                    m["error"] = f"timed out after {a.timeout} s"
                    return m
                m["process_wall"] = time.perf_counter() - t0
                line = next((ln for ln in reversed(out.stdout.splitlines())
                             if ln.startswith("{")), None)
                if out.returncode < 0:
                    m["error"] = f"killed by {signal.Signals(-out.returncode).name}"
                elif line is None:
                    m["error"] = f"no result (exit {out.returncode}): {out.stderr.strip()[-300:]}"
                else:
                    r = json.loads(line)
                    m.update(elapsed=r.get("elapsed"), ok=r.get("ok"), api=r.get("api"))
                    if r.get("ok") != a.jobs:
                        m["error"] = (f"{r.get('ok')} of {a.jobs} results correct "
                                      f"(exit {out.returncode}): {out.stderr.strip()[-200:]}")
                return m
            finally:
                worker.kill()     # our own worker process, by its handle
                worker.wait()
                if worker.stdout is not None:
                    worker.stdout.close()
                wlog.close()


def fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.3f} s"


def report(args: argparse.Namespace, ideal: float, results: List[Dict[str, Any]],
           impls: List[str], skipped: Dict[str, str], build: Tuple[str, float],
           build_changed: bool) -> Dict[str, Any]:
    import datetime
    print(f"slow jobs: {args.jobs} jobs x {args.duration:g} s, {args.workers} C workers "
          f"(threads of one process), gearmand -t {args.gearmand_threads}, "
          f"{args.repeat} repeat(s) interleaved; pygearman {pygearman.__version__}, "
          f"libgearman {pygearman.libgearman_version()}")
    when = datetime.datetime.fromtimestamp(build[1]).isoformat(timespec="seconds") if build[1] else "?"
    print(f"pygearman build: {build[0]} (written {when})")
    if build_changed:
        print("WARNING: the pygearman build was reinstalled during this run: results mix builds")
    print(f"batch: {'pygearman default; PHP/C all tasks in one runTasks' if not args.batch else args.batch}")
    print(f"ideal (every job at once{'' if args.workers >= args.jobs else ', in rounds of ' + str(args.workers)}): "
          f"{ideal:.3f} s")
    print()
    head = f"{'implementation':18s} {'median':>9s} {'min':>9s} {'max':>9s} {'x ideal':>8s}  api"
    print(head)
    print("-" * len(head))
    summary: Dict[str, Any] = {}
    for impl in impls:
        if impl in skipped:
            print(f"{impl:18s} {'n/a':>9s} {'':>9s} {'':>9s} {'':>8s}  {skipped[impl]}")
            continue
        ms = [m for m in results if m["impl"] == impl]
        good = [m["elapsed"] for m in ms if "error" not in m and m.get("elapsed") is not None]
        errors = [m["error"] for m in ms if "error" in m]
        api = next((m.get("api") for m in ms if m.get("api")), "")
        if good:
            med = statistics.median(good)
            summary[impl] = {"median": med, "min": min(good), "max": max(good),
                             "ratio": med / ideal, "runs": good, "api": api, "errors": errors}
            print(f"{impl:18s} {fmt(med):>9s} {fmt(min(good)):>9s} {fmt(max(good)):>9s} "
                  f"{med / ideal:7.2f}x  {api}")
        else:
            summary[impl] = {"median": None, "errors": errors, "api": api}
            print(f"{impl:18s} {'failed':>9s} {'':>9s} {'':>9s} {'':>8s}  {api}")
        for e in errors:
            print(f"{'':18s} error: {e}")
    return summary


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (python benchmarks/slow_jobs.py "
                                        "--help shows only the options).")
    ap.add_argument("--jobs", type=int, default=None, help="number of jobs (default 1000; --quick: 100)")
    ap.add_argument("--duration", type=float, default=0.2, help="seconds each job sleeps (default 0.2)")
    ap.add_argument("--workers", type=int, default=None,
                    help="worker threads in the C worker process (default: as many as jobs)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per implementation; medians (default 3)")
    ap.add_argument("--impls", default=",".join(DEFAULT_IMPLS),
                    help=f"comma-separated, from {', '.join(ALL_IMPLS)} (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size for every implementation (default: pygearman's own default; "
                         "PHP and C run all tasks in one runTasks)")
    ap.add_argument("--size", type=int, default=64, help="workload bytes (default 64)")
    ap.add_argument("--gearmand-threads", type=int, default=1, help="gearmand -t (default 1)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement (default 300)")
    ap.add_argument("--quick", action="store_true", help="100 jobs of 0.2 s (unless --jobs/--duration say otherwise)")
    ap.add_argument("--json", metavar="FILE", help="also write every measurement and the summary here")
    args = ap.parse_args(argv)
    if args.jobs is None:
        args.jobs = 100 if args.quick else 1000
    if args.workers is None:
        args.workers = args.jobs
    if args.jobs < 1 or args.workers < 1 or args.repeat < 1 or args.duration < 0:
        ap.error("--jobs, --workers and --repeat must be at least 1, --duration not negative")
    if args.batch is not None and args.batch < 1:
        ap.error("--batch must be at least 1")
    impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    bad = [i for i in impls if i not in ALL_IMPLS]
    if bad:
        ap.error(f"unknown implementation(s) {', '.join(bad)}; choose from {', '.join(ALL_IMPLS)}")
    args.impl_list = impls
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    raise_fd_limit(args.workers)
    workdir = Path(tempfile.mkdtemp(prefix="pygearman-slowjobs-"))
    try:
        worker_exe, why = compile_c(HERE / "c" / "slowworker.c", workdir / "slowworker",
                                    ["-lgearman", "-lpthread"])
        if worker_exe is None:
            log(f"cannot build the C worker: {why}")
            return 2
        exes: Dict[str, List[str]] = {}
        skipped: Dict[str, str] = {}
        if "php" in args.impl_list:
            php, why = php_usable()
            if php is None:
                skipped["php"] = why
            else:
                exes["php"] = [php, str(HERE / "php" / "gmbench.php")]
        if "c" in args.impl_list:
            exe, why = compile_c(HERE / "c" / "gmbench.c", workdir / "gmbench", ["-lgearman"])
            if exe is None:
                skipped["c"] = why
            else:
                exes["c"] = [exe]
        runner = Runner(args, worker_exe, exes, workdir)
        ideal = math.ceil(args.jobs / args.workers) * args.duration
        build0 = pygearman_build()
        results: List[Dict[str, Any]] = []
        active = [i for i in args.impl_list if i not in skipped]
        for rep in range(args.repeat):
            for impl in active:
                m = runner.measure(rep, impl)
                results.append(m)
                log(f"[{rep + 1}/{args.repeat}] {impl:16s} "
                    + (f"error: {m['error']}" if "error" in m else fmt(m.get("elapsed"))))
        changed = pygearman_build() != build0
        summary = report(args, ideal, results, args.impl_list, skipped, build0, changed)
        if args.json:
            Path(args.json).write_text(json.dumps({
                "jobs": args.jobs, "duration": args.duration, "workers": args.workers,
                "repeat": args.repeat, "batch": args.batch, "ideal": ideal,
                "pygearman": pygearman.__version__, "pygearman_build": build0[0],
                "build_changed_during_run": changed, "measurements": results,
                "summary": summary, "skipped": skipped}, indent=2))
        return 0 if all("error" not in m for m in results) else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
