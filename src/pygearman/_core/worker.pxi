# The worker: the job object handed to functions, the trampoline, and the work loop.

from cpython.ref cimport Py_REFCNT

cdef enum:
    # Sends smaller than this keep the GIL: a GIL release/acquire costs more than the send (one
    # non-blocking send() into an enlarged socket buffer). Such a send could only block while
    # the kernel's send buffer is full, i.e. gearmand has stopped reading. Larger sends release it.
    SEND_KEEP_GIL = 65536


@cython.final
cdef class _Function:
    cdef object func
    cdef str name
    cdef unsigned int timeout
    cdef PyObject *worker   # borrowed: the worker owns its _Function objects (no cycle)


cdef bytes _job_workload(gearman_job_st *job):
    cdef const char *wl = <const char *>gearman_job_workload(job)
    cdef size_t n = gearman_job_workload_size(job)
    if wl == NULL or n == 0:
        return b""
    return wl[:n]


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
        return _check(rc, self, what)

    @property
    def workload(self):
        """The job's data (bytes). Readable from any thread, also after the function returned."""
        if self._workload is None:
            if self._job == NULL:
                raise RuntimeError("this GearmanJob was never handed to a worker function")
            # made on first access: a function that never reads it costs no copy
            self._workload = _job_workload(self._job)
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
        rc = gearman_job_send_status(self._job, n, d)     # 20 bytes: keeps the GIL (SEND_KEEP_GIL)
        return self._sent(rc, "send_status")

    cdef int _send_bytes(self, int kind, object data) except -1:
        cdef object keep = None
        cdef _Payload p
        cdef gearman_return_t rc
        self._check()
        keep = _payload_get(&p, data, "data")
        try:
            if p.size < SEND_KEEP_GIL:
                rc = _job_send(self._job, kind, p.ptr, p.size)
            else:
                with nogil:
                    rc = _job_send(self._job, kind, p.ptr, p.size)
        finally:
            _payload_release(&p)
        if kind == 2:
            self._finished = True
        if rc == GEARMAN_SUCCESS:
            return 0
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
        rc = gearman_job_send_fail(self._job)             # 12 bytes: keeps the GIL
        self._finished = True
        self._sent(rc, "send_fail")

    def send_exception(self, message):
        """Finish the job with an exception message (WORK_EXCEPTION)."""
        cdef gearman_return_t rc
        self._check()
        if self._finished:
            raise RuntimeError("this job already has its outcome")
        if isinstance(message, str):
            message = message.encode("utf-8")
        if not isinstance(message, bytes):
            raise TypeError("send_exception takes str or bytes")
        rc = _job_send_exception(self._job, message or b"exception")
        self._finished = True
        self._sent(rc, "send_exception")

    def __repr__(self):
        if self._job == NULL:
            return "<GearmanJob (finished)>"
        return f"<GearmanJob {self.function_name!r} handle={self.handle!r}>"


cdef inline gearman_return_t _job_send(gearman_job_st *job, int kind, const char *p,
                                       size_t n) noexcept nogil:
    if kind == 0:
        return gearman_job_send_data(job, p, n)
    if kind == 1:
        return gearman_job_send_warning(job, p, n)
    return gearman_job_send_complete(job, p, n)


cdef gearman_return_t _job_send_exception(gearman_job_st *job, bytes message) noexcept:
    cdef gearman_return_t rc
    cdef const char *p = PyBytes_AS_STRING(message)
    cdef size_t n = PyBytes_GET_SIZE(message)
    if n < SEND_KEEP_GIL:
        return gearman_job_send_exception(job, p, n)
    with nogil:
        rc = gearman_job_send_exception(job, p, n)
    return rc


cdef inline void _job_detach(GearmanJob pj) noexcept:
    """The function has returned: make the job object unusable before its outcome is sent, so a
    client that has the result can never see the job still usable. Copies the workload out
    first if someone else (a refcount beyond the caller's own) holds the job and never read it."""
    if pj._job == NULL:
        return
    if pj._workload is None and Py_REFCNT(pj) > 1:
        try:
            pj._workload = _job_workload(pj._job)
        except BaseException:
            pass    # out of memory: job.workload then raises RuntimeError
    pj._job = NULL
    pj._finished = True


cdef int _job_final_failed(_Function f, gearman_job_st *job, gearman_return_t rc, str what) except -1:
    """The outcome could not be sent (the connection is gone, most likely; gearmand requeues the
    job). Not the function's fault, so no exception of it."""
    cdef str msg = _text(gearman_job_error(job)) or strerror(rc)
    _log.warning("could not send the %s of job %r: %s", what, f.name, msg)
    return 0


# The GIL around gearman_worker_work(): released for the wait, taken by the job trampoline for
# the function, and then - when all libgearman still has to do for this job is free memory (the
# outcome is sent) - kept through the rest of gearman_worker_work() instead of being released and
# taken back a few hundred instructions later. One GIL cycle per job instead of two (plus one per
# send before). PyEval_SaveThread/RestoreThread with the thread state saved by the loop are also
# cheaper than PyGILState_Ensure/Release. Per thread: a job function may run another worker.
cdef extern from *:
    """
    typedef gearman_return_t (*pyg_job_run_t)(gearman_job_st *, void *, int *);
    static pyg_job_run_t pyg_job_run = NULL;
    typedef struct {
        PyThreadState *ts;                           /* saved by pyg_worker_work on this thread */
        int held;                                    /* the trampoline kept the GIL */
        int masked;                                  /* signals are held pending (see below) */
        sigset_t old;                                /* the mask to go back to */
    } pyg_wstate_t;
    static __thread pyg_wstate_t pyg_wstate;

    static void pyg_set_job_run(pyg_job_run_t f) { pyg_job_run = f; }

    /* Called with the GIL; returns with it. With hold (a signal has a Python handler, main
       thread), asynchronous signals stay pending while libgearman waits: its poll() restarts
       with the full timeout on every interruption (docs/libgearman-1.1.20.md#eintr-restart).
       They are let through before the job function runs, and after the call. */
    static gearman_return_t pyg_worker_work(gearman_worker_st *w, const sigset_t *hold)
    {
        pyg_wstate_t *st = &pyg_wstate;
        pyg_wstate_t outer = *st;                    /* an enclosing loop's (a job ran work()) */
        gearman_return_t rc;
        st->ts = PyEval_SaveThread();
        st->held = 0;
        st->masked = hold != NULL && pthread_sigmask(SIG_BLOCK, hold, &st->old) == 0;
        rc = gearman_worker_work(w);
        if (st->masked)
            pthread_sigmask(SIG_SETMASK, &st->old, NULL);
        if (!st->held)
            PyEval_RestoreThread(st->ts);
        *st = outer;
        return rc;
    }

    /* libgearman calls this without the GIL, inside gearman_worker_work(). */
    static gearman_return_t pyg_job_trampoline(gearman_job_st *job, void *context)
    {
        pyg_wstate_t *st = &pyg_wstate;
        gearman_return_t r;
        int keep = 0;
        if (st->ts == NULL) {                        /* not inside pyg_worker_work: never, but safe */
            PyGILState_STATE g = PyGILState_Ensure();
            r = pyg_job_run(job, context, &keep);
            PyGILState_Release(g);
            return r;
        }
        if (st->masked) {                            /* the job function gets its signals */
            pthread_sigmask(SIG_SETMASK, &st->old, NULL);
            st->masked = 0;
        }
        if (!st->held)
            PyEval_RestoreThread(st->ts);
        st->held = 0;
        r = pyg_job_run(job, context, &keep);
        if (keep)
            st->held = 1;                            /* pyg_worker_work returns without taking it */
        else
            PyEval_SaveThread();
        return r;
    }
    """
    ctypedef gearman_return_t (*pyg_job_run_t)(gearman_job_st *, void *, int *) noexcept
    void pyg_set_job_run(pyg_job_run_t f) noexcept
    gearman_return_t pyg_worker_work(gearman_worker_st *w, const sigset_t *hold) noexcept
    gearman_return_t _job_trampoline "pyg_job_trampoline"(gearman_job_st *job, void *context) noexcept nogil


cdef gearman_return_t _job_run(gearman_job_st *job, void *context, int *keep_gil) noexcept:
    """One job, with the GIL (see pyg_job_trampoline). Sets *keep_gil when libgearman has no
    I/O left for this job: the outcome went out, so what follows in gearman_worker_work() only
    frees the job."""
    cdef _Function f = <_Function>context
    cdef Worker w = <Worker>f.worker
    cdef GearmanJob pj = w._spare
    cdef gearman_return_t ret = GEARMAN_SUCCESS
    cdef gearman_return_t rc
    cdef _Payload p
    cdef object keep
    if pj is None:
        try:
            pj = GearmanJob.__new__(GearmanJob)
        except BaseException as e:
            # Out of memory before the user's code ran: let the server requeue the job.
            w._exc.store(e)
            return GEARMAN_ERROR
    else:
        w._spare = None             # in use; back to the worker below if nobody kept it
    pj._job = job
    pj._finished = False
    pj._owner = PyThread_get_thread_ident()
    w._jobs += 1
    if not w._bufs_done:
        # the first job on a new connection: lift libgearman's 32 KiB socket buffers before its
        # result goes out (docs/libgearman-1.1.20.md#socket-buffers-32k)
        try:
            enlarge_socket_buffers([(sh.decode("utf-8", "replace"), sp) for sh, sp in w._servers])
            w._bufs_done = True
        except Exception:
            pass
    if w._reident_next:
        # first job since a Retry closed the sockets: we are connected and registered again
        w._reident_next = False
        try:
            w._apply_identifier()
        except BaseException as e:
            pj._job = NULL
            w._exc.store(e)
            return GEARMAN_ERROR
    try:
        result = f.func(pj)
        if not pj._finished:
            keep = _result_payload(&p, result, f.name)
            _job_detach(pj)
            try:
                if p.size < SEND_KEEP_GIL:
                    rc = gearman_job_send_complete(job, p.ptr, p.size)
                else:
                    with nogil:
                        rc = gearman_job_send_complete(job, p.ptr, p.size)
            finally:
                _payload_release(&p)
            if rc == GEARMAN_SUCCESS:
                keep_gil[0] = 1
            else:
                _job_final_failed(f, job, rc, "result")
    except Retry as e:
        keep_gil[0] = 0
        ret = _job_retry(f, pj, job, e)
    except BaseException as e:
        keep_gil[0] = 0
        ret = _job_failed(f, pj, job, e)
    _job_detach(pj)
    if Py_REFCNT(pj) == 1:
        # nobody kept it (this function's reference is the only one): reuse it for the next job
        pj._workload = None
        w._spare = pj
    return ret


pyg_set_job_run(_job_run)


cdef gearman_return_t _job_retry(_Function f, GearmanJob pj, gearman_job_st *job, object e) noexcept:
    """The function asked for a retry: hand the job back to gearmand (GEARMAN_ERROR drops the
    connection and the server requeues the job), at most max_retries times per job handle as
    seen by this worker; then fail it with an exception the client can read."""
    cdef Worker w = <Worker>f.worker
    cdef gearman_return_t rc
    try:
        if pj._finished:
            return GEARMAN_SUCCESS
        handle = _text(gearman_job_handle(job))
        limit = e.max_retries if e.max_retries is not None else w._max_retries
        count = w._retries.get(handle, 0) + 1
        if count > limit:
            w._retries.pop(handle, None)
            text = f"Retry: gave up after {limit} retries" + (f": {e}" if str(e) else "")
            _log.info("job %r %s", f.name, text)
            _job_detach(pj)
            rc = _job_send_exception(job, text.encode("utf-8", "replace"))
            if rc != GEARMAN_SUCCESS:
                _job_final_failed(f, job, rc, "exception")
            return GEARMAN_FAIL
        if len(w._retries) > 10000:
            w._retries.clear()
        w._retries[handle] = count
        _log.info("job %r asked to be retried (%d/%d)", f.name, count, limit)
        _job_detach(pj)
        if e.delay:
            w._backoff_sleep(e.delay)
        # the connection is dropped: the identifier goes again with the next job, when
        # libgearman has reconnected and registered (see _job_run)
        w._reident_next = True
        return GEARMAN_ERROR
    except BaseException as inner:
        w._exc.store(inner)
        return GEARMAN_FAIL


cdef object _result_payload(_Payload *p, object result, str name):
    """Borrow the function's result for WORK_COMPLETE without a copy (bytes, bytearray,
    memoryview or any contiguous buffer; str is encoded; None is empty). Returns what the caller
    keeps alive while it uses p; release p with _payload_release()."""
    cdef bytes enc
    p.has_view = False
    p.ptr = NULL
    p.size = 0
    if isinstance(result, bytes):
        p.size = PyBytes_GET_SIZE(result)
        if p.size:
            p.ptr = PyBytes_AS_STRING(result)
        return result
    if result is None:
        return None
    if isinstance(result, str):
        enc = (<str>result).encode("utf-8")
        p.size = PyBytes_GET_SIZE(enc)
        if p.size:
            p.ptr = PyBytes_AS_STRING(enc)
        return enc
    try:
        PyObject_GetBuffer(result, &p.view, PyBUF_SIMPLE)
    except (TypeError, BufferError):
        raise TypeError(f"worker function for {name!r} returned {type(result).__name__}; return "
                        f"bytes, bytearray, memoryview, str or None") from None
    p.has_view = True
    p.size = p.view.len
    if p.size:
        p.ptr = <const char *>p.view.buf
    return None


cdef str _describe(BaseException e):
    """ "Type: message" of an exception, even one whose __str__ raises."""
    cdef str name = type(e).__name__
    try:
        text = str(e)
    except BaseException:
        try:
            text = f"(its str() failed: {object.__repr__(e)})"
        except BaseException:
            text = "(its str() failed)"
    return f"{name}: {text}" if text else name


cdef gearman_return_t _job_failed(_Function f, GearmanJob pj, gearman_job_st *job,
                                  BaseException e) noexcept:
    """A job function raised. Only KeyboardInterrupt and SystemExit (the worker is being
    stopped) hand the job back to the server (GEARMAN_ERROR requeues it) and are re-raised after
    work() returns. Every other exception, whatever its class and however broken its __str__,
    fails that job with a WORK_EXCEPTION carrying "Type: message", and the worker goes on
    (never GEARMAN_ERROR: a poison job would be requeued forever,
    docs/libgearman-1.1.20.md#error-return-requeues). Its traceback is logged once (ERROR)."""
    cdef gearman_return_t rc
    cdef str handle
    try:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            (<Worker>f.worker)._exc.store(e)
            if pj._finished:
                return GEARMAN_SUCCESS
            return GEARMAN_ERROR
        handle = _text(gearman_job_handle(job))
        if pj._finished:
            _log.error("job %s %s raised after sending its outcome", f.name, handle, exc_info=e)
            return GEARMAN_SUCCESS
        _log.error("job %s %s failed", f.name, handle, exc_info=e)
        text = _describe(e)
        _job_detach(pj)
        rc = _job_send_exception(job, text.encode("utf-8", "replace"))
        if rc != GEARMAN_SUCCESS:
            _job_final_failed(f, job, rc, "exception")
        return GEARMAN_FAIL
    except BaseException as inner:
        (<Worker>f.worker)._exc.store(inner)
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
        self._exc = _Exc()
        self._poll_interval = 1.0
        self._make_handle()

    cdef int _make_handle(self) except -1:
        """A new libgearman worker handle with our settings (no servers, no functions yet)."""
        cdef gearman_id_t wid
        self._w = gearman_worker_create(NULL)
        if self._w == NULL:
            raise MemoryError("gearman_worker_create failed")
        self._fork_gen = _fork_gen
        gearman_worker_remove_servers(self._w)   # drop $GEARMAN_SERVERS; the Python layer decides
        # set_timeout also turns on GEARMAN_WORKER_TIMEOUT_RETURN, without which the worker
        # swallows timeouts and we could never look at signals (docs/libgearman-1.1.20.md#timeout-per-poll).
        gearman_worker_set_timeout(self._w, SLICE_MS)
        gearman_worker_set_log_fn(self._w, _log_line, <void *>self._exc, _log_verbosity())
        # GRAB_JOB_UNIQ rather than libgearman's GRAB_JOB_ALL: every job server knows it (gear's
        # Server and Perl's Gearman::Server do not know GRAB_JOB_ALL), and it carries the unique
        gearman_worker_remove_options(self._w, GEARMAN_WORKER_GRAB_ALL)
        if not self._plain_grab:
            gearman_worker_add_options(self._w, GEARMAN_WORKER_GRAB_UNIQ)
        wid = gearman_worker_id(self._w)
        self._read_fd = wid.read_fd
        self._write_fd = wid.write_fd
        return 0

    cdef int _after_fork(self) except -1:
        """First use in a forked child: the handle, its sockets and its wakeup pipe are the
        parent's. It is left alone (freeing it would shut the parent's sockets down) and the
        child gets a new one with the same servers, namespace, functions and identifier."""
        cdef gearman_return_t rc
        cdef _Function f
        cdef bytes bname
        self._w = NULL
        self._busy = False
        self._stop_requested = False
        self._spare = None
        self._make_handle()
        if self._namespace_b is not None:
            gearman_worker_set_namespace(self._w, self._namespace_b, len(self._namespace_b))
        for host, port in self._servers:
            if self._pending is not None and (host, port) in self._pending:
                continue
            rc = gearman_worker_add_server(self._w, <bytes>host, <in_port_t><int>port)
            _check(rc, self, None)
        for f in self._functions.values():
            bname = f.name.encode("utf-8")
            rc = gearman_worker_define_function(self._w, bname, PyBytes_GET_SIZE(bname),
                                                gearman_function_create(_job_trampoline),
                                                <uint32_t>f.timeout, <void *>f)
            _check(rc, self, None)
        self._probed = False
        self._bufs_done = False
        self._backoff = 0
        self._reident = self._identifier is not None
        return 0

    def __dealloc__(self):
        if self._w != NULL and self._fork_gen == _fork_gen:
            gearman_worker_free(self._w)
        self._w = NULL

    cdef int _enter(self) except -1:
        if self._fork_gen != _fork_gen and not self._closed:
            self._after_fork()
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
            if rc == GEARMAN_GETADDRINFO:
                # A name that does not resolve (yet: in container setups a peer's name often
                # appears later) must not stop the worker from serving the other servers: it is
                # added when it resolves (see _retry_pending), said once in a log line.
                if self._pending is None:
                    self._pending = []
                self._pending.append((host, port))
                _log.warning("worker: %s:%d does not resolve (yet); serving the other servers "
                             "and trying it again meanwhile", host.decode("utf-8", "replace"), port)
            elif rc != GEARMAN_SUCCESS:
                _check(rc, self, None)
            self._servers.append((host, port))
        finally:
            self._busy = False

    cdef int _retry_pending(self) except -1:
        """Add the servers whose names did not resolve, once they do (at most every 2 s)."""
        cdef gearman_return_t rc
        cdef double now = _now()
        cdef const char *h
        cdef in_port_t pt
        if not self._pending or now - self._pending_at < 2.0:
            return 0
        self._pending_at = now
        still = []
        for host, port in self._pending:
            h = <bytes>host
            pt = <in_port_t><int>port
            with nogil:                 # resolves the name
                rc = gearman_worker_add_server(self._w, h, pt)
            if rc == GEARMAN_SUCCESS:
                _log.info("worker: %s:%d resolves now; serving it too",
                          (<bytes>host).decode("utf-8", "replace"), port)
            else:
                still.append((host, port))
        self._pending = still
        return 0

    @property
    def servers(self):
        """The job servers, as ``host:port`` strings, in the order they were added (names that
        do not resolve yet included)."""
        return [(f"[{h.decode()}]:{p}" if b":" in h else f"{h.decode()}:{p}") for h, p in self._servers]

    @property
    def functions(self):
        """Names of the registered functions."""
        return list(self._functions)

    @property
    def closed(self):
        """True after close()."""
        return self._closed

    @property
    def jobs_processed(self):
        """How many jobs were handed to a function so far."""
        return self._jobs

    def _add_function(self, name, function, timeout):
        """Register ``function(job) -> result`` under ``name``. ``timeout`` (seconds, whole) is
        the server-side CAN_DO_TIMEOUT: 0 means none."""
        cdef bytes bname = _coerce(name, "function name", C_FUNCTION)
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
                _check(rc, self, None)
            # libgearman replaced any earlier definition: only now may the old context die.
            old = self._functions.get(f.name)
            if old is not None:
                self._retired.append(old)
            self._functions[f.name] = f
        finally:
            self._busy = False

    def _unregister(self, name):
        """Stop taking jobs for one function."""
        cdef bytes bname = _coerce(name, "function name", C_FUNCTION)
        cdef gearman_return_t rc
        key = bname.decode("utf-8", "replace")
        if self._closed:
            raise RuntimeError("this GearmanWorker is closed")
        if key not in self._functions:
            raise KeyError(f"no function {key!r} is registered")
        self._enter()
        try:
            rc = gearman_worker_unregister(self._w, bname)
            if rc != GEARMAN_SUCCESS:
                _check(rc, self, None)
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

    def _unregister_all(self):
        """Stop taking jobs for every function."""
        cdef gearman_return_t rc
        self._enter()
        try:
            if self._functions:
                rc = gearman_worker_unregister_all(self._w)
                if rc != GEARMAN_SUCCESS:
                    _check(rc, self, None)
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
        self._namespace_b = b

    def _set_poll_interval(self, seconds):
        cdef double t
        if seconds is None:
            self._poll_interval = -1.0
            return
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"poll_interval must be a number of seconds or None, not "
                            f"{type(seconds).__name__}")
        t = seconds
        if isnan(t) or t <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds (or None), got {seconds!r}")
        self._poll_interval = t

    @property
    def poll_interval(self):
        """How often an idle worker asks the server again (None: only when woken by its NOOP).
        gearmand 1.1.20 has no timer: a scheduled job (when=) is handed out when a worker asks."""
        return None if self._poll_interval < 0 else self._poll_interval

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
        """This worker's name in the admin view (``workers``), or None."""
        return self._identifier.decode() if self._identifier is not None else None

    def _set_identifier(self, identifier):
        """Name this worker for the admin protocol (``workers``). libgearman 1.1.20 forgets it
        after a reconnect; pygearman sends it again."""
        cdef bytes b = _coerce(identifier, "identifier", C_IDENTIFIER)
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
            _check_signals(self._exc)
        return 0

    # -- the work loop -----------------------------------------------------------------------

    cdef void _drain_wakeup(self) noexcept:
        cdef char buf[64]
        while read(self._read_fd, buf, sizeof(buf)) > 0:
            pass

    cdef int _backoff_wait(self, double deadline) except -1:
        """Server unreachable: wait (interruptibly: stop() writes to the pipe we poll) instead of
        spinning at 54k connect attempts per second (docs/libgearman-1.1.20.md#worker-connect-spin)."""
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
            _check_signals(self._exc)
            if self._stop_requested:
                return 0

    cdef int _idle_wait(self, double deadline) except -1:
        """No job: the worker has sent PRE_SLEEP; wait for the server's NOOP (or a job) without
        sending anything, in slices that look at stop(), Ctrl-C and the deadline. Every
        poll_interval seconds it asks again anyway: gearmand 1.1.20 has no timer, so a
        scheduled job (when=) only reaches a worker that asks."""
        cdef gearman_return_t rc
        cdef double regrab = _now() + self._poll_interval if self._poll_interval > 0 else -1
        cdef double now
        cdef int ms
        cdef sigset_t old
        cdef bint held
        while not self._stop_requested:
            ms = _slice_ms(deadline, SLICE_MS)
            if regrab >= 0:
                now = _now()
                if now >= regrab:
                    break
                if (regrab - now) * 1000 < ms:
                    ms = max(1, <int>((regrab - now) * 1000))
            gearman_worker_set_timeout(self._w, ms)
            with nogil:
                held = _hold_signals(&old)
                rc = gearman_worker_wait(self._w)
                if held:
                    _release_signals(&old)
            _check_signals(self._exc)
            if rc == GEARMAN_SHUTDOWN_GRACEFUL:
                self._drain_wakeup()
                break
            if rc != GEARMAN_TIMEOUT:
                break               # something arrived (or an error that work() will report)
            if deadline >= 0 and _now() >= deadline:
                break
        gearman_worker_set_timeout(self._w, _slice_ms(deadline, SLICE_MS))
        return 0

    cdef object _loop(self, bint one, double deadline):
        """Process jobs until one is done (one=True), stop() is called, or the deadline passes.
        Returns the number of jobs handed to functions."""
        cdef gearman_return_t rc
        cdef unsigned long long start = self._jobs
        cdef bint warned = False
        cdef int slice_ms, set_ms = -2
        cdef unsigned long long jobs_before
        cdef bint reached = False       # some server answered during this call
        cdef bint timed_out = False
        last_err = None
        self._enter()
        try:
            if not self._functions:
                raise RuntimeError("no functions registered: call add_function() first")
            if not self._servers:
                raise ValueError("no job servers: add one with add_server()")
            while True:
                if self._stop_requested:
                    break
                if self._pending:
                    self._retry_pending()
                if len(self._pending or ()) == len(self._servers):
                    # no server resolves yet: nothing to work with but the wait
                    self._backoff_wait(deadline)
                    last_err = "no server name resolves"
                    _check_signals(self._exc)
                    if deadline >= 0 and _now() >= deadline:
                        timed_out = True
                        break
                    continue
                if not self._probed:
                    self._probe_all()
                slice_ms = _slice_ms(deadline, SLICE_MS)
                if slice_ms != set_ms:
                    gearman_worker_set_timeout(self._w, slice_ms)
                    set_ms = slice_ms
                _refresh_signal_policy()
                jobs_before = self._jobs
                rc = pyg_worker_work(self._w, &_async_signals if _handlers_installed and
                                     pthread_equal(pthread_self(), _main_thread) else NULL)
                self._exc.raise_if_stored()
                if rc == GEARMAN_SUCCESS or rc == GEARMAN_WORK_FAIL or rc == GEARMAN_TIMEOUT \
                        or rc == GEARMAN_IO_WAIT or rc == GEARMAN_NO_JOBS:
                    reached = True
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
                    if rc == GEARMAN_TIMEOUT and self._jobs == jobs_before:
                        # idle: sleep on the PRE_SLEEP already sent, like every Gearman worker,
                        # instead of asking again each slice
                        self._idle_wait(deadline)
                elif rc == GEARMAN_SHUTDOWN_GRACEFUL:
                    self._drain_wakeup()     # sticky until drained (docs/libgearman-1.1.20.md#wakeup-pipe-sticky)
                elif rc == GEARMAN_SHUTDOWN:
                    break
                elif _is_conn_error(rc):
                    last_err = _clean(_text(gearman_worker_error(self._w))) or strerror(rc)
                    self._probed = False    # look at whatever answers there next
                    if not warned:
                        _log.warning("worker: %s; retrying with backoff",
                                     _clean(_text(gearman_worker_error(self._w))) or strerror(rc))
                        warned = True
                    self._backoff_wait(deadline)
                elif rc == GEARMAN_UNEXPECTED_PACKET and not self._plain_grab and \
                        "GEARMAN_ERROR" in _text(gearman_worker_error(self._w)):
                    # the server answered GRAB_JOB_UNIQ with ERROR (Perl's Gearman::Server knows
                    # only GRAB_JOB): ask with GRAB_JOB from now on; job.unique is then empty
                    gearman_worker_remove_options(self._w, GEARMAN_WORKER_GRAB_UNIQ)
                    self._plain_grab = True
                    _log.warning("worker: %s answers GRAB_JOB_UNIQ with ERROR: using GRAB_JOB "
                                 "(job.unique is empty there)", ", ".join(self.servers))
                else:
                    # e.g. gearmand answering a late WORK_COMPLETE with ERROR after it requeued a
                    # job whose CAN_DO_TIMEOUT passed: report it, keep the worker alive.
                    _log.warning("worker: %s", _clean(_text(gearman_worker_error(self._w))) or strerror(rc))
                    self._reident = True
                    self._backoff_wait(deadline)
                _check_signals(self._exc)
                if deadline >= 0 and _now() >= deadline:
                    timed_out = True
                    break
        finally:
            self._stop_requested = False
            self._busy = False
        if timed_out and not reached and last_err is not None:
            # "no job" is False / 0; "no server at all" says so
            raise GearmanConnectionError(f"no job server could be reached before the deadline "
                                         f"({', '.join(self.servers)}): {last_err}",
                                         GEARMAN_COULD_NOT_CONNECT)
        return self._jobs - start

    def _work(self, timeout):
        """Wait for one job and run it. Returns True if a job was processed, False if the
        timeout passed or stop() was called first."""
        return self._loop(True, _deadline_from(timeout, -1.0)) > 0

    def _run(self, timeout):
        """Process jobs until stop() is called (from any thread or a signal handler), Ctrl-C,
        or the timeout. Returns the number of jobs processed."""
        return self._loop(False, _deadline_from(timeout, -1.0))

    def _stop(self):
        """Ask a running work()/run() to return after the job in hand. Safe from any thread and
        from signal handlers (it only writes a byte to libgearman's wakeup pipe)."""
        cdef gearman_id_t wid
        if self._closed:
            return
        self._stop_requested = True
        if self._fork_gen != _fork_gen:
            return          # the pipe is the parent's (nothing runs here yet)
        wid.read_fd = self._read_fd
        wid.write_fd = self._write_fd
        gearman_kill(wid, GEARMAN_INTERRUPT)

    cdef int _probe_all(self) except -1:
        known = True
        for host, port in self._servers:
            if self._pending and (host, port) in self._pending:
                continue
            known = _probe(host, port, f"{host.decode()}:{port}") and known
        self._probed = known
        return 0

    def _echo(self, data):
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
                    _check(rc, self, None)
                return True
            finally:
                self._busy = False
        finally:
            _payload_release(&p)

    def _close(self):
        """Disconnect and free the worker. Idempotent."""
        if self._closed:
            return
        if self._busy:
            raise RuntimeError("cannot close a GearmanWorker while it is working; call stop() first")
        self._closed = True
        if self._w != NULL and self._fork_gen == _fork_gen:
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
