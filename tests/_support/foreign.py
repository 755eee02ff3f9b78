"""A foreign worker process (PHP, the ``gearman`` command-line tool, a C program...), started
and waited for until gearmand lists it."""
from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Iterator, List, Sequence

import pytest

from pygearman.testing import GearmandServer

from _support.gearmand import available_workers


def read_logs(logs: Sequence[Path]) -> str:
    return "\n".join(f"--- {p.name}:\n{p.read_text(errors='replace')}" for p in logs if p.exists())


@contextlib.contextmanager
def foreign_worker(cmd: List[str], tmp_path: Path, server: GearmandServer, fn: str, tag: str,
                   timeout: float = 20.0) -> Iterator["subprocess.Popen[bytes]"]:
    """Start a worker process, wait until gearmand lists it for fn, kill it on exit. Its stdout
    and stderr go to tmp_path/TAG.stdout and TAG.stderr, shown if it fails to register."""
    out_path, err_path = tmp_path / f"{tag}.stdout", tmp_path / f"{tag}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + timeout
        while available_workers(server, fn) == 0:
            if proc.poll() is not None:
                pytest.fail(f"worker {tag} exited early with {proc.returncode}:\n"
                            f"{read_logs([out_path, err_path])}")
            if time.monotonic() > deadline:
                pytest.fail(f"worker {tag} did not register {fn!r} within {timeout} s:\n"
                            f"{read_logs([out_path, err_path])}")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
