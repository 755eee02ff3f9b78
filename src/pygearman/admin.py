"""The gearmand admin text protocol (status, workers, maxqueue, ...) in plain Python.

    from pygearman.admin import AdminClient, status_all
    with AdminClient("127.0.0.1:4730") as admin:
        for fn in admin.status():
            print(fn.function, fn.total, fn.running, fn.workers)
    status_all(["h1:4730", "h2:4730"])  # {"h1:4730": [...], "h2:4730": GearmanConnectionError()}

The admin protocol is not part of libgearman: it is one text line per command on the job
server's ordinary port, answered by either ``OK [value]``, ``ERR CODE text`` or lines closed by
a lone ``.``. Formats below are those of gearmand 1.1.20 (``libgearman-server/text.cc``):

=====================  ==================================================================
command                reply
=====================  ==================================================================
``status``             ``FUNCTION\\tTOTAL\\tRUNNING\\tWORKERS`` lines, then ``.``
``prioritystatus``     ``FUNCTION\\tHIGH\\tNORMAL\\tLOW\\tWORKERS`` lines (queued jobs), ``.``
``workers``            ``FD ADDRESS CLIENT_ID : FN FN ...`` lines (every connection), ``.``
``show jobs``          ``HANDLE\\tRETRIES\\tIGNORED\\tQUEUED`` lines, then ``.``
``show unique jobs``   one unique id per line, then ``.``
``cancel job H``       ``OK`` or ``ERR UNKNOWN_JOB``
``create function F``  ``OK``
``drop function F``    ``OK``, ``ERR function not found`` or ``ERR there are still ...``
``maxqueue F N``       ``OK`` (also for a function that does not exist: then nothing is set)
``getpid``             ``OK PID``
``verbose``            ``OK LEVEL`` (e.g. ``OK INFO``)
``version``            ``OK VERSION`` (e.g. ``OK 1.1.20+ds``)
``shutdown``           removed in gearmand 1.1.15: ``ERR UNKNOWN_COMMAND ...``
=====================  ==================================================================

The parsers (``parse_status`` etc.) are pure functions of the reply text; any text either
parses or raises :class:`~pygearman.errors.ProtocolError`. :class:`AdminClient` does the I/O.
"""
from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import (Any, Callable, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union,
                    overload)

from pygearman._servers import ServerSpec, Servers, format_server, parse_server, parse_servers
from pygearman.errors import (GearmanConnectionError, GearmanTimeoutError, NotSupportedError,
                              ProtocolError, ReturnCode, ServerError)

__all__ = [
    "AdminClient",
    "FunctionStatus",
    "PriorityStatus",
    "WorkerInfo",
    "JobInfo",
    "UniqueJobInfo",
    "UnknownCommandError",
    "MaxQueue",
    "for_each",
    "status_all",
    "workers_all",
    "parse_status",
    "parse_priority_status",
    "parse_workers",
    "parse_show_jobs",
    "parse_show_unique_jobs",
    "parse_ok",
    "parse_getpid",
    "DEFAULT_TIMEOUT",
]

#: Default deadline in seconds of an admin call (:class:`AdminClient`, :func:`for_each`).
DEFAULT_TIMEOUT = 5.0
_MAX_FUNCTION_NAME = 512          # bytes, as libgearman's GEARMAN_FUNCTION_MAX_SIZE
_MAX_HANDLE = 254                 # bytes; gearmand's own handles are far shorter
_MAX_QUEUE = 2**31 - 1            # gearmand reads the sizes with atoi()
_MAX_REPLY = 64 * 1024 * 1024     # a reply larger than this is not gearmand talking
_MAX_DIGITS = 20                  # u32/int fields; also keeps int() clear of its digit limit
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"       # names that are not UTF-8 survive a round trip

T = TypeVar("T")
MaxQueue = Union[int, Tuple[int, int, int]]
"""A ``maxqueue`` size: one limit for every priority, or ``(high, normal, low)``."""


# -- records ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FunctionStatus:
    """One line of ``status``: jobs of a function (queued + running), running jobs, workers."""

    function: str
    total: int
    running: int
    workers: int

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker (``total - running``)."""
        return max(self.total - self.running, 0)


@dataclass(frozen=True)
class PriorityStatus:
    """One line of ``prioritystatus``: jobs waiting in each priority queue, and workers."""

    function: str
    high: int
    normal: int
    low: int
    workers: int


@dataclass(frozen=True)
class WorkerInfo:
    """One line of ``workers``: a connection (client, worker or admin alike) and the
    functions it registered (empty for anything but a worker)."""

    fd: int
    address: str
    client_id: str
    functions: Tuple[str, ...]


@dataclass(frozen=True)
class JobInfo:
    """One line of ``show jobs``.

    ``ignored``: the job will be dropped instead of run (cancelled, or a foreground job whose
    client went away); ``queued``: a background job held in the server's (persistent) queue.
    A cancelled job stays listed, and counted by ``status``, until a worker would take it.
    """

    handle: str
    retries: int
    ignored: bool
    queued: bool


@dataclass(frozen=True)
class UniqueJobInfo:
    """One line of ``show unique jobs``: a job's unique id (gearmand makes one if none given)."""

    unique: str


class UnknownCommandError(ServerError, NotSupportedError):
    """The server answered ``ERR UNKNOWN_COMMAND``: this gearmand does not have the command
    (e.g. ``shutdown``, removed in gearmand 1.1.15, or ``prioritystatus`` before 1.1.19)."""


# -- parsers ---------------------------------------------------------------------------------

def _lines(text: str, what: str) -> List[str]:
    """The data lines of a multi-line reply (the closing ``.`` line is optional here)."""
    if not isinstance(text, str):
        raise ProtocolError(f"{what} reply must be text, not {type(text).__name__}")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if lines and lines[-1] == ".":
        lines.pop()
    if "." in lines:
        raise ProtocolError(f"{what} reply has data after its closing '.' line")
    return lines


def _quote(line: str, limit: int = 200) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "...")


def _uint(field: str, line: str, what: str) -> int:
    f = field[:-1] if field.endswith("\r") else field
    if not (0 < len(f) <= _MAX_DIGITS and f.isascii() and f.isdigit()):
        raise ProtocolError(f"bad {what} line {_quote(line)}: {_quote(field)} is not a number")
    return int(f)


def _flag(field: str, line: str, what: str) -> bool:
    value = _uint(field, line, what)
    if value > 1:
        raise ProtocolError(f"bad {what} line {_quote(line)}: {_quote(field)} is not 0 or 1")
    return value == 1


def _tab_fields(line: str, count: int, what: str) -> List[str]:
    # rsplit: the name comes first and may itself contain a tab
    fields = line.rsplit("\t", count - 1)
    if len(fields) != count:
        raise ProtocolError(f"bad {what} line {_quote(line)}: expected {count} tab-separated "
                            f"fields, got {len(fields)}")
    return fields


def parse_status(text: str) -> List[FunctionStatus]:
    """Parse the reply to ``status``."""
    out = []
    for line in _lines(text, "status"):
        name, total, running, workers = _tab_fields(line, 4, "status")
        out.append(FunctionStatus(name, _uint(total, line, "status"),
                                  _uint(running, line, "status"),
                                  _uint(workers, line, "status")))
    return out


def parse_priority_status(text: str) -> List[PriorityStatus]:
    """Parse the reply to ``prioritystatus``."""
    what = "prioritystatus"
    out = []
    for line in _lines(text, what):
        name, high, normal, low, workers = _tab_fields(line, 5, what)
        out.append(PriorityStatus(name, _uint(high, line, what), _uint(normal, line, what),
                                  _uint(low, line, what), _uint(workers, line, what)))
    return out


def parse_workers(text: str) -> List[WorkerInfo]:
    """Parse the reply to ``workers`` (``FD ADDRESS CLIENT_ID : FUNCTION ...``)."""
    out = []
    for line in _lines(text, "workers"):
        parts = line.split(" ", 2)
        if len(parts) != 3:
            raise ProtocolError(f"bad workers line {_quote(line)}: expected 'FD ADDRESS ID :'")
        fd_text, address, rest = parts
        negative = fd_text.startswith("-")
        fd = _uint(fd_text[1:] if negative else fd_text, line, "workers")
        if negative:
            fd = -fd
        if not address:
            raise ProtocolError(f"bad workers line {_quote(line)}: no address")
        if rest.startswith(":") and (len(rest) == 1 or rest[1] in " \r"):
            client_id, functions = "", rest[1:]  # an empty client id
        else:
            sep = rest.find(" :")
            if sep < 0:
                raise ProtocolError(f"bad workers line {_quote(line)}: no ' :' after the id")
            client_id, functions = rest[:sep], rest[sep + 2:]
        if functions.endswith("\r"):
            functions = functions[:-1]
        if functions and not functions.startswith(" "):
            raise ProtocolError(f"bad workers line {_quote(line)}: expected ' ' after ':'")
        out.append(WorkerInfo(fd, address, client_id,
                              tuple(f for f in functions.split(" ") if f)))
    return out


def parse_show_jobs(text: str) -> List[JobInfo]:
    """Parse the reply to ``show jobs`` (``HANDLE\\tRETRIES\\tIGNORED\\tQUEUED``)."""
    what = "show jobs"
    out = []
    for line in _lines(text, what):
        handle, retries, ignored, queued = _tab_fields(line, 4, what)
        if not handle:
            raise ProtocolError(f"bad {what} line {_quote(line)}: empty job handle")
        out.append(JobInfo(handle, _uint(retries, line, what), _flag(ignored, line, what),
                           _flag(queued, line, what)))
    return out


def parse_show_unique_jobs(text: str) -> List[UniqueJobInfo]:
    """Parse the reply to ``show unique jobs`` (one unique id per line)."""
    return [UniqueJobInfo(line) for line in _lines(text, "show unique jobs")]


def parse_ok(text: str) -> str:
    """Parse a one-line ``OK`` / ``OK value`` reply and return the value (``""`` for ``OK``)."""
    if not isinstance(text, str):
        raise ProtocolError(f"reply must be text, not {type(text).__name__}")
    line = text[:-1] if text.endswith("\n") else text
    if line.endswith("\r"):
        line = line[:-1]
    if "\n" in line:
        raise ProtocolError(f"expected a one-line 'OK' reply, got {_quote(text)}")
    if line == "OK":
        return ""
    if line.startswith("OK "):
        return line[3:]
    raise ProtocolError(f"expected an 'OK' reply, got {_quote(line)}")


def parse_getpid(text: str) -> int:
    """Parse the reply to ``getpid`` (``OK PID``)."""
    value = parse_ok(text)
    return _uint(value, text.rstrip("\r\n"), "getpid")


def _parse_err(line: str) -> Optional[Tuple[str, str]]:
    """``ERR CODE text`` -> (CODE, text with gearmand's '+' for spaces undone); else None."""
    line = line.rstrip("\r\n")
    if line != "ERR" and not line.startswith("ERR "):
        return None
    code, _, detail = line[4:].partition(" ")
    return code, detail.replace("+", " ")


# -- argument checks -------------------------------------------------------------------------

_FORBIDDEN = frozenset(range(0x21)) | {0x7F}  # controls, space, NUL: they end a text argument


def _arg(value: Union[str, bytes], what: str, limit: int) -> bytes:
    if isinstance(value, str):
        data = value.encode(_ENCODING, _ERRORS)
    elif isinstance(value, bytes):
        data = value
    else:
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")
    if not data:
        raise ValueError(f"{what} must not be empty")
    if len(data) > limit:
        raise ValueError(f"{what} is {len(data)} bytes; at most {limit} are allowed")
    bad = next((b for b in data if b in _FORBIDDEN), None)
    if bad is not None:
        raise ValueError(f"{what} {value!r} contains {bytes([bad])!r}: spaces, newlines and "
                         "control characters cannot travel in the text protocol")
    return data


def _size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= _MAX_QUEUE:
        raise ValueError(f"{what} must be 0 (no limit) to {_MAX_QUEUE}, got {value}")
    return value


def _timeout_value(timeout: object, what: str = "timeout") -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(timeout).__name__}")
    if not 0 < timeout < float("inf"):
        raise ValueError(f"{what} must be a positive, finite number of seconds, got {timeout}")
    return float(timeout)


# -- the client ------------------------------------------------------------------------------

def _admin_like(cmd: bytes, first: bytes) -> bool:
    """Could ``first`` be the first line of a gearmand admin reply to ``cmd``? (A web server,
    a database or a binary Gearman port answers something else.)"""
    if first.startswith((b"OK", b"ERR ", b".\n", b".\r\n")) or first.rstrip(b"\r\n").isdigit():
        return True
    if first.startswith(b"\0"):
        return False
    if cmd.startswith((b"status", b"show jobs")):
        return b"\t" in first
    if cmd.startswith(b"workers"):
        return b" : " in first or first.rstrip(b"\r\n").endswith(b" :")
    return not first.startswith((b"HTTP/", b"SSH-", b"+OK", b"-ERR", b"220 ", b"<"))


class AdminClient:
    """One TCP connection to one job server, speaking the admin text protocol.

    ``server``: ``"host:port"``, ``"host"``, ``"[v6addr]:port"`` or ``(host, port)``.
    ``timeout``: default deadline in seconds of every call (connect + send + reply); each
    method also takes ``timeout=``. The connection is made by the first call and made again
    after a call that failed midway (timeout, lost connection, Ctrl-C), so a late reply is
    never read as the answer to the next command.

    Raises :class:`~pygearman.errors.GearmanConnectionError` (server unreachable or gone),
    :class:`~pygearman.errors.GearmanTimeoutError`, :class:`~pygearman.errors.ServerError`
    (an ``ERR`` reply; :class:`UnknownCommandError` when the server lacks the command) and
    :class:`~pygearman.errors.ProtocolError` (a reply that does not parse). Calls from several
    threads are serialised.
    """

    def __init__(self, server: ServerSpec = "127.0.0.1:4730", *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self._host, self._port = parse_server(server)
        self._timeout = _timeout_value(timeout)
        self._sock: Optional[socket.socket] = None
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._closed = False

    # -- properties / lifecycle --

    @property
    def server(self) -> str:
        """``host:port`` of the job server (``[v6]:port`` for IPv6)."""
        return format_server(self._host, self._port)

    @property
    def timeout(self) -> float:
        """Default deadline in seconds of each call (connect + send + reply)."""
        return self._timeout

    @property
    def closed(self) -> bool:
        """True after :meth:`close`; every command then raises RuntimeError."""
        return self._closed

    def close(self) -> None:
        """Close the connection. Idempotent; the client cannot be used afterwards."""
        self._closed = True
        self._disconnect()

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self._sock else "idle")
        return f"<AdminClient {self.server} {state}>"

    # -- commands --

    def status(self, *, timeout: Optional[float] = None) -> List[FunctionStatus]:
        """Every function the server knows: jobs (queued + running), running jobs, workers."""
        return parse_status(self._list(b"status", timeout))

    def priority_status(self, *, timeout: Optional[float] = None) -> List[PriorityStatus]:
        """Queued jobs of every function per priority, and its workers (gearmand >= 1.1.19)."""
        return parse_priority_status(self._list(b"prioritystatus", timeout))

    def workers(self, *, timeout: Optional[float] = None) -> List[WorkerInfo]:
        """Every connection to the server (clients and this admin connection included, with no
        functions) and the functions each worker registered."""
        return parse_workers(self._list(b"workers", timeout))

    def show_jobs(self, *, timeout: Optional[float] = None) -> List[JobInfo]:
        """Every job the server holds (queued, running, or cancelled but not yet dropped)."""
        return parse_show_jobs(self._list(b"show jobs", timeout))

    def show_unique_jobs(self, *, timeout: Optional[float] = None) -> List[UniqueJobInfo]:
        """The unique id of every job the server holds.

        The text protocol has no escaping: a unique id containing a newline, or equal to
        ``"."``, cannot be told apart from the reply's framing.
        """
        return parse_show_unique_jobs(self._list(b"show unique jobs", timeout))

    def maxqueue(self, function: Union[str, bytes], size: MaxQueue, *,
                 timeout: Optional[float] = None) -> None:
        """Limit how many jobs ``function`` may hold: one ``size`` for all priorities or
        ``(high, normal, low)``; 0 means no limit. A submission is refused (the client gets
        ``ServerError`` ``QUEUE_ERROR: Job queue is full``) when the function's *total* job
        count, all priorities and running jobs included, has reached the limit of the new
        job's priority. gearmand answers OK but sets nothing when the function does not exist
        yet: call :meth:`create_function` first.
        """
        name = _arg(function, "function name", _MAX_FUNCTION_NAME)
        if isinstance(size, tuple):
            if len(size) != 3:
                raise ValueError(f"size must be an int or (high, normal, low), got {size!r}")
            sizes = [_size(s, f"{p} queue size") for s, p in zip(size, ("high", "normal", "low"))]
        elif isinstance(size, (int, bool)):
            sizes = [_size(size, "queue size")]
        else:
            raise TypeError(f"size must be an int or a (high, normal, low) tuple, "
                            f"not {type(size).__name__}")
        cmd = b" ".join([b"maxqueue", name] + [str(s).encode() for s in sizes])
        self._expect_ok(cmd, timeout)

    def cancel_job(self, handle: Union[str, bytes], *, timeout: Optional[float] = None) -> bool:
        """Cancel a job by its handle: True if the server had it, False if not.

        Waiting clients get WORK_FAIL; the job stays listed (``ignored``) and counted by
        ``status`` until a worker would have taken it.
        """
        data = _arg(handle, "job handle", _MAX_HANDLE)
        cmd = b"cancel job " + data
        line = self._exchange(cmd, timeout, multiline=False)
        err = _parse_err(line)
        if err is not None:
            if err[0] == "UNKNOWN_JOB":
                return False
            raise self._server_error(cmd, line, err)
        parse_ok(line)
        return True

    def create_function(self, function: Union[str, bytes], *,
                        timeout: Optional[float] = None) -> None:
        """Make the server know ``function`` (shown by ``status`` with no jobs or workers)."""
        name = _arg(function, "function name", _MAX_FUNCTION_NAME)
        self._expect_ok(b"create function " + name, timeout)

    def drop_function(self, function: Union[str, bytes], *,
                      timeout: Optional[float] = None) -> None:
        """Forget ``function``. gearmand matches the name case-insensitively and refuses
        (ServerError) a function that does not exist or has workers or running jobs."""
        name = _arg(function, "function name", _MAX_FUNCTION_NAME)
        self._expect_ok(b"drop function " + name, timeout)

    def getpid(self, *, timeout: Optional[float] = None) -> int:
        """The job server's process id."""
        return parse_getpid(self._exchange(b"getpid", timeout, multiline=False, check=True))

    def verbose(self, *, timeout: Optional[float] = None) -> str:
        """The server's log level name (``ERROR``, ``WARNING``, ``NOTICE``, ``INFO``, ...)."""
        return self._value(b"verbose", timeout)

    def version(self, *, timeout: Optional[float] = None) -> str:
        """The server's version string, e.g. ``1.1.20+ds``."""
        return self._value(b"version", timeout)

    def shutdown(self, graceful: bool = False, *, timeout: Optional[float] = None) -> None:
        """Ask the server to stop (``graceful``: after the jobs it holds are done).

        gearmand removed this command in 1.1.15 (it had no authentication): newer servers raise
        :class:`UnknownCommandError`, and must be stopped by signalling the process instead.
        Older servers answer OK or simply close the connection; both count as success.
        """
        cmd = b"shutdown graceful" if graceful else b"shutdown"
        try:
            line = self._exchange(cmd, timeout, multiline=False)
        except GearmanConnectionError as e:
            if e.code == ReturnCode.LOST_CONNECTION:
                return  # the server went away, as asked
            raise
        err = _parse_err(line)
        if err is not None:
            exc = self._server_error(cmd, line, err)
            if isinstance(exc, UnknownCommandError):
                exc = UnknownCommandError(exc.message + " (gearmand has no 'shutdown' since "
                                          "1.1.15: stop the gearmand process with SIGTERM)")
            raise exc
        parse_ok(line)
        self._disconnect()

    # -- I/O --

    def _value(self, cmd: bytes, timeout: Optional[float]) -> str:
        line = self._exchange(cmd, timeout, multiline=False, check=True)
        value = parse_ok(line)
        if not value:
            raise ProtocolError(f"empty reply to {cmd.decode()!r}: {_quote(line)}")
        return value

    def _expect_ok(self, cmd: bytes, timeout: Optional[float]) -> None:
        line = self._exchange(cmd, timeout, multiline=False, check=True)
        if parse_ok(line):
            raise ProtocolError(f"expected 'OK' to {_cmd_text(cmd)!r}, got {_quote(line)}")

    def _list(self, cmd: bytes, timeout: Optional[float]) -> str:
        return self._exchange(cmd, timeout, multiline=True, check=True)

    def _server_error(self, cmd: bytes, line: str, err: Tuple[str, str]) -> ServerError:
        message = f"{self.server}: {_cmd_text(cmd)!r} refused: {line.rstrip()}"
        if err[0] == "UNKNOWN_COMMAND":
            return UnknownCommandError(message)
        return ServerError(message)

    def _exchange(self, cmd: bytes, timeout: Optional[float], *, multiline: bool,
                  check: bool = False) -> str:
        """Send one command and return its whole reply as text (an ERR reply raises if
        ``check``). On any failure midway the connection is dropped, so that the rest of a
        late reply cannot be read as the answer to the next command."""
        if self._closed:
            raise RuntimeError("this AdminClient is closed")
        seconds = self._timeout if timeout is None else _timeout_value(timeout)
        deadline = time.monotonic() + seconds
        if not self._lock.acquire(timeout=seconds):
            raise GearmanTimeoutError(f"{self.server}: {_cmd_text(cmd)!r}: another thread kept "
                                      f"this AdminClient busy for {seconds:g} s",
                                      ReturnCode.TIMEOUT)
        try:
            try:
                reply, is_err = self._send_and_read(cmd, deadline, seconds, multiline)
            except BaseException:
                self._disconnect()
                raise
        finally:
            self._lock.release()
        if check and is_err:
            raise self._server_error(cmd, reply, _parse_err(reply) or ("", ""))
        return reply

    def _send_and_read(self, cmd: bytes, deadline: float, seconds: float,
                       multiline: bool) -> Tuple[str, bool]:
        what = f"{self.server}: {_cmd_text(cmd)!r}"
        sock = self._connect(deadline, seconds)
        if not self._drain(sock):
            # the server closed our idle connection (restarted?): one fresh try
            self._disconnect()
            sock = self._connect(deadline, seconds)
        # "\r\n", not "\n": gearmand's 'create function' cuts two bytes off its argument
        self._io(sock.sendall, cmd + b"\r\n", deadline, seconds, what)
        first = self._read_line(sock, deadline, seconds, what)
        if not _admin_like(cmd, first):
            raise ProtocolError(f"{self.server} is not a Gearman job server: it answered "
                                f"{_quote(first[:60].decode(_ENCODING, _ERRORS))} to "
                                f"{_cmd_text(cmd)!r} (check the port)")
        # list replies end with "\n" lines; an ERR line always ends with "\r\n"
        is_err = first.startswith(b"ERR") and (first.endswith(b"\r\n") or not multiline)
        lines = [first]
        if multiline and not is_err:
            line = first
            total = len(first)
            while line != b".\n" and line != b".\r\n":
                line = self._read_line(sock, deadline, seconds, what)
                lines.append(line)
                total += len(line)
                if total > _MAX_REPLY:
                    raise ProtocolError(f"{what}: reply larger than {_MAX_REPLY} bytes")
        return b"".join(lines).decode(_ENCODING, _ERRORS), is_err

    def _connect(self, deadline: float, seconds: float) -> socket.socket:
        if self._sock is not None:
            return self._sock
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GearmanTimeoutError(f"{self.server}: no connection within {seconds:g} s",
                                      ReturnCode.TIMEOUT)
        try:
            sock = socket.create_connection((self._host, self._port), timeout=remaining)
        except socket.timeout:
            raise GearmanTimeoutError(f"{self.server}: no connection within {seconds:g} s",
                                      ReturnCode.TIMEOUT) from None
        except OSError as e:
            raise GearmanConnectionError(f"{self.server}: cannot connect: {e.strerror or e}",
                                         ReturnCode.COULD_NOT_CONNECT) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._buf.clear()
        return sock

    def _drain(self, sock: socket.socket) -> bool:
        """Drop bytes that came after the previous reply's end (they answer nothing).
        False when the connection is no longer usable."""
        self._buf.clear()
        try:
            sock.setblocking(False)
            while True:
                if not sock.recv(65536):
                    return False
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def _read_line(self, sock: socket.socket, deadline: float, seconds: float,
                   what: str) -> bytes:
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buf[:end + 1])
                del self._buf[:end + 1]
                return line
            if len(self._buf) > _MAX_REPLY:
                raise ProtocolError(f"{what}: a reply line longer than {_MAX_REPLY} bytes")
            start = len(self._buf)
            chunk = self._io(sock.recv, 65536, deadline, seconds, what)
            if not chunk:
                partial = self._buf.decode(_ENCODING, "replace")
                got = f" after {_quote(partial)}" if partial else ""
                raise GearmanConnectionError(f"{what}: connection closed by the server "
                                             f"before the reply ended{got}",
                                             ReturnCode.LOST_CONNECTION)
            self._buf += chunk

    def _io(self, op: Callable[[T], Union[bytes, None]], arg: T, deadline: float,
            seconds: float, what: str) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GearmanTimeoutError(f"{what}: no reply within {seconds:g} s",
                                      ReturnCode.TIMEOUT)
        assert self._sock is not None
        try:
            # a finite timeout per blocking call: Ctrl-C and the deadline always get through
            self._sock.settimeout(remaining)
            return op(arg) or b""
        except socket.timeout:
            raise GearmanTimeoutError(f"{what}: no reply within {seconds:g} s",
                                      ReturnCode.TIMEOUT) from None
        except OSError as e:
            raise GearmanConnectionError(f"{what}: connection lost: {e.strerror or e}",
                                         ReturnCode.LOST_CONNECTION) from e

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        self._buf.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _cmd_text(cmd: bytes) -> str:
    return cmd.decode(_ENCODING, _ERRORS)


# -- several servers -------------------------------------------------------------------------

@overload
def for_each(servers: Servers, call: Callable[[AdminClient], T], *,
             timeout: float = ...) -> Dict[str, Union[T, Exception]]: ...


@overload
def for_each(servers: Servers, call: str, *,
             timeout: float = ...) -> Dict[str, object]: ...


def for_each(servers: Servers, call: Union[str, Callable[[AdminClient], T]], *,
             timeout: float = DEFAULT_TIMEOUT) -> Dict[str, Any]:
    """Run one admin call on several servers at once, each in its own thread.

    ``servers``: anything :class:`~pygearman.GearmanClient` accepts (``"h1:4730,h2:4730"``, a
    list of ``"host:port"`` or ``(host, port)``; ``None`` reads ``$GEARMAN_SERVERS``).
    ``call``: a method name of :class:`AdminClient` (``"status"``) or a function of an
    AdminClient (``lambda a: a.maxqueue("fn", 10)``).

    Returns ``{"host:port": result}`` in the order given. A server that failed maps to the
    exception instance instead of a result (``GearmanConnectionError``, ``GearmanTimeoutError``,
    ``ServerError``, ``ProtocolError``, ...): one dead server does not hide the others; test
    with ``isinstance(value, Exception)``. Bad arguments to ``for_each`` itself raise at once;
    whatever ``call`` raises is reported per server like any other error. Every server has
    the whole ``timeout``, so the call returns within about ``timeout`` seconds.
    """
    seconds = _timeout_value(timeout)
    fn: Callable[[AdminClient], object]
    if isinstance(call, str):
        if call.startswith("_") or not callable(getattr(AdminClient, call, None)):
            raise ValueError(f"AdminClient has no method {call!r}")
        name = call

        def by_name(admin: AdminClient) -> object:
            method: Callable[[], object] = getattr(admin, name)
            return method()
        fn = by_name
    elif callable(call):
        fn = call
    else:
        raise TypeError(f"call must be an AdminClient method name or a function, "
                        f"not {type(call).__name__}")
    addresses: List[str] = []
    for host, port in parse_servers(servers):
        key = format_server(host, port)
        if key not in addresses:
            addresses.append(key)

    def one(address: str) -> object:
        try:
            with AdminClient(address, timeout=seconds) as admin:
                return fn(admin)
        except Exception as e:  # reported in the result, by design
            return e

    if len(addresses) == 1:
        return {addresses[0]: one(addresses[0])}
    pool = ThreadPoolExecutor(max_workers=min(len(addresses), 32),
                              thread_name_prefix="pygearman-admin")
    try:
        futures = [(a, pool.submit(one, a)) for a in addresses]
        return {a: f.result() for a, f in futures}
    finally:
        # on Ctrl-C do not wait: every thread ends by its own deadline anyway
        pool.shutdown(wait=False, cancel_futures=True)


def status_all(servers: Servers, *,
               timeout: float = DEFAULT_TIMEOUT) -> Dict[str, Union[List[FunctionStatus],
                                                                    Exception]]:
    """``status`` of several servers at once (see :func:`for_each` for the result)."""
    return for_each(servers, AdminClient.status, timeout=timeout)


def workers_all(servers: Servers, *,
                timeout: float = DEFAULT_TIMEOUT) -> Dict[str, Union[List[WorkerInfo],
                                                                     Exception]]:
    """``workers`` of several servers at once (see :func:`for_each` for the result)."""
    return for_each(servers, AdminClient.workers, timeout=timeout)
