# The client: configuration, guards, and one private primitive per operation. Public names
# (the Pythonic API and PHP's names) live in pygearman/client.py.


cdef class Client:
    """Compiled core of :class:`pygearman.GearmanClient` (use that class)."""

    def __cinit__(self, *args, **kwargs):
        self._router = _Router()
        self._default_timeout = -1.0
        self._pending = []
        self._callbacks = {}
        self._exc = _Exc()
        self._single = None
        self._fork_gen = _fork_gen

    # -- configuration (no I/O) --------------------------------------------------------------

    def _add_server(self, bytes host, int port):
        self._check_idle()
        self._router.servers.append(_Server(host, port, len(self._router.servers)))

    def _set_default_timeout(self, timeout):
        self._default_timeout = _seconds(timeout)

    def _set_namespace(self, namespace):
        cdef bytes b = _namespace_bytes(namespace)
        self._check_idle()
        self._namespace = b
        self._fn_key = None          # the length check depends on the namespace
        self._reset_all()

    def _set_identifier(self, identifier):
        cdef bytes b = _coerce(identifier, "identifier", C_IDENTIFIER)
        self._check_idle()
        self._identifier = b
        self._reset_all()

    cdef void _reset_all(self) noexcept:
        cdef _Server s
        for s in self._router.servers:
            s.reset_all()

    @property
    def servers(self):
        """The job servers, as ``host:port`` strings, in the order they were added."""
        return [(<_Server>s).address for s in self._router.servers]

    @property
    def timeout(self):
        """Default deadline in seconds for each call (None: wait as long as it takes)."""
        return None if self._default_timeout < 0 else self._default_timeout

    @property
    def namespace(self):
        """The prefix put before every function name, or None."""
        return self._namespace.decode("utf-8", "replace") if self._namespace is not None else None

    @property
    def identifier(self):
        """This client's name in the server's admin view, or None."""
        return self._identifier.decode() if self._identifier is not None else None

    @property
    def closed(self):
        """True after close()."""
        return self._closed

    @property
    def pending_tasks(self):
        """Tasks added with add_task() and not yet run."""
        return list(self._pending)

    # -- guards ------------------------------------------------------------------------------

    cdef void _after_fork(self) noexcept:
        """First use in a forked child: the connections are the parent's. Forget them (see
        _Conn.forget), and whatever call or stream a thread of the parent had running."""
        cdef _Server s
        for s in self._router.servers:
            s.forget_all()
        self._fork_gen = _fork_gen
        self._busy = False
        self._single = self._multi = None
        if self._stream is not None:
            self._stream._abandon_after_fork()
        self._stream = None
        if self._completing is not None:
            del self._completing._run.lanes[:]     # forgotten, not reset: see _Conn.forget
            self._completing._release()
        self._completing = None

    cdef int _check_idle(self) except -1:
        if self._fork_gen != _fork_gen:
            self._after_fork()
        if self._closed:
            raise RuntimeError("this GearmanClient is closed")
        if self._busy:
            raise RuntimeError("this GearmanClient is in use by another call")
        return 0

    cdef int _enter(self) except -1:
        if self._fork_gen != _fork_gen:
            self._after_fork()
        if self._closed:
            raise RuntimeError("this GearmanClient is closed")
        if self._busy:
            raise RuntimeError("this GearmanClient is in use by another call (a client is not "
                               "thread-safe: use one per thread, e.g. client.clone())")
        if self._stream is not None:
            raise RuntimeError("a stream() of this client is still open: finish or close it first")
        if self._completing is not None:
            raise RuntimeError("an as_completed() of this client is still open: finish or close "
                               "it first")
        if not self._router.servers:
            raise ValueError("no job servers: add one with add_server()")
        self._busy = True
        return 0

    def _submit_jobs(self, list jobs, timeout, batch):
        """Jobs of any functions and priorities, all in flight at once, run in C: a list of
        results (bytes), handles (JobHandle) or exceptions, in input order. A failure of the
        whole run (deadline, lost connection) is the outcome of the jobs it left without one."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef Py_ssize_t i, o, n = len(jobs)
        cdef _Run run = None
        _check_batch(batch)
        self._enter()
        try:
            run = self._run_for(n, deadline, batch)
            out = _jobs_specs(run, self, jobs)
            failed = None
            try:
                run.go()
            except Exception as e:
                failed = e
            finally:
                run.client = None
            for i in range(n):
                if out[i] is not None:
                    continue
                o = run.origin(i)
                if run.specs[o].ctx.rc == GEARMAN_SUCCESS and run.failure(o) is None:
                    out[i] = run.value_of(i)
                else:
                    err = run.error_of(i, PyBytes_FromStringAndSize(run.specs[o].fn,
                                                                    run.specs[o].fnn))
                    out[i] = err if err is not None else failed
            return out
        finally:
            if run is not None:
                run.release()
            self._busy = False

    cdef bytes _function_bytes(self, object function):
        """A function name as bytes, checked (the one place every call checks one): calls with
        one name (the same str or bytes object) pay for the encode and the checks once."""
        cdef bytes fn
        if function is self._fn_key and function is not None:
            return self._fn_bytes
        fn = _coerce(function, "function name", C_FUNCTION)
        self._check_fn(fn)
        if type(function) is str or type(function) is bytes:
            self._fn_key = function
            self._fn_bytes = fn
        return fn

    cdef int _check_fn(self, bytes fn) except -1:
        if self._namespace is not None and \
                PyBytes_GET_SIZE(self._namespace) + PyBytes_GET_SIZE(fn) > 1023:
            raise ValueError("namespace + function name must stay under 1024 bytes")
        return 0

    cdef _Run _run_for(self, Py_ssize_t n, double deadline, int batch, bint single=False):
        """The engine for a call that ends within it (not a stream or as_completed(), which
        make their own): the client's own, one for single jobs (``single``: its outcome stays
        readable for last_handle) and one for everything else (callers release() it)."""
        cdef _Run run
        if single:
            if self._single is None:
                self._single = _Run(self._exc)
            run = self._single
        else:
            # reused too: a batch's spec array (hundreds of KiB) is not allocated, faulted in
            # and given back on every call
            if self._multi is None:
                self._multi = _Run(self._exc)
            run = self._multi
        run.setup(self, n, deadline, batch)
        return run

    # -- one job -----------------------------------------------------------------------------

    def _submit(self, int priority, bint background, function, workload, unique, timeout,
                on_data=None, on_warning=None, on_status=None, when=None):
        """One job: the result (bytes) of a foreground job, the handle (str) of a background
        one. on_* take the GIL only for the events they were given."""
        return self._submit1(priority, background, function, workload, unique, timeout,
                             on_data, on_warning, on_status, when)

    cdef object _submit1(self, int priority, bint background, object function, object workload,
                         object unique, object timeout, object on_data=None,
                         object on_warning=None, object on_status=None, object when=None):
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef bytes fn = self._function_bytes(function)
        cdef bytes uq = _coerce(unique, "unique", C_UNIQUE)
        cdef _Payload p
        cdef object keep
        cdef _Run run
        cdef int kind = K_BACKGROUND if background else K_JOB
        cdef double epoch = -1
        cdef GearmanTask t = None
        if priority != GEARMAN_JOB_PRIORITY_HIGH and priority != GEARMAN_JOB_PRIORITY_NORMAL \
                and priority != GEARMAN_JOB_PRIORITY_LOW:
            _check_priority(priority)    # raises, saying what is allowed
        if when is not None:
            if not background:
                raise ValueError("when= (a scheduled job) needs background=True")
            epoch = _epoch_of(when)
            kind = K_EPOCH
        if on_data is not None or on_warning is not None or on_status is not None:
            if background:
                raise ValueError("on_data/on_warning/on_status need a foreground job (background "
                                 "jobs report to job_status() instead)")
            t = _callbacks_task(self, fn, priority, on_data, on_warning, on_status)
        keep = _payload_get(&p, workload, "workload")
        try:
            self._enter()
            try:
                run = self._run_for(1, deadline, 1, True)
                run.set_job(0, kind, priority, PyBytes_AS_STRING(fn), PyBytes_GET_SIZE(fn),
                            PyBytes_AS_STRING(uq) if uq is not None else NULL,
                            PyBytes_GET_SIZE(uq) if uq is not None else 0, p.ptr, p.size)
                run.specs[0].epoch = epoch
                if t is not None:
                    run.bind(0, t)
                try:
                    run.go()
                finally:
                    run.client = None
                err = run.error_of(0, fn)
                if err is not None:
                    raise err
                return run.value_of(0)
            finally:
                self._busy = False
        finally:
            _payload_release(&p)

    def _job_handle(self):
        """The handle of the last single job (do_*/submit), or None (nothing acknowledged)."""
        cdef _Run run = self._single
        if run is None or run.n != 1 or run.servers is None or run.specs[0].ctx.handle[0] == 0 \
                or (run.specs[0].kind != K_JOB and run.specs[0].kind != K_BACKGROUND
                    and run.specs[0].kind != K_EPOCH):
            return None
        return run.server_of(0).handle(run.specs[0].ctx.handle)

    # -- streaming ---------------------------------------------------------------------------

    def _stream_open(self, function, workload, unique, int priority, timeout):
        """A JobStream for one foreground job; nothing is sent before the first next()."""
        cdef JobStream st
        cdef GearmanTask t
        cdef bytes fn = self._function_bytes(function)
        cdef bytes uq = _coerce(unique, "unique", C_UNIQUE)
        cdef _Run run
        _check_priority(priority)
        self._enter()
        try:
            st = JobStream.__new__(JobStream)
            t = _new_task(self, fn, uq, None, priority, False)
            t._stream = st
            t._want_mask = EV_DATA
            st._task = t
            st._chunks = []
            st._client = self
            st._keep = _payload_get(&st._payload, workload, "workload")
            st._exc = _Exc()
            run = _Run(st._exc)
            run.setup(self, 1, _deadline_from(timeout, self._default_timeout), 1)
            run.set_job(0, K_JOB, priority, PyBytes_AS_STRING(fn), PyBytes_GET_SIZE(fn),
                        PyBytes_AS_STRING(uq) if uq is not None else NULL,
                        PyBytes_GET_SIZE(uq) if uq is not None else 0,
                        st._payload.ptr, st._payload.size)
            run.keep = [fn, uq]
            run.bind(0, t)
            run.client = None
            st._run = run
        finally:
            self._busy = False
        self._stream = st
        return st

    def _stream_step(self, JobStream st):
        """Run the stream's job until its next chunk or its end."""
        cdef _Run run = st._run
        if self._fork_gen != _fork_gen:
            self._after_fork()        # abandons st: the next line says so
        if st._done:
            raise RuntimeError("this stream was abandoned (the process forked, or it was closed)")
        if self._busy:
            raise RuntimeError("this GearmanClient is in use by another call")
        if self._closed:
            raise RuntimeError("this GearmanClient is closed")
        self._busy = True
        try:
            run.client = self
            paused = run.go()
            # the workload was copied when the job was added: the buffer can go back now
            _payload_release(&st._payload)
            st._keep = None
            if not paused:
                run.client = None
                st._task._settle(&run.specs[0].ctx, run.error_of(0, st._task._fn) if run.specs[0].ctx.rc != GEARMAN_SUCCESS else None)
                st._release()
        except BaseException:
            run.client = None
            st._task._settle(&run.specs[0].ctx, run.error_of(0, st._task._fn) if run.specs[0].ctx.rc != GEARMAN_SUCCESS else None)
            st._release()
            raise
        finally:
            self._busy = False

    # -- task sets ---------------------------------------------------------------------------

    def _add_task(self, function, workload, unique, int priority, bint background, context,
                  on_created, on_data, on_warning, on_status, on_complete, on_fail, on_exception,
                  status_handle=None):
        cdef GearmanTask t
        cdef bytes fn, uq
        self._check_idle()
        _check_priority(priority)
        for cb in (on_created, on_data, on_warning, on_status, on_complete, on_fail, on_exception):
            if cb is not None and not callable(cb):
                raise TypeError(f"task callbacks must be callable, not {type(cb).__name__}")
        if status_handle is not None:
            hb = _coerce(status_handle, "handle", C_HANDLE)
            where = self._router.servers_for(status_handle)
            if len(where) > 1:
                raise ValueError(f"add_task_status({str(status_handle)!r}): with several job "
                                 f"servers a plain handle is ambiguous; pass the JobHandle that "
                                 f"submit() returned (or JobHandle(handle, server))")
            t = _new_task(self, None, None, b"", priority, False)
            t._status_only = True
            t._handle = status_handle if isinstance(status_handle, JobHandle) else \
                hb.decode("utf-8", "replace")
            t._pin = (<_Server>where[0]).index if where else -1
        else:
            fn = self._function_bytes(function)
            uq = _coerce(unique, "unique", C_UNIQUE)
            # copied now: the caller may reuse a bytearray before run_tasks()
            t = _new_task(self, fn, uq, _payload_copy(workload, "workload"), priority, background)
        t.context = context
        t._in_set = True
        t._on_created, t._on_data, t._on_warning = on_created, on_data, on_warning
        t._on_status, t._on_complete, t._on_fail, t._on_exception = on_status, on_complete, on_fail, on_exception
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

    def _clear_callbacks(self):
        self._callbacks = {}

    def _run_tasks(self, timeout, batch):
        """Run every pending task at once; callbacks run in this thread as events arrive."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef _Run run
        _check_batch(batch)
        self._enter()
        tasks = self._pending
        self._pending = []
        if not self._callbacks:
            # No Python code can watch the run (no callback anywhere: a coalesced task's events
            # come from its first twin, so one watched task keeps them all): the created,
            # complete and fail events need no GIL, _taskset_settle() sets the same fields after
            # the run. Data, warnings and status still come as they arrive (kept in order).
            for t in tasks:
                if (<GearmanTask>t)._watched():
                    break
            else:
                for t in tasks:
                    (<GearmanTask>t)._want_mask = EV_DATA | EV_WARNING | EV_STATUS
        try:
            run = self._run_for(len(tasks), deadline, batch)
            _taskset_specs(run, tasks)
            try:
                run.go()
            finally:
                run.client = None
                _taskset_settle(run, tasks)
                run.release()
        finally:
            self._busy = False
        return tasks

    def _as_completed(self, timeout, batch):
        """The pending tasks, run as with _run_tasks, handed out as they finish."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef CompletedTasks it
        cdef GearmanTask t
        cdef _Run run
        _check_batch(batch)
        self._enter()
        try:
            it = CompletedTasks.__new__(CompletedTasks)
            it._tasks = self._pending
            self._pending = []
            it._ready = []
            it._client = self
            run = _Run(self._exc)
            run.setup(self, len(it._tasks), deadline, batch)
            _taskset_specs(run, it._tasks)
            run.client = None
            for t in it._tasks:
                t._notify = it._ready
            it._run = run
            if not it._tasks:
                it._release()
            else:
                self._completing = it
        finally:
            self._busy = False
        return it

    def _completed_step(self, CompletedTasks it):
        """Run the set until some task finishes (or all have)."""
        cdef _Run run = it._run
        if self._fork_gen != _fork_gen:
            self._after_fork()
        if it._done:
            return
        if self._busy:
            raise RuntimeError("this GearmanClient is in use by another call")
        self._busy = True
        try:
            run.client = self
            if not run.go():
                run.client = None
                _taskset_settle(run, it._tasks)
                # tasks settled without an event of their own (a status query, a background
                # task whose JOB_CREATED came with another's)
                for t in it._tasks:
                    if not (<GearmanTask>t)._handed:
                        (<GearmanTask>t)._handed = True
                        it._ready.append(t)
                it._release()
        except BaseException:
            run.client = None
            _taskset_settle(run, it._tasks)
            it._release()
            raise
        finally:
            self._busy = False

    # -- batches -----------------------------------------------------------------------------

    def _submit_many(self, function, workloads, uniques, int priority, bint background,
                     timeout, batch, bint return_exceptions):
        """Many jobs of one function, all in flight at once and run entirely in C; results
        (or handles) in input order."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef bytes fn = self._function_bytes(function)
        cdef list items, uqs, out
        cdef _Run run
        _check_batch(batch)
        _check_priority(priority)
        items, uqs = _batch_inputs(workloads, uniques)
        out = [None] * len(items)
        self._enter()
        try:
            run = self._run_for(len(items), deadline, batch)
            _batch_specs(run, fn, items, uqs, priority, background)
            try:
                run.go()
            except BaseException as e:
                if isinstance(e, GearmanError):
                    e.results = out
                raise
            finally:
                run.client = None
                _batch_collect(run, self._router, fn, background, out)
                run.release()
        finally:
            self._busy = False
        if not return_exceptions:
            for r in out:
                if isinstance(r, BaseException):
                    r.results = out
                    raise r
        return out

    # -- status, echo ------------------------------------------------------------------------

    def _job_status(self, handle, timeout):
        """(known, running, numerator, denominator) of a job handle. A JobHandle is asked of
        the server that issued it; a plain str of every server, and refused as ambiguous when
        several know it (gearmand servers hand out the same handle texts)."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef bytes h = _coerce(handle, "handle", C_HANDLE)
        cdef _Run run = None
        cdef Py_ssize_t i, n
        cdef _TaskCtx *ctx
        targets = self._router.servers_for(handle)
        self._enter()
        try:
            n = len(targets)
            run = self._run_for(n, deadline, 1)
            run.keep = [h]
            for i in range(n):
                run.set_status(i, K_STATUS, PyBytes_AS_STRING(h), (<_Server>targets[i]).index)
            try:
                run.go()
            finally:
                run.client = None
            if n == 1:
                err = run.error_of(0, b"")
                if err is not None:
                    raise err
                ctx = &run.specs[0].ctx
                return (ctx.known != 0, ctx.running != 0, ctx.num, ctx.den)
            return _one_answer(run, n, targets, h)
        finally:
            if run is not None:
                run.release()
            self._busy = False

    def _unique_status(self, unique, timeout):
        """(known, running, numerator, denominator) of a job by its unique."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef bytes uq = _coerce(unique, "unique", C_UNIQUE)
        cdef _Run run = None
        cdef _TaskCtx *ctx
        if uq is None:
            raise ValueError("unique_status needs a unique")
        self._enter()
        try:
            run = self._run_for(1, deadline, 1)
            run.keep = [uq]
            run.set_status(0, K_STATUS_UNIQUE, PyBytes_AS_STRING(uq), -1)
            try:
                run.go()
            finally:
                run.client = None
            err = run.error_of(0, b"")
            if err is not None:
                raise err
            ctx = &run.specs[0].ctx
            return (ctx.known != 0, ctx.running != 0, ctx.num, ctx.den)
        finally:
            if run is not None:
                run.release()
            self._busy = False

    def _echo(self, data, timeout):
        """Send data to every job server and check it comes back unchanged."""
        cdef double deadline = _deadline_from(timeout, self._default_timeout)
        cdef object keep
        cdef _Payload p
        cdef gearman_return_t rc
        cdef _Server s
        cdef _Conn conn
        cdef int step
        cdef sigset_t old
        cdef bint held
        keep = _payload_get(&p, data, "echo data")
        try:
            if p.size == 0:
                raise ValueError("echo data must not be empty")
            _refresh_signal_policy()
            self._enter()
            try:
                for s in self._router.servers:
                    conn = s.conn(0, self._exc)
                    step = 1000
                    while True:
                        try:
                            conn.open(self, deadline)
                        except _NotSent as e:
                            raise e.args[0] from None
                        gearman_client_set_timeout(conn.c, _slice_ms(deadline, step))
                        with nogil:
                            held = _hold_signals(&old)
                            rc = gearman_client_echo(conn.c, p.ptr, p.size)
                            if held:
                                _release_signals(&old)
                        if rc != GEARMAN_TIMEOUT:
                            gearman_client_set_timeout(conn.c, SLICE_MS)
                            break
                        # never ask twice on one connection: a late echo would answer the next
                        # request (a distant server); a new one, waiting twice as long
                        conn.reset()
                        if s.no_options:
                            raise NotSupportedError(
                                f"{s.address} does not answer ECHO (gear's Server does not "
                                f"implement it; its jobs work)", GEARMAN_TIMEOUT)
                        conn.tick(deadline, "no echo")
                        step = min(2 * step, 8000)
                    if rc != GEARMAN_SUCCESS:
                        err = _error(rc, conn, None)
                        conn.reset()
                        raise err
                return True
            finally:
                self._busy = False
        finally:
            _payload_release(&p)

    def _servers_for_handle(self, handle):
        """The addresses to ask about a handle (see _job_status)."""
        return [(<_Server>s).address for s in self._router.servers_for(handle)]

    def _close(self):
        if self._closed:
            return
        if self._fork_gen != _fork_gen:
            self._after_fork()
        if self._busy:
            raise RuntimeError("cannot close a GearmanClient while another thread is using it")
        if self._stream is not None:
            self._stream.close()
        if self._completing is not None:
            self._completing.close()
        self._closed = True
        self._pending = []
        self._single = self._multi = None
        self._reset_all()

    def __del__(self):
        if not self._closed and self._router.servers:
            try:
                warnings.warn(f"unclosed {type(self).__name__} {self.servers!r}; use close() or "
                              f"'with'", ResourceWarning, source=self)
            except Exception:
                pass  # interpreter shutdown: the memory is freed by __dealloc__ regardless


cdef GearmanTask _callbacks_task(Client client, bytes fn, int priority, on_data, on_warning,
                                 on_status):
    """The listener of a single job's on_data/on_warning/on_status: only those events reach
    Python, and never the client-wide task-set callbacks."""
    cdef GearmanTask t = _new_task(client, fn, None, None, priority, False)
    for cb in (on_data, on_warning, on_status):
        if cb is not None and not callable(cb):
            raise TypeError(f"callbacks must be callable, not {type(cb).__name__}")
    t._want_mask = 0
    if on_data is not None:
        t._on_data = lambda task, chunk: on_data(chunk)
        t._want_mask |= EV_DATA
    if on_warning is not None:
        t._on_warning = lambda task, chunk: on_warning(chunk)
        t._want_mask |= EV_WARNING
    if on_status is not None:
        t._on_status = lambda task: on_status(task.numerator, task.denominator)
        t._want_mask |= EV_STATUS
    return t


cdef tuple _one_answer(_Run run, Py_ssize_t n, list targets, bytes h):
    """The status of a plain handle asked of several servers: the one server that knows it."""
    cdef Py_ssize_t i
    cdef _TaskCtx *ctx
    knew = []
    answer = (False, False, 0, 0)
    for i in range(n):
        if run.error_of(i, b"") is None and run.specs[i].ctx.known:
            ctx = &run.specs[i].ctx
            knew.append((<_Server>targets[i]).address)
            answer = (True, ctx.running != 0, ctx.num, ctx.den)
    if len(knew) > 1:
        raise ValueError(f"the handle {h.decode('utf-8', 'replace')!r} is known by several job "
                         f"servers ({', '.join(knew)}): pass the JobHandle that submit() returned "
                         f"(or JobHandle(handle, server))")
    if not knew:
        for i in range(n):
            err = run.error_of(i, b"")
            if err is not None:
                raise err
    return answer


def job_method(int priority, bint background, str name, str doc):
    """A method that runs one job at a fixed priority, for the PHP extension's names in
    client.py (``do_background = job_method(...)``): the caller reaches the engine without a
    Python frame in between (a delegating ``def`` cost about 600 instructions per job)."""
    def method(Client self, function, workload=b"", unique=None, *, timeout=_UNSET):
        return self._submit1(priority, background, function, workload, unique, timeout)
    method.__name__ = name
    method.__qualname__ = "GearmanClient." + name
    method.__doc__ = doc
    method.__module__ = "pygearman.client"
    return method
