# Jobs on the worker side: the GearmanJob handed to functions, sending outcomes, and the
# trampoline libgearman calls for each job (with how the GIL is handled around it).

from cpython.ref cimport Py_REFCNT

cdef enum:
    # Sends smaller than this keep the GIL: a GIL release/acquire costs more than the send (one
    # non-blocking send() into an enlarged socket buffer). Such a send could only block while
    # the kernel's send buffer is full, i.e. gearmand has stopped reading. Larger sends release it
    # and are watched (send.pxi: _send_guarded).
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
        cdef Worker w
        self._check()
        w = <Worker>self._wk
        if w._aborted:
            raise GearmanConnectionError("this job's connection was dropped (a send to the job "
                                         "server did not finish); the server requeues the job",
                                         GEARMAN_LOST_CONNECTION)
        keep = _payload_get(&p, data, "data")
        try:
            if p.size < SEND_KEEP_GIL:
                rc = _job_send(self._job, kind, p.ptr, p.size)
            else:
                rc = _send_guarded(w, self._job, kind, p.ptr, p.size)
        finally:
            _payload_release(&p)
        if kind == 2 or w._aborted:
            self._finished = True
        if rc == GEARMAN_SUCCESS:
            return 0
        if w._aborted:
            w._exc.raise_if_stored()        # Ctrl-C (or a signal handler's exception) ended it
            raise GearmanConnectionError("a send to the job server did not finish (it stopped "
                                         "reading); the connection is dropped and the server "
                                         "requeues the job", GEARMAN_LOST_CONNECTION)
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
        if (<Worker>self._wk)._aborted:
            raise GearmanConnectionError("this job's connection was dropped (a send to the job "
                                         "server did not finish); the server requeues the job",
                                         GEARMAN_LOST_CONNECTION)
        rc = _job_send_exception(<Worker>self._wk, self._job, message or b"exception")
        self._finished = True
        if rc != GEARMAN_SUCCESS and (<Worker>self._wk)._aborted:
            (<Worker>self._wk)._exc.raise_if_stored()
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


cdef inline gearman_return_t _job_send_any(gearman_job_st *job, int kind, const char *p,
                                           size_t n) noexcept nogil:
    if kind == 3:
        return gearman_job_send_exception(job, p, n)
    return _job_send(job, kind, p, n)


cdef gearman_return_t _job_send_exception(Worker w, gearman_job_st *job, bytes message) noexcept:
    cdef const char *p = PyBytes_AS_STRING(message)
    cdef size_t n = PyBytes_GET_SIZE(message)
    if n < SEND_KEEP_GIL:
        return gearman_job_send_exception(job, p, n)
    return _send_guarded(w, job, 3, p, n)


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
    pj._wk = <PyObject *>w
    pj._finished = False
    pj._owner = PyThread_get_thread_ident()
    w._aborted = False
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
                    rc = _send_guarded(w, job, 2, p.ptr, p.size)
            finally:
                _payload_release(&p)
            if rc == GEARMAN_SUCCESS:
                keep_gil[0] = 1
            elif not w._aborted:
                _job_final_failed(f, job, rc, "result")
    except Retry as e:
        keep_gil[0] = 0
        ret = _job_retry(f, pj, job, e)
    except BaseException as e:
        keep_gil[0] = 0
        ret = _job_failed(f, pj, job, e)
    _job_detach(pj)
    if w._aborted:
        # a send was ended half-way: libgearman must drop this connection (GEARMAN_ERROR closes
        # the handle's sockets), gearmand requeues the job; the server is set aside for a while
        keep_gil[0] = 0
        ret = GEARMAN_ERROR
        w._reident_next = w._identifier is not None
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
        if w._aborted:
            return GEARMAN_ERROR
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
            rc = _job_send_exception(w, job, text.encode("utf-8", "replace"))
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
        if (<Worker>f.worker)._aborted:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                (<Worker>f.worker)._exc.store(e)
            return GEARMAN_ERROR        # half a packet went out: no more sending on it
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
        rc = _job_send_exception(<Worker>f.worker, job, text.encode("utf-8", "replace"))
        if rc != GEARMAN_SUCCESS:
            _job_final_failed(f, job, rc, "exception")
        return GEARMAN_FAIL
    except BaseException as inner:
        (<Worker>f.worker)._exc.store(inner)
        return GEARMAN_FAIL
