# cython: language_level=3
"""The compiled core of pygearman: owns every libgearman pointer and releases the GIL around I/O."""
cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport PyThread_get_thread_ident

from libc.errno cimport EINTR, errno
from libc.math cimport ceil, isnan
from libc.stdint cimport uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy, memset, strlen, strncpy
from libc.time cimport time_t
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
    ProtocolError,
    Retry,
    error_class_for,
)
from pygearman._servers import enlarge_socket_buffers, probe_gearman

cdef extern from *:
    """
    /* gearman_argument_t has const members: build it and the epoch attribute in C. */
    static gearman_task_st *pyg_execute_epoch(gearman_client_st *c, const char *fn, size_t fnn,
                                              const char *uq, size_t uqn, time_t when,
                                              gearman_job_priority_t prio, const char *wp,
                                              size_t wn, void *ctx)
    {
        gearman_task_attr_t attr = gearman_task_attr_init_epoch(when, prio);
        gearman_argument_t arg = gearman_argument_make(NULL, 0, wp, wn);
        return gearman_execute(c, fn, fnn, uq, uqn, &attr, &arg, ctx);
    }
    """
    gearman_task_st *_execute_epoch "pyg_execute_epoch"(
        gearman_client_st *c, const char *fn, size_t fnn, const char *uq, size_t uqn,
        time_t when, gearman_job_priority_t prio, const char *wp, size_t wn, void *ctx) nogil

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


LIBGEARMAN_BUILD_VERSION = (<bytes>LIBGEARMAN_VERSION_STRING).decode()


# libgearman's own log lines go to the "pygearman.libgearman" logger, as diagnostics: pygearman
# reports real failures itself (exceptions, and its own warnings on the "pygearman" logger).
# libgearman is only asked for lines when that logger is enabled for INFO or lower at the time a
# handle is made, so by default no callback ever runs.
_lg_log = logging.getLogger("pygearman.libgearman")


cdef void _log_line(const char *line, gearman_verbose_t verbose, void *context) noexcept with gil:
    cdef str text
    try:
        text = _clean(_text(line))
        # every idle worker slice "fails" with GEARMAN_TIMEOUT: that is not news
        if verbose <= GEARMAN_VERBOSE_ERROR and "GEARMAN_TIMEOUT" not in text:
            level = logging.INFO
        else:
            level = logging.DEBUG
        _lg_log.log(level, "%s", text)
    except BaseException as e:
        _defer(e)


cdef gearman_verbose_t _log_verbosity():
    cdef int level = _lg_log.getEffectiveLevel()
    if level <= logging.DEBUG:
        return GEARMAN_VERBOSE_DEBUG
    if level <= logging.INFO:
        return GEARMAN_VERBOSE_ERROR
    return GEARMAN_VERBOSE_NEVER


# A signal handler can run inside any Python code, including code run from a C callback that
# cannot raise (the log callback). Such an exception (KeyboardInterrupt, SystemExit...) is kept
# here and raised at the next check between two slices.
cdef object _deferred = None


cdef void _defer(BaseException e) noexcept:
    global _deferred
    if not isinstance(e, Exception) and _deferred is None:
        _deferred = e


cdef int _check_signals() except -1:
    global _deferred
    if _deferred is not None:
        e = _deferred
        _deferred = None
        raise e
    PyErr_CheckSignals()
    return 0


cdef object _probe(bytes host, int port, str address):
    """libgearman 1.1.20 crashes on a peer that answers with text (BRIEFING §2.2): look at the
    peer once ourselves. Returns True once a Gearman server answered, False if unknown."""
    verdict = probe_gearman(host.decode("utf-8", "replace"), port, 1.0)
    if verdict is None or verdict is True:
        return verdict is True
    raise ProtocolError(f"{address} is not a Gearman job server: it answered {bytes(verdict)[:40]!r} "
                        f"(check the port; libgearman would crash on this reply)")


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
# task callbacks: called by libgearman inside run_tasks, with the GIL released. They record into
# the task's C context and only take the GIL when a Python callback was asked for.

cdef enum:
    EV_CREATED = 1
    EV_DATA = 2
    EV_WARNING = 4
    EV_STATUS = 8
    EV_COMPLETE = 16
    EV_FAIL = 32
    EV_EXCEPTION = 64
    EV_PROGRESS = 15            # created | data | warning | status


cdef int _dispatch(gearman_task_st *task, _TaskCtx *ctx, int ev) noexcept with gil:
    """Hand an event to the GearmanTask. Returns 1 to make run_tasks return (a callback raised,
    or stream() has a chunk to yield)."""
    cdef GearmanTask t = <GearmanTask>ctx.pytask
    try:
        t._event(task, ev)
    except BaseException as e:
        t._client._cb_exc = e
        ctx.ctl.cb_error = True
        return 1
    return 1 if ctx.ctl.pause_requested else 0


cdef inline void _record(gearman_task_st *task, _TaskCtx *ctx, int ev) noexcept nogil:
    """Keep what the outcome needs in the context: in batches libgearman frees each task as
    soon as it finishes (GEARMAN_CLIENT_FREE_TASKS)."""
    cdef const char *p
    cdef gearman_string_t e
    if ev == EV_CREATED:
        ctx.ctl.created += 1
        p = gearman_task_job_handle(task)
        if p != NULL:
            strncpy(ctx.handle, p, 63)
            ctx.handle[63] = 0
        if ctx.kind == 1:          # a background job's outcome is being queued
            ctx.rc = GEARMAN_SUCCESS
    elif ev == EV_COMPLETE:
        ctx.ctl.done += 1
        if not ctx.have_result:
            ctx.result = gearman_task_take_data(task, &ctx.result_len)
            ctx.have_result = True
        ctx.rc = GEARMAN_SUCCESS
    elif ev == EV_EXCEPTION:
        ctx.ctl.done += 1
        ctx.rc = GEARMAN_WORK_EXCEPTION
        p = gearman_task_exception(task).c_str
        ctx.exc_len = gearman_task_exception(task).size
        if p != NULL and ctx.exc_len and ctx.exc == NULL:
            ctx.exc = <char *>malloc(ctx.exc_len)
            if ctx.exc != NULL:
                memcpy(ctx.exc, p, ctx.exc_len)
    elif ev == EV_FAIL:
        ctx.ctl.done += 1
        ctx.rc = GEARMAN_WORK_FAIL
    elif ev == EV_STATUS and ctx.kind == 2:
        ctx.rc = GEARMAN_SUCCESS


cdef object _ctx_error(_TaskCtx *ctx, str fname):
    """The exception for a job whose outcome is not success, from what _record() kept (in
    batches the task itself is freed by then)."""
    handle = ctx.handle.decode("utf-8", "replace") or None
    if ctx.rc == GEARMAN_WORK_EXCEPTION:
        text = (ctx.exc[:ctx.exc_len].decode("utf-8", "replace") if ctx.exc != NULL
                else "the worker raised an exception (no message)")
        return JobException(text, ctx.rc, handle=handle, function=fname)
    if ctx.rc == GEARMAN_WORK_FAIL:
        return JobFailed(f"job {fname!r} failed: the worker reported WORK_FAIL", ctx.rc,
                         handle=handle, function=fname)
    if ctx.rc < 0:
        return GearmanError(f"job {fname!r}: no outcome was received")
    return error_class_for(ctx.rc)(f"job {fname!r}: {strerror(ctx.rc)}", ctx.rc)


cdef inline void _ctx_init(_TaskCtx *ctx, _RunCtl *ctl, int kind) noexcept:
    memset(ctx, 0, sizeof(_TaskCtx))
    ctx.ctl = ctl
    ctx.kind = kind
    ctx.rc = -1


cdef inline void _ctx_clear(_TaskCtx *ctx) noexcept:
    if ctx.result != NULL:
        free(ctx.result)
        ctx.result = NULL
    if ctx.exc != NULL:
        free(ctx.exc)
        ctx.exc = NULL


cdef inline gearman_return_t _event(gearman_task_st *task, int ev) noexcept nogil:
    """Pausing (GEARMAN_PAUSE) makes run_tasks return with its state kept; libgearman's timeout
    is per poll, so a job that keeps sending status would otherwise never let us check Ctrl-C or
    the deadline (BRIEFING §2.1). On resume libgearman calls the same callback again for the same
    packet (BRIEFING §7): skip_next lets that call through without repeating the event."""
    cdef _TaskCtx *ctx = <_TaskCtx *>gearman_task_context(task)
    if ctx == NULL:
        return GEARMAN_SUCCESS
    if ctx.skip_next:
        ctx.skip_next = False
        return GEARMAN_SUCCESS
    _record(task, ctx, ev)
    if ctx.wants & ev:
        if _dispatch(task, ctx, ev):
            ctx.skip_next = True
            return GEARMAN_PAUSE
    if (ev & EV_PROGRESS) and _now() >= ctx.ctl.slice_end:
        ctx.skip_next = True
        return GEARMAN_PAUSE
    return GEARMAN_SUCCESS


cdef gearman_return_t _on_created(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_CREATED)

cdef gearman_return_t _on_data(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_DATA)

cdef gearman_return_t _on_warning(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_WARNING)

cdef gearman_return_t _on_status(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_STATUS)

cdef gearman_return_t _on_complete(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_COMPLETE)

cdef gearman_return_t _on_exception(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_EXCEPTION)

cdef gearman_return_t _on_fail(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_FAIL)


# ---------------------------------------------------------------------------------------------

@cython.final
cdef class _ServerConn:
    """One job server, with its own libgearman client handle, made on first use."""

    def __cinit__(self, bytes host, int port):
        self.host = host
        self.port = port
        self.c = NULL

    cdef int ensure(self, Client owner) except -1:
        """Create and configure the handle if needed. add_server resolves the name
        (getaddrinfo), so it runs without the GIL and only when the server is first used."""
        cdef gearman_return_t rc
        cdef const char *host = self.host
        cdef in_port_t port = <in_port_t>self.port
        cdef const char *ident
        cdef size_t ident_len
        if self.c != NULL:
            return 0
        if not self.probed:
            try:
                self.probed = _probe(self.host, self.port, self.address)
            except ProtocolError as e:
                raise _NotSent(e)
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
        gearman_client_set_log_fn(self.c, _log_line, NULL, _log_verbosity())
        gearman_client_set_created_fn(self.c, _on_created)
        gearman_client_set_data_fn(self.c, _on_data)
        gearman_client_set_warning_fn(self.c, _on_warning)
        gearman_client_set_status_fn(self.c, _on_status)
        gearman_client_set_complete_fn(self.c, _on_complete)
        gearman_client_set_exception_fn(self.c, _on_exception)
        gearman_client_set_fail_fn(self.c, _on_fail)
        if owner._namespace is not None:
            gearman_client_set_namespace(self.c, PyBytes_AS_STRING(owner._namespace),
                                         PyBytes_GET_SIZE(owner._namespace))
        if owner._identifier is not None:
            ident = PyBytes_AS_STRING(owner._identifier)
            ident_len = PyBytes_GET_SIZE(owner._identifier)
            with nogil:   # sends SET_CLIENT_ID at once (connects)
                rc = gearman_client_set_identifier(self.c, ident, ident_len)
            if rc != GEARMAN_SUCCESS:
                err = _client_error(self, rc)
                self.reset()
                raise _NotSent(err)
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
        self.probed = False     # whatever listens there now gets looked at again

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
        _check_signals()
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
    """The connection broke before the server acknowledged anything: retry once on a new one."""


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


cdef inline bint _is_conn_error(gearman_return_t rc) noexcept:
    return rc in (GEARMAN_COULD_NOT_CONNECT, GEARMAN_LOST_CONNECTION, GEARMAN_NO_ACTIVE_FDS,
                  GEARMAN_NOT_CONNECTED, GEARMAN_GETADDRINFO, GEARMAN_ERRNO)


cdef gearman_task_st *_add(gearman_client_st *c, int priority, bint background, void *ctx,
                           const char *fn, const char *uq, const char *wp, size_t wn,
                           gearman_return_t *rc) noexcept nogil:
    if background:
        if priority == GEARMAN_JOB_PRIORITY_HIGH:
            return gearman_client_add_task_high_background(c, NULL, ctx, fn, uq, wp, wn, rc)
        if priority == GEARMAN_JOB_PRIORITY_LOW:
            return gearman_client_add_task_low_background(c, NULL, ctx, fn, uq, wp, wn, rc)
        return gearman_client_add_task_background(c, NULL, ctx, fn, uq, wp, wn, rc)
    if priority == GEARMAN_JOB_PRIORITY_HIGH:
        return gearman_client_add_task_high(c, NULL, ctx, fn, uq, wp, wn, rc)
    if priority == GEARMAN_JOB_PRIORITY_LOW:
        return gearman_client_add_task_low(c, NULL, ctx, fn, uq, wp, wn, rc)
    return gearman_client_add_task(c, NULL, ctx, fn, uq, wp, wn, rc)


cdef int _check_batch(object batch) except -1:
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be an int, not {type(batch).__name__}")
    if not 1 <= batch <= 1000000:
        raise ValueError(f"batch must be between 1 and 1000000, got {batch}")
    return 0


cdef int _check_priority(object priority) except -1:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be a Priority, not {type(priority).__name__}")
    if priority not in (PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW):
        raise ValueError(f"priority must be Priority.HIGH, NORMAL or LOW, not {priority!r}")
    return 0


cdef double _epoch_of(object when) except -1.0:
    if isinstance(when, bool) or when is None:
        raise TypeError("when must be a datetime or a POSIX timestamp")
    if hasattr(when, "timestamp") and callable(when.timestamp):
        return when.timestamp()   # naive datetimes are local time, as datetime.timestamp() says
    if isinstance(when, (int, float)):
        if isnan(when) or when < 0 or when > 253402300799:
            raise ValueError(f"when must be a time between 1970 and 9999, got {when!r}")
        return when
    raise TypeError(f"when must be a datetime or a POSIX timestamp, not {type(when).__name__}")


# ---------------------------------------------------------------------------------------------

cdef class GearmanTask:
    """One job of a task set (see GearmanClient.add_task). Its fields are copied out of
    libgearman as events arrive, so they stay readable after the run."""

    def __init__(self, *args, **kwargs):
        raise TypeError("GearmanTask objects are made by GearmanClient.add_task()")

    @property
    def function_name(self):
        return self._fn.decode("utf-8", "replace")

    @property
    def unique(self):
        return self._uq.decode("utf-8", "replace") if self._uq is not None else None

    @property
    def workload(self):
        return self._workload

    @property
    def priority(self):
        return self._priority

    @property
    def background(self):
        return self._background

    @property
    def handle(self):
        """The job handle once the server has the job (str), else None."""
        return self._handle

    @property
    def state(self):
        """'new', 'queued' (handed to libgearman), 'created', 'running', 'complete',
        'failed', 'exception' or 'error'."""
        return self._state

    @property
    def result(self):
        """The WORK_COMPLETE payload (bytes) or None."""
        return self._result

    @property
    def error(self):
        """The exception that ended this task (JobException, JobFailed, ConnectionError...)."""
        return self._error

    @property
    def exception(self):
        """The worker's exception text, for a task that ended in WORK_EXCEPTION."""
        return self._exception_text

    @property
    def numerator(self):
        return self._num

    @property
    def denominator(self):
        return self._den

    @property
    def known(self):
        return self._known

    @property
    def running(self):
        return self._running

    @property
    def finished(self):
        return self._state in ("complete", "failed", "exception", "error")

    @property
    def data(self):
        """WORK_DATA chunks received so far (list of bytes)."""
        return self._data

    @property
    def warnings(self):
        """WORK_WARNING payloads received so far (list of bytes)."""
        return self._warnings

    cdef void _bind(self, _TaskCtx *ctx) noexcept:
        ctx.pytask = <PyObject *>self
        ctx.wants = EV_CREATED | EV_DATA | EV_WARNING | EV_STATUS | EV_COMPLETE | EV_FAIL | EV_EXCEPTION

    cdef object _callback(self, str name):
        if name == "created":
            cb = self._on_created
        elif name == "data":
            cb = self._on_data
        elif name == "warning":
            cb = self._on_warning
        elif name == "status":
            cb = self._on_status
        elif name == "complete":
            cb = self._on_complete
        elif name == "fail":
            cb = self._on_fail
        else:
            cb = self._on_exception
        if cb is None and self._client is not None:
            cb = self._client._callbacks.get(name)
        return cb

    cdef int _event(self, gearman_task_st *task, int ev) except -1:
        cdef const char *p
        cdef _TaskCtx *ctx
        if ev == EV_CREATED:
            self._handle = _text(gearman_task_job_handle(task))
            self._known = True
            self._state = "created"
            cb = self._callback("created")
        elif ev == EV_DATA or ev == EV_WARNING:
            p = <const char *>gearman_task_data(task)
            chunk = p[:gearman_task_data_size(task)] if p != NULL else b""
            self._state = "running"
            self._running = True
            if ev == EV_DATA:
                self._data.append(chunk)
                if self._stream is not None:
                    self._stream._push(chunk)
                cb = self._callback("data")
            else:
                self._warnings.append(chunk)
                cb = self._callback("warning")
            if cb is not None:
                cb(self, chunk)
            return 0
        elif ev == EV_STATUS:
            self._num = gearman_task_numerator(task)
            self._den = gearman_task_denominator(task)
            if self._status_only:
                self._known = gearman_task_is_known(task)
                self._running = gearman_task_is_running(task)
            else:
                self._running = True
                self._state = "running"
            cb = self._callback("status")
        elif ev == EV_COMPLETE:
            ctx = <_TaskCtx *>gearman_task_context(task)
            self._result = (PyBytes_FromStringAndSize(<char *>ctx.result, ctx.result_len)
                            if ctx.result != NULL else b"")
            self._state = "complete"
            self._known = self._running = False
            cb = self._callback("complete")
        elif ev == EV_EXCEPTION:
            # _record() has already copied the outcome into the task's context
            self._error = _ctx_error(<_TaskCtx *>gearman_task_context(task), self.function_name)
            self._exception_text = self._error.message
            self._state = "exception"
            self._known = self._running = False
            cb = self._callback("exception")
        else:
            self._error = _ctx_error(<_TaskCtx *>gearman_task_context(task), self.function_name)
            self._state = "failed"
            self._known = self._running = False
            cb = self._callback("fail")
        if cb is not None:
            cb(self)
        return 0

    cdef void _finish(self, _TaskCtx *ctx) noexcept:
        """After run_tasks: settle the state from the context (the task itself may be freed)."""
        try:
            if self._handle is None and ctx.handle[0] != 0:
                self._handle = ctx.handle.decode("utf-8", "replace")
            if self._state in ("complete", "failed", "exception"):
                return
            if ctx.rc == GEARMAN_SUCCESS:
                self._state = "complete"
            else:
                self._error = _ctx_error(ctx, self.function_name)
                self._state = "error"
        except BaseException as e:
            _defer(e)

    def __repr__(self):
        return (f"<GearmanTask {self.function_name!r} state={self._state} handle={self._handle!r}>")


cdef GearmanTask _new_task(Client client, bytes fn, bytes uq, object workload, int priority,
                           bint background):
    cdef GearmanTask t = GearmanTask.__new__(GearmanTask)
    t._client = client
    t._fn = fn
    t._uq = uq
    t._workload = workload
    t._priority = priority
    t._background = background
    t._state = "new"
    t._data = []
    t._warnings = []
    return t


@cython.final
cdef class JobStream:
    """Iterator over the WORK_DATA chunks of one foreground job (GearmanClient.stream()).
    After the loop, ``result`` holds the final WORK_COMPLETE payload."""

    def __init__(self, *args, **kwargs):
        raise TypeError("use GearmanClient.stream()")

    cdef void _push(self, bytes chunk):
        self._chunks.append(chunk)
        if self._ctl != NULL:
            self._ctl.pause_requested = True

    def __iter__(self):
        return self

    def __next__(self):
        if self._chunks:
            return self._chunks.pop(0)
        if self._done:
            if self._task._state == "error" and self._task._error is not None:
                raise self._task._error
            raise StopIteration
        self._task._client._stream_step(self)
        if self._chunks:
            return self._chunks.pop(0)
        self._done = True
        if self._task._error is not None:
            raise self._task._error
        raise StopIteration

    @property
    def task(self):
        return self._task

    @property
    def result(self):
        """The WORK_COMPLETE payload once the stream is exhausted (else None)."""
        return self._task._result

    def close(self):
        """Abandon the job (the connection is dropped; the job may still run on the server)."""
        self._task._client._stream_close(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


cdef class Client:
    """Compiled core of :class:`pygearman.GearmanClient` (use that class)."""

    def __cinit__(self, *args, **kwargs):
        self._conns = []
        self._rr = 0
        self._default_timeout = -1.0
        self._busy = False
        self._closed = False
        self._handle_server = {}
        self._pending = []
        self._callbacks = {}
        self._namespace = None
        self._identifier = None
        self._cb_exc = None
        self._stream = None

    # -- configuration (no I/O) --------------------------------------------------------------

    def _add_server(self, bytes host, int port):
        self._check_usable()
        self._conns.append(_ServerConn(host, port))

    def _set_default_timeout(self, timeout):
        self._default_timeout = _seconds(timeout)

    def _set_namespace(self, namespace):
        cdef bytes b
        if namespace is None:
            b = None
        else:
            b = namespace.encode("utf-8") if isinstance(namespace, str) else namespace
            if not isinstance(b, bytes):
                raise TypeError(f"namespace must be str or bytes, not {type(namespace).__name__}")
            if len(b) > 511 or b"\0" in b:
                # libgearman copies namespace + function name into a 1024-byte stack buffer
                # without checking (BRIEFING §1.4)
                raise ValueError("namespace must be at most 511 bytes, without NUL")
            if not b:
                b = None
        self._check_idle()
        self._namespace = b
        for s in self._conns:
            (<_ServerConn>s).reset()

    def _set_identifier(self, identifier):
        self._check_idle()
        self._identifier = _identifier_bytes(identifier)
        for s in self._conns:
            (<_ServerConn>s).reset()

    @property
    def servers(self):
        """The job servers, as ``host:port`` strings, in the order they were added."""
        return [s.address for s in self._conns]

    @property
    def timeout(self):
        """Default deadline in seconds for each call (None: wait as long as it takes)."""
        return None if self._default_timeout < 0 else self._default_timeout

    @property
    def namespace(self):
        return self._namespace.decode("utf-8", "replace") if self._namespace is not None else None

    @property
    def identifier(self):
        return self._identifier.decode() if self._identifier is not None else None

    @property
    def closed(self):
        return self._closed

    @property
    def pending_tasks(self):
        """Tasks added with add_task() and not yet run."""
        return list(self._pending)

    # -- guards ------------------------------------------------------------------------------

    cdef int _check_usable(self) except -1:
        if self._closed:
            raise RuntimeError("this GearmanClient is closed")
        return 0

    cdef int _check_idle(self) except -1:
        self._check_usable()
        if self._busy:
            raise RuntimeError("this GearmanClient is in use by another call")
        return 0

    cdef int _enter(self) except -1:
        if self._closed:
            raise RuntimeError("this GearmanClient is closed")
        if self._busy:
            raise RuntimeError("this GearmanClient is in use by another call (a client is not "
                               "thread-safe: use one per thread, e.g. client.clone())")
        if self._stream is not None:
            raise RuntimeError("a stream() of this client is still open: finish or close it first")
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
        s.ensure(self)
        while not s.armed:
            gearman_client_set_timeout(s.c, _slice_ms(deadline))
            with nogil:
                ok = gearman_client_set_server_option(s.c, b"exceptions", 10)
            if ok:
                s.armed = True
                # the handle is connected now: lift libgearman's 32 KiB socket buffers
                enlarge_socket_buffers([(s.host.decode("utf-8", "replace"), s.port)])
                break
            rc = gearman_client_error_code(s.c)
            if rc == GEARMAN_TIMEOUT:
                _tick(s, deadline, "no answer from the job server")
                continue
            err = _client_error(s, rc)
            s.reset()
            if _is_conn_error(rc):
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

    cdef object _failover(self, object attempt, bytes unique):
        """Call attempt(server) on each server in turn until one takes the job. _NotSent (the
        job never left us) moves on; _Stale (the socket died before any reply) retries once on
        a new connection; anything else propagates."""
        cdef _ServerConn s
        last = None
        for s in self._order(unique):
            try:
                try:
                    return attempt(s)
                except _Stale:
                    return attempt(s)
            except _Stale as e:
                raise e.args[0] from None
            except _NotSent as e:
                last = self._server_down(s, e)
        raise self._none_reachable(last)

    cdef object _server_down(self, _ServerConn s, object not_sent):
        """A job could not be sent to s: try s last for a second; returns the error."""
        s.down_until = _now() + 1.0
        err = not_sent.args[0]
        if len(self._conns) > 1:
            _log.warning("%s; trying the next server", err)
        return err

    cdef object _none_reachable(self, object last):
        if len(self._conns) > 1:
            return GearmanConnectionError(
                f"no job server could be reached (tried {', '.join(self.servers)}); "
                f"last error: {last.message}", last.code)
        return last

    # -- the run loop ------------------------------------------------------------------------

    cdef int _run(self, _ServerConn s, _RunCtl *ctl, double deadline, bint any_known) except -1:
        """Run the handle's pending tasks in GIL-free slices; Ctrl-C and the deadline are
        checked between slices (run_tasks resumes after TIMEOUT and PAUSE). Returns 1 when a
        stream() chunk is ready, 0 when every task is done."""
        cdef gearman_return_t rc
        cdef int ms
        while True:
            ms = _slice_ms(deadline)
            gearman_client_set_timeout(s.c, ms)
            ctl.slice_end = _now() + ms / 1000.0
            ctl.pause_requested = False
            with nogil:
                rc = gearman_client_run_tasks(s.c)
            if ctl.cb_error:
                s.reset()
                e = self._cb_exc
                self._cb_exc = None
                ctl.cb_error = False
                raise e
            if rc == GEARMAN_SUCCESS:
                return 0
            if rc == GEARMAN_PAUSE and ctl.pause_requested:
                return 1
            if rc == GEARMAN_TIMEOUT or rc == GEARMAN_IO_WAIT or rc == GEARMAN_PAUSE:
                _tick(s, deadline, "the job did not finish")
                continue
            err = _client_error(s, rc)
            s.reset()
            if rc == GEARMAN_COULD_NOT_CONNECT or rc == GEARMAN_NO_ACTIVE_FDS:
                raise _NotSent(err)
            if (rc == GEARMAN_LOST_CONNECTION or rc == GEARMAN_ERRNO) and not any_known \
                    and ctl.done == 0 and ctl.created == 0:
                # The server acknowledged nothing (typically it restarted while we were idle
                # and our socket was stale). Try once more on a new connection.
                raise _Stale(err)
            raise err

    # -- one job -----------------------------------------------------------------------------

    cdef object _submit(self, int priority, bint background, object function, object workload,
                        object unique, object timeout, object callbacks=None, object when=None):
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef bytes fn = _name_bytes(function, "function name")
        cdef bytes uq = _unique_bytes(unique)
        cdef char genq[33]
        cdef const char *uq_ptr
        cdef object keep = None
        cdef _Payload p
        cdef double epoch = -1
        cdef _ServerConn s
        if priority != GEARMAN_JOB_PRIORITY_HIGH and priority != GEARMAN_JOB_PRIORITY_NORMAL \
                and priority != GEARMAN_JOB_PRIORITY_LOW:
            _check_priority(priority)    # raises, saying what is allowed
        self._check_fn_len(fn)
        if when is not None:
            if not background:
                raise ValueError("when= (a scheduled job) needs background=True")
            epoch = _epoch_of(when)
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
                # the loop of _failover(), unrolled: this is the per-job hot path
                last = None
                for s in self._order(uq):
                    try:
                        try:
                            return self._submit_on(s, priority, background, fn, uq_ptr, &p,
                                                   deadline, callbacks, epoch)
                        except _Stale:
                            return self._submit_on(s, priority, background, fn, uq_ptr, &p,
                                                   deadline, callbacks, epoch)
                    except _Stale as e:
                        raise e.args[0] from None
                    except _NotSent as e:
                        last = self._server_down(s, e)
                raise self._none_reachable(last)
            finally:
                self._leave()
        finally:
            _payload_release(&p)

    cdef int _check_fn_len(self, bytes fn) except -1:
        if self._namespace is not None and \
                PyBytes_GET_SIZE(self._namespace) + PyBytes_GET_SIZE(fn) > 1023:
            raise ValueError("namespace + function name must stay under 1024 bytes")
        return 0

    cdef object _submit_on(self, _ServerConn s, int priority, bint background, bytes fn,
                           const char *uq, _Payload *p, double deadline, object callbacks,
                           double epoch):
        cdef gearman_return_t rc
        cdef gearman_task_st *task
        cdef _TaskCtx ctx
        cdef _RunCtl ctl
        cdef GearmanTask t = None
        cdef const char *fnp
        cdef size_t fnn
        cdef gearman_client_st *owner
        memset(&ctl, 0, sizeof(ctl))
        _ctx_init(&ctx, &ctl, 1 if background else 0)
        self._arm(s, deadline)
        if callbacks is not None:
            t = _new_task(self, fn, None, None, priority, background)
            t._on_data, t._on_warning, t._on_status = callbacks
            t._bind(&ctx)
        if epoch >= 0:
            gearman_client_set_timeout(s.c, _slice_ms(deadline))
            ctl.slice_end = _now() + SLICE_MS / 1000.0
            fnp = PyBytes_AS_STRING(fn)
            fnn = PyBytes_GET_SIZE(fn)
            with nogil:
                # adds the task and runs it; it ignores run_tasks' code, so _run below finishes
                # the job if this slice was not enough
                # whole seconds on the wire: round up so the job never runs early
                task = _execute_epoch(s.c, fnp, fnn, uq, strlen(uq), <time_t>ceil(epoch),
                                      <gearman_job_priority_t>priority, p.ptr, p.size, &ctx)
            if task == NULL:
                rc = gearman_client_error_code(s.c)
                err = _client_error(s, rc)
                s.reset()
                if _is_conn_error(rc):
                    raise _NotSent(err)
                raise err
        else:
            task = _add(s.c, priority, background, &ctx, PyBytes_AS_STRING(fn), uq, p.ptr, p.size, &rc)
            if task == NULL:
                raise _client_error(s, rc)
        owner = s.c
        try:
            if gearman_task_return(task) == GEARMAN_UNKNOWN_STATE:
                self._run(s, &ctl, deadline, False)
            rc = gearman_task_return(task)
            if rc == GEARMAN_SUCCESS:
                if background:
                    # (not ctx.handle: gearman_execute() runs epoch jobs with its own callbacks)
                    handle = _text(gearman_task_job_handle(task))
                    if len(self._conns) > 1:
                        self._remember(handle, s)
                    return handle
                if ctx.result == NULL:
                    return b""
                return PyBytes_FromStringAndSize(<char *>ctx.result, ctx.result_len)
            if rc == GEARMAN_COULD_NOT_CONNECT:
                raise _NotSent(_client_error(s, rc))
            if rc == GEARMAN_WORK_EXCEPTION or rc == GEARMAN_WORK_FAIL:
                raise _ctx_error(&ctx, fn.decode("utf-8", "replace"))
            raise _client_error(s, rc)
        finally:
            # after an abandoned call _run()/_tick() reset the connection, and the task went with
            # the old handle: free it only if that handle is still the one in use
            if s.c == owner:
                gearman_task_free(task)
            _ctx_clear(&ctx)

    cdef void _remember(self, str handle, _ServerConn s):
        if len(self._handle_server) > 100000:
            self._handle_server.clear()
        self._handle_server[handle] = s

    # -- public single-job calls -------------------------------------------------------------

    def do_normal(self, function, workload=b"", unique=None, *, timeout=_UNSET):
        """Run a job at normal priority and wait for its result (bytes)."""
        return self._submit(GEARMAN_JOB_PRIORITY_NORMAL, False, function, workload, unique, timeout)

    def do_high(self, function, workload=b"", unique=None, *, timeout=_UNSET):
        """Run a job at high priority and wait for its result (bytes)."""
        return self._submit(GEARMAN_JOB_PRIORITY_HIGH, False, function, workload, unique, timeout)

    def do_low(self, function, workload=b"", unique=None, *, timeout=_UNSET):
        """Run a job at low priority and wait for its result (bytes)."""
        return self._submit(GEARMAN_JOB_PRIORITY_LOW, False, function, workload, unique, timeout)

    def do_background(self, function, workload=b"", unique=None, *, timeout=_UNSET):
        """Queue a job at normal priority; returns its job handle once the server has it."""
        return self._submit(GEARMAN_JOB_PRIORITY_NORMAL, True, function, workload, unique, timeout)

    def do_high_background(self, function, workload=b"", unique=None, *, timeout=_UNSET):
        """Queue a job at high priority; returns its job handle once the server has it."""
        return self._submit(GEARMAN_JOB_PRIORITY_HIGH, True, function, workload, unique, timeout)

    def do_low_background(self, function, workload=b"", unique=None, *, timeout=_UNSET):
        """Queue a job at low priority; returns its job handle once the server has it."""
        return self._submit(GEARMAN_JOB_PRIORITY_LOW, True, function, workload, unique, timeout)

    def _do(self, int priority, bint background, function, workload, unique, timeout,
            on_data=None, on_warning=None, on_status=None, when=None):
        callbacks = None
        if on_data is not None or on_warning is not None or on_status is not None:
            if background:
                raise ValueError("on_data/on_warning/on_status need a foreground job (background "
                                 "jobs report to job_status() instead)")
            for cb in (on_data, on_warning, on_status):
                if cb is not None and not callable(cb):
                    raise TypeError(f"callbacks must be callable, not {type(cb).__name__}")
            # adapt the user's (chunk) / (numerator, denominator) signatures
            callbacks = (
                (lambda t, chunk: on_data(chunk)) if on_data is not None else None,
                (lambda t, chunk: on_warning(chunk)) if on_warning is not None else None,
                (lambda t: on_status(t.numerator, t.denominator)) if on_status is not None else None,
            )
        return self._submit(priority, background, function, workload, unique, timeout,
                            callbacks, when)

    # -- streaming ---------------------------------------------------------------------------

    def stream(self, function, workload=b"", *, unique=None, priority=PRIORITY_NORMAL,
               timeout=_UNSET):
        """Run a foreground job and iterate over its WORK_DATA chunks as they arrive::

            with client.stream("crawl", url) as chunks:
                for chunk in chunks: ...
            chunks.result   # the final WORK_COMPLETE payload
        """
        cdef JobStream st
        cdef GearmanTask t
        cdef bytes fn = _name_bytes(function, "function name")
        cdef bytes uq = _unique_bytes(unique)
        _check_priority(priority)
        self._check_fn_len(fn)
        self._enter()
        try:
            t = _new_task(self, fn, uq, None, priority, False)
            st = JobStream.__new__(JobStream)
            st._task = t
            st._chunks = []
            t._stream = st
            st._deadline = _deadline_from(timeout, self._default_timeout)
            keep = _payload_get(&st._payload, workload, "workload")
            st._keep = keep
            st._ctl = <_RunCtl *>malloc(sizeof(_RunCtl))
            st._ctx = <_TaskCtx *>malloc(sizeof(_TaskCtx))
            if st._ctl == NULL or st._ctx == NULL:
                raise MemoryError()
            memset(st._ctl, 0, sizeof(_RunCtl))
            _ctx_init(st._ctx, st._ctl, 0)
            t._bind(st._ctx)
            if uq is None:
                _fresh_unique(st._genq)
            else:
                memcpy(st._genq, PyBytes_AS_STRING(uq), PyBytes_GET_SIZE(uq) + 1)
        finally:
            self._leave()
        self._stream = st
        return st

    cdef void _stream_free(self, JobStream st) noexcept:
        if st._gtask != NULL:
            gearman_task_free(st._gtask)
            st._gtask = NULL
        if st._ctx != NULL:
            _ctx_clear(st._ctx)
            free(st._ctx)
            st._ctx = NULL
        if st._ctl != NULL:
            free(st._ctl)
            st._ctl = NULL
        _payload_release(&st._payload)
        st._keep = None
        st._done = True
        if self._stream is st:
            self._stream = None

    def _stream_close(self, JobStream st):
        if st._done and st._gtask == NULL:
            return
        if not st._task.finished and st._task._error is None:
            st._task._error = RuntimeError("the stream was closed before its job finished")
            st._task._state = "error"
        if st._server is not None and st._gtask != NULL and not st._task.finished:
            (<_ServerConn>st._server).reset()
            st._gtask = NULL   # freed with the handle
        self._stream_free(st)

    cdef object _stream_start(self, _ServerConn srv, JobStream st):
        cdef gearman_return_t rc
        cdef GearmanTask t = st._task
        self._arm(srv, st._deadline)
        st._gtask = _add(srv.c, t._priority, False, st._ctx, PyBytes_AS_STRING(t._fn),
                         st._genq, st._payload.ptr, st._payload.size, &rc)
        if st._gtask == NULL:
            raise _client_error(srv, rc)
        st._server = srv
        try:
            return self._run(srv, st._ctl, st._deadline, False)
        except BaseException:
            if srv.c == NULL:
                st._gtask = NULL   # the handle (and the task) went with reset()
            elif st._gtask != NULL:
                gearman_task_free(st._gtask)
                st._gtask = NULL
            raise

    def _stream_step(self, JobStream st):
        """Run the stream's job until the next chunk or its end."""
        cdef gearman_return_t rc
        cdef _ServerConn s
        cdef GearmanTask t = st._task
        if self._busy:
            raise RuntimeError("this GearmanClient is in use by another call")
        self._busy = True
        try:
            if st._gtask == NULL:
                paused = self._failover(lambda srv: self._stream_start(srv, st), t._uq)
            else:
                s = st._server
                try:
                    paused = self._run(s, st._ctl, st._deadline, True)
                except BaseException:
                    if s.c == NULL:
                        st._gtask = NULL
                    raise
            if not paused:
                t._finish(st._ctx)
                self._stream_free(st)
        except BaseException:
            self._stream_free(st)
            raise
        finally:
            self._busy = False

    # -- task sets ---------------------------------------------------------------------------

    def _add_task(self, function, workload, unique, int priority, bint background, context,
                  on_created, on_data, on_warning, on_status, on_complete, on_fail, on_exception,
                  status_handle=None, status_unique=None):
        cdef GearmanTask t
        cdef bytes fn
        cdef bytes uq
        cdef object keep
        cdef _Payload p
        self._check_idle()
        _check_priority(priority)
        for cb in (on_created, on_data, on_warning, on_status, on_complete, on_fail, on_exception):
            if cb is not None and not callable(cb):
                raise TypeError(f"task callbacks must be callable, not {type(cb).__name__}")
        if status_handle is not None or status_unique is not None:
            fn = b""
            uq = None
            data = b""
        else:
            fn = _name_bytes(function, "function name")
            self._check_fn_len(fn)
            uq = _unique_bytes(unique)
            # validate and copy now: the caller may reuse a bytearray before run_tasks()
            keep = _payload_get(&p, workload, "workload")
            try:
                data = p.ptr[:p.size] if p.size else b""
            finally:
                _payload_release(&p)
        t = _new_task(self, fn, uq, data, priority, background)
        t.context = context
        t._on_created, t._on_data, t._on_warning = on_created, on_data, on_warning
        t._on_status, t._on_complete, t._on_fail, t._on_exception = on_status, on_complete, on_fail, on_exception
        if status_handle is not None:
            t._status_only = True
            t._handle = status_handle
        elif status_unique is not None:
            t._status_only = True
            t._uq = status_unique
        self._pending.append(t)
        return t

    def _set_callback(self, str name, cb):
        if cb is not None and not callable(cb):
            raise TypeError(f"callback must be callable or None, not {type(cb).__name__}")
        if cb is None:
            self._callbacks.pop(name, None)
        else:
            self._callbacks[name] = cb

    def _callbacks_copy(self):
        return dict(self._callbacks)

    def clear_callbacks(self):
        """Forget the client-wide task callbacks (set_*_callback)."""
        self._callbacks = {}

    def run_tasks(self, *, timeout=_UNSET, batch=250):
        """Submit every task added with add_task*() (in the order they were added) and wait
        until all have finished. Callbacks run as events arrive. If a callback raises, the run
        stops and the exception propagates; every task keeps the state it had reached."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        _check_batch(batch)
        self._enter()
        tasks = self._pending
        self._pending = []
        try:
            groups = self._group(tasks)
            for key, group in groups:
                self._run_group(group, deadline, batch, key)
        finally:
            self._leave()
        return tasks

    cdef list _group(self, list tasks):
        """Split tasks per server (a unique always maps to the same server) and, within a
        server, into rounds without duplicate (function, unique): libgearman 1.1.20 hangs when
        one run holds two tasks that coalesce into one job (BRIEFING §7)."""
        cdef GearmanTask t
        cdef Py_ssize_t n = len(self._conns), i
        per = {}
        for t in tasks:
            if t._status_only and t._handle is not None and n > 1:
                s = self._handle_server.get(t._handle)
                idx = self._conns.index(s) if s is not None else 0
            elif t._uq is not None and n > 1:
                idx = <Py_ssize_t>(_fnv1a(t._uq) % <unsigned long long>n)
            elif n > 1:
                idx = self._rr % n
                self._rr += 1
            else:
                idx = 0
            per.setdefault(idx, []).append(t)
        out = []
        for idx in sorted(per):
            rounds = []
            seen = []
            status = []
            for t in per[idx]:
                if t._status_only:
                    # a status query ahead of a job steals the job's JOB_CREATED in libgearman
                    # 1.1.20 (its created_id is never advanced): queries get a round of their own
                    status.append(t)
                    continue
                if t._uq is None:
                    key = None
                elif t._uq in (b"-", b"#"):
                    key = (t._fn, t._uq, t._workload)
                else:
                    key = (t._fn, t._uq)
                r = 0
                if key is not None:
                    while r < len(seen) and key in seen[r]:
                        r += 1
                    if r == len(seen):
                        seen.append(set())
                    seen[r].add(key)
                while len(rounds) <= r:
                    rounds.append([])
                rounds[r].append(t)
            if status:
                rounds.append(status)
            for rnd in rounds:
                out.append((idx, rnd))
        return out

    cdef int _run_group(self, list group, double deadline, int batch, Py_ssize_t idx) except -1:
        cdef Py_ssize_t start = 0, n = len(group)
        while start < n:
            chunk = group[start:start + batch]
            start += batch
            order = self._conns[idx:] + self._conns[:idx]
            self._failover_chunk(chunk, order, deadline)
        return 0

    cdef object _failover_chunk(self, list chunk, list order, double deadline):
        cdef _ServerConn s
        last = None
        for s in order:
            try:
                try:
                    return self._run_chunk(s, chunk, deadline)
                except _Stale:
                    return self._run_chunk(s, chunk, deadline)
            except _Stale as e:
                self._fail_tasks(chunk, e.args[0])
                raise e.args[0] from None
            except _NotSent as e:
                last = self._server_down(s, e)
        self._fail_tasks(chunk, last)
        raise last

    cdef void _fail_tasks(self, list chunk, object err):
        cdef GearmanTask t
        for t in chunk:
            if not t.finished:
                t._error = err
                t._state = "error"

    cdef object _run_chunk(self, _ServerConn s, list chunk, double deadline):
        cdef Py_ssize_t n = len(chunk), i
        cdef _TaskCtx *ctxs
        cdef gearman_task_st *gt
        cdef _RunCtl ctl
        cdef GearmanTask t
        cdef gearman_return_t rc
        cdef char genq[33]
        cdef const char *uq
        cdef const char *wp
        cdef bint ran = False
        memset(&ctl, 0, sizeof(ctl))
        self._arm(s, deadline)
        ctxs = <_TaskCtx *>malloc(n * sizeof(_TaskCtx))
        if ctxs == NULL:
            raise MemoryError()
        for i in range(n):
            t = chunk[i]
            _ctx_init(&ctxs[i], &ctl, 2 if t._status_only else (1 if t._background else 0))
        try:
            # libgearman 1.1.20 prepends new tasks and sends from the head (LIFO, gearmand #319):
            # adding in reverse puts them on the wire in the order the user added them.
            for i in range(n - 1, -1, -1):
                t = chunk[i]
                t._bind(&ctxs[i])
                if t._status_only:
                    if t._handle is not None:
                        gt = gearman_client_add_task_status(s.c, NULL, &ctxs[i],
                                                            t._handle.encode(), &rc)
                    else:
                        gt = gearman_client_add_task_status_by_unique(s.c, NULL, t._uq, &rc)
                        if gt != NULL:
                            gearman_task_set_context(gt, &ctxs[i])
                else:
                    if t._uq is not None:
                        uq = PyBytes_AS_STRING(t._uq)
                    else:
                        _fresh_unique(genq)
                        uq = genq
                    wp = PyBytes_AS_STRING(t._workload) if PyBytes_GET_SIZE(t._workload) else NULL
                    gt = _add(s.c, t._priority, t._background, &ctxs[i], PyBytes_AS_STRING(t._fn),
                              uq, wp, PyBytes_GET_SIZE(t._workload), &rc)
                if gt == NULL:
                    err = _client_error(s, rc)
                    s.reset()      # frees the tasks added so far with the handle
                    raise err
                t._state = "queued"
            # libgearman frees each task as it finishes: its reply is matched against the tasks
            # still in flight only, not against every finished one (O(n) instead of O(n^2)).
            gearman_client_add_options(s.c, GEARMAN_CLIENT_FREE_TASKS)
            self._run(s, &ctl, deadline, False)
            ran = True
            gearman_client_remove_options(s.c, GEARMAN_CLIENT_FREE_TASKS)
            for i in range(n):
                t = chunk[i]
                t._finish(&ctxs[i])
                if t._background and t._handle and len(self._conns) > 1:
                    self._remember(t._handle, s)
        finally:
            # after an error _run() has reset the connection, which freed the unfinished tasks
            for i in range(n):
                _ctx_clear(&ctxs[i])
            free(ctxs)
        return None

    # -- batches in C ------------------------------------------------------------------------

    def _submit_many(self, function, workloads, uniques, int priority, bint background,
                     timeout, batch, bint return_exceptions):
        """Submit many jobs of one function, in batches run entirely in C; results (or handles)
        in input order."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef bytes fn = _name_bytes(function, "function name")
        cdef Py_ssize_t n, i
        cdef list items, uqs, out
        _check_batch(batch)
        _check_priority(priority)
        self._check_fn_len(fn)
        if isinstance(workloads, (bytes, str, bytearray, memoryview)):
            raise TypeError("workloads must be an iterable of workloads, not a single workload")
        items = list(workloads)
        n = len(items)
        if uniques is not None:
            uqs = [_unique_bytes(u) for u in uniques]
            if len(uqs) != n:
                raise ValueError(f"got {len(uqs)} uniques for {n} workloads")
            seen = set()
            for u in uqs:
                if u is not None:
                    if u in seen:
                        raise ValueError(f"duplicate unique {u!r} in one batch (the jobs would "
                                         f"coalesce; libgearman 1.1.20 hangs on that)")
                    seen.add(u)
        else:
            uqs = None
        # validate every workload before anything is sent
        enc = [None] * n
        for i in range(n):
            w = items[i]
            if isinstance(w, bytes):
                continue
            if isinstance(w, str):
                enc[i] = (<str>w).encode("utf-8")
            else:
                try:
                    enc[i] = bytes(memoryview(w))
                except TypeError:
                    raise TypeError(f"workload {i} must be bytes-like or str, not "
                                    f"{type(w).__name__}") from None
        out = [None] * n
        self._enter()
        try:
            start = 0
            while start < n:
                stop = min(n, start + batch)
                self._failover(lambda s: self._batch_on(s, fn, items, enc, uqs, start, stop,
                                                        priority, background, deadline, out),
                               None)
                start = stop
        except BaseException as e:
            if isinstance(e, GearmanError):
                e.results = out
            raise
        finally:
            self._leave()
        if not return_exceptions:
            for r in out:
                if isinstance(r, BaseException):
                    r.results = out
                    raise r
        return out

    cdef object _batch_on(self, _ServerConn s, bytes fn, list items, list enc, list uqs,
                          Py_ssize_t start, Py_ssize_t stop, int priority, bint background,
                          double deadline, list out):
        cdef Py_ssize_t n = stop - start, i, j
        cdef _TaskCtx *ctxs
        cdef gearman_task_st *gt
        cdef char *genq
        cdef _RunCtl ctl
        cdef gearman_return_t rc
        cdef const char *uq
        cdef const char *fnp = PyBytes_AS_STRING(fn)
        cdef const char *wp
        cdef Py_ssize_t wn
        cdef object w
        memset(&ctl, 0, sizeof(ctl))
        self._arm(s, deadline)
        ctxs = <_TaskCtx *>malloc(n * sizeof(_TaskCtx))
        genq = <char *>malloc(n * 33)
        if ctxs == NULL or genq == NULL:
            free(ctxs)
            free(genq)
            raise MemoryError()
        for j in range(n):
            _ctx_init(&ctxs[j], &ctl, 1 if background else 0)
        try:
            for j in range(n - 1, -1, -1):   # reverse: FIFO on the wire (see _run_chunk)
                i = start + j
                w = enc[i] if enc[i] is not None else items[i]
                wn = PyBytes_GET_SIZE(w)
                wp = PyBytes_AS_STRING(w) if wn else NULL
                if uqs is not None and uqs[i] is not None:
                    uq = PyBytes_AS_STRING(uqs[i])
                else:
                    _fresh_unique(genq + 33 * j)
                    uq = genq + 33 * j
                gt = _add(s.c, priority, background, &ctxs[j], fnp, uq, wp, wn, &rc)
                if gt == NULL:
                    err = _client_error(s, rc)
                    s.reset()      # frees the tasks added so far with the handle
                    raise err
            # libgearman frees each task as it finishes (O(n) reply matching, see _run_chunk)
            gearman_client_add_options(s.c, GEARMAN_CLIENT_FREE_TASKS)
            self._run(s, &ctl, deadline, False)
            gearman_client_remove_options(s.c, GEARMAN_CLIENT_FREE_TASKS)
            name = None
            for j in range(n):
                if ctxs[j].rc == GEARMAN_SUCCESS:
                    if background:
                        out[start + j] = ctxs[j].handle.decode("ascii", "replace")
                    elif ctxs[j].result != NULL:
                        out[start + j] = PyBytes_FromStringAndSize(<char *>ctxs[j].result,
                                                                   ctxs[j].result_len)
                    else:
                        out[start + j] = b""
                else:
                    if name is None:
                        name = fn.decode("utf-8", "replace")
                    out[start + j] = _ctx_error(&ctxs[j], name)
            if background and len(self._conns) > 1:
                for j in range(n):
                    if isinstance(out[start + j], str):
                        self._remember(out[start + j], s)
        finally:
            for j in range(n):
                _ctx_clear(&ctxs[j])
            free(ctxs)
            free(genq)
        return None

    # -- status, echo ------------------------------------------------------------------------

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
                    s.ensure(self)
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

    def _unique_status(self, unique, timeout=_UNSET):
        """(known, running, numerator, denominator) of a job by its unique."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef bytes uq = _unique_bytes(unique)
        if uq is None:
            raise ValueError("unique_status needs a unique")
        self._enter()
        try:
            return self._failover(lambda s: self._unique_status_on(s, uq, deadline), uq)
        finally:
            self._leave()

    cdef object _unique_status_on(self, _ServerConn s, bytes uq, double deadline):
        cdef gearman_task_st *task
        cdef gearman_return_t rc
        cdef _TaskCtx ctx
        cdef _RunCtl ctl
        memset(&ctl, 0, sizeof(ctl))
        _ctx_init(&ctx, &ctl, 2)
        s.ensure(self)
        task = gearman_client_add_task_status_by_unique(s.c, NULL, uq, &rc)
        if task == NULL:
            raise _client_error(s, rc)
        gearman_task_set_context(task, &ctx)
        try:
            self._run(s, &ctl, deadline, False)
            rc = gearman_task_return(task)
            if rc != GEARMAN_SUCCESS:
                raise _client_error(s, rc)
            return (gearman_task_is_known(task) != 0, gearman_task_is_running(task) != 0,
                    gearman_task_numerator(task), gearman_task_denominator(task))
        finally:
            if s.c != NULL:
                gearman_task_free(task)
                # libgearman 1.1.20 counts a status-by-unique query as a submission
                # (created_id_next++) but no JOB_CREATED answers it: the next job's reply would
                # never match. A fresh connection for what follows.
                s.reset()

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
                        s.ensure(self)
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

    def _server_for_handle(self, str handle):
        s = self._handle_server.get(handle)
        return s.address if s is not None else None

    def close(self):
        """Close every connection. Idempotent."""
        if self._closed:
            return
        if self._busy:
            raise RuntimeError("cannot close a GearmanClient while another thread is using it")
        if self._stream is not None:
            self._stream_close(self._stream)
        self._closed = True
        self._pending = []
        self._conns = []          # each _ServerConn frees its gearman_client_st

    def __del__(self):
        if not self._closed and self._conns:
            try:
                warnings.warn(f"unclosed {type(self).__name__} {self.servers!r}; use close() or "
                              f"'with'", ResourceWarning, source=self)
            except Exception:
                pass  # interpreter shutdown: the memory is freed by __dealloc__ regardless


cdef bytes _identifier_bytes(object identifier):
    cdef bytes b
    if identifier is None:
        return None
    if isinstance(identifier, str):
        b = (<str>identifier).encode("utf-8")
    elif isinstance(identifier, bytes):
        b = identifier
    else:
        raise TypeError(f"identifier must be str or bytes, not {type(identifier).__name__}")
    if not b or len(b) > GEARMAN_MAX_IDENTIFIER:
        raise ValueError(f"identifier must be 1..{GEARMAN_MAX_IDENTIFIER} bytes")
    for c in b:
        if c <= 32 or c >= 127:
            raise ValueError("identifier may only contain printable ASCII without spaces")
    return b


# ---------------------------------------------------------------------------------------------
# worker

@cython.final
cdef class _Function:
    cdef object func
    cdef str name
    cdef unsigned int timeout
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
        if (<Worker>f.worker)._reident_next:
            # first job since a Retry closed the sockets: we are connected and registered again
            (<Worker>f.worker)._reident_next = False
            (<Worker>f.worker)._apply_identifier()
    except BaseException as e:
        # Out of memory or similar before the user's code ran: let the server requeue the job.
        (<Worker>f.worker)._pending_exc = e
        return GEARMAN_ERROR
    try:
        result = f.func(pj)
        if not pj._finished:
            pj._send_bytes(2, _result_bytes(result, f.name))
    except Retry as e:
        ret = _job_retry(f, pj, e)
    except BaseException as e:
        ret = _job_failed(f, pj, e)
    pj._job = NULL
    return ret


cdef gearman_return_t _job_retry(_Function f, GearmanJob pj, object e) noexcept:
    """The function asked for a retry: hand the job back to gearmand (GEARMAN_ERROR drops the
    connection and the server requeues the job), at most max_retries times per job handle as
    seen by this worker; then fail it with an exception the client can read."""
    cdef Worker w = <Worker>f.worker
    try:
        if pj._finished:
            return GEARMAN_SUCCESS
        handle = _text(gearman_job_handle(pj._job))
        limit = e.max_retries if e.max_retries is not None else w._max_retries
        count = w._retries.get(handle, 0) + 1
        if count > limit:
            w._retries.pop(handle, None)
            text = f"Retry: gave up after {limit} retries" + (f": {e}" if str(e) else "")
            _log.info("job %r %s", f.name, text)
            try:
                pj._send_exception(text.encode("utf-8", "replace"))
            except GearmanError as send_err:
                _log.warning("could not send the exception of job %r: %s", f.name, send_err)
            return GEARMAN_FAIL
        if len(w._retries) > 10000:
            w._retries.clear()
        w._retries[handle] = count
        _log.info("job %r asked to be retried (%d/%d)", f.name, count, limit)
        if e.delay:
            w._backoff_sleep(e.delay)
        # the connection is dropped: the identifier goes again with the next job, when
        # libgearman has reconnected and registered (see _job_trampoline)
        w._reident_next = True
        return GEARMAN_ERROR
    except BaseException as inner:
        w._pending_exc = inner
        return GEARMAN_FAIL


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
        self._retries = {}
        self._max_retries = 3
        self._identifier = None
        self._w = gearman_worker_create(NULL)
        if self._w == NULL:
            raise MemoryError("gearman_worker_create failed")
        gearman_worker_remove_servers(self._w)   # drop $GEARMAN_SERVERS; the Python layer decides
        # set_timeout also turns on GEARMAN_WORKER_TIMEOUT_RETURN, without which the worker
        # swallows timeouts and we could never look at signals (BRIEFING §2.1).
        gearman_worker_set_timeout(self._w, SLICE_MS)
        gearman_worker_set_log_fn(self._w, _log_line, NULL, _log_verbosity())
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
        f.timeout = timeout
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

    def _function_items(self):
        """[(name, callable, timeout)] of the registered functions (for clone())."""
        cdef _Function f
        out = []
        for f in self._functions.values():
            out.append((f.name, f.func, f.timeout))
        return out

    def unregister_all(self):
        """Stop taking jobs for every function."""
        cdef gearman_return_t rc
        self._enter()
        try:
            if self._functions:
                rc = gearman_worker_unregister_all(self._w)
                if rc != GEARMAN_SUCCESS:
                    raise error_class_for(rc)(_clean(_text(gearman_worker_error(self._w))), rc)
                self._retired.extend(self._functions.values())
                self._functions = {}
        finally:
            self._busy = False

    def _set_namespace(self, namespace):
        cdef bytes b
        if isinstance(namespace, str):
            b = namespace.encode("utf-8")
        elif isinstance(namespace, bytes):
            b = namespace
        else:
            raise TypeError(f"namespace must be str or bytes, not {type(namespace).__name__}")
        if len(b) > 511 or b"\0" in b:
            raise ValueError("namespace must be at most 511 bytes, without NUL")
        if self._functions:
            raise RuntimeError("set the namespace before adding functions")
        gearman_worker_set_namespace(self._w, b, len(b))

    def _set_max_retries(self, n):
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError("max_retries must be an int")
        if not 0 <= n <= 1000000:
            raise ValueError("max_retries must be between 0 and 1000000")
        self._max_retries = n

    @property
    def max_retries(self):
        """How often this worker hands a job back (raise Retry) before failing it."""
        return self._max_retries

    @property
    def identifier(self):
        return self._identifier.decode() if self._identifier is not None else None

    def set_identifier(self, identifier):
        """Name this worker for the admin protocol (``workers``). libgearman 1.1.20 forgets it
        after a reconnect; pygearman sends it again."""
        cdef bytes b = _identifier_bytes(identifier)
        self._enter()
        try:
            self._identifier = b
            self._apply_identifier()
        finally:
            self._busy = False

    cdef int _apply_identifier(self) except -1:
        """Send the identifier again: libgearman 1.1.20 sends it once per connection object,
        never after a reconnect. Only called right after work() returned without a connection
        error, i.e. with the sockets connected: gearman_worker_set_identifier() would connect a
        closed socket itself, and libgearman then skips that server's CAN_DO registrations."""
        cdef gearman_return_t rc
        cdef const char *p
        cdef size_t n
        if self._identifier is None or not self._servers:
            self._reident = False
            return 0
        p = PyBytes_AS_STRING(self._identifier)
        n = PyBytes_GET_SIZE(self._identifier)
        with nogil:   # sends SET_CLIENT_ID on each connected socket
            rc = gearman_worker_set_identifier(self._w, p, n)
        _log.debug("worker: identifier %r sent again (%s)", self._identifier, strerror(rc))
        self._reident = False
        self._ident_at = _now()
        return 0

    cdef int _backoff_sleep(self, double seconds) except -1:
        """Sleep without the GIL, woken early by stop()."""
        cdef pollfd pfd
        cdef int ms
        cdef double until = _now() + seconds
        while not self._stop_requested:
            ms = <int>((until - _now()) * 1000)
            if ms <= 0:
                break
            pfd.fd = self._read_fd
            pfd.events = POLLIN
            pfd.revents = 0
            with nogil:
                poll(&pfd, 1, ms if ms < SLICE_MS else SLICE_MS)
            _check_signals()
        return 0

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
            _check_signals()
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
                if not self._probed:
                    self._probe_all()
                gearman_worker_set_timeout(self._w, _slice_ms(deadline))
                with nogil:
                    rc = gearman_worker_work(self._w)
                if self._pending_exc is not None:
                    e = self._pending_exc
                    self._pending_exc = None
                    raise e
                if rc == GEARMAN_SUCCESS or rc == GEARMAN_WORK_FAIL or rc == GEARMAN_TIMEOUT \
                        or rc == GEARMAN_IO_WAIT or rc == GEARMAN_NO_JOBS:
                    if self._backoff:
                        _log.info("worker reconnected to the job server")
                        self._reident = True
                        self._bufs_done = False
                    if not self._bufs_done and rc != GEARMAN_IO_WAIT:
                        # connected (libgearman pins 32 KiB socket buffers; lift them)
                        enlarge_socket_buffers([(h.decode("utf-8", "replace"), p)
                                                for h, p in self._servers])
                        self._bufs_done = True
                    self._backoff = 0
                    warned = False
                    # libgearman does not re-send the identifier after a reconnect, and some
                    # reconnects are silent (server restarted during a job): re-send it after
                    # errors and every 2 s (one small packet).
                    if self._identifier is not None and not self._reident_next and (
                            self._reident or (len(self._servers) == 1 and _now() - self._ident_at > 2)):
                        self._apply_identifier()
                    if one and self._jobs != start and rc != GEARMAN_TIMEOUT:
                        break
                elif rc == GEARMAN_SHUTDOWN_GRACEFUL:
                    self._drain_wakeup()     # the interrupt is sticky until drained (BRIEFING §3)
                elif rc == GEARMAN_SHUTDOWN:
                    break
                elif rc in (GEARMAN_COULD_NOT_CONNECT, GEARMAN_LOST_CONNECTION, GEARMAN_NO_ACTIVE_FDS,
                            GEARMAN_NOT_CONNECTED, GEARMAN_ERRNO, GEARMAN_GETADDRINFO):
                    self._probed = False    # look at whatever answers there next
                    if not warned:
                        _log.warning("worker: %s; retrying with backoff",
                                     _clean(_text(gearman_worker_error(self._w))) or strerror(rc))
                        warned = True
                    self._backoff_wait(deadline)
                else:
                    # e.g. gearmand answering a late WORK_COMPLETE with ERROR after it requeued a
                    # job whose CAN_DO_TIMEOUT passed: report it, keep the worker alive.
                    _log.warning("worker: %s", _clean(_text(gearman_worker_error(self._w))) or strerror(rc))
                    self._reident = True
                    self._backoff_wait(deadline)
                _check_signals()
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

    cdef int _probe_all(self) except -1:
        known = True
        for host, port in self._servers:
            known = _probe(host, port, f"{host.decode()}:{port}") and known
        self._probed = known
        return 0

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
                if not self._probed:
                    self._probe_all()
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
