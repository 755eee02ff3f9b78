"""A real gearmand on a free loopback port, for pygearman's tests and for yours.

    from pygearman.testing import GearmandServer
    with GearmandServer() as server:          # starts gearmand -L 127.0.0.1 -p <free port>
        client = GearmanClient(server.address)

With pytest, this module is also a plugin with two fixtures: ``gearmand`` (one server for the
session) and ``gearmand_factory`` (servers with any options, stopped after the test). It is
opt-in: installing pygearman registers no pytest plugin (an automatic one would make every
pytest session in the environment import the compiled extension). Load it in a conftest.py::

    pytest_plugins = ["pygearman.testing"]

(a top-level conftest.py: pytest rejects ``pytest_plugins`` in the conftest files of
sub-directories), or on the command line: ``pytest -p pygearman.testing``.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterator, List, Optional, Sequence, Type

__all__ = ["GearmandServer", "find_gearmand", "free_port", "GearmandNotFound"]

_SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/opt/homebrew/sbin", "/usr/local/opt/gearman/sbin")


class GearmandNotFound(RuntimeError):
    """No gearmand executable was found."""


def _is_c_gearmand(path: str) -> bool:
    """The C job server (gearmand from gearman-job-server) says "gearmand 1.1.20..." to
    --version; Debian's gearman-server package installs a Perl server as /usr/bin/gearmand too,
    which takes other options."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return re.search(r"^gearmand \d+\.\d+", out.stdout + out.stderr, re.M) is not None


def find_gearmand() -> str:
    """Path of the C gearmand: $GEARMAND, then PATH, then the usual sbin directories. Another
    program called gearmand (the Perl Gearman::Server of Debian's gearman-server) is skipped."""
    env = os.environ.get("GEARMAND")
    if env:
        return env
    candidates = []
    found = shutil.which("gearmand")
    if found:
        candidates.append(found)
    for d in _SEARCH_DIRS:
        p = os.path.join(d, "gearmand")
        if os.access(p, os.X_OK) and p not in candidates:
            candidates.append(p)
    for p in candidates:
        if _is_c_gearmand(p):
            return p
    if candidates:
        raise GearmandNotFound(f"no C gearmand found ({', '.join(candidates)} is another job "
                               f"server): install gearman-job-server or set $GEARMAND")
    raise GearmandNotFound("gearmand not found: install the job server (Debian: apt-get install "
                           "gearman-job-server) or set $GEARMAND to its path")


def _die_with_parent() -> Optional[Callable[[], None]]:
    """A preexec_fn that makes the child get SIGKILL when the process that started it dies
    (Linux prctl(PR_SET_PDEATHSIG)), so a test server never outlives a crashed or killed test
    run. Linux ties this to the starting *thread*: used only from the main thread, where the
    process and the thread end together; elsewhere the watchdog in _watch_parent is used."""
    if not sys.platform.startswith("linux") or \
            threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:                 # runs in the child between fork and exec
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:         # the parent died before prctl
            os._exit(1)
    return preexec


_WATCHDOG = """
import os, signal, sys, time
parent, child = int(sys.argv[1]), int(sys.argv[2])
while True:
    time.sleep(0.5)
    try:
        os.kill(child, 0)
    except OSError:
        sys.exit(0)                      # the server is gone: nothing to watch
    if os.getppid() != parent:
        try:
            os.kill(child, signal.SIGKILL)
        finally:
            sys.exit(0)
"""


def _watch_parent(child_pid: int) -> None:
    """Where the parent-death signal cannot be used: a small process that kills child_pid
    once this process is gone."""
    subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(child_pid)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, close_fds=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class GearmandServer:
    """One gearmand process that this object started and alone stops (by its own pid).

    ``exceptions``: start with ``--exceptions``. ``args``: more gearmand options, e.g.
    ``["--job-retries=3"]`` or a persistent queue. ``port``: fixed port (default: a free one).
    The log is kept in ``log_path`` (and printed by :meth:`log_tail` when a test fails).
    """

    def __init__(self, *, port: Optional[int] = None, host: str = "127.0.0.1",
                 exceptions: bool = False, threads: int = 1, args: Sequence[str] = (),
                 verbose: str = "INFO", workdir: Optional[str] = None,
                 startup_timeout: float = 10.0) -> None:
        self.host = host
        self.port = port or 0
        self.exceptions = exceptions
        self.threads = threads
        self.args: List[str] = list(args)
        self.verbose = verbose
        self.startup_timeout = startup_timeout
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pygearman-gearmand-"))
        self.log_path = self.workdir / "gearmand.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._fixed_port = port is not None
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` to hand to GearmanClient / GearmanWorker."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        """Process id of the gearmand this object started, or None when it is not running."""
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        """True while the gearmand this object started is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "GearmandServer":
        """Start gearmand and wait until it accepts connections."""
        if self.running:
            return self
        exe = find_gearmand()
        last_err = ""
        for _attempt in range(5):
            if not self._fixed_port:
                self.port = free_port(self.host)
            cmd = [exe, "-L", self.host, "-p", str(self.port), "-t", str(self.threads),
                   "--log-file", str(self.log_path), "--verbose", self.verbose,
                   "--pid-file", str(self.workdir / "gearmand.pid")]
            if self.exceptions:
                cmd.append("--exceptions")
            cmd += self.args
            with open(self.workdir / "gearmand.stderr", "ab") as err:
                preexec = _die_with_parent()
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=err,
                                             start_new_session=True, preexec_fn=preexec)
            if preexec is None:
                _watch_parent(self.proc.pid)
            if self._wait_ready():
                self._fixed_port = True  # a later start() (after stop()) reuses this port
                return self
            last_err = self.log_tail()
            self._kill_proc()
            if self._fixed_port:
                break
        raise RuntimeError(f"gearmand did not start on {self.address}:\n{last_err}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                    s.sendall(b"version\n")
                    s.settimeout(2.0)
                    if s.recv(100):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM our gearmand, then SIGKILL if it lingers. Idempotent and thread-safe."""
        with self._lock:
            proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill(proc)
            except ProcessLookupError:
                pass
        proc.wait()

    def kill(self) -> None:
        """kill -9 our gearmand (a crash, for fault tests). Thread-safe."""
        self._kill_proc()

    def _kill_proc(self) -> None:
        with self._lock:
            proc, self.proc = self.proc, None
        if proc is not None:
            self._kill(proc)

    @staticmethod
    def _kill(proc: "subprocess.Popen[bytes]") -> None:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def restart(self) -> "GearmandServer":
        """Stop and start again on the same port."""
        self.stop()
        self._fixed_port = True
        return self.start()

    def cleanup(self) -> None:
        """Stop the server and delete its temporary directory (unless ``workdir`` was given).
        What leaving the ``with`` block does."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of gearmand's log and of its stderr, for a failing test's
        report."""
        out = []
        for p in (self.log_path, self.workdir / "gearmand.stderr"):
            try:
                out += p.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                pass
        return "\n".join(out)

    def admin(self, command: str, timeout: float = 5.0) -> str:
        """Send one admin text command (``status``, ``workers``, ...) and return the reply."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(command.encode() + b"\r\n")
            buf = b""
            one_line = command.split()[0] in ("version", "getpid", "verbose", "maxqueue",
                                              "shutdown", "cancel", "create", "drop")
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if one_line and buf.endswith(b"\n"):
                    break
                if buf.endswith(b".\n") or buf.startswith(b"ERR"):
                    break
            return buf.decode(errors="replace")

    def __enter__(self) -> "GearmandServer":
        return self.start()

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<GearmandServer {self.address} pid={self.pid} {'running' if self.running else 'stopped'}>"


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def gearmand() -> Iterator[GearmandServer]:
        """A gearmand for the whole test session (give functions unique names)."""
        with GearmandServer() as server:
            yield server

    @pytest.fixture
    def gearmand_factory() -> Iterator["_Factory"]:
        """Start any number of gearmand servers (with options) that are stopped after the test."""
        factory = _Factory()
        try:
            yield factory
        finally:
            factory.cleanup()


class _Factory:
    def __init__(self) -> None:
        self.servers: List[GearmandServer] = []

    def __call__(self, **kwargs: object) -> GearmandServer:
        server = GearmandServer(**kwargs)  # type: ignore[arg-type]
        self.servers.append(server)
        return server.start()

    def cleanup(self) -> None:
        for s in self.servers:
            s.cleanup()
