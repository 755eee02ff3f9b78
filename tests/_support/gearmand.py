"""What a gearmand reports through its admin protocol, and polling until a condition holds."""
from __future__ import annotations

import time
from typing import Callable, List

import pytest

from pygearman.admin import AdminClient
from pygearman.testing import GearmandServer


def available_workers(server: GearmandServer, fn: str) -> int:
    """Workers registered for fn, from the admin 'status' command."""
    for line in server.admin("status").splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == fn:
            return int(parts[3])
    return 0


def queued(server: GearmandServer, fn: str) -> int:
    """Jobs gearmand holds for fn (queued + running), from the admin 'status' command."""
    for line in server.admin("status").splitlines():
        parts = line.split("\t")
        if parts[0] == fn:
            return int(parts[1])
    return 0


def client_ids(server: GearmandServer) -> List[str]:
    """The identifiers of every connection, from the admin 'workers' command."""
    with AdminClient(server.address, timeout=5) as admin:
        return [w.client_id for w in admin.workers()]


def workers_for(server: GearmandServer, fn: str) -> int:
    """Connections that registered fn, from the admin 'workers' command."""
    with AdminClient(server.address, timeout=5) as admin:
        return sum(fn in w.functions for w in admin.workers())


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             interval: float = 0.02) -> float:
    """Poll until predicate() is true; returns the seconds it took (fails the test otherwise)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - t0
