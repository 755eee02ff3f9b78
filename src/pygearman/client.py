"""GearmanClient: submit jobs synchronously or in the background, and ask for their status."""
from __future__ import annotations

import enum
from types import TracebackType
from typing import NamedTuple, Optional, Type, Union

from pygearman import _libgearman
from pygearman._servers import Servers, parse_server, parse_servers

__all__ = ["GearmanClient", "Priority", "JobStatus", "Workload"]

Workload = Union[bytes, bytearray, memoryview, str]
_UNSET = _libgearman.UNSET


class Priority(enum.IntEnum):
    """Job priority (the values are libgearman's gearman_job_priority_t)."""

    HIGH = _libgearman.PRIORITY_HIGH
    NORMAL = _libgearman.PRIORITY_NORMAL
    LOW = _libgearman.PRIORITY_LOW


class JobStatus(NamedTuple):
    """What the job server knows about a job handle."""

    known: bool
    running: bool
    numerator: int
    denominator: int

    @property
    def fraction(self) -> Optional[float]:
        """numerator/denominator, or None when no progress was reported."""
        return self.numerator / self.denominator if self.denominator else None


class GearmanClient(_libgearman.Client):
    """A Gearman client bound to libgearman.

    ``servers``: ``"host:port"``, ``"h1:4730,h2:4730"``, a list of those or of ``(host, port)``;
    ``None`` (default) reads ``$GEARMAN_SERVERS``, then falls back to ``127.0.0.1:4730``.
    ``timeout``: default deadline in seconds for every call (``None``: no deadline).

    No connection is made until the first call. Use one client per thread (``clone()``).
    PHP's method names are here in snake_case: ``do_normal``, ``do_high``, ``do_low``,
    ``do_background``, ``do_high_background``, ``do_low_background``, ``job_status``, ``echo``.
    """

    def __init__(self, servers: Servers = None, *, timeout: Optional[float] = None) -> None:
        self._set_default_timeout(timeout)
        for host, port in parse_servers(servers):
            self._add_server(host.encode(), port)

    def add_server(self, host: str = "127.0.0.1", port: int = 4730) -> None:
        """Add one job server (``host`` may also be ``"host:port"``)."""
        if isinstance(host, str) and ":" in host and port == 4730 and not host.count(":") > 1:
            h, p = parse_server(host)
        else:
            h, p = parse_server((host, port))
        self._add_server(h.encode(), p)

    def add_servers(self, servers: Servers) -> None:
        """Add job servers: ``"h1:4730,h2:4730"`` or a list."""
        for host, port in parse_servers(servers):
            self._add_server(host.encode(), port)

    def submit(self, function: Union[str, bytes], workload: Workload = b"", *,
               priority: Priority = Priority.NORMAL, background: bool = False,
               unique: Optional[Union[str, bytes]] = None,
               timeout: Union[float, None, _libgearman._Unset] = _UNSET) -> Union[bytes, str]:
        """Submit a job. Foreground: waits and returns the result (bytes). Background:
        returns the job handle (str) as soon as the server has queued the job.

        Raises JobException (the worker raised; ``.message`` is its text), JobFailed,
        GearmanTimeoutError (deadline passed), GearmanConnectionError (no server reachable).
        """
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise TypeError(f"priority must be a Priority, not {type(priority).__name__}")
        return self._do(int(priority), bool(background), function, workload, unique, timeout)

    def job_status(self, handle: Union[str, bytes], *,
                   timeout: Union[float, None, _libgearman._Unset] = _UNSET) -> JobStatus:
        """Status of a background job by its handle (``known=False`` once it has finished)."""
        return JobStatus(*self._job_status(handle, timeout))

    def __enter__(self) -> "GearmanClient":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ",".join(self.servers)
        return f"<GearmanClient {state}>"
