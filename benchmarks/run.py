#!/usr/bin/env python3
"""Side-by-side Gearman benchmarks: pygearman against raw C, the PHP extension and pure-Python peers.

    python benchmarks/run.py                                  # everything, default N, 3 repeats
    python benchmarks/run.py --impls pygearman,c,php --workloads W2,W3 --repeat 5
    python benchmarks/run.py --scale 0.01 --repeat 1          # a quick smoke run

Run it with the Python of the venv where pygearman is installed. Every measurement gets a fresh
gearmand (``pygearman.testing.GearmandServer(threads=1)``) and separate client/worker processes per
implementation; repeats are interleaved (for rep: for workload: for impl) so machine noise spreads
evenly. Results: ``results.json``, ``results.md`` (medians, ranges, ratios vs raw C and vs PHP) and
``results.png`` (when matplotlib is importable here or in the peers venv). See benchmarks/README.md.
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
    Variant("W3-many", "W3", "many", 20_000, 2,
            what="as W3-tasks through a one-call batch API returning results in order "
                 "(pygearman submit_many; n/a where no such call exists)"),
    Variant("W4", "W4", "drain", 50_000, 0,
            what="one worker draining a queue of N jobs (queue filled first, untimed)"),
    Variant("W5", "W5", "rt", 200, 1, size=MIB, what="sequential 1 MiB round trips, 1 echo worker"),
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


IMPL_ORDER = ["pygearman", "c", "php", "python-gearman", "gear", "gear-raw"]
DEFAULT_IMPLS = ["pygearman", "c", "php", "python-gearman", "gear"]
IMPL_LABELS = {
    "pygearman": "pygearman (ours)",
    "c": "raw C libgearman",
    "php": "PHP ext (pecl gearman)",
    "python-gearman": "python-gearman 0.2.6",
    "gear": "gear 0.16 (TCP_NODELAY)",
    "gear-raw": "gear 0.16 (as shipped)",
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
    """utime+stime of a live process (all threads), from /proc/PID/stat."""
    if not pid:
        return None
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


def setup_impls(names: List[str], workdir: Path, out: Path, peers_venv: Path, want_plot: bool
                ) -> Tuple[Dict[str, Impl], Optional[str]]:
    impls: Dict[str, Impl] = {}
    peers_py: Optional[str] = None
    peers_reason = ""
    if PEER_IMPLS & set(names):
        peers_py, peers_reason = ensure_peers_venv(peers_venv, out / "peers-venv.log", want_plot)
    for name in names:
        im = Impl(name, IMPL_LABELS[name])
        if name == "pygearman":
            im.cmd = [sys.executable, str(HERE / "drivers" / "py_pygearman.py")]
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


class Runner:
    def __init__(self, impls: Dict[str, Impl], workdir: Path, timeout: float, batch: int,
                 filler: Optional[Impl]) -> None:
        self.impls = impls
        self.workdir = workdir
        self.timeout = timeout
        self.batch = batch
        self.filler = filler
        self.seq = 0

    def _env(self, im: Impl) -> Dict[str, str]:
        return {**os.environ, **im.env}

    def _start(self, im: Impl, args: List[str], tag: str) -> Child:
        self.seq += 1
        return Child([*im.cmd, *args], self._env(im), self.workdir, f"{self.seq:04d}-{tag}")

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
        host, port = "127.0.0.1", "0"
        try:
            server.start()
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
                main_args = ["worker", "drain", host, port, fn, str(n)]
            else:
                for i in range(v.workers):
                    workers.append(self._start(im, ["worker", "echo", host, port, fn, "0"],
                                               f"{v.name}-{im.name}-w{i}"))
                if workers:
                    self._wait_workers(server, fn, workers)
                main_args = ["client", v.mode, host, port, fn, str(n), str(v.size), str(self.batch)]
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
            na = [m for m in mine if m.status == "n/a"]
            errs = [m for m in mine if m.status == "error"]
            if na and not ok:
                s["na"] = na[0].error
            if errs:
                s["errors"] = [m.error for m in errs]
            row[name] = s
        out[v.name] = row
    # Ratios against C and PHP; a variant they have no API for (W3-many) is compared with their
    # first variant of the same workload (W3-tasks), and says so in "vs_<base>_ref".
    for v in variants:
        row = out[v.name]
        for base in ("c", "php"):
            ref_variant = v.name
            ref = row.get(base, {}).get("median")
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


def write_markdown(path: Path, meta: Dict[str, Any], summary: Dict[str, Dict[str, Dict[str, Any]]],
                   variants: List[Variant], impl_names: List[str]) -> None:
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
             "all echo workers together, and gearmand.")
    L.append("")
    L.append("## Summary: median rate (ratio vs raw C)")
    L.append("")
    L.append("| workload | N | " + " | ".join(IMPL_LABELS[i] for i in impl_names) + " |")
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
            label = IMPL_LABELS[i]
            if s.get("median") is None:
                why = s.get("na") or "; ".join(dict.fromkeys(s.get("errors", []))) or "not run"
                L.append(f"| {label} | n/a | | {s.get('ok_runs', 0)}/{s.get('runs', 0)} | | |"
                         + (" |" if lat else "") + f" | | | {why.replace('|', '/')} |")
                continue
            cells = [label, f"{fmt_rate(s['median'])} {v.unit}",
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
                L.append(f"- error, {IMPL_LABELS[i]}: {e}")
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
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W5",
                    help="comma list of W1..W5 (all their variants) or variant names, e.g. W1-batch")
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
            raise SystemExit(f"unknown workload {tok!r}; known: W1..W5, {', '.join(VARIANT_BY_NAME)}")
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
    write_markdown(out / "results.md", meta, summary, variants, list(meta["impls"]))
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
    impls, peers_py = setup_impls(impl_names, workdir, out, Path(args.peers_venv), want_plot)
    for im in impls.values():
        if im.unavailable:
            log(f"{im.name}: not available: {im.unavailable}")
    filler = next((impls[i] for i in ("c", "pygearman") if i in impls and not impls[i].unavailable), None)
    if filler is None and any(v.mode == "drain" for v in variants):
        c_exe, _ = build_c(workdir)  # W4 fills its queue with the C driver even when C is not compared
        filler = Impl("c", IMPL_LABELS["c"], [c_exe]) if c_exe else None
    runner = Runner(impls, workdir, args.timeout, args.batch, filler)

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
                              "size": v.size, "unit": v.unit, "what": v.what} for v in variants},
        "loadavg_start": [round(x, 2) for x in loadavg_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "total_seconds": total,
        "warnings": warnings,
        "note": args.note,
    }
    (out / "results.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "measurements": [asdict(m) for m in results]}, indent=1))
    write_markdown(out / "results.md", meta, summary, variants, impl_names)
    log(f"wrote {out / 'results.json'} and {out / 'results.md'} ({fmt_duration(total)})")
    if want_plot:
        log(try_plot(out, peers_py))
    if args.keep_logs:
        shutil.copytree(workdir, out / "logs", dirs_exist_ok=True, ignore=shutil.ignore_patterns("gmbench"))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


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
