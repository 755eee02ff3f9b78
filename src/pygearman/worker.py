"""GearmanWorker: register functions and process jobs."""
from __future__ import annotations

from types import TracebackType
from typing import Any, Callable, Dict, Optional, Type, TypeVar, Union

from pygearman import _libgearman
from pygearman._libgearman import GearmanJob
from pygearman._servers import Servers, parse_server, parse_servers
from pygearman._types import JobFunction, Result

__all__ = ["GearmanWorker", "GearmanJob", "JobFunction"]

F = TypeVar("F", bound=JobFunction)



G = TypeVar("G", bound=Callable[..., Any])


def _registrar(add_function: Callable[..., None], name: Optional[str],
               timeout: int) -> Callable[[G], G]:
    """The decorator behind ``@worker.function()`` (GearmanWorker and AsyncWorker)."""
    if callable(name):
        raise TypeError("use @worker.function() or @worker.function('name'), with parentheses")

    def register(fn: G) -> G:
        add_function(name if name is not None else fn.__name__, fn, timeout)
        return fn

    return register

class GearmanWorker(_libgearman.Worker):
    """A Gearman worker bound to libgearman.

    ``servers`` as for :class:`GearmanClient`. Register functions with :meth:`add_function` or
    the :meth:`function` decorator, then call :meth:`work` (one job, as in PHP) or :meth:`run`
    (until :meth:`stop`, Ctrl-C or a timeout). A function receives a :class:`GearmanJob` and
    returns the result (bytes-like, str or None). If it raises, the client gets a
    ``JobException`` carrying ``"ExceptionType: message"``; the job is not retried.
    The worker reconnects by itself, backing off while no server answers.

    An idle worker sleeps like every Gearman worker: it has sent PRE_SLEEP and sends nothing
    until the server's NOOP says a job is there, while :meth:`stop`, Ctrl-C and a ``timeout``
    still answer within 100 ms. ``poll_interval`` (default 1 s; ``None``: never) makes it ask
    again anyway that often: gearmand 1.1.20 has no timer, so a scheduled job (``when=``) only
    reaches a worker that asks.
    """

    def __init__(self, servers: Servers = None,
                 functions: Optional[Dict[str, JobFunction]] = None, *,
                 identifier: Optional[str] = None, namespace: Optional[str] = None,
                 max_retries: int = 3, poll_interval: Optional[float] = 1.0,
                 ssl: bool = False) -> None:
        if ssl:
            from pygearman.client import _refuse_ssl

            _refuse_ssl("GearmanWorker")
        self._namespace = namespace
        for host, port in parse_servers(servers):
            self._add_server(host.encode(), port)
        if namespace:
            self._set_namespace(namespace)
        self._set_max_retries(max_retries)
        self._set_poll_interval(poll_interval)
        if identifier is not None:
            self.set_identifier(identifier)
        for name, fn in (functions or {}).items():
            self.add_function(name, fn)

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

    def clone(self) -> "GearmanWorker":
        """A new worker with the same servers, functions, identifier, namespace and retry
        bound, for another thread (a worker is not thread-safe)."""
        if self.closed:
            raise RuntimeError("this GearmanWorker is closed")
        w = GearmanWorker(self.servers, identifier=self.identifier, namespace=self._namespace,
                          max_retries=self.max_retries)
        for name, fn, timeout in self._function_items():
            w.add_function(name, fn, timeout)
        return w

    def function(self, name: Optional[str] = None, *, timeout: int = 0) -> Callable[[F], F]:
        """Decorator: ``@worker.function("title")`` registers the function (default name: the
        Python function's name) and returns it unchanged."""
        return _registrar(self.add_function, name, timeout)

    def add_function(self, name: Union[str, bytes], function: JobFunction,
                     timeout: int = 0) -> None:
        """Register ``function(job) -> result`` under ``name`` (PHP ``addFunction``).
        ``timeout`` (whole seconds) is the server-side CAN_DO_TIMEOUT; 0 means none."""
        self._add_function(name, function, timeout)

    def unregister(self, name: Union[str, bytes]) -> None:
        """Stop taking jobs for one function (PHP ``unregister``)."""
        self._unregister(name)

    def unregister_all(self) -> None:
        """Stop taking jobs for every function (PHP ``unregisterAll``)."""
        self._unregister_all()

    def set_identifier(self, identifier: Union[str, bytes]) -> None:
        """Name this worker in the admin view (``workers``); sent again after reconnects."""
        self._set_identifier(identifier)

    def work(self, *, timeout: Optional[float] = None) -> bool:
        """Wait for one job and run it (PHP ``work``). True if a job was processed, False if
        the timeout passed or :meth:`stop` was called first."""
        return self._work(timeout)

    def run(self, *, timeout: Optional[float] = None) -> int:
        """Process jobs until :meth:`stop` (from any thread or a signal handler), Ctrl-C or the
        timeout. Returns the number of jobs processed."""
        return self._run(timeout)

    def stop(self) -> None:
        """Make a running :meth:`work`/:meth:`run` return after the job in hand. Safe from any
        thread and from signal handlers."""
        self._stop()

    def echo(self, data: Union[bytes, bytearray, memoryview, str] = b"ping") -> bool:
        """Check that every job server answers (ECHO)."""
        return self._echo(data)

    def close(self) -> None:
        """Disconnect and free the worker. Idempotent."""
        self._close()

    def __enter__(self) -> "GearmanWorker":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ",".join(self.servers)
        return f"<GearmanWorker {state} functions={self.functions!r}>"
