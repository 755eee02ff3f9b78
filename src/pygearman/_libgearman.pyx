# cython: language_level=3
"""The compiled core of pygearman: owns every libgearman pointer and releases the GIL around I/O."""
cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport PyObject
from libc.errno cimport EINTR, errno
from libc.math cimport isnan
from libc.stdint cimport uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy, memset, strlen
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport getpid, read

from pygearman.includes.libgearman cimport *

import logging
import os
import warnings

from pygearman.errors import (
    GearmanConnectionError,
    GearmanError,
    GearmanTimeoutError,
    JobException,
    JobFailed,
    error_class_for,
)

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum:
        POLLIN

_log = logging.getLogger("pygearman")

# How long one blocking libgearman call may run before we look at signals and deadlines again.
# libgearman 1.1.20 restarts poll() on EINTR with the full timeout, so Ctrl-C only surfaces between
# slices (BRIEFING §3).
cdef enum:
    SLICE_MS = 100
cdef double BACKOFF_MIN = 0.1
cdef double BACKOFF_MAX = 5.0

PRIORITY_HIGH = <int>GEARMAN_JOB_PRIORITY_HIGH
PRIORITY_NORMAL = <int>GEARMAN_JOB_PRIORITY_NORMAL
PRIORITY_LOW = <int>GEARMAN_JOB_PRIORITY_LOW

MAX_FUNCTION_NAME = GEARMAN_FUNCTION_MAX_SIZE
# libgearman truncates a unique of exactly GEARMAN_MAX_UNIQUE_SIZE bytes to one less (BRIEFING §1.4):
# the longest unique that travels intact is 63 bytes.
MAX_UNIQUE = GEARMAN_MAX_UNIQUE_SIZE - 1
MAX_IDENTIFIER = GEARMAN_MAX_IDENTIFIER


def libgearman_version():
    """The version string of the libgearman loaded at run time."""
    return (<bytes>gearman_version()).decode()


def return_code_values():
    """{name: value} of gearman_return_t as compiled (the tests compare it with errors.ReturnCode)."""
    return {
        "SUCCESS": GEARMAN_SUCCESS, "IO_WAIT": GEARMAN_IO_WAIT, "SHUTDOWN": GEARMAN_SHUTDOWN,
        "SHUTDOWN_GRACEFUL": GEARMAN_SHUTDOWN_GRACEFUL, "ERRNO": GEARMAN_ERRNO,
        "NO_ACTIVE_FDS": GEARMAN_NO_ACTIVE_FDS, "LOST_CONNECTION": GEARMAN_LOST_CONNECTION,
        "WORK_EXCEPTION": GEARMAN_WORK_EXCEPTION, "WORK_FAIL": GEARMAN_WORK_FAIL,
        "COULD_NOT_CONNECT": GEARMAN_COULD_NOT_CONNECT, "TIMEOUT": GEARMAN_TIMEOUT,
        "INVALID_ARGUMENT": GEARMAN_INVALID_ARGUMENT, "JOB_NOT_FOUND": GEARMAN_JOB_NOT_FOUND,
        "UNKNOWN_STATE": GEARMAN_UNKNOWN_STATE, "NO_JOBS": GEARMAN_NO_JOBS,
        "NO_REGISTERED_FUNCTIONS": GEARMAN_NO_REGISTERED_FUNCTIONS,
        "MAX_RETURN": GEARMAN_MAX_RETURN, "FAIL": GEARMAN_FAIL, "ERROR": GEARMAN_ERROR,
    }


def strerror(int code):
    """libgearman's name for a return code."""
    return (<bytes>gearman_strerror(<gearman_return_t>code)).decode()


# ---------------------------------------------------------------------------------------------
# small C helpers

cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef double _seconds(object timeout) except? -2.0:
    """A user's timeout in seconds, validated before any I/O; -1 for none (None or inf)."""
    cdef double t
    if timeout is None:
        return -1.0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    t = timeout
    if isnan(t) or t < 0:
        raise ValueError(f"timeout must be >= 0 seconds (or None for no deadline), got {timeout!r}")
    if t == float("inf"):
        return -1.0
    return t


cdef double _deadline_from(object timeout, double default) except? -2.0:
    """Absolute monotonic deadline, or -1 for none. ``default`` (seconds, -1 none) applies when
    the caller passed nothing."""
    cdef double t = default if timeout is _UNSET else _seconds(timeout)
    if t < 0:
        return -1.0
    return _now() + t


cdef inline int _slice_ms(double deadline) noexcept nogil:
    """The next wait's length: SLICE_MS, or what is left until the deadline (at least 1 ms:
    libgearman treats 0 as 'never poll', BRIEFING §2.1)."""
    cdef double left
    if deadline < 0:
        return SLICE_MS
    left = (deadline - _now()) * 1000.0
    if left >= SLICE_MS:
        return SLICE_MS
    if left < 1:
        return 1
    return <int>left


cdef class _Unset:
    def __repr__(self):
        return "<default>"


_UNSET = _Unset()
UNSET = _UNSET


cdef bytes _name_bytes(object name, str what):
    """A function name as bytes: 1..512 bytes, no NUL (it would silently cut the C string)."""
    cdef bytes b
    if isinstance(name, str):
        b = (<str>name).encode("utf-8")
    elif isinstance(name, bytes):
        b = <bytes>name
    else:
        raise TypeError(f"{what} must be str or bytes, not {type(name).__name__}")
    if PyBytes_GET_SIZE(b) == 0:
        raise ValueError(f"{what} must not be empty")
    if PyBytes_GET_SIZE(b) > GEARMAN_FUNCTION_MAX_SIZE:
        raise ValueError(f"{what} is {PyBytes_GET_SIZE(b)} bytes; the Gearman limit is "
                         f"{GEARMAN_FUNCTION_MAX_SIZE} bytes")
    if memchr(PyBytes_AS_STRING(b), 0, PyBytes_GET_SIZE(b)) != NULL:
        raise ValueError(f"{what} must not contain NUL bytes")
    return b


cdef bytes _unique_bytes(object unique):
    cdef bytes b
    if unique is None:
        return None
    if isinstance(unique, str):
        b = (<str>unique).encode("utf-8")
    elif isinstance(unique, bytes):
        b = <bytes>unique
    else:
        raise TypeError(f"unique must be str, bytes or None, not {type(unique).__name__}")
    if PyBytes_GET_SIZE(b) == 0:
        raise ValueError("unique must not be empty (pass None to let pygearman choose one)")
    if PyBytes_GET_SIZE(b) > MAX_UNIQUE:
        raise ValueError(f"unique is {PyBytes_GET_SIZE(b)} bytes; at most {MAX_UNIQUE} bytes travel "
                         f"intact through libgearman")
    if memchr(PyBytes_AS_STRING(b), 0, PyBytes_GET_SIZE(b)) != NULL:
        raise ValueError("unique must not contain NUL bytes")
    return b


cdef object _payload_get(_Payload *p, object data, str what):
    """Borrow a pointer to bytes-like data (no copy) or to the UTF-8 of a str (one encode).
    Returns the object the caller must keep alive while it uses p (or None)."""
    cdef bytes enc
    p.has_view = False
    p.ptr = NULL
    p.size = 0
    if isinstance(data, bytes):
        p.size = PyBytes_GET_SIZE(data)
        if p.size:
            p.ptr = PyBytes_AS_STRING(data)
        return None
    if isinstance(data, str):
        enc = (<str>data).encode("utf-8")
        p.size = PyBytes_GET_SIZE(enc)
        if p.size:
            p.ptr = PyBytes_AS_STRING(enc)
        return enc
    if data is None:
        raise TypeError(f"{what} must be bytes-like or str, not None (use b'' for an empty {what})")
    try:
        PyObject_GetBuffer(data, &p.view, PyBUF_SIMPLE)
    except (TypeError, BufferError) as e:
        raise TypeError(f"{what} must be bytes-like (bytes, bytearray, memoryview, ...) or str, "
                        f"not {type(data).__name__} ({e})") from None
    p.has_view = True
    p.size = p.view.len
    if p.size:
        p.ptr = <const char *>p.view.buf
    return None


cdef inline void _payload_release(_Payload *p) noexcept:
    if p.has_view:
        PyBuffer_Release(&p.view)
        p.has_view = False


# Uniques for background jobs: libgearman's own costs ~9 us per job (libuuid tries uuidd each time,
# BRIEFING §4), so we draw 128 random bits from a pool refilled with os.urandom. The pool is dropped
# after fork, so parent and child never hand out the same unique.
cdef bytes _rand_pool = b""
cdef Py_ssize_t _rand_pos = 0
cdef int _rand_pid = -1
cdef const char *_HEX = b"0123456789abcdef"


cdef void _fresh_unique(char *out) except *:
    """Writes 32 hex chars + NUL into out."""
    global _rand_pool, _rand_pos, _rand_pid
    cdef const unsigned char *src
    cdef int i
    if _rand_pid != getpid() or _rand_pos + 16 > PyBytes_GET_SIZE(_rand_pool):
        _rand_pool = os.urandom(4096)
        _rand_pos = 0
        _rand_pid = getpid()
    src = <const unsigned char *>PyBytes_AS_STRING(_rand_pool) + _rand_pos
    _rand_pos += 16
    for i in range(16):
        out[2 * i] = _HEX[src[i] >> 4]
        out[2 * i + 1] = _HEX[src[i] & 15]
    out[32] = 0


def new_unique():
    """A fresh random unique (32 hex characters), as pygearman uses for background jobs."""
    cdef char buf[33]
    _fresh_unique(buf)
    return (<bytes>buf).decode("ascii")


cdef unsigned long long _fnv1a(bytes b):
    """A hash that is the same in every process (Python's hash() is salted per process), so
    every client sends a given unique to the same server and coalescing works."""
    cdef unsigned long long h = 1469598103934665603ULL
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t i
    for i in range(PyBytes_GET_SIZE(b)):
        h = (h ^ p[i]) * 1099511628211ULL
    return h


cdef str _text(const char *s):
    if s == NULL:
        return ""
    return s[:strlen(s)].decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# task callbacks: called by libgearman inside run_tasks, with the GIL released. They only record.

cdef struct _TaskCtx:
    void *result         # malloc'd by libgearman (gearman_task_take_data); ours to free
    size_t result_len
    bint have_result
    double slice_end     # when run_tasks should hand control back even if packets keep coming


cdef gearman_return_t _on_complete(gearman_task_st *task) noexcept nogil:
    cdef _TaskCtx *ctx = <_TaskCtx *>gearman_task_context(task)
    if ctx != NULL and not ctx.have_result:
        ctx.result = gearman_task_take_data(task, &ctx.result_len)
        ctx.have_result = True
    return GEARMAN_SUCCESS


cdef gearman_return_t _on_progress(gearman_task_st *task) noexcept nogil:
    """created/data/warning/status packets. libgearman's timeout is per poll, so a job that keeps
    sending status never times out (BRIEFING §2.1); pausing here returns control to _run, which
    checks Ctrl-C and the deadline. On resume libgearman calls us again for the same packet:
    slice_end was cleared, so that call lets it through."""
    cdef _TaskCtx *ctx = <_TaskCtx *>gearman_task_context(task)
    if ctx != NULL and ctx.slice_end > 0 and _now() >= ctx.slice_end:
        ctx.slice_end = 0
        return GEARMAN_PAUSE
    return GEARMAN_SUCCESS


# ---------------------------------------------------------------------------------------------

@cython.final
cdef class _ServerConn:
    """One job server, with its own libgearman client handle, made on first use."""

    def __cinit__(self, bytes host, int port):
        self.host = host
        self.port = port
        self.c = NULL

    cdef int ensure(self) except -1:
        """Create and configure the handle if needed. add_server resolves the name
        (getaddrinfo), so it runs without the GIL and only when the server is first used."""
        cdef gearman_return_t rc
        cdef const char *host = self.host
        cdef in_port_t port = <in_port_t>self.port
        if self.c != NULL:
            return 0
        self.c = gearman_client_create(NULL)
        if self.c == NULL:
            raise MemoryError("gearman_client_create failed")
        # gearman_client_create has already added $GEARMAN_SERVERS; this handle is for one server.
        gearman_client_remove_servers(self.c)
        with nogil:
            rc = gearman_client_add_server(self.c, host, port)
        if rc != GEARMAN_SUCCESS:
            err = error_class_for(rc)(f"{self.address}: {_clean(_text(gearman_client_error(self.c)))}", rc)
            self.reset()
            raise _NotSent(err)
        gearman_client_set_timeout(self.c, SLICE_MS)
        gearman_client_set_complete_fn(self.c, _on_complete)
        gearman_client_set_created_fn(self.c, _on_progress)
        gearman_client_set_data_fn(self.c, _on_progress)
        gearman_client_set_warning_fn(self.c, _on_progress)
        gearman_client_set_status_fn(self.c, _on_progress)
        return 0

    cdef void reset(self) noexcept:
        """Start over with a new libgearman handle on next use: drops the socket, any half-sent
        or half-read packet and every counter. After COULD_NOT_CONNECT this is what keeps the
        next job from being lost (created_id skew, BRIEFING §2.2). A new handle rather than
        remove/add_servers: libgearman 1.1.20 lost the next job's reply when it re-sent the
        stored "exceptions" option by itself inside run_tasks (seen here), so we re-arm."""
        if self.c != NULL:
            gearman_client_free(self.c)
            self.c = NULL
        self.armed = False

    @property
    def address(self):
        h = self.host.decode("utf-8", "replace")
        return f"[{h}]:{self.port}" if ":" in h else f"{h}:{self.port}"

    def __dealloc__(self):
        if self.c != NULL:
            gearman_client_free(self.c)
            self.c = NULL


cdef int _tick(_ServerConn s, double deadline, str what) except -1:
    """Between two slices of a blocking call: surface Ctrl-C and enforce the deadline. Either
    way the call is abandoned mid-protocol, so the connection is dropped, not reused."""
    try:
        PyErr_CheckSignals()
    except BaseException:
        s.reset()
        raise
    if deadline >= 0 and _now() >= deadline:
        s.reset()
        raise GearmanTimeoutError(f"{s.address}: {what} before the deadline", GEARMAN_TIMEOUT)
    return 0


class _NotSent(Exception):
    """The job never left this process (server unreachable): safe to try another server."""


class _Stale(Exception):
    """The connection broke before the server acknowledged the job: retry once on a new one."""


cdef str _clean(str msg):
    """libgearman's texts end in ' -> libgearman/file.cc:123: pid(N)'; keep the useful part."""
    cdef Py_ssize_t i = msg.find(" -> libgearman")
    if i > 0:
        msg = msg[:i]
    return msg


cdef object _client_error(_ServerConn s, gearman_return_t rc, str context=None):
    cdef int err
    if s.c == NULL:
        msg = strerror(rc)
    elif rc == GEARMAN_COULD_NOT_CONNECT or rc == GEARMAN_NO_ACTIVE_FDS:
        err = gearman_client_errno(s.c)
        why = os.strerror(err) if err else "connection refused or host unreachable"
        msg = f"cannot connect to the job server ({why})"
    elif gearman_client_error_code(s.c) == rc:
        msg = _clean(_text(gearman_client_error(s.c)))
    else:
        msg = strerror(rc)
    if context:
        msg = f"{context}: {msg}"
    return error_class_for(rc)(f"{s.address}: {msg}", rc)


cdef class Client:
    """Compiled core of :class:`pygearman.GearmanClient` (use that class)."""

    def __cinit__(self, *args, **kwargs):
        self._conns = []
        self._rr = 0
        self._default_timeout = -1.0
        self._busy = False
        self._closed = False
        self._handle_server = {}

    # -- configuration (no I/O) --------------------------------------------------------------

    def _add_server(self, bytes host, int port):
        self._check_usable()
        self._conns.append(_ServerConn(host, port))

    def _set_default_timeout(self, timeout):
        self._default_timeout = _seconds(timeout)

    @property
    def servers(self):
        """The job servers, as ``host:port`` strings, in the order they were added."""
        return [s.address for s in self._conns]

    @property
    def timeout(self):
        """Default deadline in seconds for each call (None: wait as long as it takes)."""
        return None if self._default_timeout < 0 else self._default_timeout

    @property
    def closed(self):
        return self._closed

    # -- guards ------------------------------------------------------------------------------

    cdef int _check_usable(self) except -1:
        if self._closed:
            raise RuntimeError("this GearmanClient is closed")
        return 0

    cdef int _enter(self) except -1:
        if self._closed:
            raise RuntimeError("this GearmanClient is closed")
        if self._busy:
            raise RuntimeError("this GearmanClient is in use by another call (a client is not "
                               "thread-safe: use one per thread, e.g. client.clone())")
        if not self._conns:
            raise ValueError("no job servers: add one with add_server()")
        self._busy = True
        return 0

    cdef void _leave(self) noexcept:
        self._busy = False

    # -- the "exceptions" server option ------------------------------------------------------

    cdef int _arm(self, _ServerConn s, double deadline) except -1:
        """Make sure WORK_EXCEPTION reaches us as such: without the option libgearman 1.1.20
        hangs on any job whose worker raises (BRIEFING §2.4). It must be set after add_server
        and only sticks once a server has accepted it, so we retry until it does."""
        cdef bint ok
        cdef gearman_return_t rc
        s.ensure()
        while not s.armed:
            gearman_client_set_timeout(s.c, _slice_ms(deadline))
            with nogil:
                ok = gearman_client_set_server_option(s.c, b"exceptions", 10)
            if ok:
                s.armed = True
                break
            rc = gearman_client_error_code(s.c)
            if rc == GEARMAN_TIMEOUT:
                _tick(s, deadline, "no answer from the job server")
                continue
            err = _client_error(s, rc)
            s.reset()
            if rc in (GEARMAN_COULD_NOT_CONNECT, GEARMAN_LOST_CONNECTION, GEARMAN_NO_ACTIVE_FDS,
                      GEARMAN_NOT_CONNECTED, GEARMAN_GETADDRINFO, GEARMAN_ERRNO):
                raise _NotSent(err)
            raise _client_error(s, rc, "setting the 'exceptions' option")
        return 0

    # -- server choice -----------------------------------------------------------------------

    cdef list _order(self, bytes unique):
        """Servers to try, best first: a given unique always maps to the same server (so
        coalescing works); otherwise round robin. Servers that failed recently go last."""
        cdef Py_ssize_t n = len(self._conns), start, i
        cdef double now
        if n == 1:
            return self._conns
        if unique is not None:
            start = <Py_ssize_t>(_fnv1a(unique) % <unsigned long long>n)
        else:
            start = self._rr % n
            self._rr += 1
        order = [self._conns[(start + i) % n] for i in range(n)]
        now = _now()
        return ([s for s in order if (<_ServerConn>s).down_until <= now]
                + [s for s in order if (<_ServerConn>s).down_until > now])

    # -- submitting --------------------------------------------------------------------------

    cdef object _submit(self, int priority, bint background, object function, object workload,
                        object unique, object timeout):
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef bytes fn = _name_bytes(function, "function name")
        cdef bytes uq = _unique_bytes(unique)
        cdef char genq[33]
        cdef const char *uq_ptr = NULL
        cdef object keep = None
        cdef _Payload p
        cdef _ServerConn s
        if priority != GEARMAN_JOB_PRIORITY_HIGH and priority != GEARMAN_JOB_PRIORITY_NORMAL \
                and priority != GEARMAN_JOB_PRIORITY_LOW:
            raise ValueError(f"priority must be Priority.HIGH, NORMAL or LOW, not {priority!r}")
        keep = _payload_get(&p, workload, "workload")
        try:
            if uq is not None:
                uq_ptr = PyBytes_AS_STRING(uq)
            else:
                # libgearman would make one with libuuid at ~9 us a job (BRIEFING §4)
                _fresh_unique(genq)
                uq_ptr = genq
            self._enter()
            try:
                last = None
                for s in self._order(uq):
                    try:
                        try:
                            return self._submit_on(s, priority, background, fn, uq_ptr, &p, deadline)
                        except _Stale:
                            return self._submit_on(s, priority, background, fn, uq_ptr, &p, deadline)
                    except _Stale as e:
                        raise e.args[0] from None
                    except _NotSent as e:
                        s.down_until = _now() + 1.0
                        last = e.args[0]
                        if len(self._conns) > 1:
                            _log.warning("%s; trying the next server", last)
                if len(self._conns) > 1:
                    raise GearmanConnectionError(
                        f"no job server could be reached (tried {', '.join(self.servers)}); "
                        f"last error: {last.message}", last.code)
                raise last
            finally:
                self._leave()
        finally:
            _payload_release(&p)

    cdef object _submit_on(self, _ServerConn s, int priority, bint background, bytes fn,
                           const char *uq, _Payload *p, double deadline):
        cdef gearman_return_t rc
        cdef gearman_task_st *task
        cdef _TaskCtx ctx
        cdef const char *fnp = PyBytes_AS_STRING(fn)
        cdef const char *exc_p
        cdef size_t exc_n
        memset(&ctx, 0, sizeof(ctx))
        self._arm(s, deadline)
        if background:
            if priority == GEARMAN_JOB_PRIORITY_HIGH:
                task = gearman_client_add_task_high_background(s.c, NULL, &ctx, fnp, uq, p.ptr, p.size, &rc)
            elif priority == GEARMAN_JOB_PRIORITY_LOW:
                task = gearman_client_add_task_low_background(s.c, NULL, &ctx, fnp, uq, p.ptr, p.size, &rc)
            else:
                task = gearman_client_add_task_background(s.c, NULL, &ctx, fnp, uq, p.ptr, p.size, &rc)
        else:
            if priority == GEARMAN_JOB_PRIORITY_HIGH:
                task = gearman_client_add_task_high(s.c, NULL, &ctx, fnp, uq, p.ptr, p.size, &rc)
            elif priority == GEARMAN_JOB_PRIORITY_LOW:
                task = gearman_client_add_task_low(s.c, NULL, &ctx, fnp, uq, p.ptr, p.size, &rc)
            else:
                task = gearman_client_add_task(s.c, NULL, &ctx, fnp, uq, p.ptr, p.size, &rc)
        if task == NULL:
            raise _client_error(s, rc)
        try:
            self._run(s, task, deadline)
            rc = gearman_task_return(task)
            if rc == GEARMAN_SUCCESS:
                if background:
                    handle = _text(gearman_task_job_handle(task))
                    if len(self._conns) > 1:
                        self._remember(handle, s)
                    return handle
                if ctx.result == NULL:
                    return b""
                return PyBytes_FromStringAndSize(<char *>ctx.result, ctx.result_len)
            handle = _text(gearman_task_job_handle(task)) or None
            name = fn.decode("utf-8", "replace")
            if rc == GEARMAN_WORK_EXCEPTION:
                exc_p = gearman_task_exception(task).c_str
                exc_n = gearman_task_exception(task).size
                text = (exc_p[:exc_n].decode("utf-8", "replace") if exc_p != NULL and exc_n
                        else "the worker raised an exception (no message)")
                raise JobException(text, rc, handle=handle, function=name)
            if rc == GEARMAN_WORK_FAIL:
                raise JobFailed(f"job {name!r} failed: the worker reported WORK_FAIL", rc,
                                handle=handle, function=name)
            if rc == GEARMAN_COULD_NOT_CONNECT:
                raise _NotSent(_client_error(s, rc))
            raise _client_error(s, rc)
        finally:
            gearman_task_free(task)
            if ctx.result != NULL:
                free(ctx.result)

    cdef int _run(self, _ServerConn s, gearman_task_st *task, double deadline) except -1:
        """Run the client's pending task to its end in GIL-free slices; Ctrl-C and the deadline
        are checked between slices (run_tasks resumes after GEARMAN_TIMEOUT)."""
        cdef gearman_return_t rc
        cdef int ms
        cdef _TaskCtx *ctx = <_TaskCtx *>gearman_task_context(task)
        while True:
            ms = _slice_ms(deadline)
            gearman_client_set_timeout(s.c, ms)
            ctx.slice_end = _now() + ms / 1000.0
            with nogil:
                rc = gearman_client_run_tasks(s.c)
            if rc == GEARMAN_SUCCESS:
                return 0
            if rc == GEARMAN_TIMEOUT or rc == GEARMAN_IO_WAIT or rc == GEARMAN_PAUSE:
                _tick(s, deadline, "the job did not finish")
                continue
            err = _client_error(s, rc)
            s.reset()
            if rc == GEARMAN_COULD_NOT_CONNECT or rc == GEARMAN_NO_ACTIVE_FDS:
                raise _NotSent(err)
            if (rc == GEARMAN_LOST_CONNECTION or rc == GEARMAN_ERRNO) and not gearman_task_is_known(task):
                # The server never acknowledged the job (typically: it restarted while we
                # were idle and our socket was stale). Try once more on a new connection.
                raise _Stale(err)
            raise err

    cdef void _remember(self, str handle, _ServerConn s):
        if len(self._handle_server) > 100000:
            self._handle_server.clear()
        self._handle_server[handle] = s

    # -- public calls ------------------------------------------------------------------------

    def do_normal(self, function, workload=b"", *, unique=None, timeout=_UNSET):
        """Run a job at normal priority and wait for its result (bytes)."""
        return self._submit(GEARMAN_JOB_PRIORITY_NORMAL, False, function, workload, unique, timeout)

    def do_high(self, function, workload=b"", *, unique=None, timeout=_UNSET):
        """Run a job at high priority and wait for its result (bytes)."""
        return self._submit(GEARMAN_JOB_PRIORITY_HIGH, False, function, workload, unique, timeout)

    def do_low(self, function, workload=b"", *, unique=None, timeout=_UNSET):
        """Run a job at low priority and wait for its result (bytes)."""
        return self._submit(GEARMAN_JOB_PRIORITY_LOW, False, function, workload, unique, timeout)

    def do_background(self, function, workload=b"", *, unique=None, timeout=_UNSET):
        """Queue a job at normal priority; returns its job handle once the server has it."""
        return self._submit(GEARMAN_JOB_PRIORITY_NORMAL, True, function, workload, unique, timeout)

    def do_high_background(self, function, workload=b"", *, unique=None, timeout=_UNSET):
        """Queue a job at high priority; returns its job handle once the server has it."""
        return self._submit(GEARMAN_JOB_PRIORITY_HIGH, True, function, workload, unique, timeout)

    def do_low_background(self, function, workload=b"", *, unique=None, timeout=_UNSET):
        """Queue a job at low priority; returns its job handle once the server has it."""
        return self._submit(GEARMAN_JOB_PRIORITY_LOW, True, function, workload, unique, timeout)

    def _do(self, int priority, bint background, function, workload, unique, timeout):
        return self._submit(priority, background, function, workload, unique, timeout)

    def _job_status(self, handle, timeout=_UNSET):
        """(known, running, numerator, denominator) of a job handle."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef bytes h
        cdef const char *hp
        cdef c_bool known = False, running = False
        cdef uint32_t num = 0, den = 0
        cdef gearman_return_t rc
        cdef _ServerConn s
        if isinstance(handle, str):
            h = (<str>handle).encode("utf-8")
        elif isinstance(handle, bytes):
            h = handle
        else:
            raise TypeError(f"handle must be str or bytes, not {type(handle).__name__}")
        if not h or PyBytes_GET_SIZE(h) >= GEARMAN_JOB_HANDLE_SIZE or b"\0" in h:
            raise ValueError(f"not a job handle: {handle!r} (1..{GEARMAN_JOB_HANDLE_SIZE - 1} bytes, "
                             f"as returned by do_background)")
        hp = h
        self._enter()
        try:
            known_server = self._handle_server.get(h.decode("utf-8", "replace"))
            candidates = [known_server] if known_server is not None else list(self._conns)
            last = None
            for s in candidates:
                try:
                    s.ensure()
                except _NotSent as e:
                    last = e.args[0]
                    continue
                while True:
                    gearman_client_set_timeout(s.c, _slice_ms(deadline))
                    with nogil:
                        rc = gearman_client_job_status(s.c, hp, &known, &running, &num, &den)
                    if rc != GEARMAN_TIMEOUT:
                        break
                    _tick(s, deadline, "no status")
                if rc == GEARMAN_SUCCESS:
                    if known or len(candidates) == 1:
                        return (known != 0, running != 0, num, den)
                    last = None
                    continue
                last = _client_error(s, rc)
                s.reset()
            if last is not None:
                raise last
            return (False, False, 0, 0)
        finally:
            self._leave()

    def echo(self, data=b"ping", *, timeout=_UNSET):
        """Send data to every job server and check it comes back unchanged."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef object keep = None
        cdef _Payload p
        cdef gearman_return_t rc
        cdef _ServerConn s
        keep = _payload_get(&p, data, "echo data")
        try:
            if p.size == 0:
                raise ValueError("echo data must not be empty")
            self._enter()
            try:
                for s in self._conns:
                    try:
                        s.ensure()
                    except _NotSent as e:
                        raise e.args[0] from None
                    while True:
                        gearman_client_set_timeout(s.c, _slice_ms(deadline))
                        with nogil:
                            rc = gearman_client_echo(s.c, p.ptr, p.size)
                        if rc != GEARMAN_TIMEOUT:
                            break
                        _tick(s, deadline, "no echo")
                    if rc != GEARMAN_SUCCESS:
                        err = _client_error(s, rc)
                        s.reset()
                        raise err
                return True
            finally:
                self._leave()
        finally:
            _payload_release(&p)

    def close(self):
        """Close every connection. Idempotent."""
        if self._closed:
            return
        if self._busy:
            raise RuntimeError("cannot close a GearmanClient while another thread is using it")
        self._closed = True
        self._conns = []          # each _ServerConn frees its gearman_client_st

    def __del__(self):
        if not self._closed and self._conns:
            try:
                warnings.warn(f"unclosed {type(self).__name__} {self.servers!r}; use close() or "
                              f"'with'", ResourceWarning, source=self)
            except Exception:
                pass  # interpreter shutdown: the memory is freed by __dealloc__ regardless


# ---------------------------------------------------------------------------------------------
# worker

@cython.final
cdef class _Function:
    cdef object func
    cdef str name
    cdef PyObject *worker   # borrowed: the worker owns its _Function objects (no cycle)


cdef class GearmanJob:
    """A job handed to a worker function. Valid only until that function returns."""

    def __init__(self, *args, **kwargs):
        raise TypeError("GearmanJob objects are made by pygearman for worker functions")

    cdef int _check(self) except -1:
        if self._job == NULL:
            raise RuntimeError("this GearmanJob is finished: it can only be used while its worker "
                               "function runs")
        if PyThread_get_thread_ident() != self._owner:
            raise RuntimeError("a GearmanJob can only be used from the thread running its function")
        return 0

    cdef int _sent(self, gearman_return_t rc, str what) except -1:
        if rc != GEARMAN_SUCCESS:
            msg = _text(gearman_job_error(self._job)) or strerror(rc)
            raise error_class_for(rc)(f"{what}: {msg}", rc)
        return 0

    @property
    def workload(self):
        """The job's data (bytes)."""
        return self._workload

    @property
    def handle(self):
        """The job handle the server gave this job (str)."""
        self._check()
        return _text(gearman_job_handle(self._job))

    @property
    def unique(self):
        """The job's unique key (str)."""
        self._check()
        return _text(gearman_job_unique(self._job))

    @property
    def function_name(self):
        """The function name the client asked for (str)."""
        self._check()
        return _text(gearman_job_function_name(self._job))

    def send_status(self, numerator, denominator):
        """Report progress (numerator out of denominator) to the client and to job_status()."""
        cdef uint32_t n, d
        cdef gearman_return_t rc
        self._check()
        if not isinstance(numerator, int) or not isinstance(denominator, int):
            raise TypeError("send_status takes two integers")
        if not (0 <= numerator <= 0xFFFFFFFF and 0 <= denominator <= 0xFFFFFFFF):
            raise ValueError("status numbers must be in 0..2**32-1")
        n = numerator
        d = denominator
        with nogil:
            rc = gearman_job_send_status(self._job, n, d)
        return self._sent(rc, "send_status")

    cdef int _send_bytes(self, int kind, object data) except -1:
        cdef object keep = None
        cdef _Payload p
        cdef gearman_return_t rc
        self._check()
        keep = _payload_get(&p, data, "data")
        try:
            with nogil:
                if kind == 0:
                    rc = gearman_job_send_data(self._job, p.ptr, p.size)
                elif kind == 1:
                    rc = gearman_job_send_warning(self._job, p.ptr, p.size)
                else:
                    rc = gearman_job_send_complete(self._job, p.ptr, p.size)
        finally:
            _payload_release(&p)
        if kind == 2:
            self._finished = True
        return self._sent(rc, ("send_data", "send_warning", "send_complete")[kind])

    def send_data(self, data):
        """Send a chunk of partial result (WORK_DATA)."""
        self._send_bytes(0, data)

    def send_warning(self, data):
        """Send a warning (WORK_WARNING)."""
        self._send_bytes(1, data)

    def send_complete(self, data=b""):
        """Finish the job with this result now; the function's return value is then ignored."""
        self._check()
        if self._finished:
            raise RuntimeError("this job already has its outcome")
        self._send_bytes(2, data)

    def send_fail(self):
        """Finish the job as failed (WORK_FAIL)."""
        cdef gearman_return_t rc
        self._check()
        if self._finished:
            raise RuntimeError("this job already has its outcome")
        with nogil:
            rc = gearman_job_send_fail(self._job)
        self._finished = True
        self._sent(rc, "send_fail")

    def send_exception(self, message):
        """Finish the job with an exception message (WORK_EXCEPTION)."""
        self._check()
        if self._finished:
            raise RuntimeError("this job already has its outcome")
        if isinstance(message, str):
            message = message.encode("utf-8")
        if not isinstance(message, bytes):
            raise TypeError("send_exception takes str or bytes")
        self._send_exception(message or b"exception")

    cdef int _send_exception(self, bytes message) except -1:
        cdef gearman_return_t rc
        cdef const char *p = PyBytes_AS_STRING(message)
        cdef size_t n = PyBytes_GET_SIZE(message)
        with nogil:
            rc = gearman_job_send_exception(self._job, p, n)
        self._finished = True
        return self._sent(rc, "send_exception")

    def __repr__(self):
        if self._job == NULL:
            return "<GearmanJob (finished)>"
        return f"<GearmanJob {self.function_name!r} handle={self.handle!r}>"


cdef gearman_return_t _job_trampoline(gearman_job_st *job, void *context) noexcept with gil:
    cdef _Function f = <_Function>context
    cdef GearmanJob pj
    cdef gearman_return_t ret = GEARMAN_SUCCESS
    cdef const char *wl
    try:
        pj = GearmanJob.__new__(GearmanJob)
        pj._job = job
        pj._owner = PyThread_get_thread_ident()
        wl = <const char *>gearman_job_workload(job)
        pj._workload = wl[:gearman_job_workload_size(job)] if wl != NULL else b""
        (<Worker>f.worker)._jobs += 1
    except BaseException as e:
        # Out of memory or similar before the user's code ran: let the server requeue the job.
        (<Worker>f.worker)._pending_exc = e
        return GEARMAN_ERROR
    try:
        result = f.func(pj)
        if not pj._finished:
            pj._send_bytes(2, _result_bytes(result, f.name))
    except BaseException as e:
        ret = _job_failed(f, pj, e)
    pj._job = NULL
    return ret


cdef object _result_bytes(object result, str name):
    if result is None:
        return b""
    if isinstance(result, (bytes, str, bytearray, memoryview)):
        return result
    try:
        memoryview(result)
    except TypeError:
        raise TypeError(f"worker function for {name!r} returned {type(result).__name__}; return "
                        f"bytes, bytearray, memoryview, str or None") from None
    return result


cdef gearman_return_t _job_failed(_Function f, GearmanJob pj, BaseException e) noexcept:
    """A job function raised. Exception -> WORK_EXCEPTION with the real text, and the job is
    done (never GEARMAN_ERROR: that requeues it forever, BRIEFING §6). KeyboardInterrupt and
    SystemExit requeue the job (the worker is going away) and re-raise after work() returns."""
    try:
        if not isinstance(e, Exception):
            (<Worker>f.worker)._pending_exc = e
            if pj._finished:
                return GEARMAN_SUCCESS
            return GEARMAN_ERROR
        if pj._finished:
            _log.exception("worker function for %r raised after sending its outcome", f.name,
                           exc_info=e)
            return GEARMAN_SUCCESS
        _log.info("job %r raised %s: %s", f.name, type(e).__name__, e)
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        try:
            pj._send_exception(text.encode("utf-8", "replace"))
        except GearmanError as send_err:
            _log.warning("could not send the exception of job %r: %s", f.name, send_err)
        return GEARMAN_FAIL
    except BaseException as inner:
        (<Worker>f.worker)._pending_exc = inner
        return GEARMAN_FAIL


cdef class Worker:
    """Compiled core of :class:`pygearman.GearmanWorker` (use that class)."""

    def __cinit__(self, *args, **kwargs):
        cdef gearman_id_t wid
        self._servers = []
        self._functions = {}
        self._retired = []
        self._w = gearman_worker_create(NULL)
        if self._w == NULL:
            raise MemoryError("gearman_worker_create failed")
        gearman_worker_remove_servers(self._w)   # drop $GEARMAN_SERVERS; the Python layer decides
        # set_timeout also turns on GEARMAN_WORKER_TIMEOUT_RETURN, without which the worker
        # swallows timeouts and we could never look at signals (BRIEFING §2.1).
        gearman_worker_set_timeout(self._w, SLICE_MS)
        wid = gearman_worker_id(self._w)
        self._read_fd = wid.read_fd
        self._write_fd = wid.write_fd

    def __dealloc__(self):
        if self._w != NULL:
            gearman_worker_free(self._w)
            self._w = NULL

    cdef int _enter(self) except -1:
        if self._closed:
            raise RuntimeError("this GearmanWorker is closed")
        if self._busy:
            raise RuntimeError("this GearmanWorker is in use by another call (a worker is not "
                               "thread-safe: use one per thread)")
        self._busy = True
        return 0

    def _add_server(self, bytes host, int port):
        cdef gearman_return_t rc
        self._enter()
        try:
            rc = gearman_worker_add_server(self._w, host, <in_port_t>port)
            if rc != GEARMAN_SUCCESS:
                raise error_class_for(rc)(_clean(_text(gearman_worker_error(self._w))), rc)
            self._servers.append((host, port))
        finally:
            self._busy = False

    @property
    def servers(self):
        return [(f"[{h.decode()}]:{p}" if b":" in h else f"{h.decode()}:{p}") for h, p in self._servers]

    @property
    def functions(self):
        """Names of the registered functions."""
        return list(self._functions)

    @property
    def closed(self):
        return self._closed

    @property
    def jobs_processed(self):
        """How many jobs were handed to a function so far."""
        return self._jobs

    def add_function(self, name, function, timeout=0):
        """Register ``function(job) -> result`` under ``name``. ``timeout`` (seconds, whole) is
        the server-side CAN_DO_TIMEOUT: 0 means none."""
        cdef bytes bname = _name_bytes(name, "function name")
        cdef gearman_return_t rc
        cdef _Function f
        if not callable(function):
            raise TypeError(f"function must be callable, not {type(function).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise TypeError("timeout must be a whole number of seconds")
        if not 0 <= timeout <= 0xFFFFFFFF:
            raise ValueError("timeout must be between 0 and 2**32-1 seconds")
        f = _Function.__new__(_Function)
        f.func = function
        f.name = bname.decode("utf-8", "replace")
        f.worker = <PyObject *>self
        self._enter()
        try:
            rc = gearman_worker_define_function(self._w, bname, PyBytes_GET_SIZE(bname),
                                                gearman_function_create(_job_trampoline),
                                                <uint32_t>timeout, <void *>f)
            if rc != GEARMAN_SUCCESS:
                raise error_class_for(rc)(_clean(_text(gearman_worker_error(self._w))), rc)
            # libgearman replaced any earlier definition: only now may the old context die.
            old = self._functions.get(f.name)
            if old is not None:
                self._retired.append(old)
            self._functions[f.name] = f
        finally:
            self._busy = False

    def unregister(self, name):
        """Stop taking jobs for one function."""
        cdef bytes bname = _name_bytes(name, "function name")
        cdef gearman_return_t rc
        key = bname.decode("utf-8", "replace")
        if key not in self._functions:
            raise KeyError(f"no function {key!r} is registered")
        self._enter()
        try:
            rc = gearman_worker_unregister(self._w, bname)
            if rc != GEARMAN_SUCCESS:
                raise error_class_for(rc)(_clean(_text(gearman_worker_error(self._w))), rc)
            # libgearman drops the function lazily: keep its context alive until the worker dies.
            self._retired.append(self._functions.pop(key))
        finally:
            self._busy = False

    # -- the work loop -----------------------------------------------------------------------

    cdef void _drain_wakeup(self) noexcept:
        cdef char buf[64]
        while read(self._read_fd, buf, sizeof(buf)) > 0:
            pass

    cdef int _backoff_wait(self, double deadline) except -1:
        """Server unreachable: wait (interruptibly: stop() writes to the pipe we poll) instead of
        spinning at 54k connect attempts per second (BRIEFING §2.3)."""
        cdef double until, left
        cdef pollfd pfd
        cdef int ms, r
        self._backoff = BACKOFF_MIN if self._backoff == 0 else min(self._backoff * 2, BACKOFF_MAX)
        until = _now() + self._backoff
        if deadline >= 0 and deadline < until:
            until = deadline
        while True:
            left = until - _now()
            if left <= 0:
                return 0
            ms = <int>(left * 1000) + 1
            if ms > SLICE_MS:
                ms = SLICE_MS
            pfd.fd = self._read_fd
            pfd.events = POLLIN
            pfd.revents = 0
            with nogil:
                r = poll(&pfd, 1, ms)
            PyErr_CheckSignals()
            if self._stop_requested:
                return 0

    cdef object _loop(self, bint one, double deadline):
        """Process jobs until one is done (one=True), stop() is called, or the deadline passes.
        Returns the number of jobs handed to functions."""
        cdef gearman_return_t rc
        cdef unsigned long long start = self._jobs
        cdef bint warned = False
        self._enter()
        try:
            if not self._functions:
                raise RuntimeError("no functions registered: call add_function() first")
            if not self._servers:
                raise ValueError("no job servers: add one with add_server()")
            while True:
                if self._stop_requested:
                    break
                gearman_worker_set_timeout(self._w, _slice_ms(deadline))
                with nogil:
                    rc = gearman_worker_work(self._w)
                if self._pending_exc is not None:
                    e = self._pending_exc
                    self._pending_exc = None
                    raise e
                if rc == GEARMAN_SUCCESS or rc == GEARMAN_WORK_FAIL:
                    if self._backoff:
                        _log.info("worker reconnected to the job server")
                    self._backoff = 0
                    warned = False
                    if one and self._jobs != start:
                        break
                elif rc == GEARMAN_TIMEOUT or rc == GEARMAN_IO_WAIT or rc == GEARMAN_NO_JOBS:
                    pass
                elif rc == GEARMAN_SHUTDOWN_GRACEFUL:
                    self._drain_wakeup()     # the interrupt is sticky until drained (BRIEFING §3)
                elif rc == GEARMAN_SHUTDOWN:
                    break
                elif rc in (GEARMAN_COULD_NOT_CONNECT, GEARMAN_LOST_CONNECTION, GEARMAN_NO_ACTIVE_FDS,
                            GEARMAN_NOT_CONNECTED, GEARMAN_ERRNO, GEARMAN_GETADDRINFO):
                    if not warned:
                        _log.warning("worker: %s; retrying with backoff",
                                     _clean(_text(gearman_worker_error(self._w))) or strerror(rc))
                        warned = True
                    self._backoff_wait(deadline)
                else:
                    raise error_class_for(rc)(_clean(_text(gearman_worker_error(self._w))) or strerror(rc), rc)
                PyErr_CheckSignals()
                if deadline >= 0 and _now() >= deadline:
                    break
        finally:
            self._stop_requested = False
            self._busy = False
        return self._jobs - start

    def work(self, *, timeout=None):
        """Wait for one job and run it. Returns True if a job was processed, False if the
        timeout passed or stop() was called first."""
        return self._loop(True, _deadline_from(timeout, -1.0)) > 0

    def run(self, *, timeout=None):
        """Process jobs until stop() is called (from any thread or a signal handler), Ctrl-C,
        or the timeout. Returns the number of jobs processed."""
        return self._loop(False, _deadline_from(timeout, -1.0))

    def stop(self):
        """Ask a running work()/run() to return after the job in hand. Safe from any thread and
        from signal handlers (it only writes a byte to libgearman's wakeup pipe)."""
        cdef gearman_id_t wid
        if self._closed:
            return
        self._stop_requested = True
        wid.read_fd = self._read_fd
        wid.write_fd = self._write_fd
        gearman_kill(wid, GEARMAN_INTERRUPT)

    def echo(self, data=b"ping"):
        """Check each job server answers (ECHO)."""
        cdef object keep = None
        cdef _Payload p
        cdef gearman_return_t rc
        keep = _payload_get(&p, data, "echo data")
        try:
            if p.size == 0:
                raise ValueError("echo data must not be empty")
            self._enter()
            try:
                with nogil:
                    rc = gearman_worker_echo(self._w, p.ptr, p.size)
                if rc != GEARMAN_SUCCESS:
                    raise error_class_for(rc)(_clean(_text(gearman_worker_error(self._w))) or strerror(rc), rc)
                return True
            finally:
                self._busy = False
        finally:
            _payload_release(&p)

    def close(self):
        """Disconnect and free the worker. Idempotent."""
        if self._closed:
            return
        if self._busy:
            raise RuntimeError("cannot close a GearmanWorker while it is working; call stop() first")
        self._closed = True
        if self._w != NULL:
            gearman_worker_free(self._w)
            self._w = NULL
        self._functions = {}

    def __del__(self):
        if not self._closed and self._servers:
            try:
                warnings.warn(f"unclosed {type(self).__name__}; use close() or 'with'",
                              ResourceWarning, source=self)
            except Exception:
                pass  # interpreter shutdown: the memory is freed by __dealloc__ regardless
