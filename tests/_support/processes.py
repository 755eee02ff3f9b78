"""Child processes: a command or a Python snippet run to completion, or a snippet kept running
and watched line by line (``Child``, through the ``child`` fixture in conftest.py)."""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

# Child scripts start with this: SIGINT must raise KeyboardInterrupt even if the child inherited
# SIG_IGN (e.g. from a shell that started the test run in the background).
PRELUDE = """\
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import pygearman
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    """Write a file (a PHP script, a child Python script...) and return its path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run(cmd: Sequence[str], timeout: float = 30.0, input: Optional[str] = None,
        env: Optional[Dict[str, str]] = None) -> "subprocess.CompletedProcess[str]":
    """Run a command to completion (text output captured); fails the test if it outlives timeout."""
    try:
        return subprocess.run(list(cmd), stdin=None if input is not None else subprocess.DEVNULL,
                              input=input, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{list(cmd)!r} hung for more than {timeout} s (stdout={e.stdout!r}, "
                    f"stderr={e.stderr!r})")


def run_python(tmp_path: Path, name: str, source: str, *args: str, timeout: float = 50.0,
               env: Optional[Dict[str, str]] = None) -> "subprocess.CompletedProcess[str]":
    """Write source to tmp_path/name.py and run it with this Python to completion."""
    script = write(tmp_path, f"{name}.py", source)
    return run([sys.executable, script, *args], timeout=timeout, env=env)


class Child:
    """A child Python running one script; stdout lines are collected by a reader thread, stderr
    goes to a file. Made by the ``child`` fixture, which kills it at teardown."""

    def __init__(self, tmp_path: Path, name: str, source: str, args: Sequence[str],
                 env: Optional[Dict[str, str]] = None) -> None:
        script = write(tmp_path, f"{name}.py", source)
        self.stderr_path = tmp_path / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([sys.executable, script, *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.seen: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, prefix: str, timeout: float = 20.0) -> str:
        """The next stdout line starting with prefix; fails the test on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"child did not print {prefix!r} within {timeout} s; "
                            f"stdout {self.seen}, stderr:\n{self.stderr()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(5)
                pytest.fail(f"child exited ({self.proc.returncode}) before printing {prefix!r}; "
                            f"stdout {self.seen}, stderr:\n{self.stderr()}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def signal_and_wait(self, sig: int, within: float) -> Tuple[int, float]:
        """Send sig; returns (returncode, seconds until the process was gone). Fails the test if
        the child is still running max(within, 10) s later; the caller checks the time itself."""
        exited = threading.Event()
        ended = [0.0]

        def reap() -> None:
            self.proc.wait()    # a blocking waitpid: exact, unlike wait(timeout)'s polling
            ended[0] = time.monotonic()
            exited.set()

        waiter = threading.Thread(target=reap, daemon=True)
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        waiter.start()
        if not exited.wait(max(within, 10.0)):
            pytest.fail(f"child still running 10 s after signal {sig}; stdout {self.seen}, "
                        f"stderr:\n{self.stderr()}")
        rc = self.proc.returncode
        elapsed = ended[0] - t0
        self.drain()
        return rc, elapsed

    def drain(self) -> None:
        """Collect the rest of stdout into seen (after the child has exited)."""
        self._reader.join(5)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)

    def cpu_seconds(self) -> float:
        """utime + stime of the child (all its threads), from /proc/PID/stat."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
