"""GearmanClient: submit jobs (synchronous, task sets, background), follow and cancel them."""
from __future__ import annotations

import enum
from types import TracebackType
from typing import (TYPE_CHECKING, Any, Callable, Iterable, List, Literal, NamedTuple, Optional,
                    Sequence, Type, Union, overload)

from pygearman import _libgearman
from pygearman._libgearman import CompletedTasks, GearmanTask, JobStream
from pygearman._libgearman import job_method as _job_method
from pygearman._handle import JobHandle
from pygearman._servers import Servers, parse_server, parse_servers
from pygearman._types import (DataCallback, Name, StatusCallback, TaskCallback, TaskChunkCallback,
                              When, Workload)

__all__ = ["CompletedTasks", "GearmanClient", "GearmanTask", "JobHandle", "JobStream", "Priority", "JobStatus",
           "Workload"]

_UNSET: Any = _libgearman.UNSET


class Priority(enum.IntEnum):
    """Job priority (the values are libgearman's gearman_job_priority_t)."""

    HIGH = _libgearman.PRIORITY_HIGH
    NORMAL = _libgearman.PRIORITY_NORMAL
    LOW = _libgearman.PRIORITY_LOW


class JobStatus(NamedTuple):
    """What the job server knows about a job."""

    known: bool
    running: bool
    numerator: int
    denominator: int

    @property
    def fraction(self) -> Optional[float]:
        """numerator/denominator, or None when no progress was reported."""
        return self.numerator / self.denominator if self.denominator else None


def _refuse_ssl(what: str) -> None:
    """libgearman's TLS is a silent no-op unless it was built with it
    (docs/libgearman-1.1.20.md#tls-plaintext)."""
    from pygearman._features import has
    from pygearman.errors import NotSupportedError

    if has("ssl"):
        raise NotSupportedError(
            f"{what}(ssl=True): this libgearman has TLS, but pygearman does not wire up "
            "certificates yet; use a TLS tunnel (stunnel, spiped, WireGuard) meanwhile")
    raise NotSupportedError(
        f"{what}(ssl=True): the libgearman in use ({_libgearman.libgearman_version()}) was built "
        "without TLS, and would silently talk plaintext. Use a TLS tunnel to the job server "
        "(stunnel, spiped, an SSH tunnel or WireGuard), or build libgearman and gearmand with "
        "--enable-ssl.")


_HIGH = int(Priority.HIGH)
_NORMAL = int(Priority.NORMAL)
_LOW = int(Priority.LOW)
_HIGH_P = Priority.HIGH       # the members, read once
_LOW_P = Priority.LOW


# plain ints: reading Priority.HIGH & co. goes through the enum class's attribute hook on every
# call (about 1,000 instructions each on Python 3.11)
_PRIORITY_VALUES = frozenset((_HIGH, _NORMAL, _LOW))


def _priority(priority: object) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise TypeError(f"priority must be a Priority, not {type(priority).__name__}")
    if priority not in _PRIORITY_VALUES:
        raise ValueError(f"priority must be Priority.HIGH, NORMAL or LOW, not {priority!r}")
    return int(priority)


class GearmanClient(_libgearman.Client):
    """A Gearman client bound to libgearman.

    ``servers``: ``"host:port"``, ``"h1:4730,h2:4730"``, a list of those or of ``(host, port)``;
    ``None`` (default) reads ``$GEARMAN_SERVERS``, then falls back to ``127.0.0.1:4730``.
    ``timeout``: default deadline in seconds for every call (``None``: no deadline).
    ``namespace``: a prefix for every function name (the worker must use the same one).
    ``identifier``: this client's name in the server's admin view.

    No connection is made until the first call. Use one client per thread (``clone()``).
    PHP's method names are here in snake_case: ``do_normal``, ``do_high``, ``do_low``,
    ``do_background``, ``do_high_background``, ``do_low_background``, ``job_status``, ``echo``,
    ``add_task`` & co, ``run_tasks``, ``set_complete_callback`` & co.
    """

    def __init__(self, servers: Servers = None, *, timeout: Optional[float] = None,
                 namespace: Optional[str] = None, identifier: Optional[str] = None,
                 ssl: bool = False) -> None:
        if ssl:
            _refuse_ssl("GearmanClient")
        self._set_default_timeout(timeout)
        for host, port in parse_servers(servers):
            self._add_server(host.encode(), port)
        if namespace:
            self._set_namespace(namespace)
        if identifier is not None:
            self._set_identifier(identifier)

    # -- configuration -----------------------------------------------------------------------

    def add_server(self, host: str = "127.0.0.1", port: int = 4730) -> None:
        """Add one job server (``host`` may also be ``"host:port"``)."""
        if isinstance(host, str) and host.count(":") == 1 and port == 4730:
            h, p = parse_server(host)
        else:
            h, p = parse_server((host, port))
        self._add_server(h.encode(), p)

    def add_servers(self, servers: Servers) -> None:
        """Add job servers: ``"h1:4730,h2:4730"`` or a list."""
        for host, port in parse_servers(servers):
            self._add_server(host.encode(), port)

    def set_identifier(self, identifier: Optional[str]) -> None:
        """Name this client in the server's admin view (sent on the next connection)."""
        self._set_identifier(identifier)

    def set_namespace(self, namespace: Optional[str]) -> None:
        """Prefix every function name with ``namespace`` (as libgearman does: no separator)."""
        self._set_namespace(namespace)

    def clone(self) -> "GearmanClient":
        """A new client with the same servers and settings (libgearman's own clone drops the
        exceptions option; this one keeps everything). Use one per thread."""
        if self.closed:
            raise RuntimeError("this GearmanClient is closed")
        c = GearmanClient(self.servers, timeout=self.timeout, namespace=self.namespace,
                          identifier=self.identifier)
        for name, cb in self._callbacks_copy().items():
            c._set_callback(name, cb)
        return c

    # -- single jobs -------------------------------------------------------------------------

    @overload
    def submit(self, function: Name, workload: Workload = ..., *,
               priority: Priority = ..., background: Literal[False] = ...,
               unique: Optional[Name] = ..., timeout: Union[float, None, Any] = ...,
               when: None = ..., on_data: Optional[DataCallback] = ...,
               on_warning: Optional[DataCallback] = ...,
               on_status: Optional[StatusCallback] = ...) -> bytes: ...

    @overload
    def submit(self, function: Name, workload: Workload = ..., *,
               priority: Priority = ..., background: Literal[True],
               unique: Optional[Name] = ..., timeout: Union[float, None, Any] = ...,
               when: Optional[When] = ..., on_data: None = ..., on_warning: None = ...,
               on_status: None = ...) -> JobHandle: ...

    @overload
    def submit(self, function: Name, workload: Workload = ..., *,
               priority: Priority = ..., background: bool = ...,
               unique: Optional[Name] = ..., timeout: Union[float, None, Any] = ...,
               when: Optional[When] = ..., on_data: Optional[DataCallback] = ...,
               on_warning: Optional[DataCallback] = ...,
               on_status: Optional[StatusCallback] = ...) -> Union[bytes, JobHandle]: ...

    def submit(self, function: Name, workload: Workload = b"", *,
               priority: Priority = Priority.NORMAL, background: bool = False,
               unique: Optional[Name] = None, timeout: Union[float, None, Any] = _UNSET,
               when: Optional[When] = None,
               on_data: Optional[DataCallback] = None,
               on_warning: Optional[DataCallback] = None,
               on_status: Optional[StatusCallback] = None) -> Union[bytes, JobHandle]:
        """Submit a job. Foreground: waits and returns the result (bytes). Background:
        returns the job handle (a :class:`JobHandle`, a str that knows its server) as soon as
        the server has queued the job.

        ``when`` (background only): run no earlier than this datetime/timestamp. libgearman
        1.1.20 and gearmand have no timer: the job runs when a worker next asks for work after
        that time (pygearman workers ask at least every 100 ms).
        ``on_data(chunk)``, ``on_warning(chunk)``, ``on_status(numerator, denominator)``
        (foreground only) are called as the worker reports.

        Raises JobException (the worker raised; ``.message`` is its text), JobFailed,
        GearmanTimeoutError (deadline passed), GearmanConnectionError (no server reachable).
        """
        return self._submit(_priority(priority), bool(background), function, workload, unique,
                            timeout, on_data, on_warning, on_status, when)

    def stream(self, function: Name, workload: Workload = b"", *, unique: Optional[Name] = None,
               priority: Priority = Priority.NORMAL,
               timeout: Union[float, None, Any] = _UNSET) -> JobStream:
        """Run a foreground job and iterate over its WORK_DATA chunks as they arrive::

            with client.stream("crawl", url) as chunks:
                for chunk in chunks: ...
            chunks.result   # the final WORK_COMPLETE payload

        Leaving the loop early (``break``, an exception) abandons the job when the ``with``
        block ends: its connection is dropped and the client stays usable.
        """
        return self._stream_open(function, workload, unique, _priority(priority), timeout)

    def echo(self, data: Workload = b"ping", *,
             timeout: Union[float, None, Any] = _UNSET) -> bool:
        """Send ``data`` to every job server and check it comes back unchanged."""
        return self._echo(data, timeout)

    def job_status(self, handle: Name, *,
                   timeout: Union[float, None, Any] = _UNSET) -> JobStatus:
        """Status of a background job by its handle (``known=False`` once it has finished).
        A :class:`JobHandle` (what ``submit()`` returns) is asked of the server that issued
        it; a plain ``str`` of every server, and refused (ValueError) if several know it."""
        return JobStatus(*self._job_status(handle, timeout))

    def unique_status(self, unique: Name, *,
                      timeout: Union[float, None, Any] = _UNSET) -> JobStatus:
        """Status of a job by its unique key."""
        return JobStatus(*self._unique_status(unique, timeout))

    def cancel_job(self, handle: str, *, timeout: float = 5.0) -> bool:
        """Cancel a queued background job, through the admin protocol (libgearman's
        gearman_client_cancel_job does not work against gearmand). Returns True if the job was
        queued and its server accepted the cancel; False if no server knows the job or a worker
        is already running it (gearmand cannot stop a running job; it would run to the end).
        A plain ``str`` handle with several servers is refused when more than one knows it:
        pass the :class:`JobHandle` that ``submit()`` returned. gearmand marks a cancelled job
        and discards it when a worker would have taken it; until then it counts in ``status``."""
        from pygearman.admin import AdminClient

        if self.closed:
            raise RuntimeError("this GearmanClient is closed")
        if not isinstance(handle, str) or not handle or any(c.isspace() for c in handle):
            raise ValueError(f"not a job handle: {handle!r}")
        knew = []
        for server in self._servers_for_handle(handle):
            status = self.job_status(JobHandle(str(handle), server), timeout=timeout)
            if status.known:
                knew.append((server, status))
        if len(knew) > 1:
            raise ValueError(f"the handle {str(handle)!r} is known by several job servers "
                             f"({', '.join(s for s, _ in knew)}): pass the JobHandle that "
                             f"submit() returned")
        if not knew or knew[0][1].running:
            return False
        with AdminClient(knew[0][0], timeout=timeout) as admin:
            return bool(admin.cancel_job(str(handle)))

    # -- task sets ---------------------------------------------------------------------------

    def add_task(self, function: Name, workload: Workload = b"", context: Any = None,
                 unique: Optional[Name] = None, *, priority: Priority = Priority.NORMAL,
                 background: bool = False,
                 on_created: Optional[TaskCallback] = None,
                 on_data: Optional[TaskChunkCallback] = None,
                 on_warning: Optional[TaskChunkCallback] = None,
                 on_status: Optional[TaskCallback] = None,
                 on_complete: Optional[TaskCallback] = None,
                 on_fail: Optional[TaskCallback] = None,
                 on_exception: Optional[TaskCallback] = None) -> GearmanTask:
        """Add a job to the task set; nothing is sent until :meth:`run_tasks`. Callbacks get
        the GearmanTask (``on_data``/``on_warning`` also the chunk); per-task callbacks take
        precedence over the client-wide ``set_*_callback`` ones."""
        return self._add_task(function, workload, unique, _priority(priority), bool(background),
                              context, on_created, on_data, on_warning, on_status, on_complete,
                              on_fail, on_exception)

    def add_task_high(self, function: Name, workload: Workload = b"", context: Any = None,
                      unique: Optional[Name] = None, **callbacks: Any) -> GearmanTask:
        """PHP ``addTaskHigh``: :meth:`add_task` at high priority."""
        return self.add_task(function, workload, context, unique, priority=_HIGH_P, **callbacks)

    def add_task_low(self, function: Name, workload: Workload = b"", context: Any = None,
                     unique: Optional[Name] = None, **callbacks: Any) -> GearmanTask:
        """PHP ``addTaskLow``: :meth:`add_task` at low priority."""
        return self.add_task(function, workload, context, unique, priority=_LOW_P, **callbacks)

    def add_task_background(self, function: Name, workload: Workload = b"", context: Any = None,
                            unique: Optional[Name] = None, **callbacks: Any) -> GearmanTask:
        """PHP ``addTaskBackground``: a background job in the task set; its task ends
        in state ``'created'`` with its ``handle`` once the server has queued it."""
        return self.add_task(function, workload, context, unique, background=True, **callbacks)

    def add_task_high_background(self, function: Name, workload: Workload = b"",
                                 context: Any = None, unique: Optional[Name] = None,
                                 **callbacks: Any) -> GearmanTask:
        """PHP ``addTaskHighBackground``: :meth:`add_task_background` at high priority."""
        return self.add_task(function, workload, context, unique, priority=_HIGH_P,
                             background=True, **callbacks)

    def add_task_low_background(self, function: Name, workload: Workload = b"",
                                context: Any = None, unique: Optional[Name] = None,
                                **callbacks: Any) -> GearmanTask:
        """PHP ``addTaskLowBackground``: :meth:`add_task_background` at low priority."""
        return self.add_task(function, workload, context, unique, priority=_LOW_P,
                             background=True, **callbacks)

    def add_task_status(self, handle: str, context: Any = None, *,
                        on_status: Optional[TaskCallback] = None,
                        on_complete: Optional[TaskCallback] = None) -> GearmanTask:
        """Add a status query for a job handle to the task set; after run_tasks the task's
        ``known``, ``running``, ``numerator`` and ``denominator`` hold the answer."""
        if not isinstance(handle, str) or not handle:
            raise TypeError("handle must be a non-empty str")
        return self._add_task(None, b"", None, _NORMAL, False, context, None, None,
                              None, on_status, on_complete, None, None, handle)

    def run_tasks(self, *, timeout: Union[float, None, Any] = _UNSET,
                  batch: int = 250) -> List[GearmanTask]:
        """Submit every task added with ``add_task*()`` and wait until all have finished.

        Every task is in flight at once, on every job server: at most ``batch`` tasks per
        connection, and for slow jobs more connections to the same server (up to 16; beyond
        16 × ``batch`` unfinished jobs per server, the next go out as earlier ones finish).
        Tasks with the same function and unique are one job: it runs once and every such
        task gets its outcome. Callbacks run in this thread as events arrive; if one raises,
        the run stops and the exception propagates, every task keeping the state it reached.
        """
        return self._run_tasks(timeout, batch)

    def as_completed(self, *, timeout: Union[float, None, Any] = _UNSET,
                     batch: int = 250) -> CompletedTasks:
        """Run the task set like :meth:`run_tasks`, handing each task out as it finishes::

            for task in client.as_completed(timeout=30):
                print(task.unique, task.state, task.result)

        Use it in a ``with`` block (or call ``close()``) when the loop may stop early: the jobs
        still running are then abandoned. A deadline or a lost connection is raised from the
        loop; every task keeps the state it reached.
        """
        return self._as_completed(timeout, batch)

    @property
    def last_handle(self) -> Optional[JobHandle]:
        """The job handle of the last single job (``submit``/``do_*``), foreground ones too,
        or None if no server acknowledged it."""
        return self._job_handle()

    def clear_callbacks(self) -> None:
        """Forget the client-wide task callbacks (``set_*_callback``)."""
        self._clear_callbacks()

    def set_created_callback(self, callback: Optional[TaskCallback]) -> None:
        """PHP ``setCreatedCallback``: ``callback(task)`` once the server has queued a task's
        job (JOB_CREATED; ``task.handle`` is set). Client-wide: for the tasks of a task set
        without an ``on_created`` of their own. ``None`` removes it."""
        self._set_callback("created", callback)

    def set_data_callback(self, callback: Optional[TaskChunkCallback]) -> None:
        """PHP ``setDataCallback``: ``callback(task, chunk)`` for each WORK_DATA chunk a
        task's worker sends. Client-wide, for tasks without an ``on_data``; ``None`` removes
        it."""
        self._set_callback("data", callback)

    def set_warning_callback(self, callback: Optional[TaskChunkCallback]) -> None:
        """PHP ``setWarningCallback``: ``callback(task, chunk)`` for each WORK_WARNING a
        task's worker sends. Client-wide, for tasks without an ``on_warning``; ``None``
        removes it."""
        self._set_callback("warning", callback)

    def set_status_callback(self, callback: Optional[TaskCallback]) -> None:
        """PHP ``setStatusCallback``: ``callback(task)`` when a task's worker reports progress
        (``task.numerator``/``task.denominator``), and with the answer of an
        :meth:`add_task_status` task. Client-wide, for tasks without an ``on_status``;
        ``None`` removes it."""
        self._set_callback("status", callback)

    def set_complete_callback(self, callback: Optional[TaskCallback]) -> None:
        """PHP ``setCompleteCallback``: ``callback(task)`` when a task's job has completed
        (``task.result``). Client-wide, for tasks without an ``on_complete``; ``None``
        removes it."""
        self._set_callback("complete", callback)

    def set_fail_callback(self, callback: Optional[TaskCallback]) -> None:
        """PHP ``setFailCallback``: ``callback(task)`` when a task's job failed (WORK_FAIL;
        ``task.error``). Client-wide, for tasks without an ``on_fail``; ``None`` removes
        it."""
        self._set_callback("fail", callback)

    def set_exception_callback(self, callback: Optional[TaskCallback]) -> None:
        """PHP ``setExceptionCallback``: ``callback(task)`` when a task's worker raised
        (WORK_EXCEPTION; ``task.exception`` is its text). Client-wide, for tasks without an
        ``on_exception``; ``None`` removes it."""
        self._set_callback("exception", callback)

    # -- batches -----------------------------------------------------------------------------

    def submit_many(self, function: Name, workloads: Iterable[Workload], *,
                    priority: Priority = Priority.NORMAL,
                    uniques: Optional[Sequence[Optional[Name]]] = None,
                    timeout: Union[float, None, Any] = _UNSET, batch: int = 250,
                    return_exceptions: bool = False) -> List[Any]:
        """Run many jobs of one function in parallel and return their results in input order.

        Everything per job runs in C, and every job is in flight at once (``batch`` per
        connection, more connections as needed; see :meth:`run_tasks`). Jobs with the same
        unique are one job for gearmand: it runs once and each such slot gets its result.
        A job that fails leaves its exception (JobException, JobFailed) in its place when
        ``return_exceptions=True``; otherwise the first failure is raised after every job has
        run, with the full list on the exception's ``results`` attribute. If the whole call
        fails (deadline, lost connection), the error's ``results`` holds what had arrived:
        results and handles, an exception for a job a server had acknowledged, and ``None``
        for a job no server acknowledged.
        """
        return self._submit_many(function, workloads, uniques, _priority(priority), False,
                                 timeout, batch, return_exceptions)

    def submit_background_many(self, function: Name, workloads: Iterable[Workload], *,
                               priority: Priority = Priority.NORMAL,
                               uniques: Optional[Sequence[Optional[Name]]] = None,
                               timeout: Union[float, None, Any] = _UNSET,
                               batch: int = 250) -> List[str]:
        """Queue many background jobs of one function; returns their handles in input order.
        If a batch cannot be submitted, the error's ``results`` attribute holds the handles of
        the jobs that were queued (None for the rest)."""
        return self._submit_many(function, workloads, uniques, _priority(priority), True,
                                 timeout, batch, False)

    # -- life cycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection (an open stream is abandoned). Idempotent."""
        self._close()

    def __enter__(self) -> "GearmanClient":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ",".join(self.servers)
        return f"<GearmanClient {state}>"

    # -- the PHP extension's names (GearmanClient::doNormal & co, in snake_case) ------------

    def do_job_handle(self) -> Optional[JobHandle]:
        """PHP ``doJobHandle``: the handle of the last job (see :attr:`last_handle`)."""
        return self.last_handle

    # do_normal & co are compiled methods (job_method): a ``def`` here delegating to _submit
    # would add a Python frame, about a sixth of a background submit's CPU. The stubs below
    # are what type checkers see; the methods have the same signatures and docstrings.
    if TYPE_CHECKING:
        def do_normal(self, function: Name, workload: Workload = b"",
                      unique: Optional[Name] = None, *,
                      timeout: Union[float, None, Any] = _UNSET) -> bytes: ...

        def do_high(self, function: Name, workload: Workload = b"",
                    unique: Optional[Name] = None, *,
                    timeout: Union[float, None, Any] = _UNSET) -> bytes: ...

        def do_low(self, function: Name, workload: Workload = b"",
                   unique: Optional[Name] = None, *,
                   timeout: Union[float, None, Any] = _UNSET) -> bytes: ...

        def do_background(self, function: Name, workload: Workload = b"",
                          unique: Optional[Name] = None, *,
                          timeout: Union[float, None, Any] = _UNSET) -> JobHandle: ...

        def do_high_background(self, function: Name, workload: Workload = b"",
                               unique: Optional[Name] = None, *,
                               timeout: Union[float, None, Any] = _UNSET) -> JobHandle: ...

        def do_low_background(self, function: Name, workload: Workload = b"",
                              unique: Optional[Name] = None, *,
                              timeout: Union[float, None, Any] = _UNSET) -> JobHandle: ...
    else:
        do_normal = _job_method(_NORMAL, False, "do_normal",
                                "PHP ``doNormal``: run a job at normal priority and return its result.")
        do_high = _job_method(_HIGH, False, "do_high",
                              "PHP ``doHigh``: run a job at high priority and return its result.")
        do_low = _job_method(_LOW, False, "do_low",
                             "PHP ``doLow``: run a job at low priority and return its result.")
        do_background = _job_method(_NORMAL, True, "do_background",
                                    "PHP ``doBackground``: queue a job at normal priority; "
                                    "returns its handle (a :class:`JobHandle`).")
        do_high_background = _job_method(_HIGH, True, "do_high_background",
                                         "PHP ``doHighBackground``: queue a job at high priority; "
                                         "returns its handle (a :class:`JobHandle`).")
        do_low_background = _job_method(_LOW, True, "do_low_background",
                                        "PHP ``doLowBackground``: queue a job at low priority; "
                                        "returns its handle (a :class:`JobHandle`).")


