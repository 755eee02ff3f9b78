#!/usr/bin/env python3
"""Side-by-side Gearman benchmarks: pygearman against raw C, the PHP extension and pure-Python peers.

    python benchmarks/run.py                                  # everything, default N, 3 repeats
    python benchmarks/run.py --impls pygearman,c,php --workloads W2,W3 --repeat 5
    python benchmarks/run.py --scale 0.01 --repeat 1          # a quick smoke run
    python benchmarks/run.py --impls pygearman,pygearman-old,aiogear --workloads W6 \
        --old-python /tmp/oldvenv/bin/python                  # asyncio W6, new build vs an old one

Run it with the Python of the venv where pygearman is installed. Every measurement gets a fresh
gearmand (``pygearman.testing.GearmandServer(threads=1)``) and separate client/worker processes per
implementation; repeats are interleaved (for rep: for workload: for impl) so machine noise spreads
evenly. Every process of a measurement (client, each worker, gearmand) has its CPU time recorded and
reported per job, with the difference against raw C paired within each repeat. An untimed pass
under ``strace -c`` counts syscalls per job for W2 and W4. Results: ``results.json``, ``results.md``
(medians, ranges, ratios vs raw C and vs PHP) and ``results.png`` (when matplotlib is importable
here or in the peers venv). See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

Roles = Dict[str, float]

HERE = Path(__file__).resolve().parent
MIB = 1 << 20

# gearmand is in /usr/sbin on Debian, which is not on a normal user's PATH.
os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"

try:
    import pygearman
    from pygearman.testing import GearmandServer, find_gearmand
except ImportError as exc:  # pragma: no cover - the harness needs the package
    sys.exit(f"run.py needs pygearman installed in this Python ({sys.executable}): {exc}")


# ---- what is measured ------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    name: str          # column/row label, e.g. "W1-batch"
    workload: str      # W1..W5
    mode: str          # driver mode: bg_loop, bg_batch, ..., rt, taskset, drain
    n: int             # default job count (before --scale / --n)
    workers: int       # echo worker processes of the same implementation
    size: int = 64     # payload bytes
    default: bool = True
    what: str = ""
    c_workers: bool = False  # the echo workers are raw C whatever the client (W6: a client-side test)
    ref: str = ""            # variant of C/PHP to take the ratio against when they lack this one

    @property
    def unit(self) -> str:
        return "MiB/s" if self.size >= MIB else "jobs/s"

    def rate(self, n: int, elapsed: float) -> float:
        if self.size >= MIB:
            return n * self.size / MIB / elapsed
        return n / elapsed


VARIANTS: List[Variant] = [
    Variant("W1-loop", "W1", "bg_loop", 50_000, 0,
            what="background submits, one do_background call per job, no worker"),
    Variant("W1-loop-uniq", "W1", "bg_loop_uniq", 50_000, 0, default=False,
            what="as W1-loop with caller-supplied uniques"),
    Variant("W1-batch", "W1", "bg_batch", 50_000, 0,
            what="background submits through the batch/pipelined API (batches of 1000)"),
    Variant("W1-batch-uniq", "W1", "bg_batch_uniq", 50_000, 0,
            what="as W1-batch with caller-supplied uniques"),
    Variant("W2", "W2", "rt", 10_000, 1, what="sequential synchronous round trips, 1 echo worker"),
    Variant("W3-tasks", "W3", "taskset", 20_000, 2,
            what="task set (add_task xN + run_tasks in batches) submitted together, results "
                 "collected, 2 echo worker processes"),
    Variant("W3-tasks-uniq", "W3", "taskset_uniq", 20_000, 2,
            what="as W3-tasks with caller-supplied uniques"),
    Variant("W3-many", "W3", "many", 20_000, 2, ref="W3-tasks",
            what="as W3-tasks through a one-call batch API returning results in order "
                 "(pygearman submit_many; n/a where no such call exists)"),
    Variant("W3-many-uniq", "W3", "many_uniq", 20_000, 2, ref="W3-tasks-uniq",
            what="as W3-many with caller-supplied uniques"),
    Variant("W4", "W4", "drain", 50_000, 0,
            what="one worker draining a queue of N jobs (queue filled first, untimed)"),
    Variant("W5", "W5", "rt", 200, 1, size=MIB, what="sequential 1 MiB round trips, 1 echo worker"),
    Variant("W6-aio", "W6", "aio", 10_000, 2, c_workers=True, ref="W6-loop",
            what="asyncio: N concurrent awaits of one job each from one client (asyncio.gather), "
                 "2 raw-C echo workers"),
    Variant("W6-loop", "W6", "rt", 10_000, 2, c_workers=True,
            what="the same N jobs as a synchronous loop of round trips, 2 raw-C echo workers"),
    Variant("W6-many", "W6", "many", 10_000, 2, c_workers=True, ref="W6-loop",
            what="the same N jobs through submit_many (one call), 2 raw-C echo workers"),
    Variant("W6-threads", "W6", "threads", 10_000, 2, c_workers=True, ref="W6-loop",
            what="the same N jobs from a ThreadPoolExecutor(16) around the sync client "
                 "(one client per thread), 2 raw-C echo workers"),
]
VARIANT_BY_NAME = {v.name: v for v in VARIANTS}


@dataclass
class Impl:
    name: str
    label: str
    cmd: List[str] = field(default_factory=list)
    env: Dict[str, str] = field(default_factory=dict)
    unavailable: str = ""        # reason, when it cannot run at all
    version: Dict[str, Any] = field(default_factory=dict)
    modes: Optional[Tuple[str, ...]] = None  # client modes it has; None: ask the driver
    modes_note: str = ""                     # why the others are n/a


IMPL_ORDER = ["pygearman", "pygearman-old", "c", "php", "python-gearman", "gear", "gear-raw", "aiogear"]
DEFAULT_IMPLS = ["pygearman", "c", "php", "python-gearman", "gear", "aiogear"]
IMPL_LABELS = {
    "pygearman": "pygearman (ours)",
    "pygearman-old": "pygearman (--old-python)",
    "c": "raw C libgearman",
    "php": "PHP ext (pecl gearman)",
    "python-gearman": "python-gearman 0.2.6",
    "gear": "gear 0.16 (TCP_NODELAY)",
    "gear-raw": "gear 0.16 (as shipped)",
    "aiogear": "aiogear 0.2.6 (asyncio)",
}
PEER_IMPLS = {"python-gearman", "gear", "gear-raw"}
PEER_REQUIREMENTS = ["pygearman==0.2.6", "gear==0.16"]


# ---- small utilities ---------------------------------------------------------------------------

def log(msg: str = "", end: str = "\n") -> None:
    sys.stderr.write(msg + end)
    sys.stderr.flush()


def fmt_duration(s: float) -> str:
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def fmt_rate(x: Optional[float]) -> str:
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def run_capture(cmd: Sequence[str], timeout: float = 60, env: Optional[Dict[str, str]] = None
                ) -> Tuple[int, str, str]:
    try:
        p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env)
        return p.returncode, p.stdout, p.stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        return -1, "", str(e)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: Optional[int]) -> Optional[float]:
    """CPU seconds of a live process, all threads. The scheduler's run time in ns
    (/proc/PID/task/*/schedstat) when the kernel has it: utime+stime in /proc/PID/stat count in
    clock ticks (10 ms), too coarse for a per-job figure of a few µs. Else utime+stime."""
    if not pid:
        return None
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


class Child:
    """A driver process we started (own session, so a timeout can kill its whole group).
    Reaped with os.wait4 to get its rusage (CPU of the whole life of the process)."""

    def __init__(self, cmd: Sequence[str], env: Dict[str, str], workdir: Path, tag: str) -> None:
        self.cmd = list(cmd)
        self.out_path = workdir / f"{tag}.out"
        self.err_path = workdir / f"{tag}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=env, start_new_session=True)
        self.pid = self.proc.pid
        self.t0 = time.perf_counter()
        self.wall: Optional[float] = None
        self.status: Optional[int] = None
        self.rusage_cpu: Optional[float] = None
        self.timed_out = False

    def alive(self) -> bool:
        if self.status is not None:
            return False
        try:  # look without reaping (WNOWAIT), so wait4 can still collect the rusage
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def _reaped(self, status: int, ru: Any) -> None:
        self.wall = time.perf_counter() - self.t0
        self.status = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.status
        self.rusage_cpu = ru.ru_utime + ru.ru_stime

    def wait(self, timeout: float) -> bool:
        """Wait for exit; kill the group at the deadline. True if it exited by itself."""
        deadline = time.monotonic() + timeout
        pause = 0.001
        while self.status is None:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self._reaped(status, ru)
                break
            if time.monotonic() >= deadline:
                self.timed_out = True
                self.kill(signal.SIGKILL)
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        return not self.timed_out

    def kill(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        if self.status is not None:
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + grace
        while self.status is None:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self._reaped(status, ru)
                return
            if time.monotonic() >= deadline and sig != signal.SIGKILL:
                sig = signal.SIGKILL
                try:
                    os.killpg(self.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)

    def stdout(self) -> str:
        try:
            return self.out_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, lines: int = 6) -> str:
        try:
            text = self.err_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def result(self) -> Optional[Dict[str, Any]]:
        for line in reversed(self.stdout().strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    parsed: Dict[str, Any] = json.loads(line)
                    return parsed
                except ValueError:
                    return None
        return None


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _traced_by(pid: int, tracer: int) -> bool:
    """Every thread of pid has tracer as its TracerPid (strace -f attaches thread by thread)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
        for tid in tids:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                line = next(x for x in f if x.startswith("TracerPid:"))
            if int(line.split()[1]) != tracer:
                return False
        return bool(tids)
    except (OSError, StopIteration, ValueError):
        return False


def _has_perf_events(pid: int) -> bool:
    try:
        return any("perf_event" in os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


# The syscalls counted one by one in the perf pass (the rest is "other"): what a Gearman
# client, worker or gearmand does per job, plus what would show a regression (locks, clocks).
PERF_SYSCALLS = ("sendto", "recvfrom", "poll", "epoll_wait", "read", "write", "writev", "sendmsg",
                 "recvmsg", "close", "socket", "connect", "setsockopt", "fcntl", "futex", "ioctl",
                 "getrusage")


def perf_works() -> bool:
    """perf stat on the syscall tracepoints needs root or a low perf_event_paranoid."""
    if not shutil.which("perf"):
        return False
    rc, _, _ = run_capture(["perf", "stat", "-e", "raw_syscalls:sys_enter,syscalls:sys_enter_sendto",
                            "-o", "/dev/null", "--", "true"], timeout=30)
    return rc == 0


def _per_job(calls: Dict[str, int], errors: int, n: int) -> Dict[str, Any]:
    return {"total": sum(calls.values()) / n, "errors": errors / n,
            "calls": {k: c / n for k, c in sorted(calls.items(), key=lambda kv: -kv[1])}}


def parse_perf_stat(text: str, n: int) -> Dict[str, Any]:
    """perf stat -x, lines "count,,event,...": raw_syscalls:sys_enter is the total, the
    syscalls:sys_enter_NAME ones the breakdown; what they leave is "other". No error counts."""
    total = 0
    calls: Dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) < 3 or not parts[0].strip().isdigit():
            continue
        count, event = int(parts[0]), parts[2]
        if event == "raw_syscalls:sys_enter":
            total = count
        elif event.startswith("syscalls:sys_enter_") and count:
            calls[event[len("syscalls:sys_enter_"):]] = count
    if total > sum(calls.values()):
        calls["other"] = total - sum(calls.values())
    r = _per_job(calls, 0, n)
    r.pop("errors")
    return r


def parse_strace_c(text: str, n: int) -> Dict[str, Any]:
    """strace -c's table as calls per job: total, errors and by syscall (the "total" row is
    recomputed: its usecs/call cell may be blank, which makes its columns ambiguous)."""
    calls: Dict[str, int] = {}
    errors = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or parts[-1] == "total" or not parts[0].replace(".", "").isdigit():
            continue
        nums = parts[2:-1]  # usecs/call, calls[, errors]
        try:
            c = int(nums[1])
            e = int(nums[2]) if len(nums) > 2 else 0
        except (IndexError, ValueError):
            continue
        calls[parts[-1]] = calls.get(parts[-1], 0) + c
        errors += e
    return _per_job(calls, errors, n)


def status_of(server: GearmandServer, function: str) -> Tuple[int, int, int]:
    """(queued total, running, available workers) of one function, from the admin protocol."""
    for line in server.admin("status").splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == function:
            return int(parts[1]), int(parts[2]), int(parts[3])
    return 0, 0, 0


# ---- implementations ---------------------------------------------------------------------------

def build_c(workdir: Path) -> Tuple[Optional[str], str]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        return None, "no C compiler (gcc) on PATH"
    exe = workdir / "gmbench"
    rc, out, err = run_capture([gcc, "-O2", str(HERE / "c" / "gmbench.c"), "-o", str(exe), "-lgearman"],
                               timeout=120)
    if rc != 0:
        return None, f"gcc -O2 gmbench.c -lgearman failed: {(err or out).strip()[-300:]}"
    return str(exe), ""


def ensure_peers_venv(venv: Path, logfile: Path, want_plot: bool) -> Tuple[Optional[str], str]:
    """Create/complete the venv of the pure-Python peers (they cannot share ours: python-gearman's
    distribution is also called "pygearman"). Returns (python, reason-if-unusable)."""
    py = venv / "bin" / "python"
    with open(logfile, "a") as lf:
        def step(cmd: List[str], timeout: float) -> bool:
            lf.write(f"$ {' '.join(cmd)}\n")
            lf.flush()
            try:
                return subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, timeout=timeout).returncode == 0
            except (OSError, subprocess.TimeoutExpired) as e:
                lf.write(f"{e}\n")
                return False

        if not py.exists():
            log(f"creating the peers venv {venv} ...")
            base = getattr(sys, "_base_executable", sys.executable) or sys.executable
            if not step([base, "-m", "venv", str(venv)], 300):
                return None, f"python -m venv {venv} failed (see {logfile.name})"
        check = "import importlib.metadata as m; print(m.version('pygearman'), m.version('gear'))"
        rc, out, _ = run_capture([str(py), "-c", check])
        if rc != 0 or out.split() != ["0.2.6", "0.16.0"]:
            log(f"installing {' '.join(PEER_REQUIREMENTS)} into {venv} ...")
            if not step([str(py), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], 900):
                return None, f"pip install {' '.join(PEER_REQUIREMENTS)} failed (see {logfile.name})"
        if want_plot and run_capture([str(py), "-c", "import matplotlib"])[0] != 0:
            log("installing matplotlib into the peers venv (for results.png) ...")
            if not step([str(py), "-m", "pip", "install", "-q", "matplotlib"], 900):
                log("  matplotlib could not be installed; results.png will be skipped")
    return str(py), ""


def setup_impls(names: List[str], workdir: Path, out: Path, peers_venv: Path, want_plot: bool,
                old_python: str = "") -> Tuple[Dict[str, Impl], Optional[str]]:
    impls: Dict[str, Impl] = {}
    peers_py: Optional[str] = None
    peers_reason = ""
    if PEER_IMPLS & set(names):
        peers_py, peers_reason = ensure_peers_venv(peers_venv, out / "peers-venv.log", want_plot)
    for name in names:
        im = Impl(name, IMPL_LABELS[name])
        if name == "pygearman":
            im.cmd = [sys.executable, str(HERE / "drivers" / "py_pygearman.py")]
        elif name == "pygearman-old":
            # Another build of ours (e.g. a pre-optimisation one) in another interpreter/venv.
            im.cmd = [old_python, str(HERE / "drivers" / "py_pygearman.py")]
            if not old_python:
                im.unavailable = "needs --old-python PATH (the Python of a venv with the other build)"
            elif not os.access(old_python, os.X_OK):
                im.unavailable = f"--old-python {old_python} is not an executable"
            else:
                im.label = f"pygearman ({old_python})"
        elif name == "aiogear":
            im.cmd = [sys.executable, str(HERE / "peers" / "py_aiogear.py")]
            im.modes, im.modes_note = ("aio",), "aiogear is measured in the asyncio workload (W6-aio) only"
            if run_capture([sys.executable, "-c", "import aiogear"])[0] != 0:
                im.unavailable = (f"aiogear is not importable in {sys.executable} "
                                  "(pip install aiogear==0.2.6 into this venv)")
        elif name == "c":
            exe, why = build_c(workdir)
            im.cmd, im.unavailable = ([exe] if exe else []), why
        elif name == "php":
            php = shutil.which("php")
            if not php:
                im.unavailable = "php-cli is not installed"
            elif run_capture([php, "-r", "exit(extension_loaded('gearman') ? 0 : 1);"])[0] != 0:
                im.unavailable = "the PHP gearman extension (php-gearman) is not loaded"
            im.cmd = [php or "php", str(HERE / "php" / "gmbench.php")]
        elif name in PEER_IMPLS:
            script = "py_gearman.py" if name == "python-gearman" else "py_gear.py"
            im.cmd = [peers_py or "python", str(HERE / "peers" / script)]
            im.unavailable = peers_reason if not peers_py else ""
            if name == "gear":
                im.env = {"GEAR_TCP_NODELAY": "1"}
        if not im.unavailable:
            for attempt in range(3):  # the package may be mid-reinstall by a concurrent build
                rc, so, se = run_capture([*im.cmd, "version"], env={**os.environ, **im.env})
                if rc == 0:
                    break
                time.sleep(2)
            try:
                im.version = json.loads(so.strip().splitlines()[-1]) if rc == 0 else {}
            except (ValueError, IndexError):
                im.version = {}
            if rc != 0:
                im.unavailable = f"driver does not start: {(se or so).strip()[-300:]}"
        impls[name] = im
    return impls, peers_py


# ---- one measurement ---------------------------------------------------------------------------

@dataclass
class Measurement:
    rep: int
    variant: str
    impl: str
    status: str = "error"            # ok | error | n/a
    error: str = ""
    n: int = 0
    elapsed: Optional[float] = None  # timed region reported by the driver
    rate: Optional[float] = None     # jobs/s or MiB/s
    unit: str = "jobs/s"
    lat_p50_us: Optional[float] = None
    lat_p99_us: Optional[float] = None
    cpu_client: Optional[float] = None        # timed region, reported by the client (or W4 worker)
    cpu_client_process: Optional[float] = None  # whole process (rusage), interpreter start included
    cpu_workers: Optional[float] = None       # echo workers during the timed window (/proc)
    cpu_gearmand: Optional[float] = None      # gearmand during the timed window (/proc)
    wall: Optional[float] = None              # harness-observed, process start to exit
    api: str = ""
    duration: float = 0.0                     # the whole measurement incl. gearmand start/stop
    # CPU seconds of every process: "client" (or "worker" for W4: the timed region, from the
    # driver's getrusage), "worker0", "worker1", ... and "gearmand" (scheduler run time over the
    # main process's life, from /proc).
    cpu_procs: Dict[str, float] = field(default_factory=dict)
    # The same per job and per role, in µs: client, worker (all workers together), gearmand.
    cpu_us: Dict[str, float] = field(default_factory=dict)


ROLES = ("client", "worker", "gearmand")


class Runner:
    def __init__(self, impls: Dict[str, Impl], workdir: Path, timeout: float, batch: int,
                 filler: Optional[Impl], c_impl: Optional[Impl] = None) -> None:
        self.impls = impls
        self.workdir = workdir
        self.timeout = timeout
        self.batch = batch
        self.filler = filler
        self.c_impl = c_impl  # the echo workers of the c_workers variants (W6)
        self.syscall_tool = "strace"  # or "perf" (perf trace -s)
        self.seq = 0

    def _env(self, im: Impl, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        return {**os.environ, **im.env, **(extra or {})}

    def _start(self, im: Impl, args: List[str], tag: str, extra_env: Optional[Dict[str, str]] = None
               ) -> Child:
        self.seq += 1
        return Child([*im.cmd, *args], self._env(im, extra_env), self.workdir, f"{self.seq:04d}-{tag}")

    def _setup(self, server: GearmandServer, v: Variant, im: Impl, n: int, fn: str,
               workers: List[Child]) -> List[str]:
        """Fill the queue (W4) or start the echo workers; returns the main process's arguments."""
        host, port = server.host, str(server.port)
        if v.mode == "drain":
            filler = self.filler
            if filler is None:
                raise RuntimeError("no implementation available to fill the queue")
            fill = self._start(filler, ["client", "bg_batch_uniq", host, port, fn, str(n), str(v.size),
                                        str(self.batch)], f"fill-{im.name}")
            if not fill.wait(self.timeout) or fill.status != 0:
                raise RuntimeError(f"filling the queue with {filler.name} failed: {fill.stderr_tail()}")
            queued = status_of(server, fn)[0]
            if queued != n:
                raise RuntimeError(f"queue holds {queued} jobs after filling, expected {n}")
            return ["worker", "drain", host, port, fn, str(n)]
        wim = im
        if v.c_workers:
            if self.c_impl is None:
                raise RuntimeError("the C echo workers of this workload could not be built")
            wim = self.c_impl
        for i in range(v.workers):
            workers.append(self._start(wim, ["worker", "echo", host, port, fn, "0"],
                                       f"{v.name}-{im.name}-w{i}"))
        if workers:
            self._wait_workers(server, fn, workers)
        return ["client", v.mode, host, port, fn, str(n), str(v.size), str(self.batch)]

    def measure(self, rep: int, v: Variant, im: Impl, n: int) -> Measurement:
        m = Measurement(rep, v.name, im.name, n=n, unit=v.unit)
        t_start = time.perf_counter()
        try:
            self._measure(m, v, im, n)
        except Exception as e:  # a broken measurement is a result, not a crash of the run
            m.status, m.error = "error", f"{type(e).__name__}: {e}"
        m.duration = time.perf_counter() - t_start
        return m

    def _measure(self, m: Measurement, v: Variant, im: Impl, n: int) -> None:
        server = GearmandServer(threads=1, verbose="ERROR")
        workers: List[Child] = []
        fn = f"bench_{v.mode}"
        try:
            server.start()
            main_args = self._setup(server, v, im, n, fn, workers)
            g0 = proc_cpu(server.pid)
            w0 = [proc_cpu(w.pid) for w in workers]
            main = self._start(im, main_args, f"{v.name}-{im.name}")
            finished = main.wait(self.timeout)
            g1 = proc_cpu(server.pid)
            w1 = [proc_cpu(w.pid) for w in workers]
            if g0 is not None and g1 is not None:
                m.cpu_gearmand = g1 - g0
            spans = [(a, b) for a, b in zip(w0, w1) if a is not None and b is not None]
            if workers and len(spans) == len(workers):
                m.cpu_workers = sum(b - a for a, b in spans)
            m.wall, m.cpu_client_process = main.wall, main.rusage_cpu
            res = main.result() or {}
            if not finished:
                raise RuntimeError(f"timed out after {self.timeout:.0f} s: {main.stderr_tail()}")
            if main.status == 3 and "na" in res:
                m.status, m.error = "n/a", str(res["na"])
                return
            if main.status != 0 or "elapsed" not in res:
                dead = [w for w in workers if not w.alive()]
                hint = f"; a worker died: {dead[0].stderr_tail()}" if dead else ""
                raise RuntimeError(f"exit {main.status}, ok={res.get('ok')}/{n}: {main.stderr_tail()}{hint}")
            m.elapsed = float(res["elapsed"])
            m.cpu_client = res.get("cpu")
            main_role = "worker" if v.mode == "drain" else "client"
            if m.cpu_client is not None:
                m.cpu_procs[main_role] = float(m.cpu_client)
            for i, (a, b) in enumerate(zip(w0, w1)):
                if a is not None and b is not None:
                    m.cpu_procs[f"worker{i}"] = b - a
            if m.cpu_gearmand is not None:
                m.cpu_procs["gearmand"] = m.cpu_gearmand
            per_job = 1e6 / n
            if m.cpu_client is not None:
                m.cpu_us[main_role] = float(m.cpu_client) * per_job
            if m.cpu_workers is not None:
                m.cpu_us["worker"] = m.cpu_workers * per_job
            if m.cpu_gearmand is not None:
                m.cpu_us["gearmand"] = m.cpu_gearmand * per_job
            m.api = str(res.get("api", ""))
            m.lat_p50_us = res.get("lat_p50_us")
            m.lat_p99_us = res.get("lat_p99_us")
            m.rate = v.rate(n, m.elapsed) if m.elapsed > 0 else None
            # The server must agree: N background jobs queued (W1), an empty queue after W4.
            if v.workload == "W1":
                queued = status_of(server, fn)[0]
                if queued != n:
                    raise RuntimeError(f"gearmand holds {queued} jobs, expected {n}")
            elif v.mode == "drain":
                queued = status_of(server, fn)[0]
                if queued != 0:
                    raise RuntimeError(f"{queued} jobs left in the queue after the drain")
            m.status = "ok"
        finally:
            for w in workers:
                w.kill(signal.SIGTERM)
            server.cleanup()

    # ---- the untimed syscall pass (strace -c) ----

    def syscalls(self, v: Variant, im: Impl, n: int) -> Dict[str, Any]:
        """Run one measurement again with every process under ``strace -c -f``: the workers and
        gearmand are attached once ready, the main process while it is stopped just before its
        timed region (GMBENCH_STOP_BEFORE_TIMED). Returns calls per job by role and syscall."""
        out: Dict[str, Any] = {"variant": v.name, "impl": im.name, "n": n, "status": "error"}
        server = GearmandServer(threads=1, verbose="ERROR")
        workers: List[Child] = []
        tracers: List[Tuple[str, subprocess.Popen, Path]] = []  # type: ignore[type-arg]
        fn = f"bench_{v.mode}"
        try:
            server.start()
            main_args = self._setup(server, v, im, n, fn, workers)
            for i, w in enumerate(workers):
                tracers.append(self._trace(w.pid, f"worker{i}"))
            if server.pid is None:
                raise RuntimeError("gearmand has no pid")
            tracers.append(self._trace(server.pid, "gearmand"))
            main = self._start(im, main_args, f"syscalls-{v.name}-{im.name}",
                               extra_env={"GMBENCH_STOP_BEFORE_TIMED": "1"})
            deadline = time.monotonic() + 60
            while _proc_state(main.pid) not in ("T", "t"):
                if not main.alive() or time.monotonic() > deadline:
                    main.wait(1)
                    res = main.result() or {}
                    if main.status == 3 and "na" in res:
                        out.update(status="n/a", error=str(res["na"]))
                        return out
                    raise RuntimeError(f"the main process did not stop before its timed region: "
                                       f"{main.stderr_tail()}")
                time.sleep(0.005)
            main_role = "worker" if v.mode == "drain" else "client"
            tracers.append(self._trace(main.pid, main_role))
            os.kill(main.pid, signal.SIGCONT)
            finished = main.wait(self.timeout)
            if not finished or main.status != 0:
                raise RuntimeError(f"exit {main.status}: {main.stderr_tail()}")
            roles: Dict[str, Dict[str, Any]] = {}
            for role, tr, path in tracers:
                if tr.poll() is None:
                    tr.send_signal(signal.SIGINT)  # detach and write the summary
                try:
                    tr.wait(30)
                except subprocess.TimeoutExpired:
                    tr.kill()
                    tr.wait()
                text = path.read_text(errors="replace")
                roles[role] = (parse_perf_stat(text, n) if self.syscall_tool == "perf"
                               else parse_strace_c(text, n))
            if len(workers) > 1:  # all workers together, per job (as for CPU)
                merged: Dict[str, Any] = {"total": 0.0, "errors": 0.0, "calls": {}}
                for i in range(len(workers)):
                    r = roles.pop(f"worker{i}")
                    merged["total"] += r["total"]
                    merged["errors"] += r.get("errors", 0.0)
                    for k, x in r["calls"].items():
                        merged["calls"][k] = merged["calls"].get(k, 0.0) + x
                roles["worker"] = merged
            elif "worker0" in roles:
                roles["worker"] = roles.pop("worker0")
            out.update(status="ok", roles=roles)
        except Exception as e:
            out["error"] = f"{type(e).__name__}: {e}"
        finally:
            for _, tr, _ in tracers:
                if tr.poll() is None:
                    tr.kill()
                    tr.wait()
            for w in workers:
                w.kill(signal.SIGTERM)
            server.cleanup()
        return out

    def _trace(self, pid: int, role: str) -> Tuple[str, "subprocess.Popen[bytes]", Path]:
        """Start the syscall counter on pid and wait until it is attached."""
        self.seq += 1
        path = self.workdir / f"{self.seq:04d}-{self.syscall_tool}-{role}.txt"
        if self.syscall_tool == "perf":
            events = ",".join(["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{c}" for c in PERF_SYSCALLS])
            cmd = ["perf", "stat", "-x", ",", "-e", events, "-o", str(path), "-p", str(pid)]
        else:
            cmd = ["strace", "-c", "-f", "-o", str(path), "-p", str(pid)]
        tr = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        def attached() -> bool:
            return _has_perf_events(tr.pid) if self.syscall_tool == "perf" else _traced_by(pid, tr.pid)

        while not attached():
            if tr.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[0]} could not attach to the {role} (pid {pid})")
            time.sleep(0.005)
        if self.syscall_tool == "perf":
            time.sleep(0.3)  # its counters are open; give it time to enable them on every thread
        return role, tr, path

    def _wait_workers(self, server: GearmandServer, fn: str, workers: List[Child]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if status_of(server, fn)[2] >= len(workers):
                return
            dead = [w for w in workers if not w.alive()]
            if dead:
                raise RuntimeError(f"worker exited at start: {dead[0].stderr_tail()}")
            time.sleep(0.02)
        raise RuntimeError(f"workers did not register {fn} within 30 s")


# ---- report ------------------------------------------------------------------------------------

def machine_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {"hostname": platform.node(), "kernel": platform.release(),
                            "arch": platform.machine(), "cpus": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["memory"] = f"{int(line.split()[1]) // 1024} MiB"
                break
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return info


def pygearman_build() -> Tuple[str, float]:
    """Where the compiled core of the harness's pygearman lives and when it was written: the
    drivers import it afresh, so a reinstall during a run would mix two builds."""
    path = getattr(sys.modules.get("pygearman._libgearman"), "__file__", None) or ""
    try:
        return path, os.stat(path).st_mtime
    except OSError:
        return path, 0.0


def repo_revision() -> str:
    rc, out, _ = run_capture(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"])
    if rc != 0:
        return "?"
    rc2, dirty, _ = run_capture(["git", "-C", str(HERE.parent), "status", "--porcelain", "--", "src"])
    return out.strip() + ("+uncommitted changes in src/" if rc2 == 0 and dirty.strip() else "")


def versions(impls: Dict[str, Impl]) -> Dict[str, Any]:
    v: Dict[str, Any] = {"python": platform.python_version(), "pygearman": pygearman.__version__,
                         "libgearman (pygearman runtime)": pygearman.libgearman_version(),
                         "pygearman installed at": str(Path(pygearman.__file__).parent),
                         "repository HEAD": repo_revision()}
    try:
        rc, out, err = run_capture([find_gearmand(), "--version"])
        v["gearmand"] = (out or err).strip().splitlines()[0].split(" - ")[0] if rc == 0 else "?"
    except Exception:
        v["gearmand"] = "not found"
    for name, im in impls.items():
        if im.version:
            v[f"driver:{name}"] = im.version
    php = impls.get("php")
    if php and php.version:
        v["php"] = php.version.get("php")
        v["php-gearman"] = php.version.get("php_gearman")
    rc, out, _ = run_capture(["gcc", "--version"])
    if rc == 0:
        v["gcc"] = out.splitlines()[0]
    return v


def summarize(ms: List[Measurement], variants: List[Variant], impl_names: List[str]
              ) -> Dict[str, Dict[str, Dict[str, Any]]]:
    def med(xs: List[Optional[float]]) -> Optional[float]:
        ys = [x for x in xs if x is not None]
        return statistics.median(ys) if ys else None

    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for v in variants:
        row: Dict[str, Dict[str, Any]] = {}
        for name in impl_names:
            mine = [m for m in ms if m.variant == v.name and m.impl == name]
            ok = [m for m in mine if m.status == "ok" and m.rate]
            s: Dict[str, Any] = {"runs": len(mine), "ok_runs": len(ok), "unit": v.unit}
            if ok:
                rates = [m.rate for m in ok]
                s.update(median=statistics.median(rates), min=min(rates), max=max(rates),  # type: ignore
                         n=ok[0].n, api=ok[0].api,
                         lat_p50_us=med([m.lat_p50_us for m in ok]),
                         lat_p99_us=med([m.lat_p99_us for m in ok]),
                         cpu_client=med([m.cpu_client for m in ok]),
                         cpu_workers=med([m.cpu_workers for m in ok]),
                         cpu_gearmand=med([m.cpu_gearmand for m in ok]),
                         elapsed=med([m.elapsed for m in ok]))
                cpu_us = {r: med([m.cpu_us.get(r) for m in ok]) for r in ROLES}
                s["cpu_us"] = {r: x for r, x in cpu_us.items() if x is not None}
                # The least perturbed repeat: on a shared machine (or a VM whose host is busy)
                # contention only ever adds CPU time, so the minimum is the steadiest estimate.
                s["cpu_us_best"] = {r: min(m.cpu_us[r] for m in ok if r in m.cpu_us) for r in s["cpu_us"]}
            na = [m for m in mine if m.status == "n/a"]
            errs = [m for m in mine if m.status == "error"]
            if na and not ok:
                s["na"] = na[0].error
            if errs:
                s["errors"] = [m.error for m in errs]
            row[name] = s
        out[v.name] = row
    # Paired with a base implementation: in every repeat each implementation ran once per variant,
    # so the per-repeat difference (CPU µs/job, same role) and ratio (rate) cancel the slow phases
    # of a noisy machine. Median and range over the repeats.
    def spread(xs: List[float]) -> Dict[str, Any]:
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "pairs": len(xs)}

    for v in variants:
        for base in ("c", "pygearman-old"):
            by_rep = {m.rep: m for m in ms if m.variant == v.name and m.impl == base
                      and m.status == "ok" and m.rate}
            if not by_rep:
                continue
            base_best: Dict[str, float] = {}
            for r in ROLES:
                xs = [m.cpu_us[r] for m in by_rep.values() if r in m.cpu_us]
                if xs:
                    base_best[r] = min(xs)
            for name in impl_names:
                if name == base:
                    continue
                mine = [m for m in ms if m.variant == v.name and m.impl == name and m.status == "ok"
                        and m.rate and m.rep in by_rep]
                if not mine:
                    continue
                s = out[v.name][name]
                ratios = [m.rate / by_rep[m.rep].rate for m in mine]  # type: ignore[operator]
                s[f"rate_vs_{base}_paired"] = spread(ratios)
                diffs: Dict[str, Any] = {}
                for r in ROLES:
                    d = [m.cpu_us[r] - by_rep[m.rep].cpu_us[r] for m in mine
                         if r in m.cpu_us and r in by_rep[m.rep].cpu_us]
                    if d:
                        diffs[r] = spread(d)
                s[f"cpu_us_vs_{base}"] = diffs
                s[f"cpu_us_best_vs_{base}"] = {
                    r: min(m.cpu_us[r] for m in mine if r in m.cpu_us) - base_best[r]
                    for r in ROLES if r in base_best and any(r in m.cpu_us for m in mine)}
    # Ratios against C and PHP; a variant they have no API for (W3-many) is compared with the
    # variant named in its ``ref`` (else their first of the same workload), and says so in
    # "vs_<base>_ref".
    for v in variants:
        row = out[v.name]
        for base in ("c", "php"):
            ref_variant = v.name
            ref = row.get(base, {}).get("median")
            if not ref and v.ref and v.ref in out:
                ref_variant, ref = v.ref, out[v.ref].get(base, {}).get("median")
            if not ref:
                for other in variants:
                    if other.workload == v.workload and out[other.name].get(base, {}).get("median"):
                        ref_variant, ref = other.name, out[other.name][base]["median"]
                        break
            for s in row.values():
                if ref and s.get("median"):
                    s[f"vs_{base}"] = s["median"] / ref
                    if ref_variant != v.name:
                        s[f"vs_{base}_ref"] = ref_variant
    return out


def ratio(x: Optional[float], ref_variant: Optional[str] = None) -> str:
    if x is None:
        return "–"
    return f"×{x:.2f}" + (f" of {ref_variant}" if ref_variant else "")


def fmt_s(x: Optional[float]) -> str:
    return f"{x:.3f}" if x is not None else "–"


def fmt_us(x: Optional[float]) -> str:
    return "–" if x is None else (f"{x:.1f}" if abs(x) < 1000 else f"{x:,.0f}")


def fmt_diff(d: Optional[Dict[str, Any]]) -> str:
    """A paired difference: median [min, max] over the repeats."""
    if not d:
        return "–"
    return f"{d['median']:+.1f} [{d['min']:+.1f}, {d['max']:+.1f}]"


def fmt_calls(r: Optional[Dict[str, Any]], top: int = 0) -> str:
    if not r:
        return "–"
    text = f"{r['total']:.2f}"
    if top:
        parts = [f"{k} {x:.2f}" for k, x in list(r["calls"].items())[:top] if x >= 0.01]
        text += f" ({', '.join(parts)})" if parts else ""
    return text


def write_markdown(path: Path, meta: Dict[str, Any], summary: Dict[str, Dict[str, Dict[str, Any]]],
                   variants: List[Variant], impl_names: List[str],
                   syscalls: Optional[List[Dict[str, Any]]] = None) -> None:
    impl_meta = meta.get("impls", {})

    def label(i: str) -> str:
        return str(impl_meta.get(i, {}).get("label") or IMPL_LABELS.get(i, i))

    L: List[str] = []
    L.append("# pygearman benchmarks")
    L.append("")
    L.append(f"Date: {meta['date']}  ")
    L.append(f"Command: `{meta['command']}`  ")
    mi = meta["machine"]
    L.append(f"Machine: {mi.get('cpu', '?')}, {mi.get('cpus')} CPUs, {mi.get('memory', '?')}, "
             f"{mi.get('os', '?')}, kernel {mi.get('kernel')}  ")
    L.append(f"Load average before/after: {meta.get('loadavg_start')} / {meta.get('loadavg_end')}  ")
    vv = meta["versions"]
    L.append(f"Versions: pygearman {vv.get('pygearman')}, libgearman {vv.get('libgearman (pygearman runtime)')}, "
             f"{vv.get('gearmand', 'gearmand ?')}, Python {vv.get('python')}, PHP {vv.get('php', '–')} "
             f"with php-gearman {vv.get('php-gearman', '–')}, "
             f"python-gearman {vv.get('driver:python-gearman', {}).get('python-gearman', '–')}, "
             f"gear {vv.get('driver:gear', vv.get('driver:gear-raw', {})).get('gear', '–')}, "
             f"{vv.get('gcc', 'gcc ?')}  ")
    L.append(f"pygearman imported from: {vv.get('pygearman installed at')} (repository HEAD during the "
             f"run: {vv.get('repository HEAD')}; the installed build may be older)  ")
    if meta.get("note"):
        L.append(f"Note: {meta['note']}  ")
    L.append(f"Repeats: {meta['repeat']} (interleaved; fresh `gearmand -t 1` per measurement); "
             f"scale {meta['scale']}; batch {meta['batch']}; wall time {fmt_duration(meta['total_seconds'])}")
    L.append("")
    for w in meta.get("warnings", []):
        L.append(f"**Warning: {w}.**")
        L.append("")
    L.append("Rates are medians over the repeats (jobs/s; MiB/s of payload per round trip for W5). "
             "Ratios are median ÷ median of raw C (`vs C`) and of the PHP extension (`vs PHP`); "
             "above 1 means faster. CPU columns are medians in seconds over the timed window: "
             "client (as reported by the client process; the worker process for W4), "
             "all echo workers together, and gearmand. Under each table the same CPU per job and per "
             "process role in µs, paired with raw C; the machine may be shared, so CPU per job is "
             "the steadier figure.")
    L.append("")
    L.append("## Summary: median rate (ratio vs raw C)")
    L.append("")
    L.append("| workload | N | " + " | ".join(label(i) for i in impl_names) + " |")
    L.append("|---|---:|" + "---:|" * len(impl_names))
    for v in variants:
        row = summary[v.name]
        n = next((s["n"] for s in row.values() if "n" in s), meta["n"].get(v.name))
        cells = []
        for i in impl_names:
            s = row.get(i, {})
            if s.get("median") is not None:
                cells.append(f"{fmt_rate(s['median'])} ({ratio(s.get('vs_c'), s.get('vs_c_ref'))})"
                             if "vs_c" in s else fmt_rate(s["median"]))
            elif "na" in s:
                cells.append("n/a")
            elif s.get("errors"):
                cells.append("error")
            else:
                cells.append("–")
        L.append(f"| {v.name} ({v.unit}) | {n:,} | " + " | ".join(cells) + " |")
    L.append("")
    paired = [v for v in variants if any(summary[v.name].get(i, {}).get("cpu_us_vs_c") for i in impl_names)]
    if paired:
        others = [i for i in impl_names if i != "c"
                  and any(summary[v.name].get(i, {}).get("cpu_us_vs_c") for v in paired)]
        L.append("## Paired with raw C, repeat by repeat")
        L.append("")
        L.append("Worker CPU per job (all workers together; the draining worker in W4) minus raw C's "
                 "in the same repeat, in µs: median [min, max] over the repeats; `Δ best`: the lowest "
                 "of the repeats minus raw C's lowest (contention on a shared machine only adds CPU "
                 "time, so this is the least perturbed comparison); then the paired throughput ratio "
                 "(median [min, max] of the per-repeat ratios).")
        L.append("")
        L.append("| workload | raw C worker µs/job (best) | "
                 + " | ".join(f"{label(i)}: Δ worker µs/job | Δ best | ×C paired" for i in others) + " |")
        L.append("|---|---:|" + "---:|---:|---:|" * len(others))
        for v in paired:
            row = summary[v.name]
            c = row.get("c", {})
            cells = [v.name, f"{fmt_us(c.get('cpu_us', {}).get('worker'))} "
                             f"({fmt_us(c.get('cpu_us_best', {}).get('worker'))})"]
            for i in others:
                s = row.get(i, {})
                rp = s.get("rate_vs_c_paired")
                bd = s.get("cpu_us_best_vs_c", {}).get("worker")
                cells += [fmt_diff(s.get("cpu_us_vs_c", {}).get("worker")),
                          f"{bd:+.1f}" if bd is not None else "–",
                          f"×{rp['median']:.2f} [{rp['min']:.2f}, {rp['max']:.2f}]" if rp else "–"]
            L.append("| " + " | ".join(cells) + " |")
        L.append("")
    w6 = [v for v in variants if v.workload == "W6"]
    if w6:
        L.append("## W6 (asyncio) at a glance")
        L.append("")
        L.append("Every mode runs the same N jobs of 64 bytes against 2 raw-C echo workers. Client CPU "
                 "is the client process's own, over the timed region. `×old` is the rate over "
                 "`pygearman-old`'s in the same mode, paired by repeat (median [min, max]).")
        L.append("")
        L.append("| client | mode | jobs/s (median) | range | client CPU µs/job | ×old (paired) |")
        L.append("|---|---|---:|---:|---:|---:|")
        for i in impl_names:
            for v in w6:
                s = summary[v.name].get(i, {})
                if s.get("median") is None:
                    continue
                rp = s.get("rate_vs_pygearman-old_paired")
                L.append(f"| {label(i)} | {v.name} ({v.mode}) | {fmt_rate(s['median'])} | "
                         f"{fmt_rate(s['min'])}–{fmt_rate(s['max'])} | "
                         f"{fmt_us(s.get('cpu_us', {}).get('client'))} | "
                         + (f"×{rp['median']:.2f} [{rp['min']:.2f}, {rp['max']:.2f}]" if rp else "–") + " |")
        L.append("")
    for v in variants:
        row = summary[v.name]
        L.append(f"## {v.name}: {v.what}")
        L.append("")
        lat = v.mode == "rt"
        head = "| implementation | median | range | ok/runs | vs C | vs PHP |"
        sep = "|---|---:|---:|---:|---:|---:|"
        if lat:
            head += " p50 / p99 latency |"
            sep += "---:|"
        head += " CPU client | CPU workers | CPU gearmand | API |"
        sep += "---:|---:|---:|---|"
        L.append(head)
        L.append(sep)
        for i in impl_names:
            s = row.get(i, {})
            lab = label(i)
            if s.get("median") is None:
                why = s.get("na") or "; ".join(dict.fromkeys(s.get("errors", []))) or "not run"
                L.append(f"| {lab} | n/a | | {s.get('ok_runs', 0)}/{s.get('runs', 0)} | | |"
                         + (" |" if lat else "") + f" | | | {why.replace('|', '/')} |")
                continue
            cells = [lab, f"{fmt_rate(s['median'])} {v.unit}",
                     f"{fmt_rate(s['min'])}–{fmt_rate(s['max'])}", f"{s['ok_runs']}/{s['runs']}",
                     ratio(s.get("vs_c"), s.get("vs_c_ref")), ratio(s.get("vs_php"), s.get("vs_php_ref"))]
            if lat:
                p50, p99 = s.get("lat_p50_us"), s.get("lat_p99_us")
                if v.size >= MIB:
                    cells.append(f"{p50 / 1000:.1f} / {p99 / 1000:.1f} ms" if p50 is not None and p99 is not None else "–")
                else:
                    cells.append(f"{p50:.0f} / {p99:.0f} µs" if p50 is not None and p99 is not None else "–")
            cells += [fmt_s(s.get("cpu_client")), fmt_s(s.get("cpu_workers")), fmt_s(s.get("cpu_gearmand")),
                      s.get("api", "")]
            L.append("| " + " | ".join(cells) + " |")
        errs = [(i, e) for i in impl_names for e in row.get(i, {}).get("errors", [])]
        if errs:
            L.append("")
            for i, e in errs:
                L.append(f"- error, {label(i)}: {e}")
        L.append("")
        measured = [i for i in impl_names if row.get(i, {}).get("cpu_us")]
        if measured:
            has_c = any(row.get(i, {}).get("cpu_us_vs_c") for i in measured)
            roles = [r for r in ROLES if any(r in row[i]["cpu_us"] for i in measured)]
            L.append("CPU per job in µs, by process (median over the repeats, in brackets the lowest; "
                     + ("Δ vs C: median [min, max] over the repeats of the difference from raw C in "
                        "the same repeat and role" if has_c else "no raw-C run to pair with") + "):")
            L.append("")
            head, sep = "| implementation |", "|---|"
            for r in roles:
                head += f" {r}{'s' if r == 'worker' and v.workers > 1 else ''} |" + (" Δ vs C |" if has_c else "")
                sep += "---:|" + ("---:|" if has_c else "")
            L.append(head)
            L.append(sep)
            for i in measured:
                s = row[i]
                cells = [label(i)]
                for r in roles:
                    best = s.get("cpu_us_best", {}).get(r)
                    cells.append(fmt_us(s["cpu_us"].get(r)) + (f" ({fmt_us(best)})" if best is not None else ""))
                    if has_c:
                        cells.append(fmt_diff(s.get("cpu_us_vs_c", {}).get(r)) if i != "c" else "")
                L.append("| " + " | ".join(cells) + " |")
            L.append("")
        calls = [x for x in (syscalls or []) if x.get("variant") == v.name]
        if calls:
            n_sc = calls[0].get("n")
            L.append(f"Syscalls per job (a separate, untimed pass under `{calls[0].get('tool', 'strace -c -f')}`"
                     f", N = {n_sc:,}; in brackets the most frequent calls):")
            L.append("")
            roles = [r for r in ROLES if any(r in x.get("roles", {}) for x in calls)]
            L.append("| implementation | " + " | ".join(roles) + " |")
            L.append("|---|" + "---|" * len(roles))
            for x in sorted(calls, key=lambda x: impl_names.index(x["impl"]) if x["impl"] in impl_names else 99):
                if x.get("status") != "ok":
                    L.append(f"| {label(x['impl'])} | {x.get('status')}: "
                             f"{str(x.get('error', ''))[:120].replace('|', '/')} |" + " |" * (len(roles) - 1))
                    continue
                L.append(f"| {label(x['impl'])} | "
                         + " | ".join(fmt_calls(x["roles"].get(r), top=4) for r in roles) + " |")
            L.append("")
    path.write_text("\n".join(L) + "\n")


def try_plot(out: Path, peers_py: Optional[str]) -> str:
    script = HERE / "plot.py"
    args = [str(out / "results.json"), str(out / "results.png")]
    try:
        import matplotlib  # noqa: F401
        rc, so, se = run_capture([sys.executable, str(script), *args], timeout=300)
    except ImportError:
        if peers_py and run_capture([peers_py, "-c", "import matplotlib"])[0] == 0:
            rc, so, se = run_capture([peers_py, str(script), *args], timeout=300)
        else:
            return ("matplotlib is not available (not in this venv, nor in the peers venv): "
                    "results.png skipped")
    if rc != 0:
        return f"plot failed: {(se or so).strip()[-300:]}"
    return f"wrote {out / 'results.png'}"


# ---- main --------------------------------------------------------------------------------------

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="workloads: " + "; ".join(
                                     f"{v.name} ({v.n:,}{', not default' if not v.default else ''}): {v.what}"
                                     for v in VARIANTS))
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W5,W6",
                    help="comma list of W1..W6 (all their variants) or variant names, e.g. W1-batch")
    ap.add_argument("--impls", default=",".join(DEFAULT_IMPLS),
                    help=f"comma list of {', '.join(IMPL_ORDER)} (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per (workload, impl); medians (default 3)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every N (e.g. 0.01 for a quick run)")
    ap.add_argument("--n", action="append", default=[], metavar="WORKLOAD=N",
                    help="set N of one workload or variant after scaling, e.g. --n W5=20 (repeatable)")
    ap.add_argument("--batch", type=int, default=1000, help="batch size of the batch/task-set modes")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement (default 600)")
    ap.add_argument("--out", default=str(HERE / "results"), help="output directory")
    ap.add_argument("--peers-venv", default=str(HERE / ".venv-peers"),
                    help="venv for python-gearman and gear (created on first use)")
    ap.add_argument("--no-plot", action="store_true", help="do not write results.png")
    ap.add_argument("--note", default="", help="free text for the report header (e.g. which build)")
    ap.add_argument("--rerender", metavar="DIR",
                    help="only rewrite results.md (and results.png) from DIR/results.json; with "
                         "--note, replace the note")
    ap.add_argument("--old-python", default="", metavar="PATH",
                    help="the Python of a venv holding another pygearman build, measured as the "
                         "implementation pygearman-old (e.g. /tmp/oldvenv/bin/python)")
    ap.add_argument("--syscalls", default="W2,W4", metavar="WORKLOADS",
                    help="workloads (or variants) that get an extra untimed pass under strace -c to "
                         "count syscalls per job; 'none' to skip (default: %(default)s)")
    ap.add_argument("--syscall-tool", choices=("auto", "perf", "strace"), default="auto",
                    help="perf stat on the syscall tracepoints (exact in-kernel counters, barely "
                         "slows the processes; needs root or a low perf_event_paranoid) or strace "
                         "-c -f (ptrace: slows every call, so a sleeping worker may take another "
                         "path); auto: perf when it works")
    ap.add_argument("--syscalls-max-n", type=int, default=20_000,
                    help="cap on N in the strace pass (default %(default)s)")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep every driver's stdout/stderr in OUT/logs")
    return ap.parse_args(argv)


def select_variants(spec: str) -> List[Variant]:
    chosen: List[Variant] = []
    for tok in [t.strip() for t in spec.split(",") if t.strip()]:
        picked = [v for v in VARIANTS if v.workload == tok.upper() and v.default]
        if not picked and tok in VARIANT_BY_NAME:
            picked = [VARIANT_BY_NAME[tok]]
        if not picked:
            raise SystemExit(f"unknown workload {tok!r}; known: W1..W6, {', '.join(VARIANT_BY_NAME)}")
        chosen += [v for v in picked if v not in chosen]
    return sorted(chosen, key=VARIANTS.index)


def job_counts(variants: List[Variant], scale: float, overrides: List[str]) -> Dict[str, int]:
    n = {v.name: max(1, int(round(v.n * scale))) for v in variants}
    for item in overrides:
        for part in item.split(","):
            key, _, val = part.partition("=")
            key = key.strip()
            hits = [v.name for v in variants if v.name == key or v.workload == key.upper()]
            if not hits or not val.strip().isdigit() or int(val) < 1:
                raise SystemExit(f"bad --n {part!r}: expected WORKLOAD=N for a selected workload")
            for h in hits:
                n[h] = int(val)
    return n


def rerender(args: argparse.Namespace) -> int:
    out = Path(args.rerender).resolve()
    data = json.loads((out / "results.json").read_text())
    meta = data["meta"]
    if args.note:
        meta["note"] = args.note
    variants = [VARIANT_BY_NAME[name] for name in data["summary"] if name in VARIANT_BY_NAME]
    ms = [Measurement(**m) for m in data["measurements"]]
    data["summary"] = summary = summarize(ms, variants, list(meta["impls"]))
    (out / "results.json").write_text(json.dumps(data, indent=1))
    write_markdown(out / "results.md", meta, summary, variants, list(meta["impls"]), data.get("syscalls"))
    log(f"rewrote {out / 'results.md'}")
    if not args.no_plot:
        peers_py = Path(args.peers_venv) / "bin" / "python"
        log(try_plot(out, str(peers_py) if peers_py.exists() else None))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.rerender:
        return rerender(args)
    variants = select_variants(args.workloads)
    impl_names = [i.strip() for i in args.impls.split(",") if i.strip()]
    bad = [i for i in impl_names if i not in IMPL_LABELS]
    if bad:
        raise SystemExit(f"unknown implementation(s) {', '.join(bad)}; known: {', '.join(IMPL_ORDER)}")
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    counts = job_counts(variants, args.scale, args.n)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        find_gearmand()
    except Exception as e:
        raise SystemExit(str(e))

    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="pygearman-bench-"))
    want_plot = not args.no_plot
    impls, peers_py = setup_impls(impl_names, workdir, out, Path(args.peers_venv), want_plot,
                                  args.old_python)
    for im in impls.values():
        if im.unavailable:
            log(f"{im.name}: not available: {im.unavailable}")
    c_impl = impls["c"] if "c" in impls and not impls["c"].unavailable else None
    if c_impl is None and any(v.mode == "drain" or v.c_workers for v in variants):
        # W4 fills its queue and W6 runs its echo workers with the C driver even when C is not compared
        c_exe, _ = build_c(workdir)
        c_impl = Impl("c", IMPL_LABELS["c"], [c_exe]) if c_exe else None
    filler = c_impl or next((impls[i] for i in ("pygearman",) if i in impls and not impls[i].unavailable), None)
    runner = Runner(impls, workdir, args.timeout, args.batch, filler, c_impl)

    plan = [(rep, v, impl_names[(k + rep) % len(impl_names)])
            for rep in range(args.repeat) for v in variants for k in range(len(impl_names))]
    log(f"{len(plan)} measurements: {len(variants)} workloads x {len(impl_names)} implementations x "
        f"{args.repeat} repeats; N = " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    build0 = pygearman_build()
    warnings: List[str] = []
    results: List[Measurement] = []
    durations: Dict[Tuple[str, str], List[float]] = {}
    skip: Dict[Tuple[str, str], str] = {}
    loadavg_start = os.getloadavg()
    t_run = time.perf_counter()
    for idx, (rep, v, name) in enumerate(plan, 1):
        im = impls[name]
        remaining = plan[idx - 1:]
        eta = sum(_estimate(durations, results, rv.name, rn) for _, rv, rn in remaining)
        elapsed = time.perf_counter() - t_run
        log(f"[{idx:3d}/{len(plan)}] {fmt_duration(elapsed)} elapsed, ETA {fmt_duration(eta)}  "
            f"rep {rep + 1}/{args.repeat}  {v.name:<13} {name:<15} ", end="")
        key = (v.name, name)
        if name == "pygearman" and pygearman_build() != build0 and not warnings:
            warnings.append(f"pygearman was reinstalled during the run (before measurement {idx} of "
                            f"{len(plan)}): its results mix two builds")
            log(f"WARNING: {warnings[-1]}\n{'':>60}", end="")
        if not im.unavailable and im.modes is not None and v.mode not in im.modes:
            skip.setdefault(key, im.modes_note or f"{name} has no {v.mode} mode")
        if im.unavailable or key in skip:
            m = Measurement(rep, v.name, name, status="n/a", error=im.unavailable or skip[key],
                            n=counts[v.name], unit=v.unit)
        else:
            m = runner.measure(rep, v, im, counts[v.name])
            durations.setdefault(key, []).append(m.duration)
            if m.status == "n/a":
                skip[key] = m.error
        results.append(m)
        if m.status == "ok":
            extra = f"  p50 {m.lat_p50_us:.0f} µs" if m.lat_p50_us is not None and v.size < MIB else ""
            log(f"{fmt_rate(m.rate):>10} {v.unit}{extra}  ({m.duration:.1f} s)")
        else:
            log(f"{m.status}: {m.error[:160]}")
    syscalls = syscall_pass(args, runner, impls, impl_names, variants, counts, results)
    total = time.time() - started

    summary = summarize(results, variants, impl_names)
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else f"run.py {' '.join(argv)}",
        "machine": machine_info(), "versions": versions(impls),
        "repeat": args.repeat, "scale": args.scale, "batch": args.batch, "n": counts,
        "impls": {k: {"label": im.label, "unavailable": im.unavailable, "version": im.version}
                  for k, im in impls.items()},
        "variants": {v.name: {"workload": v.workload, "mode": v.mode, "workers": v.workers,
                              "size": v.size, "unit": v.unit, "what": v.what, "ref": v.ref}
                     for v in variants},
        "loadavg_start": [round(x, 2) for x in loadavg_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "total_seconds": total,
        "warnings": warnings,
        "note": args.note,
    }
    (out / "results.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "measurements": [asdict(m) for m in results],
         "syscalls": syscalls}, indent=1))
    write_markdown(out / "results.md", meta, summary, variants, impl_names, syscalls)
    log(f"wrote {out / 'results.json'} and {out / 'results.md'} ({fmt_duration(total)})")
    if want_plot:
        log(try_plot(out, peers_py))
    if args.keep_logs:
        shutil.copytree(workdir, out / "logs", dirs_exist_ok=True, ignore=shutil.ignore_patterns("gmbench"))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def syscall_pass(args: argparse.Namespace, runner: Runner, impls: Dict[str, Impl], impl_names: List[str],
                 variants: List[Variant], counts: Dict[str, int], results: List[Measurement]
                 ) -> List[Dict[str, Any]]:
    """One more run of the chosen variants (W2, W4) per implementation, every process under
    strace -c: syscalls per job by role. After the timed runs, so it cannot perturb them."""
    wanted = [t.strip() for t in args.syscalls.split(",") if t.strip() and t.strip().lower() != "none"]
    chosen = [v for v in variants if v.name in wanted or v.workload in [w.upper() for w in wanted]]
    if not chosen:
        return []
    tool = args.syscall_tool
    if tool == "auto":
        tool = "perf" if perf_works() else "strace"
    if not shutil.which(tool):
        log(f"{tool} is not installed: no syscall counts")
        return []
    runner.syscall_tool = tool
    out: List[Dict[str, Any]] = []
    for v in chosen:
        for name in impl_names:
            im = impls[name]
            ok = any(m.variant == v.name and m.impl == name and m.status == "ok" for m in results)
            if im.unavailable or not ok:
                continue
            n = min(counts[v.name], args.syscalls_max_n)
            log(f"syscall pass ({tool}): {v.name:<13} {name:<15} N={n:,} ", end="")
            r = runner.syscalls(v, im, n)
            r["tool"] = "perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_*" if tool == "perf" else "strace -c -f"
            if r["status"] == "ok":
                log("  ".join(f"{role} {x['total']:.2f}/job" for role, x in r["roles"].items()))
            else:
                log(f"{r['status']}: {r.get('error', '')[:160]}")
            out.append(r)
    return out


def _estimate(durations: Dict[Tuple[str, str], List[float]], results: List[Measurement],
              variant: str, impl: str) -> float:
    """Expected seconds of one measurement: its own earlier runs, else the same workload's mean,
    else the overall mean."""
    own = durations.get((variant, impl))
    if own:
        return statistics.mean(own)
    same = [d for (vn, _), ds in durations.items() if vn == variant for d in ds]
    if same:
        return statistics.mean(same)
    every = [d for ds in durations.values() for d in ds]
    return statistics.mean(every) if every else 5.0


if __name__ == "__main__":
    sys.exit(main())
