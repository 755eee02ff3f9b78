"""Run job functions in N worker processes or threads: graceful drain, recycling, limits.

    from pygearman.runner import Runner
    Runner("127.0.0.1:4730", {"resize": "myapp.jobs:resize", "title": title},
           processes=4, max_jobs=1000, limits={"resize": 2}).run()

Each process (or thread) owns its own GearmanWorker connection: a *slot*. With
``processes=P, threads=T`` there are P processes of max(T, 1) slots each; with ``processes=0``
there are T slots as threads of the calling process. ``run()`` blocks until SIGTERM, SIGINT
(Ctrl-C) or :meth:`Runner.stop`; then every slot finishes the job in hand, sends its result,
and exits (the parent forwards SIGTERM to its children and waits). A second SIGINT kills the
children at once. A process that has done ``max_jobs`` jobs or lived ``max_seconds`` finishes
and the parent starts a replacement (threads are recycled the same way: a new connection).
``limits={"resize": 2}`` registers ``resize`` on at most 2 slots, i.e. at most 2 such jobs
run at once across this runner. Each job logs one INFO line on the ``pygearman.runner``
logger with its duration.

Poison jobs: a job that kills its worker process (``os._exit``, a crash in a C extension, the
OOM killer) is requeued by gearmand and would kill every replacement. Each process notes in
shared memory which job each of its slots is running; when a process dies, the runner learns
which job it held, and once one job has killed ``max_job_deaths`` processes (default 3) the
next process that receives it fails it at once with a JobException saying so, instead of
running it. One WARNING line says so.
"""
from __future__ import annotations

import ctypes
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from pygearman._servers import Servers, format_server, parse_servers
from pygearman.errors import Retry
from pygearman.worker import GearmanJob, GearmanWorker, JobFunction

__all__ = ["Runner", "FunctionRef", "resolve", "plan_slots"]

log = logging.getLogger("pygearman.runner")

FunctionRef = Union[str, JobFunction]
"""A job function, or ``"module:attribute"`` naming one (importable in the worker process)."""

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def resolve(ref: FunctionRef) -> JobFunction:
    """``"package.module:attr.sub"`` -> the object (callables are returned as they are)."""
    if callable(ref):
        return ref
    if not isinstance(ref, str):
        raise TypeError(f"a job function must be callable or 'module:attr', not {type(ref).__name__}")
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{ref!r}: expected 'module:function' (e.g. 'myapp.jobs:resize')")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"{ref!r}: cannot import {module_name!r}: {e}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{ref!r}: {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"{ref!r} is not callable ({type(obj).__name__})")
    return obj  # type: ignore[no-any-return]


def plan_slots(names: Sequence[str], slots: int, limits: Mapping[str, int]) -> List[List[str]]:
    """Which functions each slot registers: a function limited to n gets n consecutive slots
    (the Runner puts slot k in process k % processes, so they are in different processes), each
    limited function starting after the previous one's, to spread them out."""
    plan: List[List[str]] = [[] for _ in range(slots)]
    offset = 0
    for name in names:
        limit = limits.get(name)
        if limit is None or limit >= slots:
            for k in range(slots):
                plan[k].append(name)
            continue
        for i in range(limit):
            plan[(offset + i) % slots].append(name)
        offset += limit
    return plan


class _JobCounter:
    """Counts jobs of one process (or thread slot) and stops its workers at ``max_jobs``."""

    def __init__(self, max_jobs: Optional[int], on_limit: Callable[[], None]) -> None:
        self.max_jobs = max_jobs
        self.on_limit = on_limit
        self.count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1
            hit = self.max_jobs is not None and self.count >= self.max_jobs
        if hit:
            self.on_limit()


class _Marker:
    """Where a worker process notes the job each of its slots is running (shared memory the
    parent reads when the process dies)."""

    SIZE = 700          # function (512) + unique (63) + handle (63) + separators, NUL-padded

    def __init__(self, block: Any, index: int) -> None:
        self.block = block
        self.start = index * self.SIZE

    def set(self, key: bytes) -> None:
        key = key[:self.SIZE - 1]
        self.block[self.start:self.start + len(key) + 1] = key + b"\0"

    def clear(self) -> None:
        self.block[self.start] = b"\0"

    @staticmethod
    def read(block: Any, index: int) -> bytes:
        raw = bytes(block[index * _Marker.SIZE:(index + 1) * _Marker.SIZE])
        return raw.split(b"\0", 1)[0]


def _job_key(name: str, job: GearmanJob) -> bytes:
    """Names one job across redeliveries: gearmand keeps its handle and unique."""
    return "\t".join((name, job.unique, job.handle)).encode("utf-8", "replace")


class _Quarantined(Exception):
    pass


def _wrap(name: str, fn: JobFunction, slot: int, counter: _JobCounter,
          marker: Optional[_Marker] = None,
          quarantine: Optional[Mapping[bytes, str]] = None) -> JobFunction:
    """The job function, plus one INFO log line per job, the recycling count and (processes)
    the poison-job bookkeeping."""

    def job_function(job: GearmanJob) -> Any:
        start = time.perf_counter()
        outcome = "done"
        key = _job_key(name, job) if marker is not None else b""
        try:
            if marker is not None:
                why = quarantine.get(key) if quarantine else None
                if why is not None:
                    raise _Quarantined(why)
                marker.set(key)
            return fn(job)
        except Retry:
            outcome = "handed back (Retry)"
            raise
        except BaseException as e:
            outcome = f"raised {type(e).__name__}: {e}" if str(e) else f"raised {type(e).__name__}"
            raise
        finally:
            if marker is not None:
                marker.clear()
            log.info("job %s %s %s in %.3f s (pid %d, slot %d)", name, job.handle, outcome,
                     time.perf_counter() - start, os.getpid(), slot)
            counter.add()

    job_function.__name__ = getattr(fn, "__name__", name)
    job_function.__qualname__ = getattr(fn, "__qualname__", name)
    return job_function


@dataclass
class _Spec:
    """What a worker process needs (picklable for the spawn start method)."""

    servers: List[str]
    functions: Dict[str, FunctionRef]
    slots: List[Tuple[int, List[str]]]          # (slot number, function names)
    max_jobs: Optional[int]
    max_seconds: Optional[float]
    identifier: str
    namespace: Optional[str]
    max_retries: int
    parent_pid: int
    log_setup: Optional[Tuple[int, str]] = None   # (level, format) for spawned children
    timeouts: Dict[str, int] = field(default_factory=dict)
    quarantine: Dict[bytes, str] = field(default_factory=dict)   # job key -> why it is failed


class _Slots:
    """The slots of one process: threads, each running one GearmanWorker."""

    def __init__(self, spec: _Spec, functions: Mapping[str, JobFunction], recycle: bool,
                 marks: Any = None) -> None:
        self.spec = spec
        self.marks = marks              # shared block of _Marker slots (process mode)
        self.functions = functions
        self.recycle = recycle          # thread mode: a slot makes a new worker after recycling
        self.stopping = False
        self.workers: Dict[int, GearmanWorker] = {}
        self.errors: List[BaseException] = []

    def stop(self) -> None:
        """Signal-safe: a flag and GearmanWorker.stop() (a byte on a pipe)."""
        self.stopping = True
        for w in list(self.workers.values()):
            w.stop()

    def _make(self, slot: int, names: List[str], counter: _JobCounter) -> GearmanWorker:
        s = self.spec
        w = GearmanWorker(s.servers, identifier=f"{s.identifier}-{os.getpid()}-{slot}",
                          namespace=s.namespace, max_retries=s.max_retries)
        marker = None
        if self.marks is not None:
            marker = _Marker(self.marks, [k for k, _ in s.slots].index(slot))
        for name in names:
            w.add_function(name, _wrap(name, self.functions[name], slot, counter, marker,
                                       s.quarantine),
                           s.timeouts.get(name, 0))
        return w

    def run_slot(self, slot: int, names: List[str],
                 process_counter: Optional[_JobCounter]) -> None:
        s = self.spec
        try:
            while not self.stopping:
                started = time.monotonic()
                if process_counter is not None:
                    counter = process_counter
                else:
                    holder: List[GearmanWorker] = []
                    counter = _JobCounter(s.max_jobs, lambda: holder[0].stop() if holder else None)
                w = self._make(slot, names, counter)
                if process_counter is None:
                    holder.append(w)
                self.workers[slot] = w
                try:
                    if self.stopping:
                        break
                    w.run(timeout=s.max_seconds)
                finally:
                    del self.workers[slot]
                    w.close()
                if not self.recycle or self.stopping:
                    break
                log.info("slot %d recycled after %d jobs in %.1f s", slot, counter.count,
                         time.monotonic() - started)
        except BaseException as e:
            log.error("slot %d failed: %s: %s", slot, type(e).__name__, e)
            self.errors.append(e)
            self.stopping = True
            for other in list(self.workers.values()):
                other.stop()

    def start(self, process_counter: Optional[_JobCounter]) -> List[threading.Thread]:
        threads = []
        for slot, names in self.spec.slots:
            t = threading.Thread(target=self.run_slot, args=(slot, names, process_counter),
                                 name=f"pygearman-slot-{slot}", daemon=True)
            t.start()
            threads.append(t)
        return threads


def _join_all(threads: List[threading.Thread], slots: _Slots,
              parent_pid: Optional[int] = None) -> None:
    """Join with short waits so the main thread keeps handling signals; stop when orphaned."""
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.2)
        if parent_pid is not None and os.getppid() != parent_pid and not slots.stopping:
            log.warning("the runner's parent process is gone: stopping")
            slots.stop()


# Blocked in the parent while it starts a worker process, so the child starts with them blocked
# (fork and exec keep the mask): a SIGTERM that reaches the child before _child_main has put its
# own handler in place stays pending instead of running a copy of the parent's handler (which
# ignores it in a child) or killing the child; _child_main unblocks them once its handler is in.
_START_BLOCKED = {signal.SIGTERM, signal.SIGINT}


def _child_main(spec: _Spec, marks: Any = None) -> None:
    """A worker process: its slots until SIGTERM, max_jobs or max_seconds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the parent, which drains us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if spec.log_setup is not None and not logging.getLogger().handlers:
        level, fmt = spec.log_setup
        logging.basicConfig(level=level, format=fmt)
    try:
        functions = {name: resolve(ref) for name, ref in spec.functions.items()}
    except (ValueError, TypeError) as e:
        log.error("%s", e)
        sys.exit(3)
    slots = _Slots(spec, functions, recycle=False, marks=marks)
    counter = _JobCounter(spec.max_jobs, slots.stop)

    def on_term(signum: int, frame: Optional[FrameType]) -> None:
        slots.stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _START_BLOCKED)   # a pending SIGTERM: on_term
    threads = slots.start(counter)
    _join_all(threads, slots, spec.parent_pid)
    if slots.errors:
        sys.exit(1)
    sys.exit(0)


@dataclass
class _Child:
    index: int
    spec: _Spec
    process: Any = None            # multiprocessing.Process (context-specific type)
    started: float = 0.0
    restart_at: float = 0.0
    failures: int = 0
    marks: Any = None              # shared memory: the job each slot is running


class Runner:
    """Serve job functions from several processes or threads (see the module docstring).

    ``functions``: ``{"name": callable or "module:attr"}``; with the ``spawn`` start method
    they must be importable (``"module:attr"`` or module-level functions).
    ``processes``: worker processes (0: threads in this process). ``threads``: threads (slots)
    per process, or in this process when ``processes=0``. ``max_jobs`` / ``max_seconds``:
    recycle a process (slot) after that many jobs / seconds. ``limits``: ``{"name": n}``, at
    most n slots register that function. ``timeouts``: ``{"name": seconds}`` registered with
    CAN_DO_TIMEOUT. ``start_method``: ``"fork"`` (default where available) or ``"spawn"``.
    ``drain_timeout``: after a stop, kill processes still busy after that many seconds
    (``None``: wait for the jobs in hand however long they take). ``max_job_deaths``: a job
    that killed this many worker processes is failed instead of run again (processes only).
    """

    def __init__(self, servers: Servers = None,
                 functions: Optional[Mapping[str, FunctionRef]] = None, *,
                 processes: int = 1, threads: int = 0, max_jobs: Optional[int] = None,
                 max_seconds: Optional[float] = None, limits: Optional[Mapping[str, int]] = None,
                 timeouts: Optional[Mapping[str, int]] = None,
                 identifier: str = "runner", namespace: Optional[str] = None,
                 max_retries: int = 3, start_method: Optional[str] = None,
                 drain_timeout: Optional[float] = None, max_job_deaths: int = 3) -> None:
        self.servers = [format_server(h, p) for h, p in parse_servers(servers)]
        if not functions:
            raise ValueError("no functions to run: pass {'name': function or 'module:attr'}")
        for name, ref in functions.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"function names must be non-empty str, got {name!r}")
            if not callable(ref) and not isinstance(ref, str):
                raise TypeError(f"function {name!r}: expected a callable or 'module:attr', "
                                f"not {type(ref).__name__}")
        self.functions: Dict[str, FunctionRef] = dict(functions)
        for what, value in (("processes", processes), ("threads", threads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{what} must be an int >= 0, got {value!r}")
        if processes == 0 and threads == 0:
            raise ValueError("nothing to run: give processes >= 1 or threads >= 1")
        if max_jobs is not None and (isinstance(max_jobs, bool) or not isinstance(max_jobs, int)
                                     or max_jobs < 1):
            raise ValueError(f"max_jobs must be an int >= 1 or None, got {max_jobs!r}")
        if max_seconds is not None and not (isinstance(max_seconds, (int, float))
                                            and max_seconds > 0):
            raise ValueError(f"max_seconds must be > 0 or None, got {max_seconds!r}")
        self.limits: Dict[str, int] = dict(limits or {})
        for name, n in self.limits.items():
            if name not in self.functions:
                raise ValueError(f"limits: {name!r} is not one of the functions "
                                 f"{sorted(self.functions)}")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"limits[{name!r}] must be an int >= 1, got {n!r}")
        self.timeouts: Dict[str, int] = dict(timeouts or {})
        if isinstance(max_job_deaths, bool) or not isinstance(max_job_deaths, int) \
                or max_job_deaths < 1:
            raise ValueError(f"max_job_deaths must be an int >= 1, got {max_job_deaths!r}")
        self.max_job_deaths = max_job_deaths
        self._deaths: Dict[bytes, int] = {}
        self._quarantine: Dict[bytes, str] = {}
        if start_method is None:
            start_method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"start_method must be one of {multiprocessing.get_all_start_methods()}")
        self.processes = processes
        self.threads = threads
        self.max_jobs = max_jobs
        self.max_seconds = float(max_seconds) if max_seconds is not None else None
        self.identifier = identifier
        self.namespace = namespace
        self.max_retries = max_retries
        self.start_method = start_method
        self.drain_timeout = drain_timeout
        self._stop_requested = False
        self._kill_requested = False
        self._slots: Optional[_Slots] = None
        self._children: Dict[int, _Child] = {}
        self._pid = os.getpid()
        self._running = False

    # -- planning ----------------------------------------------------------------------------

    def plan(self) -> List[List[Tuple[int, List[str]]]]:
        """Per process (one entry for thread mode), its slots as (slot number, functions).
        Slots that would register nothing (all their functions are limited elsewhere) are
        left out."""
        groups = max(self.processes, 1)
        per = max(self.threads, 1) if self.processes else self.threads
        total = groups * per
        plan = plan_slots(list(self.functions), total, self.limits)
        out: List[List[Tuple[int, List[str]]]] = [[] for _ in range(groups)]
        for k, names in enumerate(plan):
            if names:
                out[k % groups].append((k, names))
        return [p for p in out if p]

    def _spec(self, slots: List[Tuple[int, List[str]]]) -> _Spec:
        log_setup = None
        if self.start_method != "fork":
            root = logging.getLogger()
            fmt = _LOG_FORMAT
            if root.handlers and root.handlers[0].formatter is not None:
                fmt = root.handlers[0].formatter._fmt or _LOG_FORMAT
            log_setup = (log.getEffectiveLevel(), fmt)
        return _Spec(servers=self.servers, functions=self.functions, slots=slots,
                     max_jobs=self.max_jobs, max_seconds=self.max_seconds,
                     identifier=self.identifier, namespace=self.namespace,
                     max_retries=self.max_retries, parent_pid=os.getpid(), log_setup=log_setup,
                     timeouts=self.timeouts)

    # -- control -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Drain and return from :meth:`run`. Safe from any thread and from signal handlers."""
        self._stop_requested = True
        if self._slots is not None:
            self._slots.stop()

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        if os.getpid() != self._pid:     # a just-forked child, before it set its own handlers
            return
        if self._stop_requested and signum == signal.SIGINT:
            self._kill_requested = True
        self.stop()

    def run(self) -> None:
        """Run until SIGTERM/SIGINT (when called from the main thread) or :meth:`stop`.
        Raises ValueError at once if a ``"module:attr"`` cannot be imported."""
        if self._running:
            raise RuntimeError("this Runner is already running")
        resolved = {name: resolve(ref) for name, ref in self.functions.items()}
        self._running = True
        self._pid = os.getpid()
        old: Dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                old[signum] = signal.signal(signum, self._on_signal)
        try:
            if self.processes:
                self._run_processes()
            else:
                self._run_threads(resolved)
        finally:
            for signum, handler in old.items():
                signal.signal(signum, handler)
            self._running = False
            self._stop_requested = False
            self._kill_requested = False

    # -- thread mode -------------------------------------------------------------------------

    def _run_threads(self, functions: Dict[str, JobFunction]) -> None:
        plan = self.plan()
        spec = self._spec(plan[0])
        slots = _Slots(spec, functions, recycle=True)
        self._slots = slots
        try:
            if self._stop_requested:
                return
            log.info("runner: %d threads serving %s on %s", len(spec.slots),
                     ", ".join(self.functions), ",".join(self.servers))
            threads = slots.start(None)
            _join_all(threads, slots)
            if slots.errors:
                raise slots.errors[0]
        finally:
            self._slots = None

    # -- process mode ------------------------------------------------------------------------

    def _start_child(self, ctx: Any, child: _Child) -> None:
        child.spec.quarantine = dict(self._quarantine)
        if child.marks is None:
            child.marks = ctx.RawArray(ctypes.c_char, _Marker.SIZE * len(child.spec.slots))
        else:
            ctypes.memset(child.marks, 0, _Marker.SIZE * len(child.spec.slots))
        p = ctx.Process(target=_child_main, args=(child.spec, child.marks),
                        name=f"pygearman-runner-{child.index}", daemon=False)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _START_BLOCKED)
        try:
            p.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)   # here: our handler runs now
        child.process = p
        child.started = time.monotonic()
        log.info("worker process %d started (pid %d): %s", child.index, p.pid,
                 "; ".join(f"slot {k}: {','.join(n)}" for k, n in child.spec.slots))

    def _run_processes(self) -> None:
        ctx = multiprocessing.get_context(self.start_method)
        plan = self.plan()
        self._children = {i: _Child(i, self._spec(slots)) for i, slots in enumerate(plan)}
        log.info("runner: %d processes (%s) serving %s on %s", len(plan), self.start_method,
                 ", ".join(self.functions), ",".join(self.servers))
        if len(plan) < self.processes:
            log.warning("runner: only %d of %d processes have functions to serve (limits)",
                        len(plan), self.processes)
        try:
            for child in self._children.values():
                if self._stop_requested:
                    break
                self._start_child(ctx, child)
            while not self._stop_requested:
                self._supervise(ctx)
        finally:
            self._drain()

    def _supervise(self, ctx: Any) -> None:
        live = [c for c in self._children.values() if c.process is not None]
        sentinels = [c.process.sentinel for c in live]
        if sentinels:
            multiprocessing.connection.wait(sentinels, timeout=0.2)
        else:
            time.sleep(0.2)
        now = time.monotonic()
        for c in live:
            if c.process.is_alive():
                continue
            c.process.join()
            code = c.process.exitcode
            lived = now - c.started
            c.process = None
            if self._stop_requested:
                continue
            if code == 0:
                c.failures = 0
                c.restart_at = now
                log.info("worker process %d exited after %.1f s (recycled); starting a "
                         "replacement", c.index, lived)
            else:
                self._note_deaths(c, code)
                c.failures = c.failures + 1 if lived < 10 else 1
                delay = min(0.5 * 2 ** (c.failures - 1), 30.0) if lived < 10 else 0.0
                c.restart_at = now + delay
                log.warning("worker process %d exited with code %s after %.1f s; restarting "
                            "in %.1f s", c.index, code, lived, delay)
        for c in self._children.values():
            if c.process is None and not self._stop_requested and now >= c.restart_at:
                self._start_child(ctx, c)

    def _note_deaths(self, c: _Child, code: Optional[int]) -> None:
        """A worker process died: count it against the jobs its slots were running."""
        if c.marks is None:
            return
        for i in range(len(c.spec.slots)):
            key = _Marker.read(c.marks, i)
            if not key:
                continue
            n = self._deaths[key] = self._deaths.get(key, 0) + 1
            fn, _, rest = key.decode("utf-8", "replace").partition("\t")
            unique, _, handle = rest.partition("\t")
            if n >= self.max_job_deaths and key not in self._quarantine:
                self._quarantine[key] = (
                    f"job {fn!r} (handle {handle}, unique {unique}) was not run again: it "
                    f"killed {n} worker processes (last exit code {code})")
                log.warning("job %s %s (unique %s) killed %d worker processes; it is failed "
                            "from now on instead of run", fn, handle, unique, n)
        if len(self._deaths) > 10000:
            self._deaths.clear()

    def _drain(self) -> None:
        """SIGTERM every child (each finishes its jobs in hand), wait, kill leftovers."""
        live = [c for c in self._children.values() if c.process is not None]
        if not live:
            return
        log.info("stopping %d worker processes (finishing the jobs in hand)", len(live))
        for c in live:
            if c.process.is_alive():
                try:
                    os.kill(c.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = (time.monotonic() + self.drain_timeout) if self.drain_timeout is not None \
            else None
        while True:
            alive = [c for c in live if c.process.is_alive()]
            if not alive:
                break
            if self._kill_requested or (deadline is not None and time.monotonic() >= deadline):
                for c in alive:
                    log.warning("killing worker process %d (pid %d)", c.index, c.process.pid)
                    c.process.kill()
                break
            multiprocessing.connection.wait([c.process.sentinel for c in alive], timeout=0.2)
        for c in live:
            c.process.join()
            c.process = None
        log.info("runner stopped")

    def __repr__(self) -> str:
        mode = (f"{self.processes} processes" if self.processes else f"{self.threads} threads")
        state = "running" if self._running else "idle"
        return (f"<Runner {','.join(self.functions)} on {','.join(self.servers)}, {mode}, "
                f"{state}>")

    @property
    def pids(self) -> List[int]:
        """Worker process ids right now (process mode)."""
        return [c.process.pid for c in list(self._children.values())
                if c.process is not None and c.process.pid is not None]
