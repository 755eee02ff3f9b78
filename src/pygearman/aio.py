"""asyncio front end: AsyncClient and AsyncWorker, built on threads (libgearman exposes no fds).

    async with AsyncClient("127.0.0.1:4730", timeout=30) as client:
        result = await client.submit("title", "hello")
        ts = client.task_set()
        for line in lines:
            ts.add("title", line)
        async for task in ts.as_completed():
            print(task.result())

libgearman has no public way to hand its sockets to an event loop
(docs/libgearman-1.1.20.md#no-public-fds), so the I/O runs in threads that each own a
GearmanClient (clients are not thread-safe), with the GIL released while they wait. Plain
``submit()`` calls are pipelined: every call made in one turn of the event loop goes out in one
batch, run in C by one thread (all jobs in flight at once, as ``submit_many`` does), and the
results come back in one ``loop.call_soon_threadsafe`` per batch. ``submit()`` queues its job
when called and returns an asyncio future (no coroutine, no Task per call) that
``create_task()`` also takes as a coroutine (benchmarks/aio_bench.py measures 10,000
concurrent ``await client.submit()``). Calls with ``on_data``/``on_status``/``when``, status
queries and streams take a thread each.

Cancellation: cancelling an ``await`` raises ``CancelledError`` in the awaiting coroutine at
once. A call cancelled before a thread starts its batch is never sent. A call already
running cannot be interrupted from another thread (libgearman has no wakeup for clients): its
batch keeps running until its jobs end or the ``timeout`` passes, and the result is dropped
(``abandoned`` counts such calls). The job itself keeps running on the server (Gearman has no
way to cancel a foreground job). Give calls a ``timeout`` when a job might never finish.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
import os
import queue
import threading
import time
import weakref
from types import TracebackType
from typing import (Any, AsyncIterator, Callable, Coroutine, Deque, Dict, Iterable, List,
                    Literal, Optional, Sequence, Set, Tuple, Type, TypeVar, Union, cast,
                    overload)

from pygearman import _libgearman
from pygearman._libgearman import GearmanJob, GearmanTask
from pygearman._servers import Servers
from pygearman._types import (DataCallback, JobFunction, Name, Result, StatusCallback, Timeout,
                              When, Workload)
from pygearman.client import GearmanClient, JobStatus, Priority
from pygearman.errors import JobFailed
from pygearman.worker import GearmanWorker

__all__ = ["AsyncClient", "AsyncJobStream", "AsyncTaskSet", "AsyncTask", "AsyncWorker", "AsyncJob"]

_log = logging.getLogger("pygearman.aio")

# Calls of one loop turn beyond this many go out in several batches, the first ones while the
# loop is still making the rest; each further batch of the same turn may hold _CHUNK_GROWTH
# times as many (a thread and a connection per batch cost client CPU: 10,000 calls of one turn
# go out in 3 batches, not 10).
_PIPELINE_CHUNK = 1000
_CHUNK_GROWTH = 4

T = TypeVar("T")
_UNSET: Any = _libgearman.UNSET
_get_running_loop = asyncio.events._get_running_loop


from pygearman._aio_worker import (AnyJobFunction, AsyncJob, AsyncJobFunction, AsyncWorker,
                                   SyncJobFunction, _post, _settle)

# documented (and pickled) as part of this module
AsyncJob.__module__ = AsyncWorker.__module__ = __name__


# -- a pool of threads, each with its own client ------------------------------------------------

class _ClientPool:
    """Daemon threads, each owning one client made by ``factory``; calls queue when all are
    busy.

    Daemon threads because a call without a deadline may block for as long as its job runs, and
    that must not keep the interpreter from exiting. Idle threads exit after ``idle_timeout``.
    """

    def __init__(self, factory: Callable[[], GearmanClient], max_workers: int,
                 idle_timeout: float) -> None:
        self._factory = factory
        self._max = max_workers
        self._idle_timeout = idle_timeout
        self._cond = threading.Condition()
        self._items: Deque[Tuple["concurrent.futures.Future[Any]", Callable[[GearmanClient], Any]]] = \
            collections.deque()
        self._threads: Set[threading.Thread] = set()
        self._idle = 0
        self._busy = 0
        self._closed = False
        self._seq = 0

    @property
    def threads(self) -> int:
        with self._cond:
            return len(self._threads)

    @property
    def busy(self) -> int:
        with self._cond:
            return self._busy

    def submit(self, fn: Callable[[GearmanClient], T]) -> "concurrent.futures.Future[T]":
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("this AsyncClient is closed")
            self._items.append((fut, fn))
            self._cond.notify()
            if len(self._items) > self._idle and len(self._threads) < self._max:
                self._seq += 1
                t = threading.Thread(target=self._main, name=f"pygearman-aio-{self._seq}",
                                     daemon=True)
                self._threads.add(t)
                t.start()
        return fut

    def _next(self) -> Optional[Tuple["concurrent.futures.Future[Any]",
                                      Callable[[GearmanClient], Any]]]:
        with self._cond:
            self._idle += 1
            try:
                until = time.monotonic() + self._idle_timeout
                while not self._items and not self._closed:
                    left = until - time.monotonic()
                    if left <= 0:
                        return None
                    self._cond.wait(left)
                if not self._items:
                    return None
                item = self._items.popleft()
                self._busy += 1
                return item
            finally:
                self._idle -= 1

    def _main(self) -> None:
        client: Optional[GearmanClient] = None
        try:
            while True:
                item = self._next()
                if item is None:
                    return
                fut, fn = item
                try:
                    if not fut.set_running_or_notify_cancel():
                        continue          # cancelled before it started: never sent
                    try:
                        if client is None:
                            client = self._factory()
                        result = fn(client)
                    except BaseException as e:
                        fut.set_exception(e)
                    else:
                        fut.set_result(result)
                finally:
                    with self._cond:
                        self._busy -= 1
        finally:
            with self._cond:
                self._threads.discard(threading.current_thread())
            if client is not None:
                client.close()

    def _after_fork(self) -> None:
        """In a forked child: the parent's threads do not exist here (nor do their clients),
        its lock may have been held, its queued calls belong to the parent's loop."""
        self._cond = threading.Condition()
        self._items = collections.deque()
        self._threads = set()
        self._idle = self._busy = 0

    def shutdown(self) -> None:
        """Refuse new calls, cancel queued ones, let idle threads exit. Running calls finish
        by themselves (their job ends or their deadline passes)."""
        with self._cond:
            self._closed = True
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
        for fut, _fn in items:
            fut.cancel()


# -- the client ---------------------------------------------------------------------------------

# Every AsyncClient, so that a forked child can reset them (their threads stayed in the parent).
_clients: "weakref.WeakSet[AsyncClient]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class AsyncClient:
    """An asyncio Gearman client.

    ``servers``, ``timeout`` (default deadline of every call, seconds; ``None``: none),
    ``namespace`` and ``identifier`` are those of :class:`~pygearman.GearmanClient`.
    Calls run in up to ``max_workers`` threads, each with its own client (more calls wait for a
    free thread); a thread idle for ``idle_timeout`` seconds exits. See the module docstring
    for what cancelling a running call does.
    """

    def __init__(self, servers: Servers = None, *, timeout: Optional[float] = None,
                 namespace: Optional[str] = None, identifier: Optional[str] = None,
                 max_workers: int = 16, idle_timeout: float = 30.0) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an int >= 1, got {max_workers!r}")
        if not isinstance(idle_timeout, (int, float)) or not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be a number > 0, got {idle_timeout!r}")
        # checks every argument now; each pool thread then makes its own client alike
        with GearmanClient(servers, timeout=timeout, namespace=namespace,
                           identifier=identifier) as probe:
            self._servers = probe.servers
            self._timeout = probe.timeout
        self._pool = _ClientPool(functools.partial(
            GearmanClient, list(self._servers), timeout=timeout, namespace=namespace,
            identifier=identifier), max_workers, float(idle_timeout))
        self._abandoned = 0
        self._lock = threading.Lock()
        self._closed = False
        # submissions of the current loop turn, by (loop, timeout); _open is the latest one
        # (checked first: consecutive calls almost always share loop and timeout)
        self._batches: Dict[Any, _Batch] = {}
        self._open: Optional[_Batch] = None
        self._limits: Dict[Any, int] = {}        # size of the next batch, in a turn that filled one
        # batches a thread is running (their cancelled calls are the abandoned ones)
        self._running: Set[_Batch] = set()
        _clients.add(self)

    def _after_fork(self) -> None:
        """In a forked child: start afresh (threads, batches and calls were the parent's)."""
        self._pool._after_fork()
        self._lock = threading.Lock()
        self._abandoned = 0
        self._batches = {}
        self._open = None
        self._limits = {}
        self._running = set()

    # -- introspection -----------------------------------------------------------------------

    @property
    def servers(self) -> List[str]:
        """The job servers, as ``host:port`` strings, in the order given."""
        return list(self._servers)

    @property
    def timeout(self) -> Optional[float]:
        """Default deadline in seconds of each call (None: wait as long as it takes)."""
        return self._timeout

    @property
    def closed(self) -> bool:
        """True after :meth:`aclose`; new calls then raise RuntimeError."""
        return self._closed

    @property
    def threads(self) -> int:
        """Threads alive in this client's pool (busy or idle)."""
        return self._pool.threads

    @property
    def busy(self) -> int:
        """Threads running a call right now (including abandoned ones)."""
        return self._pool.busy

    @property
    def abandoned(self) -> int:
        """Cancelled calls whose thread is still waiting for the job or its deadline."""
        with self._lock:
            return self._abandoned + sum(f.cancelled() for b in self._running
                                         for f in b.futures)

    # -- plumbing ----------------------------------------------------------------------------

    def _batch_for(self, loop: asyncio.AbstractEventLoop, timeout: Timeout) -> "_Batch":
        """The batch of this loop turn for this timeout (sent by _flush, scheduled once)."""
        key = (id(loop), type(timeout), timeout if isinstance(timeout, (int, float))
               or timeout is None else id(timeout))
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch(loop, timeout, key,
                                                self._limits.get(key, _PIPELINE_CHUNK))
            loop.call_soon(self._flush, batch)
        self._open = batch
        return batch

    def _flush(self, batch: "_Batch") -> None:
        """Hand a batch to a thread (once: at the end of its loop turn, or when full)."""
        if batch.sent:
            return                       # already sent (a full chunk)
        batch.sent = True
        if len(batch.futures) >= batch.limit:
            self._limits[batch.key] = batch.limit * _CHUNK_GROWTH     # the next of this turn
        else:
            self._limits.pop(batch.key, None)                        # the turn has ended
        if self._batches.get(batch.key) is batch:
            del self._batches[batch.key]
        if self._open is batch:
            self._open = None
        if self._closed:
            _settle_all(batch.futures, RuntimeError("this AsyncClient is closed"))
            return
        cfut = self._pool.submit(functools.partial(self._run_batch, batch))
        cfut.add_done_callback(functools.partial(_batch_done, batch))

    def _run_batch(self, batch: "_Batch", client: GearmanClient) -> List[Any]:
        """In a pool thread. Calls cancelled by now are never sent; calls cancelled while the
        batch runs count as abandoned until it ends (``abandoned``)."""
        futures = batch.futures
        live = [i for i, f in enumerate(futures) if not f.done()]
        if len(live) != len(futures):
            batch.futures = [futures[i] for i in live]
            batch.jobs = [batch.jobs[i] for i in live]
        if not live:
            return []
        with self._lock:
            self._running.add(batch)
        try:
            return client._submit_jobs(batch.jobs, batch.timeout, 250)
        finally:
            with self._lock:
                self._running.discard(batch)

    async def _call(self, fn: Callable[[GearmanClient], T]) -> T:
        loop = asyncio.get_running_loop()
        afut: asyncio.Future[T] = loop.create_future()
        cfut = self._pool.submit(fn)

        def copy(cf: "concurrent.futures.Future[T]") -> None:
            if afut.done() or cf.cancelled():
                return
            exc = cf.exception()
            if exc is not None:
                afut.set_exception(exc)
            else:
                afut.set_result(cf.result())

        def done(cf: "concurrent.futures.Future[T]") -> None:
            if cf.cancelled():
                return
            if not _post(loop, copy, cf):
                _log.debug("event loop closed: result of a call dropped")

        cfut.add_done_callback(done)
        try:
            return await afut
        except asyncio.CancelledError:
            if not cfut.cancel() and not cfut.done():
                self._abandon(cfut)
            raise

    def _abandon(self, cfut: "concurrent.futures.Future[Any]") -> None:
        with self._lock:
            self._abandoned += 1

        def finished(cf: "concurrent.futures.Future[Any]") -> None:
            with self._lock:
                self._abandoned -= 1
            _log.debug("an abandoned call finished: %s",
                       "cancelled" if cf.cancelled() else (cf.exception() or "result dropped"))

        cfut.add_done_callback(finished)

    # -- single jobs -------------------------------------------------------------------------

    @overload
    def submit(self, function: Name, workload: Workload = ..., *,
               priority: Priority = ..., background: Literal[False] = ...,
               unique: Optional[Name] = ..., timeout: Timeout = ...,
               when: Optional[When] = ..., on_data: Optional[DataCallback] = ...,
               on_warning: Optional[DataCallback] = ...,
               on_status: Optional[StatusCallback] = ...) -> Coroutine[Any, Any, bytes]: ...

    @overload
    def submit(self, function: Name, workload: Workload = ..., *,
               priority: Priority = ..., background: Literal[True],
               unique: Optional[Name] = ..., timeout: Timeout = ...,
               when: Optional[When] = ..., on_data: Optional[DataCallback] = ...,
               on_warning: Optional[DataCallback] = ...,
               on_status: Optional[StatusCallback] = ...) -> Coroutine[Any, Any, str]: ...

    @overload
    def submit(self, function: Name, workload: Workload = ..., *,
               priority: Priority = ..., background: bool,
               unique: Optional[Name] = ..., timeout: Timeout = ...,
               when: Optional[When] = ..., on_data: Optional[DataCallback] = ...,
               on_warning: Optional[DataCallback] = ...,
               on_status: Optional[StatusCallback] = ...
               ) -> Coroutine[Any, Any, Union[bytes, str]]: ...

    def submit(self, function: Name, workload: Workload = b"", *,
               priority: Priority = Priority.NORMAL, background: bool = False,
               unique: Optional[Name] = None, timeout: Timeout = _UNSET,
               when: Optional[When] = None, on_data: Optional[DataCallback] = None,
               on_warning: Optional[DataCallback] = None,
               on_status: Optional[StatusCallback] = None
               ) -> Coroutine[Any, Any, Union[bytes, str]]:
        """Submit a job: foreground returns its result (bytes), background its handle (str).
        ``on_data(chunk)``, ``on_warning(chunk)`` and ``on_status(numerator, denominator)``
        (foreground only) are called in the event loop's thread as the worker reports.
        Raises what :meth:`GearmanClient.submit` raises (JobException, JobFailed,
        GearmanTimeoutError, GearmanConnectionError).

        Called in a running loop without callbacks or ``when``, the job is queued at once and
        the call returns an asyncio future of its outcome (which ``create_task()`` also takes);
        otherwise it returns a coroutine. Calls made in the same turn of the event loop go out
        together, as one pipelined batch run in C by one of the client's threads, and their
        results come back together (one wake-up of the loop per batch, not per job)."""
        # No coroutine and no Task per call: ~8 us/job less loop CPU with gather() (W6).
        loop = _get_running_loop()
        if loop is None or self._closed or when is not None or on_data is not None \
                or on_warning is not None or on_status is not None:
            return self._submit(function, workload, priority, background, unique, timeout,
                                when, on_data, on_warning, on_status)
        fut = _Call(loop=loop)
        batch = self._open
        if batch is None or batch.loop is not loop or batch.timeout is not timeout:
            batch = self._batch_for(loop, timeout)
        futures = batch.futures
        futures.append(fut)
        batch.jobs.append((function, workload, unique, priority, background))
        if len(futures) >= batch.limit:
            # a big turn: send what is there now, so that a thread works on it while the loop
            # goes on making the rest (the scheduled _flush then finds it sent)
            self._flush(batch)
        return fut

    async def _submit(self, function: Name, workload: Workload, priority: Priority,
                      background: bool, unique: Optional[Name], timeout: Timeout,
                      when: Optional[When], on_data: Optional[DataCallback],
                      on_warning: Optional[DataCallback],
                      on_status: Optional[StatusCallback]) -> Union[bytes, str]:
        self._check_open()
        loop = asyncio.get_running_loop()
        if when is None and on_data is None and on_warning is None and on_status is None:
            return await self.submit(function, workload, priority=priority,
                                     background=background, unique=unique, timeout=timeout)

        def on_loop(cb: Optional[Callable[..., Any]]) -> Optional[Callable[..., Any]]:
            if cb is None:
                return None
            if not callable(cb):
                raise TypeError(f"callbacks must be callable, not {type(cb).__name__}")
            return lambda *a: _post(loop, cb, *a)

        callbacks = (on_loop(on_data), on_loop(on_warning), on_loop(on_status))
        return await self._call(functools.partial(
            _do_submit, function, workload, priority, background, unique, timeout, when,
            callbacks))

    async def submit_background(self, function: Name, workload: Workload = b"", *,
                                priority: Priority = Priority.NORMAL,
                                unique: Optional[Name] = None, timeout: Timeout = _UNSET,
                                when: Optional[When] = None) -> str:
        """Queue a background job; returns its handle once the server has it. Without
        ``when``, calls made in one turn of the loop go out together with the ``submit()``
        calls of that turn, as one pipelined batch."""
        self._check_open()
        if when is None:
            handle = await self.submit(function, workload, priority=priority, background=True,
                                       unique=unique, timeout=timeout)
            assert isinstance(handle, str)
            return handle
        result = await self._call(functools.partial(
            _do_submit, function, workload, priority, True, unique, timeout, when,
            (None, None, None)))
        assert isinstance(result, str)
        return result

    async def job_status(self, handle: Name, *, timeout: Timeout = _UNSET) -> JobStatus:
        """Status of a background job by its handle."""
        self._check_open()
        return await self._call(lambda c: c.job_status(handle, timeout=timeout))

    async def unique_status(self, unique: Name, *, timeout: Timeout = _UNSET) -> JobStatus:
        """Status of a job by its unique key."""
        self._check_open()
        return await self._call(lambda c: c.unique_status(unique, timeout=timeout))

    async def echo(self, data: Workload = b"ping", *, timeout: Timeout = _UNSET) -> bool:
        """ECHO round trip to the job server(s)."""
        self._check_open()
        return await self._call(lambda c: c.echo(data, timeout=timeout))

    async def cancel_job(self, handle: str, *, timeout: float = 5.0) -> bool:
        """Cancel a queued background job (see :meth:`GearmanClient.cancel_job`)."""
        self._check_open()
        return await self._call(lambda c: c.cancel_job(handle, timeout=timeout))

    # -- batches -----------------------------------------------------------------------------

    async def submit_many(self, function: Name, workloads: Iterable[Workload], *,
                          priority: Priority = Priority.NORMAL,
                          uniques: Optional[Sequence[Optional[Name]]] = None,
                          timeout: Timeout = _UNSET, batch: Optional[int] = None,
                          return_exceptions: bool = False) -> List[Any]:
        """Run many jobs of one function (in one thread, pipelined in C); results in input
        order. See :meth:`GearmanClient.submit_many` (``batch=None``: its default)."""
        self._check_open()
        items = list(workloads)
        extra: Dict[str, Any] = {} if batch is None else {"batch": batch}
        return await self._call(lambda c: c.submit_many(
            function, items, priority=priority, uniques=uniques, timeout=timeout,
            return_exceptions=return_exceptions, **extra))

    async def submit_background_many(self, function: Name, workloads: Iterable[Workload], *,
                                     priority: Priority = Priority.NORMAL,
                                     uniques: Optional[Sequence[Optional[Name]]] = None,
                                     timeout: Timeout = _UNSET,
                                     batch: Optional[int] = None) -> List[str]:
        """Queue many background jobs; returns their handles in input order."""
        self._check_open()
        items = list(workloads)
        extra: Dict[str, Any] = {} if batch is None else {"batch": batch}
        return await self._call(lambda c: c.submit_background_many(
            function, items, priority=priority, uniques=uniques, timeout=timeout, **extra))

    # -- task sets ---------------------------------------------------------------------------

    def stream(self, function: Name, workload: Workload = b"", *, unique: Optional[Name] = None,
               priority: Priority = Priority.NORMAL,
               timeout: Timeout = _UNSET) -> "AsyncJobStream":
        """A foreground job whose WORK_DATA chunks arrive as they come::

            async with client.stream("crawl", url) as chunks:
                async for chunk in chunks: ...
            chunks.result          # the final WORK_COMPLETE payload

        The job runs in one of the client's threads (``GearmanClient.stream()``); leaving the
        loop early abandons it once the next chunk (or the deadline) arrives.
        """
        self._check_open()
        return AsyncJobStream(self, function, workload, unique, priority, timeout)

    def task_set(self, *, timeout: Timeout = _UNSET) -> "AsyncTaskSet":
        """A set of jobs that run in parallel; see :class:`AsyncTaskSet`. ``timeout`` bounds
        each batch of tasks (default: the client's)."""
        self._check_open()
        return AsyncTaskSet(self, timeout)

    # -- lifecycle ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")

    async def aclose(self) -> None:
        """Refuse new calls and cancel the queued ones. Idempotent. Calls already running finish
        by themselves (their threads are daemons; see the module docstring)."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ",".join(self.servers)
        return f"<AsyncClient {state} threads={self.threads}>"


class _Batch:
    """The ``submit()`` calls of one loop turn with one timeout: sent together by one thread."""

    __slots__ = ("loop", "timeout", "key", "limit", "futures", "jobs", "sent")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: Timeout, key: Any,
                 limit: int) -> None:
        self.loop = loop
        self.timeout = timeout
        self.key = key
        self.limit = limit               # sent as soon as it holds this many calls
        self.futures: List[_Call] = []
        self.jobs: List[Tuple[Any, Any, Any, Any, Any]] = []
        self.sent = False


class _Call(asyncio.Future, Coroutine[Any, Any, Any]):  # type: ignore[type-arg]
    """What ``AsyncClient.submit()`` returns: an asyncio future of the job's outcome, which
    can also be driven as a coroutine, so ``await``, ``asyncio.gather()``, ``wait_for()`` and
    ``create_task()`` all take it (gather and wait_for take it as the future it is: no Task;
    on Python 3.9 they wrap it in a Task, as ensure_future() tests for coroutines first).
    Checked on 3.9 to 3.13, with the eager task factory of 3.12+ too."""

    __slots__ = ()

    def send(self, value: Any) -> Any:
        if not self.done():
            self._asyncio_future_blocking = True
            return self                  # a Task then waits for this future
        raise StopIteration(self.result())

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        # a Task driving this call was cancelled (or got an exception): the call goes with it
        self.cancel()
        if val is None:
            val = typ() if isinstance(typ, type) else typ
        if tb is not None:
            val = val.with_traceback(tb)
        raise val

    def close(self) -> None:
        self.cancel()


def _batch_done(batch: _Batch, cf: "concurrent.futures.Future[List[Any]]") -> None:
    """In the thread that ran the batch (or the one that closed the pool)."""
    outcomes: Union[List[Any], BaseException]
    if cf.cancelled():
        outcomes = RuntimeError("this AsyncClient was closed")
    else:
        err = cf.exception()
        outcomes = err if err is not None else cf.result()
    if not _post(batch.loop, _settle_batch, batch.futures, outcomes):
        _log.debug("event loop closed: results of a batch dropped")


def _settle_all(futures: List[_Call], exc: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(exc)


def _settle_batch(futures: List[_Call], outcomes: Union[List[Any], BaseException]) -> None:
    """In the loop: every call of a batch gets its result or exception at once (one wake-up)."""
    if isinstance(outcomes, BaseException):
        _settle_all(futures, outcomes)
        return
    for fut, out in zip(futures, outcomes):
        if fut.done():
            continue                     # cancelled meanwhile: the result is dropped
        if out.__class__ is bytes or not isinstance(out, BaseException):
            fut.set_result(out)
        else:
            fut.set_exception(out)


def _do_submit(function: Name, workload: Workload, priority: Priority, background: bool,
               unique: Optional[Name], timeout: Timeout, when: Optional[When],
               callbacks: Tuple[Optional[Callable[..., Any]], ...],
               client: GearmanClient) -> Union[bytes, str]:
    on_data, on_warning, on_status = callbacks
    return client.submit(function, workload, priority=priority, background=background,
                         unique=unique, timeout=timeout, when=when, on_data=on_data,
                         on_warning=on_warning, on_status=on_status)


# -- task sets ----------------------------------------------------------------------------------

class AsyncJobStream:
    """``async for`` over the WORK_DATA chunks of one foreground job (AsyncClient.stream())."""

    _END = object()

    def __init__(self, client: AsyncClient, function: Name, workload: Workload,
                 unique: Optional[Name], priority: Priority, timeout: Timeout) -> None:
        self._client = client
        self._args = (function, workload, unique, priority, timeout)
        self._queue: "Optional[asyncio.Queue[Any]]" = None
        self._stop = threading.Event()
        self._call: "Optional[asyncio.Future[Any]]" = None
        self._done = False
        self.result: Optional[bytes] = None

    def _run(self, loop: asyncio.AbstractEventLoop, queue: "asyncio.Queue[Any]",
             client: GearmanClient) -> Optional[bytes]:
        function, workload, unique, priority, timeout = self._args
        with client.stream(function, workload, unique=unique, priority=priority,
                           timeout=timeout) as chunks:
            for chunk in chunks:
                if self._stop.is_set():
                    return None                   # abandoned: closing drops the connection
                _post(loop, queue.put_nowait, chunk)
            return chunks.result

    def __aiter__(self) -> "AsyncJobStream":
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        if self._call is None:
            queue: "asyncio.Queue[Any]" = asyncio.Queue()
            self._queue = queue
            self._call = asyncio.ensure_future(
                self._client._call(lambda c: self._run(loop, queue, c)))
            self._call.add_done_callback(lambda f: queue.put_nowait(self._END))
        assert self._queue is not None
        item = await self._queue.get()
        if item is self._END:
            self._done = True
            assert self._call is not None
            self.result = self._call.result()        # raises the job's error, if any
            raise StopAsyncIteration
        return item  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Abandon the job if it is still running: its thread drops it at its next chunk (or
        its deadline) and is free again; nothing here waits for that. Idempotent."""
        self._done = True
        self._stop.set()
        if self._call is not None and not self._call.done():
            self._call.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def __aenter__(self) -> "AsyncJobStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncJobStream {self._args[0]!r} {'closed' if self._done else 'open'}>"


class AsyncTask(asyncio.Future[Any]):
    """One job of an :class:`AsyncTaskSet`: an asyncio future of its result (bytes; the job
    handle for a background task). ``handle``, ``numerator``/``denominator`` and ``data`` (the
    WORK_DATA chunks) follow the job as events arrive. ``cancel()`` drops the task: if its
    batch has not started it is never sent; otherwise its result is ignored."""

    def __init__(self, loop: asyncio.AbstractEventLoop, function: Name, workload: Workload,
                 context: Any, unique: Optional[Name], priority: Priority,
                 background: bool) -> None:
        super().__init__(loop=loop)
        self.function = function
        self.workload = workload
        self.context = context
        self.unique = unique
        self.priority = priority
        self.background = background
        self.handle: Optional[str] = None
        self.numerator = 0
        self.denominator = 0
        self.data: List[bytes] = []

    def _update(self, handle: Optional[str], num: int, den: int) -> None:
        if handle:
            self.handle = handle
        self.numerator, self.denominator = num, den

    def __repr__(self) -> str:
        state = ("cancelled" if self.cancelled() else "done" if self.done() else "pending")
        return f"<AsyncTask {self.function!r} {state} handle={self.handle!r}>"


class AsyncTaskSet:
    """Jobs submitted together and collected as they finish (libgearman task sets).

    ``ts.add(...)`` returns an :class:`AsyncTask` (an asyncio future). Tasks added in the same
    event-loop iteration go out as one pipelined batch in one thread; each task's future is
    resolved as soon as its own result arrives. Collect with ``async for t in
    ts.as_completed()``, ``await ts.gather()``, ``asyncio.as_completed(ts.tasks)``, or
    ``async with client.task_set() as ts:`` (waits for every task on exit; cancels them if the
    block raises).
    """

    def __init__(self, client: AsyncClient, timeout: Timeout) -> None:
        self._client = client
        self._timeout = timeout
        self._tasks: List[AsyncTask] = []
        self._unsent: List[AsyncTask] = []
        self._flush_scheduled = False

    @property
    def tasks(self) -> List[AsyncTask]:
        """Every task added, in the order added."""
        return list(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, function: Name, workload: Workload = b"", *, context: Any = None,
            unique: Optional[Name] = None, priority: Priority = Priority.NORMAL,
            background: bool = False) -> AsyncTask:
        """Add a job; it is sent at the next event-loop iteration. Call from a coroutine."""
        self._client._check_open()
        if not isinstance(function, (str, bytes)):
            raise TypeError(f"function must be str or bytes, not {type(function).__name__}")
        if not isinstance(workload, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"workload must be bytes-like or str, not {type(workload).__name__}")
        loop = asyncio.get_running_loop()
        task = AsyncTask(loop, function, workload, context, unique, priority, bool(background))
        self._tasks.append(task)
        self._unsent.append(task)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return task

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch = [t for t in self._unsent if not t.done()]
        self._unsent = []
        if not batch:
            return
        loop = batch[0].get_loop()
        try:
            cfut = self._client._pool.submit(functools.partial(_run_batch, loop, batch,
                                                               self._timeout))
        except RuntimeError as e:
            for t in batch:
                _settle(t, None, e)
            return

        def done(cf: "concurrent.futures.Future[None]") -> None:
            # the batch never ran (client closed) or failed outside run_tasks
            exc: BaseException
            if cf.cancelled():
                exc = RuntimeError("the AsyncClient was closed before this task was sent")
            else:
                err = cf.exception()
                if err is None:
                    return
                exc = err
            for t in batch:
                _post(loop, _settle, t, None, exc)

        cfut.add_done_callback(done)

    async def as_completed(self) -> AsyncIterator[AsyncTask]:
        """Yield tasks as they finish (each is done: call ``task.result()``). Includes tasks
        added while iterating; skips cancelled tasks."""
        q: asyncio.Queue[AsyncTask] = asyncio.Queue()
        watched: Set[int] = set()
        pending = 0

        def on_done(f: "asyncio.Future[Any]") -> None:
            q.put_nowait(cast(AsyncTask, f))

        def watch() -> int:
            n = 0
            for t in self._tasks:
                if id(t) not in watched:
                    watched.add(id(t))
                    t.add_done_callback(on_done)
                    n += 1
            return n

        pending += watch()
        while pending:
            task = await q.get()
            pending -= 1
            if not task.cancelled():
                yield task
            pending += watch()

    async def gather(self, *, return_exceptions: bool = False) -> List[Any]:
        """Wait for every task; results in the order added (as ``asyncio.gather``)."""
        return list(await asyncio.gather(*self._tasks, return_exceptions=return_exceptions))

    def cancel(self) -> None:
        """Cancel every unfinished task."""
        for t in self._tasks:
            t.cancel()

    async def __aenter__(self) -> "AsyncTaskSet":
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        if exc is not None:
            self.cancel()
            return
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        except asyncio.CancelledError:
            self.cancel()
            raise


def _run_batch(loop: asyncio.AbstractEventLoop, batch: List[AsyncTask], timeout: Timeout,
               client: GearmanClient) -> None:
    """In a pool thread: run one batch as a libgearman task set, resolving each task's future
    from the callbacks as its result arrives."""

    def status(task: AsyncTask) -> Callable[[GearmanTask], object]:
        return lambda gt: _post(loop, task._update, gt.handle, gt.numerator, gt.denominator)

    def created(task: AsyncTask) -> Callable[[GearmanTask], None]:
        def cb(gt: GearmanTask) -> None:
            _post(loop, task._update, gt.handle, 0, 0)
            if task.background:
                _post(loop, _settle, task, gt.handle, None)
        return cb

    def data(task: AsyncTask) -> Callable[[GearmanTask, bytes], object]:
        return lambda gt, chunk: _post(loop, task.data.append, chunk)

    def complete(task: AsyncTask) -> Callable[[GearmanTask], object]:
        return lambda gt: _post(loop, _settle, task, gt.result or b"", None)

    def failed(task: AsyncTask) -> Callable[[GearmanTask], object]:
        return lambda gt: _post(loop, _settle, task, None, _task_error(gt))

    pairs: List[Tuple[AsyncTask, GearmanTask]] = []
    for task in batch:
        if task.cancelled():   # best effort: cancelled after the batch was handed over
            continue
        try:
            gt = client.add_task(task.function, task.workload, unique=task.unique,
                                 priority=task.priority, background=task.background,
                                 on_created=created(task), on_data=data(task),
                                 on_status=status(task), on_complete=complete(task),
                                 on_fail=failed(task), on_exception=failed(task))
        except Exception as e:   # bad argument: this task only
            _post(loop, _settle, task, None, e)
            continue
        pairs.append((task, gt))
    if not pairs:
        return
    run_error: Optional[BaseException] = None
    try:
        client.run_tasks(timeout=timeout)
    except Exception as e:
        run_error = e
    # whatever the callbacks did not settle (background handles, errors, a deadline)
    for task, gt in pairs:
        if gt.state == "complete" or (task.background and gt.state == "created"):
            result = gt.handle if task.background else (gt.result or b"")
            _post(loop, _settle, task, result, None)
        elif gt.error is not None:
            _post(loop, _settle, task, None, gt.error)
        else:
            _post(loop, _settle, task, None,
                  run_error or RuntimeError(f"task ended in state {gt.state!r}"))


def _task_error(gt: GearmanTask) -> BaseException:
    if gt.error is not None:
        return gt.error
    return JobFailed(f"job {gt.function_name!r} failed", handle=gt.handle,
                     function=gt.function_name)
