# Errors: the one choke point (_check), the one set of connection error codes, and the
# exception carrier that C callbacks store into (one per client, stream and worker).


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


cdef inline bint _is_conn_error(gearman_return_t rc) noexcept nogil:
    """The codes that mean "the connection to the job server is gone or never was"."""
    return (rc == GEARMAN_COULD_NOT_CONNECT or rc == GEARMAN_LOST_CONNECTION
            or rc == GEARMAN_NO_ACTIVE_FDS or rc == GEARMAN_NOT_CONNECTED
            or rc == GEARMAN_GETADDRINFO or rc == GEARMAN_ERRNO)


cdef inline bint _never_connected(gearman_return_t rc) noexcept nogil:
    """Connection errors after which nothing can have reached the server."""
    return (rc == GEARMAN_COULD_NOT_CONNECT or rc == GEARMAN_NO_ACTIVE_FDS
            or rc == GEARMAN_GETADDRINFO)


cdef object _error(gearman_return_t rc, object source, str what):
    """The exception for a failed libgearman call: the most specific text libgearman has
    (the handle's own error string when it is about this code), prefixed with where."""
    cdef int err = 0
    cdef str msg = ""
    cdef _Conn conn
    if isinstance(source, _Conn):
        conn = <_Conn>source
        if conn.c != NULL:
            if _never_connected(rc):
                err = gearman_client_errno(conn.c)
                why = os.strerror(err) if err else "connection refused or host unreachable"
                msg = f"cannot connect to the job server ({why})"
            elif gearman_client_error_code(conn.c) == rc:
                msg = _clean(_text(gearman_client_error(conn.c)))
        where = conn.server.address
    elif isinstance(source, Worker):
        if (<Worker>source)._w != NULL:
            msg = _clean(_text(gearman_worker_error((<Worker>source)._w)))
        where = None
    elif isinstance(source, GearmanJob):
        if (<GearmanJob>source)._job != NULL:
            msg = _text(gearman_job_error((<GearmanJob>source)._job))
        where = None
    else:
        where = source
    if not msg:
        msg = strerror(rc)
    if what:
        msg = f"{what}: {msg}"
    if where:
        msg = f"{where}: {msg}"
    return error_class_for(rc)(msg, rc)


cdef inline int _check(gearman_return_t rc, object source, str what) except -1:
    """After every libgearman call that returns a code: raise the matching GearmanError."""
    if rc == GEARMAN_SUCCESS:
        return 0
    raise _error(rc, source, what)


@cython.final
cdef class _Exc:
    """Holds the first exception raised where it cannot propagate (a C callback, a signal
    handler running inside one); the owner re-raises it after the C call returns."""

    cdef void store(self, BaseException e) noexcept:
        if self.exc is None:
            self.exc = e

    cdef int raise_if_stored(self) except -1:
        if self.exc is not None:
            e = self.exc
            self.exc = None
            raise e
        return 0


cdef inline int _check_signals(_Exc carrier) except -1:
    """Between two slices: what a C callback stored, then Ctrl-C and other signal handlers."""
    if carrier.exc is not None:
        carrier.raise_if_stored()
    PyErr_CheckSignals()
    return 0


class _NotSent(Exception):
    """The job never left this process (server unreachable): safe to try another server."""


cdef object _probe(bytes host, int port, str address, double timeout=1.0):
    """libgearman crashes on a peer that answers with text (docs/libgearman-1.1.20.md#text-reply-crash):
    look at the peer once ourselves. Returns True once a Gearman server answered, False if unknown."""
    verdict = probe_gearman(host.decode("utf-8", "replace"), port, timeout)
    if verdict is None or verdict is True:
        return verdict is True
    raise ProtocolError(f"{address} is not a Gearman job server: it answered {bytes(verdict)[:40]!r} "
                        f"(check the port; libgearman would crash on this reply)")
