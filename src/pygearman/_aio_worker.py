"""The asyncio worker (AsyncWorker, AsyncJob), re-exported by :mod:`pygearman.aio`."""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import queue
import threading
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, TypeVar, Union, cast

from pygearman._libgearman import GearmanJob
from pygearman._servers import Servers
from pygearman._types import JobFunction, Result, Workload
from pygearman.worker import GearmanWorker, _registrar

_log = logging.getLogger("pygearman.aio")

AsyncJobFunction = Callable[["AsyncJob"], Awaitable[Result]]
SyncJobFunction = JobFunction
AnyJobFunction = Union[AsyncJobFunction, SyncJobFunction]
F = TypeVar("F", bound=Callable[..., Any])


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> bool:
    """Run fn(*args) on the loop's thread; False if the loop is gone (the result is dropped)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
        return True
    except RuntimeError:  # loop closed
        return False


def _settle(fut: "asyncio.Future[Any]", result: Any, exc: Optional[BaseException]) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


# -- the worker ---------------------------------------------------------------------------------

class AsyncJob:
    """What an ``async def`` job function receives: the job's fields, and awaitable
    ``send_status`` / ``send_data`` / ``send_warning`` (sent by the worker's thread, which
    owns the connection)."""

    def __init__(self, job: GearmanJob, loop: asyncio.AbstractEventLoop) -> None:
        self.workload: bytes = job.workload
        self.handle: str = job.handle
        self.unique: str = job.unique
        self.function_name: str = job.function_name
        self._loop = loop
        # send_* requests (tuples), then the job's own done Task
        self._requests: "queue.SimpleQueue[Any]" = queue.SimpleQueue()

    async def _send(self, method: str, *args: Any) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()
        self._requests.put((method, args, fut))
        await fut

    async def send_status(self, numerator: int, denominator: int) -> None:
        """Report progress (WORK_STATUS)."""
        await self._send("send_status", numerator, denominator)

    async def send_data(self, data: Workload) -> None:
        """Send a chunk of partial results (WORK_DATA)."""
        await self._send("send_data", data)

    async def send_warning(self, data: Workload) -> None:
        """Send a warning (WORK_WARNING)."""
        await self._send("send_warning", data)

    def __repr__(self) -> str:
        return f"<AsyncJob {self.function_name!r} handle={self.handle!r}>"


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


def _run_on_loop(fn: AsyncJobFunction, loop: asyncio.AbstractEventLoop,
                 job: GearmanJob) -> Result:
    """In the worker thread: run the coroutine on the loop, serving its send_* requests here
    (a GearmanJob may only be used by the thread that runs its function). One wake-up of the
    loop starts the job; its Task, once done, is the last item of the request queue (no
    concurrent future, no coroutine wrapper, no chained callbacks per job)."""
    ajob = AsyncJob(job, loop)
    requests = ajob._requests
    loop.call_soon_threadsafe(_start_job, fn, ajob)   # RuntimeError if the loop is closed
    while True:
        req = requests.get()
        if req.__class__ is not tuple:
            break
        method, args, reply = req
        try:
            getattr(job, method)(*args)
        except BaseException as e:
            _post(loop, _settle, reply, None, e)
        else:
            _post(loop, _settle, reply, None, None)
    done = cast("asyncio.Future[Result]", req)
    if done.cancelled():                  # the loop is shutting down: a job error, as before
        raise concurrent.futures.CancelledError()
    return done.result()                  # done: safe to read from this thread


def _start_job(fn: AsyncJobFunction, ajob: "AsyncJob") -> None:
    """On the loop: the job function's Task; when done it goes to the worker thread."""
    try:
        task: asyncio.Future[Result] = asyncio.ensure_future(fn(ajob))
    except BaseException as e:          # fn raised before returning an awaitable
        task = ajob._loop.create_future()
        task.set_exception(e)
        ajob._requests.put(task)
        return
    task.add_done_callback(ajob._requests.put)


class AsyncWorker:
    """An asyncio Gearman worker: register ``async def`` (and plain) job functions, then
    ``await worker.run()``.

    libgearman's work loop runs in a thread per connection (``concurrency``, default 1: jobs one
    at a time; N: up to N jobs at once). An ``async def`` function runs on the event loop that
    awaits :meth:`run` and receives an :class:`AsyncJob`; a plain function runs in the worker
    thread (so it does not block the loop) and receives the :class:`~pygearman.GearmanJob`.
    If a function raises, the client gets a ``JobException`` (``"ValueError: ..."``).
    """

    def __init__(self, servers: Servers = None,
                 functions: Optional[Dict[str, AnyJobFunction]] = None, *,
                 identifier: Optional[str] = None, namespace: Optional[str] = None,
                 max_retries: int = 3, concurrency: int = 1) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        self._servers = servers
        self._identifier = identifier
        self._namespace = namespace
        self._max_retries = max_retries
        self._concurrency = concurrency
        self._functions: Dict[str, Tuple[AnyJobFunction, int]] = {}
        self._workers: List[GearmanWorker] = []
        self._running = False
        self._stop_requested = False
        self._jobs = 0
        # check the arguments now rather than at run()
        GearmanWorker(servers, identifier=identifier, namespace=namespace,
                      max_retries=max_retries).close()
        for name, fn in (functions or {}).items():
            self.add_function(name, fn)

    @property
    def functions(self) -> List[str]:
        """Names of the registered functions."""
        return list(self._functions)

    @property
    def running(self) -> bool:
        """True while :meth:`run` is serving jobs."""
        return self._running

    @property
    def jobs_processed(self) -> int:
        """Jobs handed to functions by finished and running :meth:`run` calls."""
        return self._jobs + sum(w.jobs_processed for w in list(self._workers))

    def add_function(self, name: str, fn: AnyJobFunction, timeout: int = 0) -> None:
        """Register ``fn`` as ``name`` (takes effect at the next :meth:`run`)."""
        if not callable(fn):
            raise TypeError(f"a job function must be callable, not {type(fn).__name__}")
        if not isinstance(name, str) or not name:
            raise ValueError("function name must be a non-empty str")
        if self._running:
            raise RuntimeError("add functions before run()")
        self._functions[name] = (fn, timeout)

    def function(self, name: Optional[str] = None, *, timeout: int = 0) -> Callable[[F], F]:
        """Decorator: ``@worker.function()`` registers the function under its own name."""
        return _registrar(self.add_function, name, timeout)

    def _make_worker(self, loop: asyncio.AbstractEventLoop, index: int) -> GearmanWorker:
        ident = self._identifier
        if ident is not None and self._concurrency > 1:
            ident = f"{ident}-{index}"
        w = GearmanWorker(self._servers, identifier=ident, namespace=self._namespace,
                          max_retries=self._max_retries)
        for name, (fn, timeout) in self._functions.items():
            if _is_async(fn):
                w.add_function(name, functools.partial(_run_on_loop, cast(AsyncJobFunction, fn), loop), timeout)
            else:
                w.add_function(name, cast(SyncJobFunction, fn), timeout)
        return w

    async def run(self, *, timeout: Optional[float] = None) -> int:
        """Process jobs until :meth:`stop`, the ``timeout`` (seconds), or cancellation of this
        coroutine (which stops the worker, lets the jobs in hand finish, then re-raises).
        Returns the number of jobs processed."""
        if self._running:
            raise RuntimeError("this AsyncWorker is already running")
        if not self._functions:
            raise RuntimeError("no functions registered: call add_function() first")
        loop = asyncio.get_running_loop()
        self._running = True
        self._workers = [self._make_worker(loop, i) for i in range(self._concurrency)]
        futs: List[asyncio.Future[int]] = []
        try:
            if self._stop_requested:
                return 0
            for i, w in enumerate(self._workers):
                fut: asyncio.Future[int] = loop.create_future()
                futs.append(fut)
                threading.Thread(target=_worker_main, args=(w, loop, fut, timeout),
                                 name=f"pygearman-aioworker-{i}", daemon=True).start()
            try:
                await asyncio.wait(futs, return_when=asyncio.FIRST_EXCEPTION)
            except asyncio.CancelledError:
                self.stop()
                await asyncio.wait(futs)   # the jobs in hand may need this loop to finish
                raise
            if not all(f.done() for f in futs):   # one failed: stop the others
                self.stop()
                await asyncio.wait(futs)
            for f in futs:
                exc = f.exception()
                if exc is not None:
                    raise exc
            return sum(f.result() for f in futs)
        finally:
            self._jobs += sum(w.jobs_processed for w in self._workers)
            for w, fut in zip(self._workers, futs):
                if fut.done():
                    w.close()
            self._workers = []
            self._running = False
            self._stop_requested = False

    def stop(self) -> None:
        """Ask :meth:`run` to return after the jobs in hand. Safe from any thread or a signal
        handler."""
        self._stop_requested = True
        for w in list(self._workers):
            w.stop()

    def __repr__(self) -> str:
        return f"<AsyncWorker functions={self.functions!r} running={self._running}>"


def _worker_main(w: GearmanWorker, loop: asyncio.AbstractEventLoop,
                 fut: "asyncio.Future[int]", timeout: Optional[float]) -> None:
    try:
        n = w.run(timeout=timeout)
    except BaseException as e:
        _post(loop, _settle, fut, None, e)
    else:
        _post(loop, _settle, fut, n, None)
